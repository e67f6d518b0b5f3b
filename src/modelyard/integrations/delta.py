"""Delta Lake tables as training data: ``load_table("delta://path", version=N)``.

A ``delta://`` URI names a Delta table by its folder (``delta:///abs/path``, ``delta://rel/path``)
or by an object-store URL (``delta://s3://bucket/table``); ``version`` picks a table version
(time travel), the latest when left out. What was read is recorded as a ``DataSource`` with the
absolute URI and the version actually read, so the lineage can name it again exactly. The
``deltalake`` package (the ``delta`` extra) is imported only here, when a table is read.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from modelyard.core.types import DataSource
from modelyard.errors import ConfigError, InvalidInputError, NotFoundError, StorageError

if TYPE_CHECKING:
    import pandas as pd

__all__ = ["EXTRA_HINT", "SCHEME", "is_delta_uri", "read_delta", "table_version"]

SCHEME = "delta://"
EXTRA_HINT = "pip install 'modelyard[delta]'"


def is_delta_uri(path: object) -> bool:
    return isinstance(path, str) and path.startswith(SCHEME)


def read_delta(uri: str, version: int | None = None) -> tuple[pd.DataFrame, DataSource]:
    """The table at ``uri`` (``delta://...``) as of ``version`` (latest when ``None``), and the
    source to record."""
    table, location = _open(uri, version)
    try:
        frame = table.to_pandas()
    except Exception as exc:  # deltalake raises its own and pyarrow's errors for bad files
        raise StorageError(f"Cannot read Delta table {uri!r}: {exc}") from exc
    return frame, DataSource(kind="delta", uri=SCHEME + location, version=table.version())


def table_version(uri: str, version: int | None = None) -> tuple[str, int]:
    """The absolute ``delta://`` URI and the version ``version`` resolves to (the latest when
    ``None``): what a pipeline's cache key holds for a table, read without reading its data."""
    table, location = _open(uri, version)
    return SCHEME + location, int(table.version())


def _open(uri: str, version: int | None) -> tuple[Any, str]:
    deltalake = _deltalake()
    location = _location(uri)
    if version is not None and (isinstance(version, bool) or not isinstance(version, int)):
        raise InvalidInputError(
            f"Delta table version {version!r} of {uri!r} is not a whole number; pass version=N."
        )
    try:
        latest = deltalake.DeltaTable(location)
    except deltalake.exceptions.TableNotFoundError:
        raise NotFoundError(
            f"No Delta table at {uri!r} (looked in {location}); check the path, or write the "
            "table first (deltalake.write_deltalake)."
        ) from None
    except deltalake.exceptions.DeltaError as exc:
        raise StorageError(f"Cannot open Delta table {uri!r}: {exc}") from exc
    if version is None or version == latest.version():
        return latest, location
    if not 0 <= version <= latest.version():
        raise NotFoundError(
            f"Delta table {uri!r} has no version {version} (versions 0 to {latest.version()}); "
            "pass one of them or leave version out for the latest."
        )
    try:
        return deltalake.DeltaTable(location, version=version), location
    except deltalake.exceptions.DeltaError as exc:  # the version's log was cleaned up
        raise NotFoundError(
            f"Delta table {uri!r} cannot be read as of version {version} ({exc}); the log of "
            "that version may have been vacuumed: pick a later one."
        ) from None


def _location(uri: str) -> str:
    rest = uri[len(SCHEME) :]
    if not rest:
        raise InvalidInputError(
            f"{uri!r} names no table; write delta://<folder> or delta://s3://bucket/table."
        )
    if "://" in rest:
        return rest.rstrip("/")
    return str(Path(rest).expanduser().resolve())


def _deltalake() -> Any:
    try:
        import deltalake
        import deltalake.exceptions
    except ImportError:
        raise ConfigError(
            f"Reading Delta tables needs the deltalake package; run {EXTRA_HINT}."
        ) from None
    return deltalake
