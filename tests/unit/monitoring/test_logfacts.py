"""Each log file's columns and version counts, read once per process: the same answers as
reading every file each time."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import duckdb
import numpy as np
import pandas as pd
import pytest

from modelyard.monitoring import _logfacts
from tests._logdata import write_log

T0 = datetime(2026, 12, 1, 10, 0, tzinfo=UTC)


def _old_versions(files: list[Path], start: datetime) -> list[tuple[str, str, int]]:
    """The query ``_Span.versions`` ran before the cache."""
    sql = (
        "SELECT model, version, count(*) AS n FROM read_parquet(?, union_by_name = true, "
        "hive_partitioning = false) WHERE time >= ? AND version <> '' GROUP BY ALL "
        "ORDER BY n DESC, version DESC"
    )
    with duckdb.connect() as con:
        found = con.execute(sql, [[str(f) for f in files], start]).fetchall()
    return [(str(m), str(v), int(n)) for m, v, n in found]


@pytest.fixture(autouse=True)
def _fresh() -> None:
    _logfacts.clear()


def _log(root: Path) -> list[Path]:
    rng = np.random.default_rng(0)
    for version, rows, offset in (("1", 300, 0), ("2", 200, 30), ("3", 50, 150)):
        times = [T0 + timedelta(minutes=offset + i * 0.5) for i in range(rows)]
        frame = pd.DataFrame({"a": rng.normal(size=rows)})
        write_log(root, "d", frame, times, model="m", version=version)
    extra = pd.DataFrame({"a": [1.0], "b": ["x"]})  # a later file with one more column
    write_log(root, "d", extra, [T0 + timedelta(hours=3)], model="m", version="")
    return sorted(root.glob("deployment=d/*/*.parquet"))


def test_versions_match_a_full_read_for_every_start(tmp_path: Path) -> None:
    files = _log(tmp_path)
    for minutes in (0, 29, 30, 61, 150, 170, 175, 400):
        start = T0 + timedelta(minutes=minutes)
        assert _logfacts.versions(files, start) == _old_versions(files, start), minutes


def test_columns_are_every_files_in_first_seen_order(tmp_path: Path) -> None:
    files = _log(tmp_path)
    found = _logfacts.columns(files)
    assert found[-1] == "in_b"
    assert list(found).count("in_a") == 1
    assert found[:3] == ("request_id", "row", "time")


def test_each_file_is_read_once(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    files = _log(tmp_path)
    read: list[int] = []
    real = _logfacts._read_counts
    monkeypatch.setattr(_logfacts, "_read_counts", lambda f: (read.append(len(f)), real(f))[1])
    _logfacts.versions(files, T0)
    _logfacts.versions(files, T0 - timedelta(days=1))
    assert read == [len(files)]
    # a new file is read on its own, the others come from the cache
    write_log(tmp_path, "d", pd.DataFrame({"a": [0.5]}), [T0 + timedelta(hours=4)], model="m",
              version="2")  # fmt: skip
    more = sorted(tmp_path.glob("deployment=d/*/*.parquet"))
    assert _logfacts.versions(more, T0) == _old_versions(more, T0)
    assert read == [len(files), 1]
