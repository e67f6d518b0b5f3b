"""The executor protocol and the factory the CLI uses."""

from __future__ import annotations

from concurrent.futures import Future
from typing import TYPE_CHECKING, Any, Protocol

from modelyard.errors import PipelineDefinitionError

if TYPE_CHECKING:
    from modelyard.pipelines.steps import Step
    from modelyard.pipelines.worker import StepResult, StepTask


class Executor(Protocol):
    """Runs step tasks and hands back futures of their results.

    ``open`` is called once per run with the most steps that can run at once; ``in_process``
    then says whether steps run in the caller's process (they need not be importable).
    ``close`` ends what ``open`` started (``cancel``: without waiting for running steps).
    """

    name: str

    def open(self, *, parallelism: int) -> None: ...

    @property
    def in_process(self) -> bool: ...

    def submit(self, task: StepTask, step: Step[Any, Any]) -> Future[StepResult]: ...

    def close(self, *, cancel: bool = False) -> None: ...


def make_executor(kind: str, *, address: str | None = None, workers: int | None = None) -> Executor:
    """``local`` or ``ray``, as the CLI's ``--executor``/``--address``/``--workers`` give them."""
    from modelyard.pipelines.executors.local import LocalExecutor
    from modelyard.pipelines.executors.ray import RayExecutor

    if kind == "local":
        if address is not None:
            raise PipelineDefinitionError(
                "--address is for the Ray executor; add --executor ray or drop --address."
            )
        return LocalExecutor(workers=workers)
    if kind == "ray":
        return RayExecutor(address=address, num_cpus=workers)
    raise PipelineDefinitionError(f"Unknown executor {kind!r}; use 'local' or 'ray'.")
