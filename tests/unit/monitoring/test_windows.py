"""A window's profile from cached file profiles equals the profile of its rows, at any edges."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from modelyard.monitoring._partitions import hours
from modelyard.monitoring.drift import DriftDetector
from modelyard.monitoring.windows import (
    file_profiles,
    hour_profiles,
    log_frames,
    read_by_file,
    read_rows,
    window_profile,
)
from tests._logdata import write_log

T0 = datetime(2026, 3, 1, 8, 0, tzinfo=UTC)


def prepare(frame: pd.DataFrame) -> pd.DataFrame:
    return log_frames(frame)[0][["a", "colour"]]


def write_files(root: Path, seed: int) -> None:
    rng = np.random.default_rng(seed)
    for part in range(6):  # six files over three hours, some sharing an hour
        rows = 50
        start = T0 + timedelta(minutes=30 * part)
        frame = pd.DataFrame(
            {
                "a": rng.normal(size=rows),
                "colour": pd.Series(rng.choice(["red", "blue"], size=rows), dtype="string"),
            }
        )
        times = [start + timedelta(seconds=int(s)) for s in np.sort(rng.integers(0, 1700, rows))]
        write_log(root, "d", frame, times, model="m", version="1")


@settings(max_examples=25, deadline=None)
@given(
    begin=st.integers(min_value=-30, max_value=200), length=st.integers(min_value=1, max_value=240)
)
def test_the_window_profile_equals_the_profile_of_its_rows(
    tmp_path_factory: object, begin: int, length: int
) -> None:
    root = Path(tmp_path_factory.mktemp("log"))  # type: ignore[attr-defined]
    write_files(root, seed=begin + 1000 * length)
    reference = pd.DataFrame({"a": np.linspace(-3, 3, 500), "colour": ["red", "blue"] * 250})
    reference["colour"] = reference["colour"].astype("string")
    detector = DriftDetector().fit(reference)
    start = T0 + timedelta(minutes=begin)
    end = start + timedelta(minutes=length)
    selected = hours(root, "d", start, end)
    for _ in range(2):  # the second time from the cache
        found = window_profile(detector, root, "d", selected, start=start, end=end, prepare=prepare)
        rows = read_rows([f for h in selected for f in h.files], start=start, end=end)
        if rows.empty:
            assert found is None
        else:
            assert found == detector.profile(prepare(rows))


def test_rows_by_file_are_each_files_answered_rows_and_their_data_columns(tmp_path: Path) -> None:
    """``read_by_file`` (what profiling and scoring read): each file's answered rows, in its
    order, with ``time``, ``row`` and the inputs and outputs only; a column one file lacks is
    empty there; a file of failed requests only (no data) has no rows."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    write_files(tmp_path, seed=3)
    wide = pd.DataFrame({"a": [0.5, 0.7], "colour": pd.Series(["red", "blue"], dtype="string")})
    wide['odd "name'] = [1.0, 2.0]
    at = [T0 + timedelta(hours=4, minutes=m) for m in (1, 2)]
    write_log(tmp_path, "d", wide, at, model="m", version="2")
    (folder,) = {f.parent for h in hours(tmp_path, "d", at[0], at[1]) for f in h.files}
    failed = pa.table({
        "request_id": ["x"], "row": [0], "time": pa.array([at[0]], pa.timestamp("us", tz="UTC")),
        "status": pa.array([500], pa.int16()),
    })  # fmt: skip
    pq.write_table(failed, folder / "failed.parquet")
    files = [f for h in hours(tmp_path, "d", T0, T0 + timedelta(hours=6)) for f in h.files]
    assert len(files) == 8

    groups, frame = read_by_file(files)
    data = ["time", "row", "in_a", "in_colour", 'in_odd "name']
    assert list(frame.columns) == ["file", *data]
    assert set(groups) == {str(f) for f in files if f.name != "failed.parquet"}
    for file in files:
        if file.name == "failed.parquet":
            continue
        own = pq.read_table(file).to_pandas()  # the file's rows, in its order
        got = groups[str(file)].reset_index(drop=True)
        shared = [c for c in data if c in own.columns]
        pd.testing.assert_frame_equal(got[shared], own[shared], check_dtype=False)
        if 'in_odd "name' not in own.columns:
            assert got['in_odd "name'].isna().all()
    assert read_by_file([folder / "failed.parquet"])[0] == {}


def test_new_files_are_profiled_and_old_ones_are_not_read_again(tmp_path: Path) -> None:
    write_files(tmp_path, seed=1)
    detector = DriftDetector().fit(
        pd.DataFrame({"a": [0.0, 1.0], "colour": pd.Series(["red", "blue"], dtype="string")})
    )
    (hour, *_) = hours(tmp_path, "d", T0, T0 + timedelta(hours=3))
    first = file_profiles(detector, tmp_path, "d", hour, prepare=prepare)
    for file in hour.files:  # unreadable now: a second look must come from the cache
        file.write_bytes(b"not parquet")
    assert file_profiles(detector, tmp_path, "d", hour, prepare=prepare) == first
    assert [p.profile.rows for p in first] == [50, 50]


def test_uncached_hours_are_read_in_batches_with_the_same_profiles(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from modelyard.monitoring import windows

    detector = DriftDetector().fit(
        pd.DataFrame({"a": [0.0, 1.0], "colour": pd.Series(["red", "blue"], dtype="string")})
    )
    profiles = {}
    reads: dict[int, int] = {}
    real = windows.read_by_file
    for batch in (1, 10**9):  # one query per hour's files, one for all of them
        root = tmp_path / str(batch)
        write_files(root, seed=7)
        late = pd.DataFrame({"a": [1.0], "colour": pd.Series(["red"], dtype="string")})
        write_log(root, "d", late, [T0 + timedelta(hours=5)], model="m", version="1")
        monkeypatch.setattr(windows, "BATCH_BYTES", batch)
        calls: list[int] = []

        def counted(files: list[Path]) -> tuple[dict[str, pd.DataFrame], pd.DataFrame]:
            calls.append(len(files))  # noqa: B023
            return real(files)

        monkeypatch.setattr(windows, "read_by_file", counted)
        selected = hours(root, "d", T0, T0 + timedelta(hours=6))
        found = list(hour_profiles(detector, root, "d", selected, prepare=prepare))
        profiles[batch] = [(h.start, p) for h, p in found]
        reads[batch] = len(calls)
        cached = list(hour_profiles(detector, root, "d", selected, prepare=prepare))
        assert cached == found and len(calls) == reads[batch]  # the second time: no read
    assert profiles[1] == profiles[10**9]
    assert reads == {1: 4, 10**9: 1}
    assert [p.rows for _, p in profiles[1]] == [100, 100, 100, 1]


@settings(max_examples=25, deadline=None)
@given(
    begin=st.integers(min_value=-30, max_value=200), length=st.integers(min_value=1, max_value=240)
)
def test_the_window_traffic_equals_the_traffic_of_its_rows(
    tmp_path_factory: object, begin: int, length: int
) -> None:
    """``window_traffic`` (cached per file) against ``traffic_points`` over the window's rows:
    counts and error rate equal, p50 and p99 within the histogram's 1%; a second look reads no
    file inside the window again."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from modelyard.monitoring.traffic import traffic_points, window_traffic

    root = Path(tmp_path_factory.mktemp("log"))  # type: ignore[attr-defined]
    rng = np.random.default_rng(begin + 1000 * length)
    for part in range(6):
        rows = 40
        start = T0 + timedelta(minutes=30 * part)
        frame = pd.DataFrame({"a": rng.normal(size=rows)})
        times = [start + timedelta(seconds=int(s)) for s in np.sort(rng.integers(0, 1700, rows))]
        latency = np.round(rng.lognormal(1.0, 1.0, rows), 3)
        write_log(root, "d", frame, times, model="m", version="1", latency_ms=latency)
        # failed requests (no data), and one request of three rows, in a file of their own
        at = start + timedelta(seconds=int(rng.integers(0, 1700)))
        others = pa.table({
            "request_id": [f"{i}-{part}" for i in ("e1", "e2", "e3", "m", "m", "m")],
            "row": [0, 0, 0, 0, 1, 2],
            "time": pa.array([at] * 6, pa.timestamp("us", tz="UTC")),
            "status": pa.array([503, 400, 500, 200, 200, 200], pa.int16()),
            "latency_ms": [30.0, 0.4, 12.5, 7.0, 7.0, 7.0],
            "in_a": [None, None, None, 0.1, 0.2, 0.3],
        })  # fmt: skip
        folder = root / "deployment=d" / f"hour={at:%Y-%m-%dT%H}"
        folder.mkdir(parents=True, exist_ok=True)
        pq.write_table(others, folder / f"{part}-others.parquet")
    start = T0 + timedelta(minutes=begin)
    end = start + timedelta(minutes=length)
    selected = hours(root, "d", start, end)
    exact = traffic_points([f for h in selected for f in h.files], start=start, end=end)
    for look in range(2):  # the second time from the cache
        if look:  # unreadable now: files inside the window must come from the cache
            for file in (f for h in selected for f in h.files):
                table = pq.read_table(file)
                times = table.column("time").cast(pa.int64()).to_numpy()
                if times.min() >= start.timestamp() * 1e6 and times.max() < end.timestamp() * 1e6:
                    file.write_bytes(b"not parquet")
        found = window_traffic(root, "d", selected, start=start, end=end)
        if not exact:
            assert found is None
            continue
        (point,) = exact
        assert found is not None
        assert (found.rows, found.requests) == (point.rows, point.requests)
        assert found.error_rate == pytest.approx(point.error_rate)
        assert found.p50_latency_ms == pytest.approx(point.p50_latency_ms, rel=0.011)
        assert found.p99_latency_ms == pytest.approx(point.p99_latency_ms, rel=0.011)


def test_an_output_some_rows_lack_is_missing_in_those_rows(tmp_path: Path) -> None:
    """A log mixing rows with ``predict_proba`` (asked for through the V2 door) and rows
    without it (``/invocations``), in either order and in files of their own: the rows without
    it have missing ``proba_`` values, the others theirs."""
    frame = pd.DataFrame({"a": [0.1, 0.2, 0.3], "colour": pd.Series(["red"] * 3, dtype="string")})
    at = [T0 + timedelta(minutes=m) for m in (1, 2, 3)]
    write_log(tmp_path, "d", frame.iloc[:1], at[:1], model="m", version="1", predict=np.array([1]))
    write_log(
        tmp_path, "d", frame.iloc[1:], at[1:], model="m", version="1",
        predict=np.array([0, 1]), proba=np.array([[0.9, 0.1], [0.2, 0.8]]),
    )  # fmt: skip
    rows = read_rows([f for h in hours(tmp_path, "d", T0, at[-1]) for f in h.files])
    for order in (rows, rows.iloc[::-1]):
        outputs = log_frames(order)[1]
        assert sorted(outputs.columns) == ["predict", "proba_0", "proba_1"]
        by_input = dict(zip(order["in_a"], outputs["proba_1"], strict=True))
        assert np.isnan(by_input[0.1]) and (by_input[0.2], by_input[0.3]) == (0.1, 0.8)
    without = log_frames(rows.iloc[:1])[1]  # no row has it: a column of missing values
    assert without["predict_proba"].isna().all()
