"""Feast's offline side: training data by point-in-time historical retrieval, and the skew check
between the online store and the offline store.

Both run Feast's own Python API in a process of its own (``_feast_worker.py`` under
``FeastSettings.python``: Feast 0.67 requires pandas < 3, which modelyard's environment cannot
hold); rows travel as Parquet files.
"""

from __future__ import annotations

import json
import math
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from modelyard.errors import ConfigError, InvalidInputError

if TYPE_CHECKING:
    import pandas as pd

WORKER = Path(__file__).with_name("_feast_worker.py")
#: How long one historical retrieval may take before it is given up.
TIMEOUT_S = 600.0
#: Runs the worker file without putting its folder first on ``sys.path``, where this
#: package's ``feast.py`` and ``mlflow.py`` would hide the real packages.
_RUN_WORKER = (
    "import runpy, sys; sys.argv = sys.argv[1:]; runpy.run_path(sys.argv[0], run_name='__main__')"
)


@dataclass(frozen=True)
class TrainingData:
    """The feature service's features for each entity row, as of its ``event_timestamp``."""

    #: The features (in the service's order), then the entity rows' other columns (labels).
    table: pd.DataFrame
    #: The worker's description: entity keys, features, feature views with versions and hashes.
    info: dict[str, Any]


def historical_features(
    entities: pd.DataFrame, *, repo: str, service: str, python: str
) -> tuple[pd.DataFrame, dict[str, Any]]:
    """Feast's ``get_historical_features`` for ``entities`` (join keys and ``event_timestamp``),
    all columns, and the service's description."""
    import pandas as pd

    if not (Path(repo) / "feature_store.yaml").is_file():
        raise ConfigError(
            f"{repo!r} is not a Feast repository (no feature_store.yaml); give the folder "
            "'feast apply' ran in."
        )
    with tempfile.TemporaryDirectory(prefix="modelyard-feast-") as tmp:
        given, out = Path(tmp) / "entities.parquet", Path(tmp) / "features.parquet"
        entities.to_parquet(given, index=False)
        try:
            done = subprocess.run(
                [python, "-c", _RUN_WORKER, str(WORKER), "historical", repo, service,
                 str(given), str(out)],
                capture_output=True, text=True, timeout=TIMEOUT_S, check=False, cwd=tmp,
            )  # fmt: skip
        except FileNotFoundError as exc:
            raise ConfigError(
                f"No Python at {python!r} to run Feast; set MODELYARD_FEAST__PYTHON to an "
                "interpreter that has the feast package (make feast-server makes one)."
            ) from exc
        lines = done.stdout.strip().splitlines()
        try:
            answer = json.loads(lines[-1]) if lines else {}
        except json.JSONDecodeError:
            answer = {}
        if done.returncode != 0 or "error" in answer or not answer:
            why = answer.get("error") or (done.stderr.strip().splitlines() or ["no output"])[-1]
            raise InvalidInputError(
                f"Feast could not build training data from feature service {service!r} in "
                f"{repo!r}: {why}."
            )
        return pd.read_parquet(out), answer


def training_data(entities: pd.DataFrame, *, repo: str, service: str, python: str) -> TrainingData:
    """The training table: the service's features, then the entity rows' other columns."""
    frame, info = historical_features(entities, repo=repo, service=service, python=python)
    keys = [k["name"] for k in info["entity_keys"]]
    extras = [c for c in entities.columns if c not in keys and c != "event_timestamp"]
    table = frame[[*info["features"], *extras]].reset_index(drop=True)
    return TrainingData(table, info)


@dataclass(frozen=True)
class SkewReport:
    """Online values against offline values for the same entities, per feature."""

    service: str
    rows: int
    #: The share of rows whose online value differs from the offline one (missing on one side
    #: counts as a mismatch), per feature.
    mismatch_share: dict[str, float]

    @property
    def worst(self) -> float:
        return max(self.mismatch_share.values(), default=0.0)


def check_skew(
    entities: pd.DataFrame,
    online: dict[str, list[Any]],
    *,
    repo: str,
    service: str,
    python: str,
    tolerance: float = 1e-9,
) -> SkewReport:
    """Compare ``online`` (feature -> values for ``entities``' rows, from the online store) with
    the offline store's values as of each row's ``event_timestamp`` (now, for a live check)."""
    frame, info = historical_features(entities, repo=repo, service=service, python=python)
    keys = [k["name"] for k in info["entity_keys"]]
    frame = entities[keys].merge(frame.drop_duplicates(subset=keys), on=keys, how="left")
    shares: dict[str, float] = {}
    for feature in info["features"]:
        offline = frame[feature].tolist()
        values = online.get(feature, [None] * len(offline))
        differ = sum(not _same(a, b, tolerance) for a, b in zip(values, offline, strict=True))
        shares[feature] = differ / len(offline) if offline else 0.0
    return SkewReport(service, len(frame), shares)


def _same(a: Any, b: Any, tolerance: float) -> bool:
    missing_a = a is None or (isinstance(a, float) and math.isnan(a))
    missing_b = b is None or (isinstance(b, float) and math.isnan(b))
    if missing_a or missing_b:
        return missing_a and missing_b
    if isinstance(a, (int, float)) and isinstance(b, (int, float)):
        return math.isclose(a, b, rel_tol=tolerance, abs_tol=tolerance)
    return bool(a == b)


def measure_skew(
    entities: pd.DataFrame, *, repo: str, service: str, url: str, python: str, timeout_s: float
) -> SkewReport:
    """``check_skew`` with the online values from Feast's feature server at ``url``, for the
    entity rows in ``entities`` (its columns other than ``event_timestamp`` are the join keys;
    without ``event_timestamp`` the offline values are read as of now)."""
    import pandas as pd

    from modelyard.integrations.feast import FeastOnlineFeatures

    keys = [c for c in entities.columns if c != "event_timestamp"]
    if not keys or entities.empty:
        raise InvalidInputError(
            "The entity rows are empty or have no join key columns; give a table with the "
            "feature service's join keys (e.g. customer_id)."
        )
    rows = entities.drop_duplicates(subset=keys).reset_index(drop=True)
    if "event_timestamp" not in rows.columns:
        rows = rows.assign(event_timestamp=pd.Timestamp.now(tz="UTC"))
    else:  # a CSV's timestamps are text
        rows["event_timestamp"] = pd.to_datetime(rows["event_timestamp"], utc=True)
    source = FeastOnlineFeatures(url, service, (), timeout_s=timeout_s)
    try:
        online = source.fetch({k: rows[k].tolist() for k in keys}).columns
    finally:
        source.close()
    return check_skew(rows, online, repo=repo, service=service, python=python)
