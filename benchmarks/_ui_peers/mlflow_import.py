"""Run by MLflow's own virtualenv (``benchmarks/ui.py``): create MLflow's schema in a SQLite file
with MLflow's own stores, then bulk-insert the registry content ``ui.py`` exported from modelyard
(registered models, model versions with their tags and aliases, and one run per version holding
its metrics and params) through MLflow's SQLAlchemy models: creating 10,000 versions one REST call
at a time would take longer than the benchmark itself.

    python mlflow_import.py CONTENT.json sqlite:///PATH/mlflow.db ARTIFACT_ROOT
"""

import json
import sys
import time
import uuid
from pathlib import Path

from mlflow.store.model_registry.dbmodels.models import (
    SqlModelVersion,
    SqlModelVersionTag,
    SqlRegisteredModel,
    SqlRegisteredModelAlias,
)
from mlflow.store.model_registry.sqlalchemy_store import SqlAlchemyStore as RegistryStore
from mlflow.store.tracking.dbmodels.models import SqlLatestMetric, SqlMetric, SqlParam, SqlRun
from mlflow.store.tracking.sqlalchemy_store import SqlAlchemyStore as TrackingStore


def main() -> None:
    content_path, uri, artifacts = sys.argv[1:4]
    content = json.loads(Path(content_path).read_text())
    started = time.perf_counter()
    tracking = TrackingStore(uri, artifacts)
    RegistryStore(uri)
    experiment = tracking.create_experiment("modelyard-import")
    models, versions, tags, model_aliases = [], [], [], []
    runs, metrics, latest, params = [], [], [], []
    for model in content:
        name = model["name"]
        stamps = [v["created_ms"] for v in model["versions"]]
        models.append(
            {
                "name": name,
                "creation_time": min(stamps),
                "last_updated_time": max(stamps),
                "description": None,
            }
        )
        for alias, version in model["aliases"].items():
            model_aliases.append({"name": name, "alias": alias, "version": version})
        for v in model["versions"]:
            run = uuid.uuid4().hex
            runs.append(
                {
                    "run_uuid": run,
                    "name": f"{name}-{v['version']}",
                    "user_id": "bench",
                    "status": "FINISHED",
                    "start_time": v["created_ms"],
                    "end_time": v["created_ms"],
                    "lifecycle_stage": "active",
                    "experiment_id": int(experiment),
                    "source_type": "LOCAL",
                    "source_name": "",
                    "entry_point_name": "",
                    "source_version": "",
                    "artifact_uri": f"{artifacts}/{run}/artifacts",
                }
            )
            for key, value in v["metrics"].items():
                row = {
                    "run_uuid": run,
                    "key": key,
                    "value": float(value),
                    "timestamp": v["created_ms"],
                    "step": 0,
                    "is_nan": False,
                }
                metrics.append(row)
                latest.append(dict(row))
            for key, value in v["params"].items():
                params.append({"run_uuid": run, "key": key, "value": str(value)})
            versions.append(
                {
                    "name": name,
                    "version": v["version"],
                    "creation_time": v["created_ms"],
                    "last_updated_time": v["created_ms"],
                    "description": None,
                    "user_id": v["created_by"],
                    "current_stage": "None",
                    "source": f"{artifacts}/{run}/artifacts/model",
                    "storage_location": f"{artifacts}/{run}/artifacts/model",
                    "run_id": run,
                    "run_link": None,
                    "status": "READY",
                    "status_message": None,
                }
            )
            for key, value in v["tags"].items():
                tags.append({"name": name, "version": v["version"], "key": key, "value": value})
    with tracking.ManagedSessionMaker() as session:
        session.bulk_insert_mappings(SqlRun, runs)
        session.bulk_insert_mappings(SqlMetric, metrics)
        session.bulk_insert_mappings(SqlLatestMetric, latest)
        session.bulk_insert_mappings(SqlParam, params)
        session.bulk_insert_mappings(SqlRegisteredModel, models)
        session.bulk_insert_mappings(SqlModelVersion, versions)
        session.bulk_insert_mappings(SqlModelVersionTag, tags)
        session.bulk_insert_mappings(SqlRegisteredModelAlias, model_aliases)
    print(
        json.dumps(
            {
                "models": len(models),
                "versions": len(versions),
                "tags": len(tags),
                "runs": len(runs),
                "seconds": time.perf_counter() - started,
            }
        )
    )


if __name__ == "__main__":
    main()
