"""The dashboard benchmark's home: 200 models x 50 versions, 50 deployments and 1M logged
predictions over 7 days, seeded and deterministic (``benchmarks/ui.py`` seeds it once per
``--home`` and reuses it).

Versions go through the registry's own code paths: the first ``REAL_MODELS`` models are trained
and registered with ``Registry.register`` (50 fits, profiles and fingerprints each); every other
model is trained once and its 50 versions are committed with ``Registry._commit`` on the version
``register`` prepared (the same files, signature, profile and lineage; metrics, params and tags
differ per version). Measured on the 2-core machine: ``register`` 26-40 ms a version,
``_commit`` 3.8 ms, so 10,000 real registrations would take 5-7 minutes; these 10,000 versions
took 78 s (the whole home 97 s) on a quiet machine.

The prediction log is written in the server's layout (``monitoring.predlog.write_parquet``: one
file per deployment and hour), with the columns ``records_table`` gives; its 7 days end at the
moment the log was seeded, and ``ui.py`` writes it again when that is more than an hour ago (the
pages' windows are relative to now), with the last 10 minutes of route statistics (the counters
the servers flush every 10 s: requests, errors, latency and output histograms per route).
"""

from __future__ import annotations

import json
import shutil
import time
from dataclasses import asdict, dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

FEATURES = [f"f{i}" for i in range(8)]
TEAMS = ("fraud", "churn", "pricing", "search", "ads")
REAL_MODELS = 5
#: Deployments every 5th of which drifts (f0 shifted) over its last 24 hours.
DRIFTING_EVERY = 5
#: Deployments every 5th (offset 2) of which has a canary candidate at 10%.
CANARY_EVERY = 5


@dataclass(frozen=True)
class Size:
    models: int = 200
    versions: int = 50
    deployments: int = 50
    predictions: int = 1_000_000
    days: int = 7

    @property
    def label(self) -> str:
        return (
            f"{self.models} models x {self.versions} versions, {self.deployments} deployments, "
            f"{self.predictions:,} predictions over {self.days} days"
        )


QUICK = Size(models=20, versions=10, deployments=5, predictions=50_000, days=7)


def settings_for(home: Path) -> Any:
    from modelyard.settings import Settings

    return Settings(
        home=home / "yard",
        identity="bench",
        monitoring={"log": True, "log_root": str(home / "yard" / "predictions")},
    )


def model_name(i: int) -> str:
    return f"m{i:03d}"


def deployment_name(i: int) -> str:
    return f"d{i:02d}"


def training_data(seed: int, rows: int = 2000) -> tuple[pd.DataFrame, pd.Series]:
    rng = np.random.default_rng(seed)
    X = pd.DataFrame(rng.normal(size=(rows, len(FEATURES))), columns=FEATURES)
    y = pd.Series((X.f0 + 0.5 * X.f1 - 0.3 * X.f2 > 0).astype(np.int64), name="label")
    return X, y


def version_fields(model: int, version: int) -> dict[str, Any]:
    """The metrics, params and tags of version ``version`` of model ``model`` (also what the
    MLflow import writes)."""
    rng = np.random.default_rng(model * 1000 + version)
    return {
        "metrics": {
            "auc": round(float(rng.uniform(0.7, 0.99)), 6),
            "accuracy": round(float(rng.uniform(0.6, 0.95)), 6),
            "f1": round(float(rng.uniform(0.5, 0.9)), 6),
        },
        "params": {"C": str(round(float(rng.uniform(0.01, 10)), 4)), "max_iter": "200"},
        "tags": {
            "team": TEAMS[model % len(TEAMS)],
            "dataset": f"ds-{model:03d}-{version // 10}",
            "validated": "yes" if version % 3 else "no",
        },
    }


def seed_registry(home: Path, size: Size) -> dict[str, float]:
    """Register the versions, set aliases and create the deployments; returns timings."""
    from sklearn.linear_model import LogisticRegression

    from modelyard.registry import Registry
    from modelyard.registry._prepare import dump_model, prepare_version
    from modelyard.rollout.deployments import deploy, start_candidate

    registry = Registry(settings_for(home))
    timings: dict[str, float] = {}
    started = time.perf_counter()
    for m in range(size.models):
        name = model_name(m)
        X, y = training_data(m)
        model = LogisticRegression(max_iter=200).fit(X, y)
        if m < REAL_MODELS:
            for v in range(1, size.versions + 1):
                Xv, yv = training_data(m * 1000 + v)
                fitted = LogisticRegression(max_iter=200).fit(Xv, yv)
                registry.register(fitted, name=name, data=Xv, target=yv, **version_fields(m, v))
            continue
        flavor = registry._flavor("auto", model=model, trust_pickle=False)
        artifact, example = dump_model(flavor, model, name=name, data=X, target=y,
                                       input_example=None)  # fmt: skip
        prepared = prepare_version(
            flavor, artifact, name=name, model=model, data=X, target=y, input_example=example,
            convert=None, options=registry._options((), False), source=None,
            lineage=registry.lineage, truncate=False, optimize=None,
        )  # fmt: skip
        for v in range(1, size.versions + 1):
            registry._commit(name, prepared, description=None, run=None, **version_fields(m, v))
        if m % 20 == 0:
            print(f"    {m + 1}/{size.models} models", flush=True)
    timings["versions_s"] = time.perf_counter() - started
    started = time.perf_counter()
    last = size.versions
    for m in range(size.models):
        name = model_name(m)
        # an alias history: production moved up twice, staging on the newest
        for v in (max(1, last - 2), max(1, last - 1), last):
            registry.set_alias(f"{name}/{v}", "production", reason=f"release {v}")
        registry.set_alias(f"{name}/{last}", "staging")
    for d in range(size.deployments):
        name = deployment_name(d)
        deploy(registry, name, model_ref=f"{model_name(d)}@production", reason="bench")
        if d % CANARY_EVERY == 2 and last > 1:
            start_candidate(registry, name, ref=f"{model_name(d)}/{last - 1}", mode="canary",
                            weight=10.0, reason="bench canary")  # fmt: skip
    timings["aliases_deployments_s"] = time.perf_counter() - started
    registry.close()
    return timings


def seed_log(home: Path, size: Size, anchor: datetime) -> float:
    """``size.predictions`` rows over ``size.days`` days ending at ``anchor``, split evenly over
    the deployments; returns seconds taken."""
    import pyarrow as pa
    from sklearn.linear_model import LogisticRegression

    from modelyard.monitoring.predlog import write_parquet

    root = home / "yard" / "predictions"
    shutil.rmtree(root, ignore_errors=True)  # the hour-profile caches live under it too
    started = time.perf_counter()
    per = size.predictions // size.deployments
    hours = size.days * 24
    start_us = int((anchor - timedelta(hours=hours)).timestamp() * 1e6)
    for d in range(size.deployments):
        name = deployment_name(d)
        rng = np.random.default_rng(10_000 + d)
        X, y = training_data(d)
        model = LogisticRegression(max_iter=200).fit(X, y)
        offsets = np.sort(rng.integers(0, hours * 3_600_000_000, size=per))
        times = start_us + offsets
        inputs = rng.normal(size=(per, len(FEATURES)))
        if d % DRIFTING_EVERY == 0:
            inputs[offsets >= (hours - 24) * 3_600_000_000, 0] += 1.0
        frame = pd.DataFrame(inputs, columns=FEATURES)
        proba = model.predict_proba(frame)
        predict = model.predict(frame)
        ids = rng.integers(0, 2**63 - 1, size=per)
        latency = rng.gamma(2.0, 1.5, size=per)
        status = np.where(rng.random(per) < 0.002, 500, 200).astype(np.int16)
        hour_of = times // 3_600_000_000
        keys, firsts = np.unique(hour_of, return_index=True)
        bounds = [*firsts.tolist(), per]
        version = str(size.versions)
        for h, key in enumerate(keys.tolist()):
            lo, hi = bounds[h], bounds[h + 1]
            n = hi - lo
            table = pa.table(
                {
                    "request_id": pa.array([f"{i:016x}" for i in ids[lo:hi]], pa.string()),
                    "row": pa.array(np.zeros(n, dtype=np.int64)),
                    "time": pa.array(times[lo:hi], pa.timestamp("us", tz="UTC")),
                    "deployment": pa.array([name] * n, pa.string()),
                    "route": pa.array(["stable"] * n, pa.string()),
                    "model": pa.array([model_name(d)] * n, pa.string()),
                    "version": pa.array([version] * n, pa.string()),
                    "latency_ms": pa.array(latency[lo:hi]),
                    "status": pa.array(status[lo:hi]),
                    **{f"in_{c}": pa.array(inputs[lo:hi, j]) for j, c in enumerate(FEATURES)},
                    "out_predict": pa.array(predict[lo:hi]),
                    "out_predict_proba": pa.ListArray.from_arrays(
                        pa.array(np.arange(n + 1, dtype=np.int32) * 2),
                        pa.array(proba[lo:hi].ravel()),
                    ),
                }
            )
            stamp = datetime.fromtimestamp(key * 3600, UTC)
            write_parquet(table, root / f"deployment={name}" / f"hour={stamp:%Y-%m-%dT%H}")
    return time.perf_counter() - started


def seed_route_stats(home: Path, size: Size, anchor: datetime, *, minutes: int = 10) -> float:
    """What the servers' counters would have flushed over the last ``minutes`` (10 s windows,
    one replica) for each deployment's routes, through ``record_route_stats``."""
    from modelyard.registry import Registry
    from modelyard.rollout.buckets import LATENCY_BUCKETS, WINDOW_S, latency_bucket
    from modelyard.rollout.queries import list_deployments
    from modelyard.rollout.stats import prune_route_stats, record_route_stats

    registry = Registry(settings_for(home))
    started = time.perf_counter()
    prune_route_stats(registry.db, before=anchor + timedelta(days=1))
    first = anchor.replace(second=anchor.second // WINDOW_S * WINDOW_S, microsecond=0)
    rng = np.random.default_rng(7)
    for d in list_deployments(registry.db):
        routes = ["stable"] + (["candidate"] if d.candidate_model else [])
        for w in range(minutes * 60 // WINDOW_S):
            window = first - timedelta(seconds=WINDOW_S * w)
            for route in routes:
                requests = int(rng.integers(50, 200)) // (9 if route == "candidate" else 1) + 1
                latency = [0] * LATENCY_BUCKETS
                for ms in rng.gamma(2.0, 1.5, size=requests):
                    latency[latency_bucket(float(ms))] += 1
                ones = int(rng.binomial(requests, 0.3))
                record_route_stats(
                    registry.db, deployment=d.name, revision=d.revision, replica="bench-0",
                    window_start=window, route=route, requests=requests,
                    errors=int(rng.binomial(requests, 0.002)), latency_counts=latency,
                    output_counts={"1": ones, "0": requests - ones},
                )  # fmt: skip
    registry.close()
    return time.perf_counter() - started


def ensure_home(
    home: Path, size: Size, *, max_age: timedelta = timedelta(hours=1)
) -> dict[str, Any]:
    """The seeded home at ``home`` for ``size``: seeded when missing (or seeded for another
    size), its log written again when older than ``max_age``. Returns what was seeded when."""
    marker = home / "seeded.json"
    info: dict[str, Any] = json.loads(marker.read_text()) if marker.exists() else {}
    if info.get("size") != asdict(size):
        shutil.rmtree(home / "yard", ignore_errors=True)
        print(f"  seeding {size.label} into {home} ...", flush=True)
        info = {"size": asdict(size), "timings": seed_registry(home, size)}
        marker.parent.mkdir(parents=True, exist_ok=True)
        marker.write_text(json.dumps(info))
        print(f"  registry seeded: {info['timings']}", flush=True)
    now = datetime.now(UTC)
    anchor = info.get("log_anchor")
    if anchor is None or now - datetime.fromisoformat(anchor) > max_age:
        print(f"  writing {size.predictions:,} predictions ending {now:%Y-%m-%d %H:%M} ...",
              flush=True)  # fmt: skip
        info["timings"]["log_s"] = seed_log(home, size, now)
        info["timings"]["route_stats_s"] = seed_route_stats(home, size, now)
        info["log_anchor"] = now.isoformat()
        marker.write_text(json.dumps(info))
        print(f"  log written in {info['timings']['log_s']:.1f} s", flush=True)
    return info
