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
    #: Where tree ensembles (one TreeEnsemble node) run on modelyard's compiled kernel instead of
    #: onnxruntime's operator: ``auto`` (batch scoring at load; the server answers with
    #: onnxruntime from the start and moves the model onto the kernel in the background once it is
    #: built and agrees, so that readiness never waits for numba), ``always`` (everywhere at
    #: load), ``batch`` (batch scoring only) or ``off``. Needs numba (``modelyard[trees]``); a
    #: model the kernel does not cover stays on onnxruntime.
    tree_kernel: Literal["auto", "batch", "always", "off"] = "auto"
    #: Where onnxruntime runs models (``MODELYARD_ONNX__EXECUTION_PROVIDER``): ``cpu`` (the
    #: default), ``cuda`` (needs onnxruntime-gpu and a GPU; a server refuses to start without
    #: them) or ``auto`` (CUDA when onnxruntime offers it, else the CPU). The server's log and
    #: ``/v2/admin/models`` report the provider each model runs on.
    execution_provider: Literal["auto", "cpu", "cuda"] = "cpu"

    def uses_tree_kernel(self, where: Literal["batch", "server"]) -> bool:
        """Whether models loaded for ``where`` run tree ensembles on the kernel from the start."""
        if where == "batch":
            return self.tree_kernel != "off"
        return self.tree_kernel == "always"

    @property
    def swaps_in_tree_kernel(self) -> bool:
        """Whether the server moves a loaded tree ensemble onto the kernel in the background."""
        return self.tree_kernel == "auto"


class ServingSettings(BaseModel):
    """``yard serve`` options; each is also ``MODELYARD_SERVING__<NAME>``."""

    host: str = "127.0.0.1"
    port: int = Field(default=8080, ge=0, le=65535)
    #: Also serve the Open Inference Protocol over gRPC on this port (off when unset).
    grpc_port: int | None = Field(default=None, ge=0, le=65535)
    workers: int = Field(default=1, ge=1)
    max_batch_size: int = Field(default=64, ge=1)
    max_batch_delay_ms: float = Field(default=2.0, ge=0)
    #: A text model's batch holds at most this many padded tokens (rows x its longest row); a
    #: request larger than that runs alone. 8192 is 64 rows of 128 tokens, or 16 of 512.
    max_batch_tokens: int = Field(default=8192, ge=1)
    max_queue: int = Field(default=1024, ge=1)
    timeout_ms: float = Field(default=10_000, gt=0)
    #: ``auto``: a text model's int8 twin when it kept one, else the ONNX twin when there is one,
    #: else the native model; ``quantized`` insists on the int8 twin.
    runtime: Literal["auto", "native", "onnx", "quantized"] = "auto"
    auth: bool = False
    #: Load models registered as pickles (they run arbitrary code when loaded).
    trust_pickle: bool = False
    #: How often the server checks whether a followed alias moved.
    poll_interval_s: float = Field(default=1.0, gt=0)
    #: How long SIGTERM waits for in-flight requests before closing connections.
    graceful_timeout_s: float = Field(default=30.0, ge=0)
    #: How long an idle keep-alive connection stays open. Longer than the 60 s that AWS's load
    #: balancers and nginx keep an idle upstream connection, so that the proxy closes it first:
    #: a server closing a connection the proxy is reusing at that moment fails that request with
    #: a 502/503 (uvicorn's default, 5 s, did; kserve/kserve#5446, vLLM's keep-alive variable).
    keep_alive_s: float = Field(default=75.0, gt=0)
    access_log: bool = False
    #: How often the in-server rollout controller judges deployments with --auto.
    rollout_interval_s: float = Field(default=2.0, gt=0)
    #: Python's GIL switch interval in the server (the event loop and model threads share it).
    gil_switch_s: float = Field(default=0.0005, gt=0)
    #: The largest request body accepted (413 above it, before the body is read); Triton's
    #: ``--http-max-input-size`` has the same default, 64 MiB.
    max_body_bytes: int = Field(default=64 * 1024 * 1024, ge=1024)
    #: Under ``auth``, serve ``/metrics`` without a token (for a scraper that cannot send one).
    open_metrics: bool = False
    #: Under ``auth``, serve ``/openapi.json`` and ``/docs`` without a token.
    open_docs: bool = False
    #: Also answer readiness on this path (Vertex AI's ``AIP_HEALTH_ROUTE``, which ``yard serve``
    #: reads); ``/ping`` (SageMaker's) is always answered.
    health_route: str | None = Field(default=None, pattern=r"^/[^\s?#]*$")
    #: Also answer Vertex AI's ``{"instances": [...], "parameters": {...}}`` on this path with
    #: ``{"predictions": [...]}``, for the server's one model or deployment (``AIP_PREDICT_ROUTE``).
    predict_route: str | None = Field(default=None, pattern=r"^/[^\s?#]*$")


DriftMethodName = Literal["psi", "js", "wasserstein", "ks", "chi2", "chi2_contingency", "mmd"]


class DriftColumnSettings(BaseModel):
    """One column's drift method and/or threshold (``[monitoring.drift.columns.NAME]``)."""

    method: DriftMethodName | None = None
    threshold: float | None = Field(default=None, ge=0)


class DriftSettings(BaseModel):
    """Drift rules (``[monitoring.drift]``); the defaults are in ``modelyard.monitoring.drift``."""

    #: The dataset drifts when at least this share of its columns drift.
    share_threshold: float = Field(default=0.5, gt=0, le=1)
    #: Default threshold per method, e.g. ``{psi = 0.2}``.
    thresholds: dict[DriftMethodName, float] = Field(default_factory=dict)
    #: Per-column overrides.
    columns: dict[str, DriftColumnSettings] = Field(default_factory=dict)
    #: Input columns of free text, compared by their descriptors (length, unknown words...);
    #: unset: the model's text input, and string columns that look like text.
    text_columns: list[str] | None = None
    #: The window the server's drift and performance gauges look at.
    window: str = "1h"
    #: How often a logging server refreshes those gauges (0: never).
    interval_s: float = Field(default=60.0, ge=0)


class ReconstructionSettings(BaseModel):
    """Multivariate drift by PCA reconstruction error (``[monitoring.reconstruction]``; see
    ``modelyard.monitoring.multivariate``)."""

    #: The PCA keeps the fewest components explaining more than this share of the variance.
    variance: float = Field(default=0.65, gt=0, le=1)
    #: The reference sample is split into this many chunks; their errors set the thresholds.
    chunks: int = Field(default=10, ge=2)
    #: The thresholds: the chunks' mean error plus and minus this many standard deviations.
    sigmas: float = Field(default=3.0, gt=0)


class AlertRule(BaseModel):
    """A rule of ``[[monitoring.alerts.rules]]``: fires when ``metric op threshold`` has held for
    ``for`` over the last ``window`` of ``deployment``'s traffic.

    ``metric``: ``drift_share``, ``drift:<column>`` (the column's score), ``null_drift:<column>``
    (the p-value of a change in its share of nulls, 1 below one point), ``output_drift:<name>``,
    ``error_rate``, ``p99_latency_ms``, ``rows``, ``performance:<metric>`` (accuracy, f1,
    roc_auc, log_loss, mae, rmse, r2, ...), ``estimated:<metric>`` (roc_auc, f1, precision,
    recall, accuracy: estimated without labels) or ``reconstruction_error``.
    """

    #: Unknown keys are kept (``model_extra``) so that ``rule_warnings`` names them: a typo such
    #: as ``windw`` would otherwise leave the default in place without a word.
    model_config = {"populate_by_name": True, "extra": "allow"}

    name: str = Field(min_length=1)
    deployment: str = Field(min_length=1)
    metric: str = Field(min_length=1)
    op: Literal[">", ">=", "<", "<="] = ">="
    threshold: float
    window: str = "1h"
    hold: str = Field(default="0s", alias="for")
    #: Webhook URLs for this rule (the alert settings' ``webhooks`` get every alert too).
    webhooks: list[str] = Field(default_factory=list)
    #: A shell command run when the alert fires (the alert's JSON on its standard input).
    command: str | None = None


class AlertSettings(BaseModel):
    """Alerting (``[monitoring.alerts]``)."""

    rules: list[AlertRule] = Field(default_factory=list)
    #: Webhook URLs that hear of every alert.
    webhooks: list[str] = Field(default_factory=list)
    #: How often the server evaluates the rules (0: never; ``yard monitor check`` still does).
    interval_s: float = Field(default=60.0, ge=0)
    #: Attempts per webhook call, with exponential backoff from ``backoff_s``.
    attempts: int = Field(default=4, ge=1)
    backoff_s: float = Field(default=0.5, ge=0)
    timeout_s: float = Field(default=5.0, gt=0)


class EstimationSettings(BaseModel):
    """Performance estimated before labels arrive (``[monitoring.estimation]``; CBPE,
    ``modelyard.monitoring.estimated``)."""

    #: The reference: the oldest this many labelled predictions of the model version.
    reference_rows: int = Field(default=10_000, ge=2)
    #: Fewer labelled predictions than this and there is no estimate (the band and the
    #: thresholds would be noise).
    min_reference_rows: int = Field(default=1_000, ge=2)
    #: The windows: a period of the log (``"1h"``, ``"30m"``, ``"1d"``) or a number of rows.
    chunk: str | int = "1h"
    #: With time windows, the reference is cut into this many chunks for the thresholds.
    reference_chunks: int = Field(default=10, ge=2)
    #: ``auto``: calibrate each class's scores where it helps (NannyML's rule).
    calibration: Literal["auto", "always", "never"] = "auto"


class CostSettings(BaseModel):
    """What a model's CPU time and memory cost (``[monitoring.cost]``). The defaults are AWS
    Fargate's on-demand Linux/x86 list prices in us-east-1 (per vCPU-hour and per GB-hour);
    set your own, in any currency."""

    cpu_hour_price: float = Field(default=0.04048, ge=0)
    gb_hour_price: float = Field(default=0.004445, ge=0)
    currency: str = Field(default="USD", min_length=1, max_length=8)


class MonitoringSettings(BaseModel):
    """The prediction log, drift and alerts; each is also ``MODELYARD_MONITORING__<NAME>``."""

    #: Log every prediction the server makes (``yard serve --log-predictions``).
    log: bool = False
    #: A folder or an fsspec URL (``s3://bucket/prefix``) for the Parquet files; default
    #: ``<home>/predictions``.
    log_root: str | None = None
    #: ``parquet``: Parquet files per deployment and hour. ``delta``: one Delta Lake table per
    #: deployment (append, time travel by version; the ``delta`` extra; a local log_root only).
    log_format: Literal["parquet", "delta"] = "parquet"
    #: Where a log bound for an object store waits on local disk; default ``<home>/spool``.
    spool_dir: str | None = None
    #: How often spooled rows are uploaded, as one object per deployment and hour.
    upload_interval_s: float = Field(default=10.0, gt=0)
    #: The first wait after a failed upload, doubling up to ``upload_backoff_max_s``.
    upload_backoff_s: float = Field(default=0.5, gt=0)
    upload_backoff_max_s: float = Field(default=30.0, gt=0)
    #: At shutdown, how long to keep uploading; what is left stays spooled for the next start.
    upload_drain_s: float = Field(default=10.0, ge=0)
    #: Records held in memory before new ones are dropped (and counted).
    queue_size: int = Field(default=100_000, ge=1)
    #: How often queued records are written.
    flush_interval_s: float = Field(default=1.0, gt=0)
    #: Input columns never logged (privacy).
    drop_columns: list[str] = Field(default_factory=list)
    #: Input columns logged as the sha256 hex digest of their value's string form.
    hash_columns: list[str] = Field(default_factory=list)
    drift: DriftSettings = Field(default_factory=DriftSettings)
    alerts: AlertSettings = Field(default_factory=AlertSettings)
    estimation: EstimationSettings = Field(default_factory=EstimationSettings)
    reconstruction: ReconstructionSettings = Field(default_factory=ReconstructionSettings)
    cost: CostSettings = Field(default_factory=CostSettings)


class FeastSettings(BaseModel):
    """The Feast bridge (``modelyard.integrations.feast``): ``url`` is Feast's feature server
    (``feast serve``), which ``yard serve`` asks for the online features of a version that
    declares a feature service; ``python`` is an interpreter with the ``feast`` package, which
    builds training data (point-in-time historical retrieval) and reads definitions."""

    url: str | None = None
    #: One online-features call's deadline (once per batch).
    timeout_s: float = Field(default=2.0, gt=0)
    python: str = "python3"


class LoopTrigger(BaseModel):
    """What starts a loop (``[loops.NAME.trigger]``); any one of them does.

    ``alerts``: names of ``[[monitoring.alerts.rules]]`` that are firing. ``metric`` (any metric
    form an alert rule accepts) ``< below`` over ``window``. ``drift_share`` at or above this over
    the drift window (``monitoring.drift.window``). ``max_age``: the serving version is older.
    """

    model_config = {"extra": "forbid"}

    alerts: list[str] = Field(default_factory=list)
    metric: str | None = None
    below: float | None = None
    window: str = "1h"
    drift_share: float | None = None
    max_age: str | None = None


class LoopTrain(BaseModel):
    """How a loop retrains (``[loops.NAME.train]``): the pipeline (``FILE`` or ``FILE:NAME``, run
    like ``yard run``) gets the training table's path as its ``data_param`` parameter; the table
    is ``training_data`` plus the logged inputs of the last ``labelled_window`` that have labels
    (the label in column ``target``)."""

    model_config = {"extra": "forbid"}

    pipeline: str
    params: dict[str, Any] = Field(default_factory=dict)
    data_param: str = "data"
    training_data: str | None = None
    labelled_window: str | None = None
    target: str = "target"


class LoopGate(BaseModel):
    """The gate a retrained version passes against the serving one (``[loops.NAME.gate]``):
    ``holdout`` is the newest share of the labelled window, kept out of training; each threshold
    has ``yard gate``'s ``MetricThreshold`` keys."""

    model_config = {"extra": "forbid"}

    holdout: float = 0.3
    thresholds: list[dict[str, Any]] = Field(
        default_factory=lambda: [{"metric": "accuracy", "min_absolute_change": 0.0}]
    )


class LoopRollout(BaseModel):
    """How a gated version rolls out (``[loops.NAME.rollout]``); ``policy`` holds the rollout
    ``Policy``'s fields."""

    model_config = {"extra": "forbid"}

    mode: str = "canary"
    steps: list[float] = Field(default_factory=lambda: [10.0, 50.0, 100.0])
    bake: str = "30s"
    policy: dict[str, Any] = Field(default_factory=dict)


class LoopPolicy(BaseModel):
    """A deployment's retraining loop (``[loops.NAME]``, NAME the deployment): triggered, trained,
    gated, rolled out; ``require_approval`` holds a passing candidate for ``yard loop approve``;
    after a loop ends, triggers are ignored for ``cooldown``."""

    model_config = {"extra": "forbid"}

    require_approval: bool = False
    cooldown: str = "1h"
    trigger: LoopTrigger = Field(default_factory=LoopTrigger)
    train: LoopTrain
    gate: LoopGate = Field(default_factory=LoopGate)
    rollout: LoopRollout = Field(default_factory=LoopRollout)


class RunsSettings(BaseModel):
    """Run mirrors (``[runs]``, see ``modelyard.integrations.runs``): ``mirror`` lists the
    trackers every run goes to when none are named (``start_run`` without ``mirror=``, and
    pipeline runs), e.g. ``["wandb", "neptune"]``; ``wandb_project`` is ``PROJECT`` or
    ``ENTITY/PROJECT`` for a ``"wandb"`` mirror that names none."""

    model_config = {"extra": "forbid"}

    mirror: list[str] = Field(default_factory=list)
    wandb_project: str | None = None


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
    runs: RunsSettings = Field(default_factory=RunsSettings)
    feast: FeastSettings = Field(default_factory=FeastSettings)
    #: Retraining loops by deployment name (``[loops.NAME]``, see ``modelyard.loop``).
    loops: dict[str, LoopPolicy] = Field(default_factory=dict)

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

    @property
    def resolved_spool_dir(self) -> Path:
        if self.monitoring.spool_dir:
            return Path(self.monitoring.spool_dir).expanduser()
        return self.home_dir / "spool"

    def with_overrides(self, **values: Any) -> Settings:
        """A copy with the given fields replaced (``None`` values are ignored)."""
        changed = {k: v for k, v in values.items() if v is not None}
        return self.model_copy(update=changed) if changed else self
