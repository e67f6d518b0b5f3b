"""What a running step can know and report: its run, its name, metrics.

``log_metrics`` records numbers for the running step (``yard runs show`` lists them; the run's
metrics hold them as ``step.name``). A cache hit reuses the metrics of the run it came from.
Outside a pipeline run (a step called as a plain function) it does nothing.
"""

from __future__ import annotations

from collections.abc import Mapping
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from modelyard.registry import Registry

__all__ = ["StepContext", "current_step", "log_metrics"]


@dataclass(slots=True)
class StepContext:
    """The step being run: ``run_id``, ``pipeline``, ``step`` and the stores it may use."""

    run_id: str
    pipeline: str
    step: str
    database_url: str | None
    artifact_root: str
    identity: str | None
    metrics: dict[str, float] = field(default_factory=dict)

    def registry(self) -> Registry:
        """A registry on the run's metadata database and artifact store (for steps that register
        or deploy models; give them ``cache=False``). The caller closes it."""
        from modelyard.registry import Registry

        return Registry(
            database_url=self.database_url,
            artifact_root=self.artifact_root,
            identity=self.identity,
        )


_CURRENT: ContextVar[StepContext | None] = ContextVar("modelyard_step", default=None)


def current_step() -> StepContext | None:
    """The step being run in this process, or ``None`` outside a pipeline run."""
    return _CURRENT.get()


def log_metrics(metrics: Mapping[str, float] | None = None, /, **more: float) -> None:
    """Record metrics of the running step: ``log_metrics({"auc": 0.91})`` or
    ``log_metrics(auc=0.91)``. Values must be finite numbers."""
    from modelyard.registry.runs import clean_metrics

    context = _CURRENT.get()
    values = clean_metrics({**(metrics or {}), **more})
    if context is not None:
        context.metrics.update(values)


def activate(context: StepContext) -> object:
    return _CURRENT.set(context)


def deactivate(token: object) -> None:
    _CURRENT.reset(token)  # type: ignore[arg-type]  # the token activate returned
