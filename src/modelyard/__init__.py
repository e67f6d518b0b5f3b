"""modelyard: take a trained model to a fast, safe, observed production service.

Importing this package has no side effects and loads no ML framework; ``Registry`` and the
other heavy names are imported on first access, so ``yard --help`` starts fast.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from modelyard._api import (
    get_registry,
    load,
    load_weights,
    register,
    rollback,
    set_alias,
    set_registry,
    start_run,
)
from modelyard.core.refs import ModelRef, parse_ref
from modelyard.core.types import AliasEvent, ModelVersion, Signature, TensorSpec
from modelyard.errors import ModelyardError
from modelyard.settings import Settings

if TYPE_CHECKING:
    from modelyard.registry import ActiveRun, FileCheck, Registry

__version__ = "0.1.0"

__all__ = [
    "ActiveRun",
    "AliasEvent",
    "FileCheck",
    "ModelRef",
    "ModelVersion",
    "ModelyardError",
    "Registry",
    "Settings",
    "Signature",
    "TensorSpec",
    "get_registry",
    "load",
    "load_weights",
    "parse_ref",
    "register",
    "rollback",
    "set_alias",
    "set_registry",
    "start_run",
]

_LAZY = {"ActiveRun", "FileCheck", "Registry"}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import modelyard.registry

        return getattr(modelyard.registry, name)
    raise AttributeError(f"module 'modelyard' has no attribute {name!r}")
