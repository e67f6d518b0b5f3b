"""Golden projects for the assessment tests, built with the real API: an empty folder, a
``yard init`` scaffold, and a served project (a registered model, a deployment, predictions
logged)."""

from __future__ import annotations

from pathlib import Path

import pytest

from modelyard.assess import Assessment, assess
from modelyard.registry import Registry
from modelyard.settings import Settings

SERVED_TOML = """\
home = ".modelyard"

[monitoring]
log = true
"""
DRIFT_RULE = """
[[monitoring.alerts.rules]]
name = "churn-drift"
deployment = "churn"
metric = "drift_share"
op = ">="
threshold = 0.5
window = "1h"
for = "10m"
"""
GATE_WORKFLOW = """\
name: model-ci
on:
  pull_request:
jobs:
  model:
    runs-on: ubuntu-latest
    steps:
      - run: yard gate --candidate churn --data data/holdout.csv --target target --metric auc
"""


def open_registry(project: Path, monkeypatch: pytest.MonkeyPatch) -> Registry:
    """The project's registry (``.modelyard`` in it), its settings read from its
    ``modelyard.toml`` as ``yard`` reads them."""
    monkeypatch.setenv("MODELYARD_CONFIG", str(project / "modelyard.toml"))
    for name in ("MODELYARD_HOME", "MODELYARD_DATABASE_URL", "MODELYARD_ARTIFACT_ROOT"):
        monkeypatch.delenv(name, raising=False)
    home = project / ".modelyard"
    return Registry(Settings(home=home, identity="tester"))


def assessed(project: Path, monkeypatch: pytest.MonkeyPatch, **options: str) -> Assessment:
    registry = open_registry(project, monkeypatch)
    try:
        return assess(registry, registry.settings, project=project, **options)  # type: ignore[arg-type]  # model/deployment names
    finally:
        registry.close()


def statuses(assessment: Assessment) -> dict[str, str]:
    return {t.id: t.status for t in assessment.tests}


def automated(assessment: Assessment) -> set[str]:
    return {t.id for t in assessment.tests if t.status == "automated"}


def changed(before: Assessment, after: Assessment) -> dict[str, tuple[str, str]]:
    old, new = statuses(before), statuses(after)
    return {k: (old[k], new[k]) for k in old if old[k] != new[k]}


def served_project(root: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A project whose model ``churn`` (version 1, with data: signature, profile, lineage) is
    production and served by deployment ``churn``, predictions logged."""
    from sklearn.datasets import load_breast_cancer
    from sklearn.linear_model import LogisticRegression

    from modelyard.rollout import deploy

    root.mkdir()
    (root / "modelyard.toml").write_text(SERVED_TOML)
    data = load_breast_cancer(as_frame=True)
    X, y = data.data.iloc[:, :5], data.target
    model = LogisticRegression(max_iter=500).fit(X, y)
    registry = open_registry(root, monkeypatch)
    try:
        registry.register(model, name="churn", data=X, target=y, metrics={"roc_auc": 0.97})
        registry.set_alias("churn/1", "production")
        deploy(registry, "churn", model_ref="churn@production")
    finally:
        registry.close()
    return root


def second_version(root: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from sklearn.datasets import load_breast_cancer
    from sklearn.linear_model import LogisticRegression

    data = load_breast_cancer(as_frame=True)
    X, y = data.data.iloc[:, :5], data.target
    registry = open_registry(root, monkeypatch)
    try:
        registry.register(
            LogisticRegression(C=0.5, max_iter=500).fit(X, y), name="churn", data=X, target=y
        )
    finally:
        registry.close()
