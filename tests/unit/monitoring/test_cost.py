"""Cost per model version from a real Parquet prediction log (``monitoring/cost.py``)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from modelyard.errors import PredictionLogEmptyError
from modelyard.monitoring.cost import Prices, cost_report
from modelyard.monitoring.predlog import ParquetSink
from modelyard.serving.sink import PredictionRecord
from modelyard.serving.validation import Rows

NOW = datetime(2026, 12, 1, 12, 30, tzinfo=UTC)
PRICES = Prices(cpu_hour=3.6, gb_hour=7.2, currency="EUR")  # 1e-3 per CPU-s, 2e-3 per GB-s


def record(i: int, *, version: str, n: int, cpu_s: float, memory: int, at: datetime, status=200):
    rows = None if status >= 500 else Rows(n, np.ones((n, 2)), None)
    return PredictionRecord(
        request_id=f"r{version}-{i}", time=at.timestamp(), model="churn", version=version,
        route="v2_infer", inputs=rows, outputs={} if rows is None else {"predict": np.zeros(n)},
        latency_s=0.001, input_names=("a", "b"), status=status, cpu_s=cpu_s, memory_bytes=memory,
    )  # fmt: skip


def test_cpu_memory_and_money_per_version_and_per_1000_predictions(tmp_path: Path) -> None:
    sink = ParquetSink(tmp_path, flush_interval_s=60)
    start = NOW - timedelta(minutes=20)
    # version 1: 100 requests of 4 rows, 2 ms of CPU each, 1 GB, served over 10 minutes
    for i in range(100):
        at = start + timedelta(seconds=6 * i * 100 / 99)
        sink.submit(record(i, version="1", n=4, cpu_s=0.002, memory=10**9, at=at))
    # version 2: 10 one-row requests, 50 ms each, 0.5 GB; a failed request costs nothing here
    for i in range(10):
        at = start + timedelta(minutes=1, seconds=i)
        sink.submit(record(i, version="2", n=1, cpu_s=0.05, memory=5 * 10**8, at=at))
    sink.submit(record(99, version="2", n=1, cpu_s=9.0, memory=0, at=start, status=503))
    sink.close()

    report = cost_report(tmp_path, "churn", window=timedelta(hours=1), prices=PRICES, now=NOW)
    assert report.measured and report.prices.currency == "EUR"
    one, two = report.models
    assert (one.version, one.predictions, one.requests) == ("1", 400, 100)
    assert one.cpu_s == pytest.approx(0.2)
    assert one.cpu_s_per_1k == pytest.approx(0.5)  # 0.2 s over 400 predictions
    assert one.memory_bytes == 10**9
    assert one.served_h == pytest.approx(600 / 3600, rel=1e-3)
    assert one.gb_h_per_1k == pytest.approx(1.0 * 600 / 3600 * 1000 / 400, rel=1e-3)
    assert one.cost == pytest.approx(0.2 * 1e-3 + 600 * 2e-3, rel=1e-3)
    assert one.cost_per_1k == pytest.approx(one.cost * 1000 / 400)
    assert (two.version, two.predictions, two.requests) == ("2", 10, 10)
    assert two.cpu_s == pytest.approx(0.5)  # the 503's CPU is not counted
    assert two.cpu_s_per_1k == pytest.approx(50.0)
    assert two.served_h == pytest.approx(9 / 3600)


def test_a_version_seen_once_is_charged_one_second_of_memory(tmp_path: Path) -> None:
    sink = ParquetSink(tmp_path, flush_interval_s=60)
    sink.submit(record(0, version="1", n=1, cpu_s=0.001, memory=2 * 10**9, at=NOW))
    sink.close()
    report = cost_report(
        tmp_path, "churn", window=timedelta(hours=1), prices=PRICES, now=NOW + timedelta(1 / 24)
    )
    (only,) = report.models
    assert only.served_h == pytest.approx(1 / 3600)
    assert only.cost == pytest.approx(0.001 * 1e-3 + 2 * 2e-3)


def test_a_log_written_before_cost_was_measured_reads_as_not_measured(tmp_path: Path) -> None:
    folder = tmp_path / "deployment=churn" / "hour=2026-12-01T12"
    folder.mkdir(parents=True)
    table = pa.table({
        "request_id": ["a", "b"], "row": [0, 0],
        "time": pa.array([int(NOW.timestamp() * 1e6) - 10**6] * 2, pa.timestamp("us", tz="UTC")),
        "deployment": ["churn"] * 2, "route": ["v2_infer"] * 2, "model": ["churn"] * 2,
        "version": ["3"] * 2, "latency_ms": [1.0, 1.0], "in_a": [1.0, 2.0],
    })  # fmt: skip
    pq.write_table(table, folder / "part-0.parquet")
    report = cost_report(tmp_path, "churn", window=timedelta(hours=1), prices=PRICES, now=NOW)
    assert not report.measured
    (old,) = report.models
    assert (old.predictions, old.cpu_s, old.memory_bytes, old.cost) == (2, 0.0, 0, 0.0)


def test_no_log_names_the_way_to_get_one(tmp_path: Path) -> None:
    with pytest.raises(PredictionLogEmptyError, match="yard serve --log-predictions"):
        cost_report(tmp_path, "churn", window=timedelta(hours=1), prices=PRICES, now=NOW)
