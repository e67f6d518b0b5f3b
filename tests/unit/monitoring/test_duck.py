"""The prediction log's DuckDB sessions: a cursor of one database per process behaves as the
fresh connection each query used to open."""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from modelyard.monitoring import _duck


def test_each_session_has_its_own_settings() -> None:
    with _duck.connect() as first:
        first.execute("SET TimeZone = 'America/New_York'")
        assert first.execute("SELECT current_setting('TimeZone')").fetchone() == (
            "America/New_York",
        )
    with _duck.connect() as second:
        fresh = second.execute("SELECT current_setting('TimeZone')").fetchone()
    import duckdb

    with duckdb.connect() as con:
        default = con.execute("SELECT current_setting('TimeZone')").fetchone()
    assert fresh == default


def test_sessions_share_one_database_and_close() -> None:
    with _duck.connect() as a, _duck.connect() as b:
        a.execute("CREATE TEMP TABLE t AS SELECT 1 AS x")
        # temporary objects are the session's own, as on separate connections
        assert b.execute(
            "SELECT count(*) FROM duckdb_tables() WHERE table_name = 't'"
        ).fetchone() == (0,)
    assert _duck._shared() is _duck._shared()


def test_a_query_sees_files_as_they_are_now(tmp_path: Path) -> None:
    path = tmp_path / "part.parquet"
    pq.write_table(pa.table({"x": [1, 2]}), path)
    with _duck.connect() as con:
        assert con.execute("SELECT sum(x) FROM read_parquet(?)", [str(path)]).fetchone() == (3,)
    pq.write_table(pa.table({"x": [10, 20, 30]}), path)  # the same path, new content
    with _duck.connect() as con:
        assert con.execute("SELECT sum(x) FROM read_parquet(?)", [str(path)]).fetchone() == (60,)


def test_threads_query_at_once(tmp_path: Path) -> None:
    from concurrent.futures import ThreadPoolExecutor

    path = tmp_path / "part.parquet"
    pq.write_table(pa.table({"x": list(range(1000))}), path)

    def total(_: int) -> int:
        with _duck.connect() as con:
            con.execute("SET TimeZone = 'UTC'")
            (found,) = con.execute("SELECT sum(x) FROM read_parquet(?)", [str(path)]).fetchone()
            return int(found)

    with ThreadPoolExecutor(8) as pool:
        assert set(pool.map(total, range(64))) == {499_500}
