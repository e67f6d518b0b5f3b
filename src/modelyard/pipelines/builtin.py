"""Built-in steps. Each is an ordinary ``@step``.

- ``load_table(path, version=None)``: a CSV (``.csv``, ``.csv.gz``, ``.tsv``) or Parquet
  (``.parquet``, ``.pq``) file as a DataFrame. ``path`` is an input file: it must exist before the
  run starts when it is a parameter, and the file's content (not its name) is in the cache key.
  ``delta://<table>`` reads a Delta Lake table as of ``version`` (the latest when left out; the
  version read is in the cache key). A file tracked by DVC (a ``.dvc`` file or ``dvc.lock`` in a
  DVC repository) is read as DVC tracks it, and ``dvc://<path>`` with ``version=<git rev>`` reads
  it as of that revision. The frame carries where it came from (``core.datasources``) to the
  lineage of a version registered on it (``modelyard.integrations.delta`` and ``.dvc``).
- ``split(table, target=None, test_size=0.2, seed=0)``: train and test DataFrames
  (``Split(train, test)``), stratified by ``target`` when it is given.
- ``feast_training_data(entities, service, repo)``: Feast's point-in-time historical retrieval
  from a feature service for entity rows (a CSV or Parquet file: join keys, ``event_timestamp``,
  labels): ``FeastTrainingData(table, tags)``; pass ``tags`` to ``register`` so that the version
  declares the service (``yard serve --feast-url`` then fetches the same features online).
- ``validate``, ``evaluate``, ``register``, ``gate`` and ``deploy_canary``: see
  ``modelyard.pipelines._model_steps``.
- ``tune(table, target, estimator, space, n_trials=20, ...)``: an Optuna study whose best model
  flows on to ``evaluate`` and ``register``; see ``modelyard.pipelines.tune``.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Literal, NamedTuple

from modelyard.errors import InvalidInputError
from modelyard.pipelines._model_steps import deploy_canary, evaluate, gate, register, validate
from modelyard.pipelines.steps import step
from modelyard.pipelines.tune import tune

if TYPE_CHECKING:
    import pandas as pd

__all__ = [
    "FeastTrainingData",
    "Split",
    "deploy_canary",
    "evaluate",
    "feast_training_data",
    "gate",
    "load_table",
    "register",
    "split",
    "tune",
    "validate",
]

_CSV = (".csv", ".tsv", ".txt")
_PARQUET = (".parquet", ".pq")
_COMPRESSION: dict[str, Literal["gzip", "bz2", "zip", "xz", "zstd"]] = {
    ".gz": "gzip", ".bz2": "bz2", ".zip": "zip", ".xz": "xz", ".zst": "zstd",
}  # fmt: skip


@step(input_files=("path",))
def load_table(path: str, version: int | str | None = None) -> pd.DataFrame:
    """Read a CSV or Parquet file, a Delta table (``delta://``) or a DVC-tracked file."""
    from modelyard.core.datasources import attach_sources
    from modelyard.integrations import delta, dvc

    if delta.is_delta_uri(path):
        if isinstance(version, str):
            raise InvalidInputError(
                f"Delta table version {version!r} of {path!r} is not a whole number; pass "
                "version=N."
            )
        frame, source = delta.read_delta(path, version)
        attach_sources(frame, (source,))
        return frame
    if dvc.is_dvc_uri(path) or dvc.tracked_candidate(path):
        if isinstance(version, int):
            raise InvalidInputError(
                f"version={version} of {path!r} is not a git revision; DVC files take "
                "version='<tag, branch or commit>'."
            )
        data, tracked = dvc.resolve_dvc(path, version)
        if tracked is not None:
            frame = _read(data, str(path))
            attach_sources(frame, (tracked,))
            return frame
    elif version is not None:
        raise InvalidInputError(
            f"version={version!r} applies to delta:// tables and DVC-tracked files, not to "
            f"{path!r}; leave it out."
        )
    return _read(Path(path), path)


def _read(data: Path | bytes, path: str) -> pd.DataFrame:
    import io

    import pandas as pd

    file = Path(path.removeprefix("dvc://"))
    suffixes = [s.lower() for s in file.suffixes]
    if suffixes and suffixes[-1] in (".gz", ".bz2", ".zip", ".xz", ".zst"):
        suffixes = suffixes[:-1]
    suffix = suffixes[-1] if suffixes else ""
    if isinstance(data, Path) and not data.is_file():
        raise InvalidInputError(f"Input file {path!r} does not exist; check the path.")
    source = io.BytesIO(data) if isinstance(data, bytes) else data
    compression = "infer" if isinstance(data, Path) else _COMPRESSION.get(file.suffix.lower())
    if suffix in _PARQUET:
        return pd.read_parquet(source)
    if suffix in _CSV:
        return pd.read_csv(source, sep="\t" if suffix == ".tsv" else ",", compression=compression)
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


class FeastTrainingData(NamedTuple):
    table: pd.DataFrame
    #: The version tags that declare the feature service and record its feature views' names,
    #: versions and definition hashes (``modelyard.integrations.feast.feast_tags``).
    tags: dict[str, str]


# Not cached: the features live in Feast's offline store, outside the cache key.
@step(cache=False, input_files=("entities",))
def feast_training_data(
    entities: str, service: str, repo: str, python: str | None = None
) -> FeastTrainingData:
    """The features of Feast feature service ``service`` (repository ``repo``) for each entity
    row as of its ``event_timestamp`` (point in time), then the rows' other columns (labels).
    ``python``: an interpreter with Feast (default ``MODELYARD_FEAST__PYTHON``)."""
    from modelyard.core.datasources import attach_sources, sources_of
    from modelyard.integrations.feast import feast_source, feast_tags
    from modelyard.integrations.feast_offline import training_data
    from modelyard.settings import Settings

    repo = str(Path(repo).resolve())
    rows = load_table.fn(entities)
    data = training_data(
        rows, repo=repo, service=service,
        python=python or Settings().feast.python,
    )  # fmt: skip
    # the version registered on the table records the service and its feature views
    attach_sources(data.table, (*sources_of(rows), feast_source(data.info, repo)))
    return FeastTrainingData(data.table, feast_tags(data.info))
