"""The one Settings object: prefix ``MODELYARD_``, nested with ``__``.

Precedence: explicit argument > environment > config file (``modelyard.toml`` in the working
directory, or the file named by ``MODELYARD_CONFIG``) > default. Settings are read once at the edge
(CLI entry, server factory, the top-level API) and passed down; library code never reads the
environment itself.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, Field
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

DEFAULT_HOME = Path("~/.modelyard")


class OnnxSettings(BaseModel):
    """onnxruntime session options; one thread by default so that serving workers do not fight."""

    intra_op_threads: int = Field(default=1, ge=0)
    inter_op_threads: int = Field(default=1, ge=0)


class ServingSettings(BaseModel):
    """``yard serve`` options; each is also ``MODELYARD_SERVING__<NAME>``."""

    host: str = "127.0.0.1"
    port: int = Field(default=8080, ge=0, le=65535)
    workers: int = Field(default=1, ge=1)
    max_batch_size: int = Field(default=64, ge=1)
    max_batch_delay_ms: float = Field(default=2.0, ge=0)
    max_queue: int = Field(default=1024, ge=1)
    timeout_ms: float = Field(default=10_000, gt=0)
    runtime: Literal["auto", "native", "onnx"] = "auto"
    auth: bool = False
    #: Load models registered as pickles (they run arbitrary code when loaded).
    trust_pickle: bool = False
    #: How often the server checks whether a followed alias moved.
    poll_interval_s: float = Field(default=1.0, gt=0)
    #: How long SIGTERM waits for in-flight requests before closing connections.
    graceful_timeout_s: float = Field(default=30.0, ge=0)
    access_log: bool = False
    #: How often the in-server rollout controller judges deployments with --auto.
    rollout_interval_s: float = Field(default=2.0, gt=0)
    #: Python's GIL switch interval in the server (the event loop and model threads share it).
    gil_switch_s: float = Field(default=0.0005, gt=0)


class MonitoringSettings(BaseModel):
    """The prediction log; each is also ``MODELYARD_MONITORING__<NAME>``."""

    #: Log every prediction the server makes (``yard serve --log-predictions``).
    log: bool = False
    #: A folder for the Parquet files; default ``<home>/predictions``.
    log_root: str | None = None
    #: Records held in memory before new ones are dropped (and counted).
    queue_size: int = Field(default=100_000, ge=1)
    #: How often queued records are written.
    flush_interval_s: float = Field(default=1.0, gt=0)
    #: Input columns never logged (privacy).
    drop_columns: list[str] = Field(default_factory=list)
    #: Input columns logged as the sha256 hex digest of their value's string form.
    hash_columns: list[str] = Field(default_factory=list)


class Settings(BaseSettings):
    """Where modelyard keeps its state and how it behaves.

    - ``home``: the folder for the default SQLite database and artifacts (``~/.modelyard``).
    - ``database_url``: a SQLAlchemy URL; default ``sqlite:///<home>/modelyard.db``. PostgreSQL:
      ``postgresql+psycopg://user@host:5432/db``.
    - ``artifact_root``: a folder or any fsspec URL (``s3://bucket/prefix``); default
      ``<home>/artifacts``.
    - ``identity``: who is recorded as the author of registrations and alias moves; default the OS
      user.
    - ``trusted_types``: skops types trusted on every load, beyond the built-in allow-list.
    """

    model_config = SettingsConfigDict(
        env_prefix="MODELYARD_",
        env_nested_delimiter="__",
        extra="ignore",
        toml_file="modelyard.toml",
    )

    home: Path = DEFAULT_HOME
    database_url: str | None = None
    artifact_root: str | None = None
    identity: str | None = None
    trusted_types: list[str] = Field(default_factory=list)
    onnx: OnnxSettings = Field(default_factory=OnnxSettings)
    serving: ServingSettings = Field(default_factory=ServingSettings)
    monitoring: MonitoringSettings = Field(default_factory=MonitoringSettings)

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        toml_path = os.environ.get("MODELYARD_CONFIG", "modelyard.toml")
        toml = TomlConfigSettingsSource(settings_cls, toml_file=toml_path)
        return (init_settings, env_settings, toml)

    @property
    def home_dir(self) -> Path:
        return self.home.expanduser()

    @property
    def resolved_database_url(self) -> str:
        if self.database_url:
            return self.database_url
        return f"sqlite:///{self.home_dir / 'modelyard.db'}"

    @property
    def resolved_artifact_root(self) -> str:
        if self.artifact_root:
            return self.artifact_root
        return str(self.home_dir / "artifacts")

    @property
    def resolved_log_root(self) -> str:
        if self.monitoring.log_root:
            return self.monitoring.log_root
        return str(self.home_dir / "predictions")

    def with_overrides(self, **values: Any) -> Settings:
        """A copy with the given fields replaced (``None`` values are ignored)."""
        changed = {k: v for k, v in values.items() if v is not None}
        return self.model_copy(update=changed) if changed else self
