"""Run by an interpreter that has the ``feast`` package (``FeastSettings.python``), never
imported by modelyard: Feast 0.67 requires pandas < 3 and prometheus-client < 0.25, which
modelyard's environment cannot hold, so its Python API runs in a process of its own.

``python _feast_worker.py historical REPO SERVICE ENTITIES OUT`` reads the entity rows (Parquet:
join keys, ``event_timestamp``, any label columns), runs Feast's point-in-time historical
retrieval for the feature service and writes the result to ``OUT`` (Parquet); it prints one JSON
object describing the service: its entity join keys with numpy dtypes, its features in order,
and each feature view's name, version and sha256 of its definition. An error is one JSON object
``{"error": "..."}`` and exit status 2.
"""

from __future__ import annotations

import hashlib
import json
import sys
from typing import Any

#: Feast's value types as numpy dtype names (what modelyard's signatures use).
_DTYPES = {
    "Int32": "int32", "Int64": "int64", "Float32": "float32", "Float64": "float64",
    "String": "string", "Bool": "bool", "UnixTimestamp": "datetime64[ns]",
}  # fmt: skip


def describe(store: Any, service_name: str) -> dict[str, Any]:
    service = store.get_feature_service(service_name)
    keys: dict[str, str] = {}
    features: list[str] = []
    views = []
    for projection in service.feature_view_projections:
        view = store.get_feature_view(projection.name)
        spec = view.to_proto().spec.SerializeToString(deterministic=True)
        number = getattr(view, "current_version_number", None)
        views.append({
            "name": view.name,
            "version": f"v{number}" if number is not None else str(getattr(view, "version", "")),
            "sha256": hashlib.sha256(spec).hexdigest(),
            "features": [f.name for f in projection.features],
        })  # fmt: skip
        features.extend(f.name for f in projection.features)
        for column in view.entity_columns:
            keys[column.name] = _DTYPES.get(str(column.dtype), "string")
    return {
        "project": store.project,
        "service": service.name,
        "entity_keys": [{"name": k, "dtype": v} for k, v in keys.items()],
        "features": features,
        "feature_views": views,
    }


def historical(repo: str, service_name: str, entities: str, out: str) -> dict[str, Any]:
    import pandas as pd
    from feast import FeatureStore

    store = FeatureStore(repo_path=repo)
    info = describe(store, service_name)
    entity_df = pd.read_parquet(entities)
    missing = [k["name"] for k in info["entity_keys"] if k["name"] not in entity_df.columns]
    if "event_timestamp" not in entity_df.columns:
        missing.append("event_timestamp")
    if missing:
        raise KeyError(
            f"The entity rows lack {', '.join(missing)}; feature service {service_name!r} needs "
            "its join keys and event_timestamp in each row"
        )
    service = store.get_feature_service(service_name)
    job = store.get_historical_features(entity_df=entity_df, features=service)
    job.to_df().to_parquet(out)
    return info


def main(argv: list[str]) -> int:
    try:
        if argv[:1] == ["historical"] and len(argv) == 5:
            result = historical(*argv[1:])
        else:
            raise ValueError("usage: historical REPO SERVICE ENTITIES OUT")
    except Exception as exc:  # the process edge: one line for modelyard to show
        line = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        print(json.dumps({"error": f"{type(exc).__name__}: {line}"}))
        return 2
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
