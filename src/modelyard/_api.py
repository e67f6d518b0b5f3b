"""The top-level convenience API (``modelyard.register``, ``modelyard.load``...).

These functions use one process-wide ``Registry`` built from the environment on first use, the
way ``mlflow`` keeps a current tracking URI; ``set_registry`` replaces it and code that wants no
global state creates its own ``Registry``.

This is an edge: it reads ``MLFLOW_TRACKING_URI`` (and ``MLFLOW_EXPERIMENT_NAME``) once per call
and passes them down. With a tracking URI set, ``load("models:/NAME@ALIAS")`` (the ``models:/``
forms only) resolves on that MLflow server (``modelyard.integrations.mlflow``).
"""

from __future__ import annotations

import os
import threading
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, TypeVar

if TYPE_CHECKING:
    from modelyard.core.types import AliasEvent, ModelVersion
    from modelyard.integrations.runs import MirrorDefaults
    from modelyard.registry import ActiveRun, Registry
    from modelyard.registry.loaded import LoadedModel

_ModuleT = TypeVar("_ModuleT")
_lock = threading.Lock()
_default: list[Registry] = []


def get_registry() -> Registry:
    """The process-wide registry (created from ``Settings()`` on first use)."""
    with _lock:
        if not _default:
            from modelyard.registry import Registry

            _default.append(Registry())
        return _default[0]


def set_registry(registry: Registry | None) -> None:
    """Replace the process-wide registry (``None``: build it from the environment again)."""
    with _lock:
        if _default:
            _default.pop()
        if registry is not None:
            _default.append(registry)


def register(model: object, *, name: str, **options: Any) -> ModelVersion:
    """Register ``model`` as the next version of ``name``; see ``Registry.register``."""
    return get_registry().register(model, name=name, **options)


def load(ref: str, **options: Any) -> LoadedModel:
    """Load a version (``churn``, ``churn/3``, ``churn@production``); see ``Registry.load``.

    While ``MLFLOW_TRACKING_URI`` is set, ``models:/NAME/VERSION``, ``models:/NAME@ALIAS`` and
    ``models:/NAME/latest`` name a model on that MLflow server: it is imported once (a pickled
    scikit-learn model needs ``trust_pickle=True``) and the stored version is loaded."""
    registry = get_registry()
    tracking_uri = os.environ.get("MLFLOW_TRACKING_URI")
    if tracking_uri and ref.strip().startswith("models:/"):
        from modelyard.integrations.mlflow import resolve_model

        version = resolve_model(
            registry, ref, tracking_uri=tracking_uri,
            trust_pickle=bool(options.get("trust_pickle", False)),
            trusted_types=options.get("trusted_types", ()),
        )  # fmt: skip
        ref = version.ref
    return registry.load(ref, **options)


def load_weights(ref: str, module: _ModuleT) -> _ModuleT:
    """Load a PyTorch version's safetensors weights into ``module``, which you construct; see
    ``Registry.load_weights``."""
    return get_registry().load_weights(ref, module)


def set_alias(ref: str, alias: str, *, reason: str | None = None) -> AliasEvent:
    return get_registry().set_alias(ref, alias, reason=reason)


def rollback(name: str, alias: str, *, reason: str | None = None) -> AliasEvent:
    return get_registry().rollback(name, alias, reason=reason)


def start_run(
    name: str | None = None, *, mirror: str | Sequence[str] | None = None, **options: Any
) -> ActiveRun:
    """Start recording a run; see ``Registry.start_run``. ``mirror`` logs its params, metrics
    and tags to other trackers as well, one or a list of:

    - ``"mlflow"`` (or ``"mlflow:EXPERIMENT"``): a run on the MLflow server
      ``MLFLOW_TRACKING_URI`` names, in ``MLFLOW_EXPERIMENT_NAME`` (default ``Default``);
    - ``"wandb"`` (or ``"wandb:PROJECT"``, ``"wandb:ENTITY/PROJECT"``; default the
      ``[runs] wandb_project`` setting): an offline W&B run, for ``wandb sync``;
    - ``"neptune"``: an offline Neptune run, for ``neptune sync``.

    Without ``mirror``, the ``[runs] mirror`` setting applies; ``mirror=[]`` mirrors nothing.
    See ``modelyard.integrations.runs``."""
    from modelyard.integrations.runs import parse_mirrors, start_mirrored_run

    registry = get_registry()
    specs = parse_mirrors(registry.settings.runs.mirror if mirror is None else mirror)
    if not specs:
        return registry.start_run(name, **options)
    defaults = mirror_defaults(registry)
    return start_mirrored_run(registry, name, specs, defaults=defaults, **options)


def mirror_defaults(registry: Registry) -> MirrorDefaults:
    """Where run mirrors go when a mirror names no target: the settings and, read here at the
    edge, ``MLFLOW_TRACKING_URI`` and ``MLFLOW_EXPERIMENT_NAME``."""
    from modelyard.integrations.runs import MirrorDefaults

    return MirrorDefaults(
        mlflow_tracking_uri=os.environ.get("MLFLOW_TRACKING_URI"),
        mlflow_experiment=os.environ.get("MLFLOW_EXPERIMENT_NAME"),
        wandb_project=registry.settings.runs.wandb_project,
    )
