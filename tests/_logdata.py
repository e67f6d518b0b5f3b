"""Prediction-log files written the way the server's ``ParquetSink`` lays them out, for tests that
need hours of traffic without hours of serving."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import datetime
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq


def write_log(
    root: Path,
    name: str,
    inputs: pd.DataFrame,
    times: Sequence[datetime],
    *,
    model: str,
    version: str,
    predict: np.ndarray | None = None,
    proba: np.ndarray | None = None,
    latency_ms: np.ndarray | None = None,
    request_ids: Sequence[str] | None = None,
    route: str = "stable",
) -> list[str]:
    """One file per hour of ``times`` (one row per request); returns the request ids."""
    rows = len(inputs)
    ids = list(request_ids) if request_ids is not None else [uuid.uuid4().hex for _ in range(rows)]
    stamps = pd.to_datetime(pd.Series(times), utc=True)
    data: dict[str, object] = {
        "request_id": ids,
        "row": np.zeros(rows, dtype=np.int64),
        "time": stamps,
        "deployment": [name] * rows,
        "route": [route] * rows,
        "model": [model] * rows,
        "version": [version] * rows,
        "latency_ms": latency_ms if latency_ms is not None else np.full(rows, 1.5),
    }
    for column in inputs.columns:
        data[f"in_{column}"] = inputs[column].to_numpy()
    frame = pd.DataFrame(data)
    if predict is not None:  # rows x dim (an embedding) as a list per row, as the sink logs it
        values = np.asarray(predict)
        frame["out_predict"] = list(values.astype(np.float64)) if values.ndim == 2 else values
    if proba is not None:
        frame["out_predict_proba"] = list(np.asarray(proba, dtype=np.float64))
    hours = stamps.dt.strftime("%Y-%m-%dT%H")
    for hour in sorted(set(hours)):
        part = frame[(hours == hour).to_numpy()].reset_index(drop=True)
        folder = root / f"deployment={name}" / f"hour={hour}"
        folder.mkdir(parents=True, exist_ok=True)
        table = pa.Table.from_pandas(part, preserve_index=False)
        table = table.set_column(
            table.schema.get_field_index("time"),
            "time",
            table["time"].cast(pa.timestamp("us", tz="UTC")),
        )
        pq.write_table(table, folder / f"{uuid.uuid4().hex}.parquet")
    return ids
