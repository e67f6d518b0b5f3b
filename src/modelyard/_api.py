"""The top-level convenience API (``modelyard.register``, ``modelyard.load``...).

These functions use one process-wide ``Registry`` built from the environment on first use, the
way ``mlflow`` keeps a current tracking URI; ``set_registry`` replaces it and code that wants no
global state creates its own ``Registry``.
"""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING, Any, TypeVar

if TYPE_CHECKING:
    from modelyard.core.types import AliasEvent, ModelVersion
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
    """Load a version (``churn``, ``churn/3``, ``churn@production``); see ``Registry.load``."""
    return get_registry().load(ref, **options)


def load_weights(ref: str, module: _ModuleT) -> _ModuleT:
    """Load a PyTorch version's safetensors weights into ``module``, which you construct; see
    ``Registry.load_weights``."""
    return get_registry().load_weights(ref, module)


def set_alias(ref: str, alias: str, *, reason: str | None = None) -> AliasEvent:
    return get_registry().set_alias(ref, alias, reason=reason)


def rollback(name: str, alias: str, *, reason: str | None = None) -> AliasEvent:
    return get_registry().rollback(name, alias, reason=reason)


def start_run(name: str | None = None, **options: Any) -> ActiveRun:
    return get_registry().start_run(name, **options)
