"""Model versions, aliases, lineage, audit and runs."""

from modelyard.registry.client import FileCheck, Registry
from modelyard.registry.runs import ActiveRun, RunMirror

__all__ = ["ActiveRun", "FileCheck", "Registry", "RunMirror"]
