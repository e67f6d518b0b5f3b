"""Where steps run: in this process or local worker processes (default), or on Ray."""

from modelyard.pipelines.executors._base import Executor, make_executor
from modelyard.pipelines.executors.local import LocalExecutor
from modelyard.pipelines.executors.ray import RayExecutor

__all__ = ["Executor", "LocalExecutor", "RayExecutor", "make_executor"]
