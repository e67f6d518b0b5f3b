"""The Ray executor: each step is a Ray task; artifacts go through the artifact store.

Without ``address`` a local Ray is started (and shut down after the run); with one
(``ray://host:10001`` or ``auto``) the pipeline joins that cluster, and its workers must reach the
artifact root (an object store such as ``s3://...`` rather than a local folder) and import the
project's code (give ``runtime_env={"working_dir": "."}``). When Ray is already initialised in this
process it is used as it is and left running.

A step's ``resources`` (``@step(resources={"cpus": 4})``) are reserved for its task; one the
cluster cannot meet at all fails the run before the step is submitted, naming the step.
"""

from __future__ import annotations

from concurrent.futures import Future
from typing import TYPE_CHECKING, Any

from modelyard.pipelines.resources import check_capacity, ray_options
from modelyard.pipelines.worker import execute_task

if TYPE_CHECKING:
    from modelyard.pipelines.steps import Step
    from modelyard.pipelines.worker import StepResult, StepTask


class RayExecutor:
    name = "ray"

    def __init__(
        self,
        address: str | None = None,
        *,
        num_cpus: int | None = None,
        runtime_env: dict[str, Any] | None = None,
    ) -> None:
        self.address = address
        self.num_cpus = num_cpus
        self.runtime_env = runtime_env
        self._started = False
        self._remote: Any = None
        self._refs: list[Any] = []

    @property
    def in_process(self) -> bool:
        return False

    def open(self, *, parallelism: int) -> None:
        """Nothing yet: Ray starts with the first step that runs (not at all when every step
        is a cache hit or the pipeline is refused)."""

    def submit(self, task: StepTask, step: Step[Any, Any]) -> Future[StepResult]:
        if self._remote is None:
            self._start()
        if step.resources:
            check_capacity(step.resources, owner=f"Step {step.name!r}")
            ref = self._remote.options(**ray_options(step.resources)).remote(task)
        else:
            ref = self._remote.remote(task)
        self._refs.append(ref)
        future: Future[StepResult] = ref.future()
        return future

    def _start(self) -> None:
        try:
            import ray
        except ImportError as exc:
            raise ImportError(
                "The Ray executor needs Ray; install it with pip install 'modelyard[ray]'."
            ) from exc
        if not ray.is_initialized():
            options: dict[str, Any] = {"runtime_env": self.runtime_env}
            if self.address is None:
                options.update(num_cpus=self.num_cpus, include_dashboard=False)
            ray.init(address=self.address, **options)
            self._started = True
        self._remote = ray.remote(num_cpus=1, max_retries=0)(execute_task)

    def close(self, *, cancel: bool = False) -> None:
        if self._remote is None:
            return
        import ray

        if cancel:
            for ref in self._refs:
                ray.cancel(ref, force=True)
        self._refs.clear()
        self._remote = None
        if self._started:
            ray.shutdown()
            self._started = False
