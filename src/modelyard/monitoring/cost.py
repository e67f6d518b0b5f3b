"""What each model version costs to serve, from its prediction log: CPU time and memory per
1,000 predictions, and the money they come to at the configured prices.

The server measures both (``yard serve --log-predictions`` logs them with each request):
``cpu_ms`` is a request's CPU time shared by its rows (the model thread's CPU time on the
request's batch, split by rows, plus the event loop's time decoding, validating and encoding
it), and ``memory_bytes`` the resident memory the answering version took when it loaded. Memory
costs while the version serves: its GB-hours are its memory times the time between its first
and last logged request in the window (at least one second), shared by its predictions.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from modelyard.core.durations import format_duration
from modelyard.errors import PredictionLogEmptyError
from modelyard.monitoring._partitions import empty_window, hours, log_columns, log_folder
from modelyard.monitoring.types import CostReport, ModelCost, Prices

__all__ = ["CostReport", "ModelCost", "Prices", "cost_report", "model_costs"]

_GB = 1e9
_PER = 1000  # predictions


def model_costs(
    files: Sequence[Path], *, start: datetime, end: datetime, prices: Prices
) -> tuple[list[ModelCost], bool]:
    """Each model version's cost over ``[start, end)`` of ``files`` (answered requests only),
    most predictions first, and whether the files hold the cost columns."""
    from modelyard.monitoring import _duck

    if not files:
        return [], False
    paths = [str(f) for f in files]
    source = "read_parquet(?, union_by_name = true, hive_partitioning = false)"
    with _duck.connect() as con:
        con.execute("SET TimeZone = 'UTC'")
        columns = log_columns(con, paths)
        measured = {"cpu_ms", "memory_bytes"} <= columns
        cpu = "coalesce(sum(cpu_ms), 0) / 1000" if measured else "0.0"
        memory = "coalesce(max(memory_bytes), 0)" if measured else "0"
        answered = "coalesce(status, 200) < 400" if "status" in columns else "TRUE"
        found = con.execute(
            f"""
            SELECT model, version, count(*), count(DISTINCT request_id), {cpu}, {memory},
                   epoch(max(time)) - epoch(min(time))
            FROM {source}
            WHERE time >= ? AND time < ? AND {answered}
            GROUP BY model, version ORDER BY count(*) DESC, model, version
            """,
            [paths, start, end],
        ).fetchall()
    costs = [_cost(row, prices) for row in found]
    return costs, measured


def _cost(row: tuple[Any, ...], prices: Prices) -> ModelCost:
    """A ``model_costs`` query row: model, version, rows, requests, CPU seconds, memory and
    the seconds between the first and the last request."""
    model, version, rows, requests, cpu, memory, span_s = row
    predictions, cpu_s, memory_bytes = int(rows), float(cpu), int(memory)  # DuckDB: 0.0 is DECIMAL
    served_h = max(float(span_s or 0.0), 1.0) / 3600
    gb_h = memory_bytes / _GB * served_h
    cost = cpu_s / 3600 * prices.cpu_hour + gb_h * prices.gb_hour
    per = _PER / predictions if predictions else 0.0
    return ModelCost(
        model=str(model), version=str(version), predictions=predictions, requests=int(requests),
        cpu_s=cpu_s,
        memory_bytes=memory_bytes, served_h=served_h, cpu_s_per_1k=cpu_s * per,
        gb_h_per_1k=gb_h * per, cost=cost, cost_per_1k=cost * per,
    )  # fmt: skip


def cost_report(
    root: str | Path,
    name: str,
    *,
    window: timedelta,
    prices: Prices,
    now: datetime | None = None,
) -> CostReport:
    """The cost of each version that answered for ``name`` (a deployment or a model) over the
    last ``window`` of its log."""
    now = now or datetime.now(UTC)
    start = now - window
    if not log_folder(root, name).is_dir():
        raise PredictionLogEmptyError(
            f"No prediction log for {name!r} under {root}; serve it with "
            "'yard serve --log-predictions' to measure its cost."
        )
    found = hours(root, name, start, now + timedelta(seconds=1))
    if not found:
        raise empty_window(root, name, f"in the last {format_duration(window)}")
    costs, measured = model_costs(
        [f for hour in found for f in hour.files], start=start, end=now, prices=prices
    )
    return CostReport(
        name=name, start=start.isoformat(timespec="seconds"),
        end=now.isoformat(timespec="seconds"), prices=prices, measured=measured,
        models=tuple(costs),
    )  # fmt: skip
