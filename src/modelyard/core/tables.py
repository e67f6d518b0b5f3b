"""Reading a user's table file (CSV or Parquet) with one-line errors for the usual mistakes.

Light on purpose: pandas is imported when a file is read, so the CLI commands that take a data
file (``yard gate``, ``yard monitor drift``) share it without importing each other's stacks.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from modelyard.errors import InvalidInputError

if TYPE_CHECKING:
    import pandas as pd

__all__ = ["read_data_file"]


def read_data_file(path: str | Path, what: str) -> pd.DataFrame:
    """The CSV or Parquet file at ``path`` (the ``what`` file, in messages) as a DataFrame."""
    import pandas as pd

    file = Path(path)
    if not file.is_file():
        raise InvalidInputError(f"The {what} file {str(file)!r} does not exist; check the path.")
    suffix = file.suffix.lower()
    try:
        if suffix == ".csv":
            return pd.read_csv(file)
        if suffix in (".parquet", ".pq"):
            return pd.read_parquet(file)
    except (ValueError, OSError) as exc:
        raise InvalidInputError(f"Cannot read the {what} file {str(file)!r}: {exc}") from exc
    raise InvalidInputError(
        f"The {what} file {str(file)!r} is neither CSV nor Parquet; pass a .csv or .parquet file."
    )
