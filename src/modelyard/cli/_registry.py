"""Builds the registry from the settings, once per command (the CLI edge reads the settings).
Imported lazily so that ``yard --help`` does not pay for SQLAlchemy."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from modelyard.registry import Registry


def open_registry() -> Registry:
    from modelyard.registry import Registry
    from modelyard.settings import Settings

    return Registry(Settings())
