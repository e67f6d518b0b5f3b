"""A modelyard run mirrored to an MLflow run (``modelyard.start_run(..., mirror="mlflow")``).

The MLflow run is created when the modelyard run starts, in ``experiment`` (default
``Default``), tagged with the modelyard run's id; params, metrics and tags go to both, and the
MLflow run ends with the same status. A metric logged again is a new point of its MLflow history
(step 1, 2...) while modelyard keeps the last value.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Literal

from modelyard.integrations._mlflow_client import mlflow_client, mlflow_errors

if TYPE_CHECKING:
    from mlflow import MlflowClient

    from modelyard.registry import ActiveRun, Registry

_STATUS = {"finished": "FINISHED", "failed": "FAILED"}


class MlflowRunMirror:
    """Sends a run's params, metrics, tags and end to one MLflow run (a ``RunMirror``)."""

    name = "mlflow"

    def __init__(self, client: MlflowClient, run_id: str, *, tracking_uri: str) -> None:
        self.client = client
        self.run_id = run_id
        self.link_tags = {"mlflow.run_id": run_id}
        self.tracking_uri = tracking_uri
        self._steps: dict[str, int] = {}

    def log_params(self, params: dict[str, str]) -> None:
        from mlflow.entities import Param

        with mlflow_errors(f"the params of run {self.run_id!r}", self.tracking_uri):
            self.client.log_batch(self.run_id, params=[Param(k, v) for k, v in params.items()])

    def log_metrics(self, metrics: dict[str, float]) -> None:
        from mlflow.entities import Metric

        now_ms = int(time.time() * 1000)
        points = []
        for key, value in metrics.items():
            step = self._steps.get(key, -1) + 1
            self._steps[key] = step
            points.append(Metric(key, value, now_ms, step))
        with mlflow_errors(f"the metrics of run {self.run_id!r}", self.tracking_uri):
            self.client.log_batch(self.run_id, metrics=points)

    def set_tags(self, tags: dict[str, str]) -> None:
        from mlflow.entities import RunTag

        with mlflow_errors(f"the tags of run {self.run_id!r}", self.tracking_uri):
            self.client.log_batch(self.run_id, tags=[RunTag(k, v) for k, v in tags.items()])

    def end(self, status: Literal["finished", "failed"]) -> None:
        with mlflow_errors(f"the end of run {self.run_id!r}", self.tracking_uri):
            self.client.set_terminated(self.run_id, status=_STATUS[status])


def open_mlflow_mirror(
    name: str | None, *, tracking_uri: str | None, experiment: str | None = None
) -> MlflowRunMirror:
    """A new MLflow run named ``name`` in ``experiment`` (created when missing; default
    ``Default``) on the server at ``tracking_uri``."""
    client = mlflow_client(tracking_uri)
    assert tracking_uri is not None
    where = experiment or "Default"
    with mlflow_errors(f"experiment {where!r}", tracking_uri):
        found = client.get_experiment_by_name(where)
        experiment_id = found.experiment_id if found else client.create_experiment(where)
        mlflow_run = client.create_run(experiment_id, run_name=name)
    return MlflowRunMirror(client, mlflow_run.info.run_id, tracking_uri=tracking_uri)


def start_mirror(
    registry: Registry,
    name: str | None,
    *,
    tracking_uri: str | None,
    experiment: str | None = None,
    params: dict[str, object] | None = None,
    tags: dict[str, object] | None = None,
) -> ActiveRun:
    """A modelyard run mirrored to a new MLflow run; each run's id is a tag of the other
    (``mlflow.run_id`` on modelyard's, ``modelyard.run_id`` on MLflow's)."""
    from modelyard.integrations.runs import MirrorDefaults, MirrorSpec, start_mirrored_run

    defaults = MirrorDefaults(mlflow_tracking_uri=tracking_uri, mlflow_experiment=experiment)
    return start_mirrored_run(
        registry, name, (MirrorSpec("mlflow"),), defaults=defaults, params=params, tags=tags
    )
