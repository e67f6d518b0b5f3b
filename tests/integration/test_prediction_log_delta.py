"""The prediction log as Delta Lake tables (``monitoring.log_format = "delta"``): a real
``yard serve --log-predictions`` appends one table version per flush, ``yard monitor log`` and
``yard monitor drift`` read the table's current files (not a file a failed commit left behind),
and an earlier version of the log reads back by time travel."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

import deltalake  # the delta extra, in dev: make test fails without it, never skips
import httpx
import numpy as np
import pandas as pd
import pyarrow as pa
import pytest

from modelyard.errors import ConfigError, InvalidInputError
from modelyard.monitoring.labels import ingest_labels
from modelyard.monitoring.performance import compute_performance
from modelyard.monitoring.predlog import ParquetSink, UploadOptions, open_sink, write_parquet
from modelyard.monitoring.query import read_log
from tests.integration._server import YARD, Server, server_env
from tests.integration.conftest import ServedHome


def infer(client: httpx.Client, url: str, rows: np.ndarray) -> str:
    body = {"inputs": [{"name": "x", "shape": list(rows.shape), "datatype": "FP64",
                        "data": rows.ravel().tolist()}]}  # fmt: skip
    response = client.post(f"{url}/v2/models/lin/infer", json=body)
    assert response.status_code == 200, response.text
    return response.headers["x-request-id"]


def test_a_served_delta_log_reads_back_with_monitor_log_drift_and_time_travel(
    served_home: ServedHome, tmp_path: Path
) -> None:
    root = tmp_path / "log"
    env = server_env(
        served_home.home,
        MODELYARD_MONITORING__LOG_ROOT=str(root),
        MODELYARD_MONITORING__LOG_FORMAT="delta",
        MODELYARD_MONITORING__FLUSH_INTERVAL_S="0.2",
    )
    rng = np.random.default_rng(0)
    sent: list[str] = []
    server = Server(served_home.home, "lin/1", "--log-predictions", env=env).wait_ready()
    try:
        with httpx.Client(timeout=10) as client:
            for burst in range(2):  # two flushes at least: two table versions
                for _ in range(10):
                    sent.append(infer(client, server.url, rng.integers(0, 9, (2, 3)) * 1.0))
                if burst == 0:
                    time.sleep(1.0)
    finally:
        assert server.stop() == 0, server.log.read_text()

    table = root / "deployment=lin"
    latest = deltalake.DeltaTable(str(table))
    assert latest.version() >= 1 and latest.to_pyarrow_table().num_rows == 40
    first = deltalake.DeltaTable(str(table), version=0).to_pyarrow_table()  # time travel
    assert 0 < first.num_rows < 40
    assert "hour" in latest.metadata().partition_columns
    # a data file no commit names (a failed append leaves one): the readers must skip it
    part = Path(latest.file_uris()[0])
    shutil.copy(part, part.with_name("part-99999-orphan-c000.snappy.parquet"))

    out = subprocess.run(
        [YARD, "monitor", "log", "lin", "--json", "--limit", "1000"],
        env=env, capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr
    logged = json.loads(out.stdout)
    assert sorted({r["request_id"] for r in logged}) == sorted(sent) and len(logged) == 40
    for row in logged:
        assert row["in_a"] + 10 * row["in_b"] + 100 * row["in_c"] == pytest.approx(
            row["out_predict"]
        )
    then = subprocess.run(
        [YARD, "monitor", "log", "lin", "--json", "--limit", "1000", "--log-version", "0"],
        env=env, capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert then.returncode == 0, then.stderr
    assert len(json.loads(then.stdout)) == first.num_rows  # the log as of its first append
    beyond = subprocess.run(
        [YARD, "monitor", "log", "lin", "--log-version", "999"],
        env=env, capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert beyond.returncode != 0 and len(beyond.stderr.strip().splitlines()) == 1
    assert f"has no version 999 (versions 0 to {latest.version()})" in beyond.stderr
    # the readers that join labels to the log (performance, label coverage) skip the orphan too
    labels = pd.DataFrame({"request_id": [r["request_id"] for r in logged],
                           "row": [r["row"] for r in logged],
                           "label": [r["out_predict"] for r in logged]})  # fmt: skip
    assert ingest_labels(root, "lin", labels).matched == 40
    performance = compute_performance(root, "lin", task="regression")
    assert (performance.predictions, performance.labelled) == (40, 40)
    assert performance.metrics["mae"] == pytest.approx(0.0)
    drift = subprocess.run(
        [YARD, "monitor", "drift", "lin", "--window", "1h", "--json"],
        env=env, capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert drift.returncode == 0, drift.stderr
    columns = {c["name"]: c for c in json.loads(drift.stdout)["columns"]}
    assert {"a", "b", "c"} <= columns.keys()
    assert all(columns[name]["current_rows"] == 40 for name in "abc")  # the orphan left out


def test_a_delta_log_needs_deltalake_and_a_local_root(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    plain = tmp_path / "plain"
    write_parquet(pa.table({"time": [1]}), plain / "deployment=lin" / "hour=2026-12-06T10")
    with pytest.raises(InvalidInputError, match="is Parquet files, not a Delta table"):
        read_log(plain, "lin", version=0)
    upload = UploadOptions(interval_s=1, backoff_s=1, backoff_max_s=1, drain_s=0)
    with pytest.raises(ConfigError, match=r"writes to a local folder, not s3://bucket/log"):
        open_sink("s3://bucket/log", spool_dir=tmp_path, upload=upload, log_format="delta")
    monkeypatch.setitem(sys.modules, "deltalake", None)  # what an absent package looks like
    with pytest.raises(ConfigError, match=r"run pip install 'modelyard\[delta\]'"):
        ParquetSink(tmp_path / "log", log_format="delta")
