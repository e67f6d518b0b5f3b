"""Ground-truth labels for logged predictions, joined later on ``(request_id, row)``.

Layout: ``<log root>/labels/deployment=<name>/<timestamp>-<uuid>.parquet``, one file per ingest,
written under a hidden temporary name and renamed (as the prediction log is), so a failed or
refused ingest leaves nothing behind. Columns:

- ``request_id`` (string) and ``row`` (int64, default 0: the row of a multi-row request);
- ``label`` (string): the label's text, ``1`` for ``1`` and ``1.0``, ``true``/``false`` for
  booleans; ``label_num`` (double): the same label as a number when it is one (``null`` for
  ``cat``). Classifiers with numeric classes and regressors compare ``label_num``; classifiers
  with string classes compare ``label``. Files with different label types therefore mix freely;
- ``time`` (timestamp, UTC): when the outcome was observed, as given, else the ingest time;
- ``ingested_at`` (timestamp, UTC).

A key labelled again later is not an error: the latest ingest wins (``latest_labels_sql``), so a
label its model could not score is refused first (``labelrules``).
Duplicate keys *within* one ingest are refused.
"""

from __future__ import annotations

import functools
import logging
import math
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple

import msgspec
import numpy as np

from modelyard.errors import InvalidInputError, PredictionLogEmptyError
from modelyard.monitoring import _deltalog
from modelyard.monitoring.predlog import write_parquet

if TYPE_CHECKING:
    import pandas as pd
    import pyarrow as pa

    from modelyard.monitoring.labelrules import LabelRule

logger = logging.getLogger(__name__)

REQUIRED_COLUMNS = ("request_id", "label")
OPTIONAL_COLUMNS = ("row", "time")
SUFFIXES = (".csv", ".parquet")
_SHOWN = 5  # duplicated ids named in a message


class IngestResult(msgspec.Struct, frozen=True, kw_only=True):
    """One ingest: ``rows`` written to ``path``; ``matched`` of them have a logged prediction
    (any time) now, ``unmatched`` do not yet (both ``None`` when not counted)."""

    deployment: str
    rows: int
    path: str
    matched: int | None = None
    unmatched: int | None = None


def labels_folder(root: str | Path, name: str) -> Path:
    return Path(root) / "labels" / f"deployment={name}"


def prediction_files_sql(root: str | Path, name: str) -> str:
    """What ``read_parquet(...)`` takes for ``name``'s log, as a SQL literal: the glob of its
    hour folders' files, or for a Delta log the list of the table's current files (a file a
    failed append left, or one a compaction removed, is not the log)."""
    folder = Path(root) / f"deployment={name}"
    active = _deltalog.active_names(folder)
    if active is None:
        return sql_literal(str(folder / "hour=*" / "*.parquet"))
    files = [f for f in sorted(folder.glob("hour=*/*.parquet")) if f.name in active]
    return "[" + ", ".join(sql_literal(str(f)) for f in files) + "]"


def sql_literal(text: str) -> str:
    """A SQL string literal (DuckDB binds no parameters in ``read_parquet`` sources)."""
    return "'" + text.replace("'", "''") + "'"


def has_predictions(root: str | Path, name: str) -> bool:
    return any((Path(root) / f"deployment={name}").glob("hour=*/*.parquet"))


def has_labels(root: str | Path, name: str) -> bool:
    return any(labels_folder(root, name).glob("*.parquet"))


def latest_labels_sql(root: str | Path, name: str) -> str:
    """A DuckDB query of ``name``'s labels, the latest ingest per ``(request_id, row)``, with
    columns request_id, row, label, label_num, time (needs at least one labels file)."""
    glob = sql_literal(str(labels_folder(root, name) / "*.parquet"))
    return (
        'SELECT request_id, "row", label, label_num, time '
        f"FROM read_parquet({glob}, union_by_name = true, filename = true) "
        'QUALIFY row_number() OVER (PARTITION BY request_id, "row" '
        "ORDER BY ingested_at DESC, filename DESC) = 1"
    )


def ingest_labels(
    root: str | Path,
    name: str,
    source: str | Path | pd.DataFrame,
    *,
    require_log: bool = True,
    count_matched: bool = True,
    on_step: Callable[[str], None] | None = None,
    rule: LabelRule | None = None,
) -> IngestResult:
    """Validate ``source`` (a CSV or Parquet file, or a DataFrame) and write it as one labels
    file of deployment ``name``; nothing is written when anything is wrong.

    ``rule``: what the labels of ``name``'s model must be to be scored (a regressor's must be
    numbers; ``monitoring.labelrules``); a label that breaks it refuses the whole ingest.

    ``require_log``: refuse a name with no prediction log (a server passes ``False`` for the
    names it serves, whose first predictions may not be flushed yet). ``count_matched``: count
    how many keys match a logged prediction now (reads the whole log of ``name``).
    ``on_step`` hears ``"reading"``, ``"validating"``, ``"writing"`` and ``"matching"``.
    """
    make_table = functools.partial(labels_table, rule=rule)
    return ingest_table(
        root, name, source, TableKind("labels", "label", "request_id, label", make_table),
        require_log=require_log, count_matched=count_matched, on_step=on_step,
    )  # fmt: skip


class TableKind(NamedTuple):
    """What an ingest writes: ``folder`` under the log root (``labels``, ``outcomes``), the
    ``noun`` its messages use, the required ``columns`` named in them, and ``make_table``, the
    validated file content of a DataFrame (``what``: how messages name the source)."""

    folder: str
    noun: str
    columns: str
    make_table: Callable[..., pa.Table]


def ingest_table(
    root: str | Path,
    name: str,
    source: str | Path | pd.DataFrame,
    kind: TableKind,
    *,
    require_log: bool = True,
    count_matched: bool = True,
    on_step: Callable[[str], None] | None = None,
    id_column: str = "request_id",
) -> IngestResult:
    """``ingest_labels`` for any ``kind`` of per-request file (labels, outcomes)."""
    step = on_step or (lambda _: None)
    _check_name(name)
    path = Path(source) if isinstance(source, str | Path) else None
    title = kind.folder.capitalize()
    if path is not None:
        check_file(path, title, kind.columns)
    if require_log and not has_predictions(root, name):
        raise PredictionLogEmptyError(
            f"No predictions logged for {name!r} under {root}, so there is nothing to "
            f"{'label' if kind.noun == 'label' else 'join ' + kind.folder + ' to'}; serve it "
            "with 'yard serve --log-predictions' first (or check the name and "
            "MODELYARD_MONITORING__LOG_ROOT)."
        )
    if isinstance(source, str | Path):
        step("reading")
        frame = read_table_file(Path(source), title, id_column)
    else:
        frame = source
    step("validating")
    what = f"{kind.folder} file {path.name!r}" if path is not None else f"the {kind.folder}"
    table = kind.make_table(frame, what, csv=path is not None and _is_csv(path))
    step("writing")
    written = write_parquet(table, Path(root) / kind.folder / f"deployment={name}")
    logger.debug("wrote %d %s to %s", table.num_rows, kind.folder, written)
    result = IngestResult(deployment=name, rows=table.num_rows, path=str(written))
    if not count_matched:
        return result
    step("matching")
    matched = count_matching(root, name, table)
    return msgspec.structs.replace(result, matched=matched, unmatched=table.num_rows - matched)


def count_matching(root: str | Path, name: str, keys: pa.Table) -> int:
    """How many ``(request_id, row)`` of ``keys`` have a logged prediction of ``name``."""
    import duckdb

    if not has_predictions(root, name):
        return 0
    sql = (
        'SELECT count(*) FROM keys SEMI JOIN (SELECT DISTINCT request_id, "row" '
        f"FROM read_parquet({prediction_files_sql(root, name)}, union_by_name = true, "
        'hive_partitioning = false)) AS logged USING (request_id, "row")'
    )
    with duckdb.connect() as con:
        con.register("keys", keys.select(["request_id", "row"]))
        found = con.execute(sql).fetchone()
    return int(found[0]) if found else 0


# -- validation --------------------------------------------------------------------------------


def _check_name(name: str) -> None:
    if not name or name.startswith(".") or any(c in name for c in "/\\\0"):
        raise InvalidInputError(
            f"Invalid deployment name {name!r}; give the name predictions are logged under "
            "('yard monitor log NAME')."
        )


def check_file(path: Path, kind: str = "Labels", columns: str = "request_id, label") -> None:
    """``path`` exists and is CSV or Parquet (``kind``: Labels, Outcomes; ``columns``: the
    required ones, named in the message)."""
    if not path.is_file():
        raise InvalidInputError(f"{kind} file {str(path)!r} does not exist; check the path.")
    if path.suffix.lower() not in SUFFIXES:
        raise InvalidInputError(
            f"{kind} file {path.name!r} is neither CSV nor Parquet; save it as .csv or .parquet "
            f"with columns {columns} and optionally row, time."
        )


def _is_csv(path: str | Path) -> bool:
    return Path(path).suffix.lower() == ".csv"


def read_table_file(
    path: Path, kind: str = "Labels", id_column: str = "request_id"
) -> pd.DataFrame:
    """A CSV or Parquet file as a DataFrame; in a CSV, ``id_column`` stays text."""
    import pandas as pd

    try:
        if _is_csv(path):
            # ids stay text: 0012 is not 12
            return pd.read_csv(path, dtype={id_column: "str"})
        return pd.read_parquet(path)
    except (OSError, ValueError, pd.errors.ParserError) as exc:
        raise InvalidInputError(f"{kind} file {path.name!r} cannot be read: {exc}.") from None


def labels_table(
    frame: pd.DataFrame,
    what: str = "the labels",
    *,
    csv: bool = False,
    now: datetime | None = None,
    rule: LabelRule | None = None,
) -> pa.Table:
    """The validated labels file content of ``frame`` (columns request_id, label and
    optionally row, time; other columns are ignored); with ``rule``, every label keeps it."""
    import pyarrow as pa

    found = [str(c) for c in frame.columns]
    missing = [c for c in REQUIRED_COLUMNS if c not in found]
    if missing:
        raise InvalidInputError(
            f"Column{'s' if len(missing) > 1 else ''} {' and '.join(missing)} missing from "
            f"{what} (found: {', '.join(found) or 'none'}); labels need request_id and label, "
            "optionally row and time."
        )
    if len(frame) == 0:
        raise InvalidInputError(f"There are no rows in {what}; nothing to ingest.")
    ids = request_ids(frame["request_id"], what, csv)
    rows = row_numbers(frame["row"], what, csv) if "row" in frame.columns else [0] * len(frame)
    texts, numbers = _labels(frame["label"], what, csv)
    if rule is not None:
        _check_rule(rule, frame["label"].tolist(), numbers, ids=ids, what=what, csv=csv)
    check_duplicates(ids, rows, what)
    ingested = now or datetime.now(UTC)
    times = times_of(frame["time"], what, csv, ingested) if "time" in frame.columns else None
    stamp = pa.timestamp("us", tz="UTC")
    return pa.table({
        "request_id": pa.array(ids, pa.string()),
        "row": pa.array(rows, pa.int64()),
        "label": pa.array(texts, pa.string()),
        "label_num": pa.array(numbers, pa.float64()),
        "time": pa.array(times or [ingested] * len(ids), stamp),
        "ingested_at": pa.array([ingested] * len(ids), stamp),
    })  # fmt: skip


def _rows_of(count: int) -> str:
    return f"{count} row{'s' if count > 1 else ''}"


def row_place(index: int, csv: bool) -> str:
    # a CSV's header is line 1; elsewhere rows count from 1
    return f"line {index + 2}" if csv else f"row {index + 1}"


def cell_values(column: pd.Series[Any]) -> list[tuple[Any, bool]]:
    """Each value with whether it is missing (null, NaN, NaT or blank text)."""
    nulls = column.isna().tolist()
    values = column.tolist()
    return [
        (v, bool(null) or (isinstance(v, str) and not v.strip()))
        for v, null in zip(values, nulls, strict=True)
    ]


def request_ids(column: pd.Series[Any], what: str, csv: bool) -> list[str]:
    values = cell_values(column)
    bad = [i for i, (_, missing) in enumerate(values) if missing]
    if bad:
        raise InvalidInputError(
            f"{_rows_of(len(bad))} in {what} {'have' if len(bad) > 1 else 'has'} no request_id "
            f"(first at {row_place(bad[0], csv)}); fill or drop them."
        )
    return [_text(v) for v, _ in values]


def row_numbers(column: pd.Series[Any], what: str, csv: bool) -> list[int]:
    out = []
    for i, (value, missing) in enumerate(cell_values(column)):
        if missing:
            out.append(0)
            continue
        number = _number(value)
        if number is None or not number.is_integer() or number < 0:
            raise InvalidInputError(
                f"Row {value!r} at {row_place(i, csv)} of {what} is not a row number; row is the "
                "0-based row of a multi-row request (0 for single rows)."
            )
        out.append(int(number))
    return out


def _labels(column: pd.Series[Any], what: str, csv: bool) -> tuple[list[str], list[float | None]]:
    texts: list[str] = []
    numbers: list[float | None] = []
    bad = []
    for i, (value, missing) in enumerate(cell_values(column)):
        if missing:
            bad.append(i)
            continue
        if isinstance(value, list | tuple | dict | set | bytes):
            raise InvalidInputError(
                f"Label {value!r} at {row_place(i, csv)} of {what} is not one number, string or "
                "boolean."
            )
        texts.append(_text(value))
        numbers.append(_number(value))
    if bad:
        raise InvalidInputError(
            f"{_rows_of(len(bad))} in {what} {'have' if len(bad) > 1 else 'has'} no label "
            f"(first at {row_place(bad[0], csv)}); fill or drop them."
        )
    return texts, numbers


def _check_rule(
    rule: LabelRule, values: list[Any], numbers: list[float | None], *, ids: list[str], what: str,
    csv: bool,
) -> None:  # fmt: skip
    for i, (value, number) in enumerate(zip(values, numbers, strict=True)):
        why = rule.refusal(value, number)
        if why is not None:
            shown = value if not isinstance(value, str) or len(value) <= 40 else value[:40] + "..."
            raise InvalidInputError(
                f"Label {shown!r} of request {ids[i]!r} ({row_place(i, csv)} of {what}) {why}"
            )


def label_text(value: Any) -> str:
    """The stored text of a label or class: ``1`` for 1 and 1.0, ``true`` for True."""
    return _text(value)


def label_number(value: Any) -> float | None:
    """The stored number of a label or class (``None`` when it is not one)."""
    return _number(value)


def _text(value: Any) -> str:
    if isinstance(value, bool | np.bool_):
        return "true" if value else "false"
    if isinstance(value, float | np.floating):
        number = float(value)
        return str(int(number)) if number.is_integer() else repr(number)
    if isinstance(value, int | np.integer):
        return str(int(value))
    return str(value)


def _number(value: Any) -> float | None:
    if isinstance(value, bool | np.bool_):
        return 1.0 if value else 0.0
    try:
        number = float(value)
    except (TypeError, ValueError, OverflowError):
        return None
    return number if math.isfinite(number) else None


def check_duplicates(ids: list[str], rows: list[int], what: str, noun: str = "label") -> None:
    """Refuse a ``(request_id, row)`` given twice in one ingest (``noun``: label, outcome)."""
    seen: set[tuple[str, int]] = set()
    repeated: dict[tuple[str, int], None] = {}
    for key in zip(ids, rows, strict=True):
        if key in seen:
            repeated[key] = None
        seen.add(key)
    if repeated:
        shown = ", ".join(
            repr(rid) if row == 0 else f"{rid!r} row {row}" for rid, row in list(repeated)[:_SHOWN]
        )
        more = f" and {len(repeated) - _SHOWN} more" if len(repeated) > _SHOWN else ""
        count = len(repeated)
        raise InvalidInputError(
            f"{count} request id{'s' if count > 1 else ''} {'appear' if count > 1 else 'appears'}"
            f" more than once in {what} ({shown}{more}); keep one {noun} per request (and row)."
        )


def times_of(column: pd.Series[Any], what: str, csv: bool, default: datetime) -> list[datetime]:
    return [
        default if missing else _time(v, i, what, csv)
        for i, (v, missing) in enumerate(cell_values(column))
    ]


def _time(value: Any, index: int, what: str, csv: bool) -> datetime:
    import pandas as pd

    stamp: pd.Timestamp | None = None
    try:
        if isinstance(value, str) and not _numeric_text(value):
            stamp = pd.Timestamp(value.strip())
        elif isinstance(value, datetime | np.datetime64):
            stamp = pd.Timestamp(value)
        else:
            number = _number(value)
            if number is not None:  # epoch seconds
                return datetime.fromtimestamp(number, UTC)
    except (ValueError, TypeError, OverflowError, OSError):
        stamp = None
    if stamp is None or pd.isna(stamp):
        raise InvalidInputError(
            f"Time {value!r} at {row_place(index, csv)} of {what} is neither an ISO 8601 time "
            "(2026-05-01T12:00:00Z) nor epoch seconds."
        )
    # naive times are taken as UTC
    stamp = stamp.tz_localize(UTC) if stamp.tzinfo is None else stamp.tz_convert(UTC)
    result: datetime = stamp.to_pydatetime()
    return result


def _numeric_text(value: str) -> bool:
    text = value.strip().lstrip("+-")
    return bool(text) and text.replace(".", "", 1).isdigit()
