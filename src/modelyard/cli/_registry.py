"""Builds the registry from the settings, once per command (the CLI edge reads the settings).
Imported lazily so that ``yard --help`` does not pay for SQLAlchemy."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from modelyard.registry import Registry
    from modelyard.settings import Settings


def load_settings() -> Settings:
    """The settings from the environment and the configuration file; a file that is not TOML or a
    value of the wrong type is one line (a ``ConfigError``) instead of a traceback or pydantic's
    report. Only monitoring values are echoed: others may hold secrets (database URLs)."""
    import os
    import tomllib

    import pydantic

    from modelyard.errors import ConfigError
    from modelyard.settings import Settings

    source = os.environ.get("MODELYARD_CONFIG", "modelyard.toml")
    try:
        return Settings()
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(
            f"The configuration file {source!r} is not valid TOML ({exc}); fix it or point "
            "MODELYARD_CONFIG at another file."
        ) from None
    except pydantic.ValidationError as exc:
        error = exc.errors()[0]
        where = "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in error["loc"])
        value = error["input"]
        scalar = error["loc"][:1] == ("monitoring",) and not isinstance(value, dict | list)
        shown = f" = {value!r}" if scalar else ""
        raise ConfigError(
            f"Invalid setting {where.lstrip('.')}{shown} ({error['msg']}); fix it in {source} or "
            "the MODELYARD_ environment variables."
        ) from None


def open_registry() -> Registry:
    from modelyard.registry import Registry

    return Registry(load_settings())
