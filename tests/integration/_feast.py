"""A real Feast repository in a temporary folder, applied and materialized by Feast itself (the
virtualenv ``make feast-server`` makes: Feast 0.67 cannot share .venv), and its feature server
(``feast serve``) on a free loopback port. The SQLite online store, or Redis from a
``redis-server`` started here on a free port (never a Redis that happens to run on the machine).

The offline data: customers 1..40 with ``tenure`` and ``spend`` as of ``T1``; the even ones
change both values at ``T2``. Materialized up to ``T3``, the online store holds the ``T2`` values.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from tests.integration._server import ROOT, free_port, wait_ok

FEAST_BIN = ROOT / ".venv" / "feast" / "bin"
SERVICE = "churn_features"
T1 = pd.Timestamp("2026-01-01", tz="UTC")
T2 = pd.Timestamp("2026-03-01", tz="UTC")
T3 = pd.Timestamp("2026-06-01", tz="UTC")
CUSTOMERS = np.arange(1, 41, dtype=np.int64)

DEFINITIONS = """
from datetime import timedelta
from feast import Entity, FeatureService, FeatureView, Field, FileSource, ValueType
from feast.types import Float64, Int64

customer = Entity(name="customer", join_keys=["customer_id"], value_type=ValueType.INT64)
stats = FeatureView(
    name="customer_stats", entities=[customer], ttl=timedelta(days=3650),
    schema=[Field(name="customer_id", dtype=Int64), Field(name="tenure", dtype=Float64),
            Field(name="spend", dtype=Float64)],
    source=FileSource(path="data/stats.parquet", timestamp_field="event_timestamp"),
)
churn_features = FeatureService(name="churn_features", features=[stats])
"""
#: Run by Feast's interpreter in the repository: apply the definitions, materialize.
SETUP = """
import sys
from datetime import datetime, timezone
sys.path.insert(0, ".")
import definitions as d
from feast import FeatureStore
store = FeatureStore(repo_path=".")
store.apply([d.customer, d.stats, d.churn_features])
utc = timezone.utc
store.materialize(datetime(2025, 1, 1, tzinfo=utc), datetime(2026, 6, 1, tzinfo=utc))
"""


def require(path: Path | str | None, what: str) -> None:
    """Skip without ``path`` (fail under CI=true, where ``make test`` provides it)."""
    if path is not None and Path(path).exists():
        return
    reason = f"no {what}"
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(f"{reason} (CI=true, so this is a failure, not a skip)", pytrace=False)
    pytest.skip(reason)


def offline_rows() -> pd.DataFrame:
    rng = np.random.default_rng(0)
    n = len(CUSTOMERS)
    before = pd.DataFrame({
        "customer_id": CUSTOMERS, "tenure": rng.normal(10, 3, n).round(3),
        "spend": rng.normal(50, 20, n).round(2), "event_timestamp": T1,
    })  # fmt: skip
    even = before[before["customer_id"] % 2 == 0]
    after = even.assign(tenure=even["tenure"] + 1.5, spend=even["spend"] * 2, event_timestamp=T2)
    return pd.concat([before, after], ignore_index=True)


def expected(as_of: pd.Timestamp) -> pd.DataFrame:
    """Each customer's features as of ``as_of``, indexed by customer_id."""
    rows = offline_rows()
    rows = rows[rows["event_timestamp"] <= as_of].sort_values("event_timestamp")
    return rows.groupby("customer_id")[["tenure", "spend"]].last()


@dataclass
class FeastRepo:
    path: Path
    url: str
    python: str


def write_repo(path: Path, online_store: str) -> subprocess.Popen[bytes]:
    """Write the repository and start Feast applying and materializing it."""
    (path / "data").mkdir(parents=True)
    offline_rows().to_parquet(path / "data" / "stats.parquet", index=False)
    (path / "definitions.py").write_text(DEFINITIONS)
    (path / "feature_store.yaml").write_text(
        "project: churn\nregistry: data/registry.db\nprovider: local\n"
        f"online_store:\n{online_store}\noffline_store:\n  type: file\n"
        "entity_key_serialization_version: 3\n"
    )
    with (path / "setup.log").open("w") as log:
        return subprocess.Popen(
            [str(FEAST_BIN / "python"), "-c", SETUP], cwd=path, stdout=log,
            stderr=subprocess.STDOUT,
        )  # fmt: skip


@contextmanager
def feature_server(
    path: Path, setup: subprocess.Popen[bytes], *options: str
) -> Iterator[FeastRepo]:
    """After ``setup`` finished, ``feast serve`` (with ``options``) on the repository until the
    block ends."""
    if setup.wait(timeout=300) != 0:
        raise RuntimeError(f"Feast setup failed: {(path / 'setup.log').read_text()[-3000:]}")
    port = free_port()
    log = path / "serve.log"
    with log.open("w") as out:
        proc = subprocess.Popen(
            [str(FEAST_BIN / "feast"), "serve", "-h", "127.0.0.1", "-p", str(port),
             "--no-access-log", *options],
            cwd=path, stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
        )  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    try:
        if not wait_ok(f"{url}/health", proc, log, timeout_s=180):
            raise RuntimeError(f"feast serve not ready: {log.read_text()[-3000:]}")
        yield FeastRepo(path, url, str(FEAST_BIN / "python"))
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(20)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()


@contextmanager
def redis_server(folder: Path) -> Iterator[str]:
    """A ``redis-server`` of our own on a free port (no persistence); its ``host:port``."""
    binary = shutil.which("redis-server")
    require(binary, "redis-server on PATH (apt-get install redis-server; make system does)")
    assert binary is not None
    port = free_port()
    proc = subprocess.Popen(
        [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
         "--dir", str(folder)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        yield f"127.0.0.1:{port}"
    finally:
        proc.terminate()
        proc.wait(10)
