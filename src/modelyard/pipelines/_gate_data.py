"""The labelled data a gate scores: read it, check its target and slice columns, and pick each
model's feature columns (see ``gate``'s docstring for the rules)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from modelyard.core.tables import read_data_file
from modelyard.errors import InvalidInputError, SignatureMismatchError

if TYPE_CHECKING:
    import pandas as pd

    from modelyard.core.types import ModelVersion

MAX_SLICE_VALUES = 100


def read_labelled(data: pd.DataFrame | str | Path) -> pd.DataFrame:
    import pandas as pd

    if isinstance(data, pd.DataFrame):
        frame, where = data, "The data"
    else:
        frame, where = read_data_file(data, "data"), f"The data file {str(data)!r}"
    if len(frame) == 0:
        raise InvalidInputError(f"{where} has no rows; give labelled rows to score the models.")
    return frame


def check_target(frame: pd.DataFrame, target: str) -> None:
    if target not in frame.columns:
        raise InvalidInputError(
            f"The data has no target column {target!r}; its columns are "
            f"{listed(frame.columns)}: pass one with --target."
        )
    missing = int(frame[target].isna().sum())
    if missing:
        raise InvalidInputError(
            f"The target column {target!r} has {missing} missing value(s); drop those rows."
        )


def listed(names: Sequence[Any] | pd.Index) -> str:
    shown = [str(n) for n in list(names)[:20]]
    more = f" and {len(names) - 20} more" if len(names) > 20 else ""
    return ", ".join(shown) + more


def slice_columns(frame: pd.DataFrame, slices: Sequence[str], named: Sequence[str]) -> list[str]:
    """``slices`` and the columns thresholds name, each once, checked against ``frame``."""
    columns = list(dict.fromkeys([*slices, *named]))
    for column in columns:
        if column not in frame.columns:
            raise InvalidInputError(
                f"The data has no slice column {column!r}; its columns are {listed(frame.columns)}."
            )
        count = frame[column].nunique()
        if count > MAX_SLICE_VALUES:
            raise InvalidInputError(
                f"Slice column {column!r} has {count} distinct values (at most "
                f"{MAX_SLICE_VALUES}); slice by a column with fewer values."
            )
    return columns


def features_for(
    frame: pd.DataFrame, version: ModelVersion, *, target: str, slices: Sequence[str]
) -> pd.DataFrame:
    """The columns ``version`` takes: its signature's columns; for a tensor signature every
    column but the target (and, when that is one too many, but the slice columns)."""
    signature = version.signature
    rest = [c for c in frame.columns if c != target]
    if signature is None:
        return frame[rest]
    if signature.kind == "columns":
        missing = [n for n in signature.column_names if n not in frame.columns]
        if missing:
            raise SignatureMismatchError(
                f"The data lacks feature column(s) {listed(missing)} that {version.ref} takes; "
                f"its columns are {listed(frame.columns)}."
            )
        return frame[signature.column_names]
    width = signature.n_features
    for columns in (rest, [c for c in rest if c not in slices]):
        if len(columns) == width:
            return frame[columns]
    raise SignatureMismatchError(
        f"{version.ref} takes {width} features but the data has {len(rest)} columns besides "
        f"the target {target!r}; give exactly its feature columns and the target."
    )
