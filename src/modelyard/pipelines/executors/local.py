"""The local executor: steps in this process, or independent steps in parallel processes.

With ``workers=1``, or when the graph has no two steps that can run at once, steps run in this
process one after the other. Otherwise up to ``workers`` processes (default: the CPU count)
started with ``forkserver``: a fresh interpreter that imports the pipeline file by its path, so
steps must be defined at module level.

A step's ``resources`` (``@step(resources={"cpus": 4})``) are checked when the step is defined
and otherwise ignored here: every step shares this machine, and ``workers`` bounds how many run.
"""

from __future__ import annotations

import multiprocessing
import os
from concurrent.futures import Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from typing import TYPE_CHECKING, Any

from modelyard.pipelines.worker import execute, execute_task

if TYPE_CHECKING:
    from modelyard.pipelines.steps import Step
    from modelyard.pipelines.worker import StepResult, StepTask

_PRELOAD = ["modelyard.pipelines.worker", "modelyard.pipelines.artifacts", "pandas", "pyarrow"]


class LocalExecutor:
    name = "local"

    def __init__(self, workers: int | None = None, *, start_method: str = "forkserver") -> None:
        if workers is not None and workers < 1:
            raise ValueError("workers must be at least 1")
        self.workers = workers
        self.start_method = start_method
        self._size = 1
        self._pool: ProcessPoolExecutor | None = None

    def open(self, *, parallelism: int) -> None:
        limit = self.workers if self.workers is not None else (os.cpu_count() or 1)
        self._size = max(1, min(limit, parallelism))

    @property
    def in_process(self) -> bool:
        return self._size == 1

    def submit(self, task: StepTask, step: Step[Any, Any]) -> Future[StepResult]:
        if self.in_process:
            future: Future[StepResult] = Future()
            future.set_result(execute(task, step))
            return future
        try:
            return self._processes().submit(execute_task, task)
        except BrokenProcessPool:  # a worker died: the next steps get a fresh pool
            self._pool = None
            return self._processes().submit(execute_task, task)

    def close(self, *, cancel: bool = False) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=not cancel, cancel_futures=cancel)
            self._pool = None

    def _processes(self) -> ProcessPoolExecutor:
        if self._pool is None:
            context = multiprocessing.get_context(self.start_method)
            if self.start_method == "forkserver":
                context.set_forkserver_preload(_PRELOAD)
            self._pool = ProcessPoolExecutor(max_workers=self._size, mp_context=context)
        return self._pool
