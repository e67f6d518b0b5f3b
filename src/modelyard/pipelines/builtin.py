"""Built-in steps. Each is an ordinary ``@step``.

- ``load_table(path)``: a CSV (``.csv``, ``.csv.gz``, ``.tsv``) or Parquet (``.parquet``, ``.pq``)
  file as a DataFrame. ``path`` is an input file: it must exist before the run starts when it is a
  parameter, and the file's content (not its name) is in the cache key.
- ``split(table, target=None, test_size=0.2, seed=0)``: train and test DataFrames
  (``Split(train, test)``), stratified by ``target`` when it is given.
- ``validate``, ``evaluate``, ``register``, ``gate`` and ``deploy_canary``: see
  ``modelyard.pipelines._model_steps``.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, NamedTuple

from modelyard.errors import InvalidInputError
from modelyard.pipelines._model_steps import deploy_canary, evaluate, gate, register, validate
from modelyard.pipelines.steps import step

if TYPE_CHECKING:
    import pandas as pd

__all__ = [
    "Split",
    "deploy_canary",
    "evaluate",
    "gate",
    "load_table",
    "register",
    "split",
    "validate",
]

_CSV = (".csv", ".tsv", ".txt")
_PARQUET = (".parquet", ".pq")


@step(input_files=("path",))
def load_table(path: str) -> pd.DataFrame:
    """Read a CSV or Parquet file."""
    import pandas as pd

    file = Path(path)
    suffixes = [s.lower() for s in file.suffixes]
    if suffixes and suffixes[-1] in (".gz", ".bz2", ".zip", ".xz", ".zst"):
        suffixes = suffixes[:-1]
    suffix = suffixes[-1] if suffixes else ""
    if not file.is_file():
        raise InvalidInputError(f"Input file {path!r} does not exist; check the path.")
    if suffix in _PARQUET:
        return pd.read_parquet(file)
    if suffix in _CSV:
        return pd.read_csv(file, sep="\t" if suffix == ".tsv" else ",")
    raise InvalidInputError(
        f"Cannot read {path!r}: load_table reads .csv, .tsv and .parquet files (optionally "
        "compressed); convert the file or write a step that reads it."
    )


class Split(NamedTuple):
    train: pd.DataFrame
    test: pd.DataFrame


@step
def split(
    table: pd.DataFrame, target: str | None = None, test_size: float = 0.2, seed: int = 0
) -> Split:
    """Split rows at random into train and test (stratified by ``target`` when given)."""
    from sklearn.model_selection import train_test_split

    if not 0 < test_size < 1:
        raise InvalidInputError(f"test_size must be between 0 and 1, got {test_size}.")
    if target is not None and target not in table.columns:
        raise InvalidInputError(
            f"Target column {target!r} is not in the table; its columns are: "
            f"{', '.join(map(str, table.columns))}."
        )
    stratify = table[target] if target is not None else None
    train, test = train_test_split(table, test_size=test_size, random_state=seed, stratify=stratify)
    return Split(train, test)
