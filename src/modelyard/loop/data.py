"""The loop's data: the training table and the gate's holdout, written as Parquet files.

The labelled window is the deployment's logged predictions of the last ``labelled_window`` that
have a label (joined on ``(request_id, row)``, the latest label per key), oldest first, with the
logged inputs (``in_*``, prefix dropped) and the label in the ``target`` column. Its newest
``holdout`` share is kept for the gate; the rest joins ``training_data`` in the training table.
When the window has fewer than ``MIN_LABELLED_ROWS`` labelled rows, they join the training data
and the holdout is the last ``holdout`` share of that table instead (the evidence says so).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

from modelyard.errors import InvalidInputError

if TYPE_CHECKING:
    import pandas as pd

    from modelyard.loop.policy import LoopPlan

__all__ = ["LoopData", "labelled_window", "write_tables"]

#: The labelled window needs at least this many rows for its newest share to be the holdout.
MIN_LABELLED_ROWS = 10


@dataclass(frozen=True, slots=True)
class LoopData:
    train: Path
    holdout: Path
    evidence: dict[str, Any]


def write_tables(plan: LoopPlan, log_root: str, folder: Path, *, now: datetime) -> LoopData:
    """Write ``train.parquet`` and ``holdout.parquet`` under ``folder``."""
    import pandas as pd

    base = _read(plan.training_data) if plan.training_data is not None else None
    if base is not None and plan.target not in base.columns:
        raise InvalidInputError(
            f"Training data {str(plan.training_data)!r} has no target column {plan.target!r}; "
            "set [loops.NAME.train] target to its label column."
        )
    labelled = (
        labelled_window(log_root, plan.deployment, plan.labelled_window_s, plan.target, now=now)
        if plan.labelled_window_s
        else None
    )
    if labelled is not None and base is not None:
        labelled = _like(labelled, base, plan.target)
    evidence: dict[str, Any] = {
        "training_data": str(plan.training_data) if plan.training_data else None,
        "training_rows": len(base) if base is not None else 0,
        "labelled_rows": len(labelled) if labelled is not None else 0,
    }
    if labelled is not None and len(labelled) >= MIN_LABELLED_ROWS:
        cut = len(labelled) - max(1, math.ceil(len(labelled) * plan.holdout))
        holdout, fresh = labelled.iloc[cut:], labelled.iloc[:cut]
        train = pd.concat([base, fresh], ignore_index=True) if base is not None else fresh
        evidence["holdout_from"] = "labelled window"
    else:
        if base is None or len(base) < 2:
            raise InvalidInputError(
                f"Deployment {plan.deployment!r} has {evidence['labelled_rows']} labelled "
                f"row(s) in its window and no training data to hold out from; ingest labels "
                "('yard labels ingest') or give training_data."
            )
        if labelled is not None:
            base = pd.concat([base, labelled], ignore_index=True)
        cut = len(base) - max(1, math.ceil(len(base) * plan.holdout))
        holdout, train = base.iloc[cut:], base.iloc[:cut]
        evidence["holdout_from"] = "training data (too few labelled rows)"
    folder.mkdir(parents=True, exist_ok=True)
    paths = folder / "train.parquet", folder / "holdout.parquet"
    train.reset_index(drop=True).to_parquet(paths[0], index=False)
    holdout.reset_index(drop=True).to_parquet(paths[1], index=False)
    evidence.update(train_rows=len(train), holdout_rows=len(holdout))
    return LoopData(train=paths[0], holdout=paths[1], evidence=evidence)


def labelled_window(
    log_root: str, deployment: str, window_s: float, target: str, *, now: datetime
) -> pd.DataFrame | None:
    """The logged inputs of the last ``window_s`` with their labels, oldest first (``None``
    when the deployment has no log or no labels)."""
    import duckdb

    from modelyard.monitoring.labels import (
        has_labels,
        has_predictions,
        latest_labels_sql,
        prediction_files_sql,
    )

    if not has_predictions(log_root, deployment) or not has_labels(log_root, deployment):
        return None
    start = now - timedelta(seconds=window_s)
    source = (
        f"read_parquet({prediction_files_sql(log_root, deployment)}, hive_partitioning = true, "
        "union_by_name = true, hive_types = {'deployment': VARCHAR, 'hour': VARCHAR})"
    )
    with duckdb.connect() as con:
        con.execute("SET TimeZone = 'UTC'")
        columns = [str(r[0]) for r in con.execute(f"DESCRIBE SELECT * FROM {source}").fetchall()]
        inputs = [c for c in columns if c.startswith("in_")]
        answered = " AND coalesce(status, 200) < 400" if "status" in columns else ""
        picked = ", ".join(f'p."{c}"' for c in inputs)
        sql = (
            f"SELECT {picked}, l.label, l.label_num FROM (SELECT * FROM {source} "
            f"WHERE hour >= ? AND time >= ? AND time < ?{answered}) AS p "
            f'JOIN ({latest_labels_sql(log_root, deployment)}) AS l USING (request_id, "row") '
            'ORDER BY p.time, p.request_id, p."row"'
        )
        params = [start.astimezone(UTC).strftime("%Y-%m-%dT%H"), start, now]
        frame: pd.DataFrame = con.execute(sql, params).df()
    if frame.empty:
        return None
    numeric = frame["label_num"].notna().all()
    labels = frame["label_num"] if numeric else frame["label"]
    frame = frame.drop(columns=["label", "label_num"]).rename(columns={c: c[3:] for c in inputs})
    frame[target] = labels.to_numpy()
    return frame


def _like(labelled: pd.DataFrame, base: pd.DataFrame, target: str) -> pd.DataFrame:
    """``labelled`` with ``base``'s columns and dtypes (a logged column the training data lacks
    is dropped; one it has and the log lacks is an error)."""
    missing = [str(c) for c in base.columns if c not in labelled.columns]
    if missing and len(labelled):
        raise InvalidInputError(
            f"The logged inputs lack the training data's column(s) {', '.join(missing)} (dropped "
            "or hashed by monitoring.drop_columns/hash_columns?); log them, or train on "
            "training_data alone (remove labelled_window)."
        )
    if not len(labelled):
        return base.iloc[:0].copy()
    shaped = labelled[list(base.columns)].copy()
    for column in base.columns:
        try:
            shaped[column] = shaped[column].astype(base[column].dtype)
        except (TypeError, ValueError):
            raise InvalidInputError(
                f"Logged column {column!r} does not convert to the training data's "
                f"{base[column].dtype}; check the labels and inputs of the window."
            ) from None
    return shaped


def _read(path: Path) -> pd.DataFrame:
    import pandas as pd

    if path.suffix.lower() in (".parquet", ".pq"):
        return pd.read_parquet(path)
    return pd.read_csv(path)
