"""Running the server: build the application from settings and hand it to uvicorn.

One worker runs in this process. Several workers share the port (uvicorn starts them); each
builds its own application from the settings passed in ``MODELYARD_SERVE_SPEC``, and their
metrics meet in ``PROMETHEUS_MULTIPROC_DIR``.
"""

from __future__ import annotations

import functools
import json
import logging
import os
import shutil
import signal
import sys
import tempfile
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from modelyard.core.refs import parse_ref
from modelyard.serving.http import ModelServer
from modelyard.settings import Settings

if TYPE_CHECKING:
    from modelyard.serving.features import FeatureSourceFactory
    from modelyard.serving.metrics import ServingMetrics
    from modelyard.serving.sink import PredictionSink

logger = logging.getLogger(__name__)
SPEC_ENV = "MODELYARD_SERVE_SPEC"


def build_app(
    settings: Settings,
    refs: list[str],
    deployments: list[str] | None = None,
    *,
    features: FeatureSourceFactory | None = None,
) -> ModelServer:
    """The ASGI application for ``refs`` (models load when the server starts); ``features``
    gives the online feature source of a version that declares one (the CLI makes it)."""
    from modelyard.registry import Registry
    from modelyard.serving.metrics import ServingMetrics
    from modelyard.serving.models import ModelHub
    from modelyard.serving.tokens import TokenChecker

    # The event loop and each model's thread share the GIL; Python hands it over only every
    # switch interval (5 ms by default), which showed up as 5-50 ms tails under load.
    sys.setswitchinterval(settings.serving.gil_switch_s)
    registry = Registry(settings)
    metrics = ServingMetrics()

    def on_batch(model: str, version: str, rows: int, compute_s: float, cpu_s: float) -> None:
        metrics.child(metrics.batch_rows, model).observe(rows)
        metrics.child(metrics.compute, model).observe(compute_s)
        metrics.child(metrics.model_cpu, model, version).inc(cpu_s)
        slot = hub.slots.get(model)
        if slot is not None and slot.current is not None:
            metrics.child(metrics.queue_depth, model).set(slot.current.batcher.depth)
        elif hub.router is not None:
            # a deployment's model: the fullest queue of that name (a stable and a candidate
            # version may share it; each queue has its own max_queue)
            depths = [
                served.batcher.depth
                for route in hub.router.slots.values()
                for served in (route.stable, route.candidate)
                if served is not None and served.name == model
            ]
            if depths:
                metrics.child(metrics.queue_depth, model).set(max(depths))

    def on_tokenize(model: str, seconds: float) -> None:
        metrics.child(metrics.tokenize, model).observe(seconds)

    def on_fetch(model: str, seconds: float) -> None:
        metrics.child(metrics.feature_fetch, model).observe(seconds)

    def on_load(model: str, version: str, ok: bool, memory_bytes: int) -> None:
        metrics.child(metrics.loads, model, version, "ok" if ok else "failed").inc()
        if ok:
            metrics.child(metrics.model_memory, model, version).set(memory_bytes)

    def on_unload(model: str, version: str) -> None:
        metrics.drop(metrics.model_memory, model, version)

    hub = ModelHub(
        registry, [parse_ref(r) for r in refs], settings.serving,
        on_batch=on_batch, on_tokenize=on_tokenize, on_load=on_load, on_unload=on_unload,
        on_route=metrics.observe_route,
        deployments=deployments or [], features=features, on_fetch=on_fetch,
    )  # fmt: skip
    tokens = TokenChecker(registry.db) if settings.serving.auth else None
    sink = _prediction_sink(settings, metrics) if settings.monitoring.log else None
    monitor, log_root = None, None
    if settings.monitoring.log:
        from modelyard.monitoring.mirror import newest_hour_root, readable_root
        from modelyard.monitoring.predlog import is_remote
        from modelyard.serving.monitor import MonitorLoop

        if is_remote(settings.resolved_log_root):
            log_root = functools.partial(newest_hour_root, settings)

        if hub.router is not None:  # the controller judges business outcomes from the log
            hub.router.log_root = functools.partial(readable_root, settings)

        def names() -> list[str]:
            return [*hub.slots, *(hub.router.names if hub.router else [])]

        monitor = MonitorLoop(registry, settings, metrics, names)
    return ModelServer(
        hub, settings.serving, metrics, sink=sink, tokens=tokens, monitor=monitor,
        log_root=log_root,
    )  # fmt: skip


def _prediction_sink(settings: Settings, metrics: ServingMetrics) -> PredictionSink:
    from modelyard.monitoring.predlog import UploadOptions, open_sink

    opts = settings.monitoring
    upload = UploadOptions(
        interval_s=opts.upload_interval_s, backoff_s=opts.upload_backoff_s,
        backoff_max_s=opts.upload_backoff_max_s, drain_s=opts.upload_drain_s,
    )  # fmt: skip
    return open_sink(
        settings.resolved_log_root, spool_dir=settings.resolved_spool_dir, upload=upload,
        on_backlog=metrics.log_backlog.set, on_failure=metrics.log_upload_failures.inc,
        queue_size=opts.queue_size, flush_interval_s=opts.flush_interval_s,
        drop_columns=opts.drop_columns, hash_columns=opts.hash_columns,
        on_drop=metrics.log_dropped.inc, log_format=opts.log_format,
    )  # fmt: skip


def app_from_env() -> ModelServer:
    """uvicorn's factory in each worker process."""
    spec = json.loads(os.environ[SPEC_ENV])
    return build_app(
        Settings.model_validate(spec["settings"]), spec["refs"], spec.get("deployments", [])
    )


def check_refs(settings: Settings, refs: list[str], deployments: list[str]) -> None:
    """Fail before binding the port when a reference or a deployment does not resolve."""
    from modelyard.errors import InvalidInputError
    from modelyard.registry import Registry

    if not refs and not deployments:
        raise InvalidInputError("Nothing to serve; give model references or --deployment NAME.")
    alerts = settings.monitoring.alerts
    if settings.monitoring.log and alerts.rules:
        from modelyard.monitoring.alerts import rule_warnings, validate_rules

        validate_rules(alerts.rules, webhooks=alerts.webhooks)  # a bad rule stops the start
        for line in rule_warnings(alerts.rules):  # once, before the workers start
            logger.warning("%s", line)
    if settings.monitoring.log:
        from modelyard.monitoring.mirror import check_log_root

        check_log_root(settings.resolved_log_root)
    registry = Registry(settings)
    try:
        for ref in refs:
            registry.get_version(ref)
        if deployments:
            from modelyard.rollout import get_deployment

            for name in deployments:
                get_deployment(registry.db, name)
    finally:
        registry.close()


def _drained(signum: int, frame: object) -> None:
    logger.info("stopped on SIGTERM after draining")


def serve(
    settings: Settings,
    refs: list[str],
    deployments: list[str] | None = None,
    *,
    wrap: Callable[[ModelServer], Any] | None = None,
    factory: str = "modelyard.serving.server:app_from_env",
    features: FeatureSourceFactory | None = None,
) -> None:
    """Serve until SIGTERM/SIGINT; in-flight requests and batches finish first.

    ``wrap`` puts an application in front of the server (``yard serve --ui``); with several
    workers, ``factory`` names the import path each worker builds its application from, which
    must do the same (``features`` included).
    """
    import uvicorn

    from modelyard.serving._wire import http_protocol

    deployments = deployments or []
    check_refs(settings, refs, deployments)
    opts = settings.serving
    common: dict[str, Any] = {
        "host": opts.host,
        "port": opts.port,
        "loop": "uvloop",
        "http": http_protocol(uvicorn.__version__),
        "lifespan": "on",
        "access_log": opts.access_log,
        # uvicorn's proxy-headers middleware rewrites each request's client address from
        # X-Forwarded-For; only its access log reads that address (1.1% of the event loop's
        # samples under load, py-spy), so it runs only with the access log on.
        "proxy_headers": opts.access_log,
        "log_level": "info",
        "timeout_graceful_shutdown": opts.graceful_timeout_s,
        "timeout_keep_alive": opts.keep_alive_s,
        "server_header": False,
    }
    # uvicorn handles SIGTERM (stop accepting, finish in-flight requests, run the shutdown),
    # then re-raises it to the handler it found; this one lets the process exit 0.
    signal.signal(signal.SIGTERM, _drained)
    if opts.workers == 1:
        app = build_app(settings, refs, deployments, features=features)
        uvicorn.run(wrap(app) if wrap is not None else app, **common)
        return
    metrics_dir = tempfile.mkdtemp(prefix="modelyard-metrics-")
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = metrics_dir
    os.environ[SPEC_ENV] = json.dumps(
        {"settings": settings.model_dump(mode="json"), "refs": refs, "deployments": deployments}
    )
    try:
        uvicorn.run(factory, factory=True, workers=opts.workers, **common)
    finally:
        shutil.rmtree(metrics_dir, ignore_errors=True)
