"""The built-in model steps in a real pipeline run: validate, evaluate, register (once, even when
rerun), gate (a failed gate stops the run) and deploy_canary."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from sklearn.datasets import load_breast_cancer
from sklearn.dummy import DummyClassifier
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import accuracy_score, f1_score, log_loss, roc_auc_score
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from modelyard.errors import InvalidInputError, StepFailedError
from modelyard.pipelines import LocalExecutor, pipeline, run, step
from modelyard.pipelines._model_steps import constraint_problems
from modelyard.pipelines.builtin import (
    deploy_canary,
    evaluate,
    gate,
    load_table,
    register,
    split,
    validate,
)
from modelyard.pipelines.records import fetch_pipeline_run
from modelyard.registry import Registry
from modelyard.rollout import get_deployment


@step
def fit(table: pd.DataFrame, target: str, dummy: bool = False) -> LogisticRegression:
    X, y = table.drop(columns=[target]), table[target]
    if dummy:
        return DummyClassifier(strategy="prior").fit(X, y)  # type: ignore[return-value]
    return make_pipeline(StandardScaler(), LogisticRegression(max_iter=500)).fit(X, y)  # type: ignore[return-value]


@pipeline
def release(
    data: str = "train.csv",
    holdout: str = "holdout.csv",
    dummy: bool = False,
    deployment: str = "cancer-api",
) -> None:
    table = validate(load_table(data), reference=load_table(data))
    parts = split(table, target="target", test_size=0.25, seed=0)
    model = fit(parts.train, target="target", dummy=dummy)
    metrics = evaluate(model, parts.test, target="target")
    ref = register(model, parts.train, name="cancer", target="target", metrics=metrics)
    approved = gate(ref, load_table(holdout), "target", metrics=["roc_auc:threshold=0.9"])
    deploy_canary(approved, deployment=deployment)


@pytest.fixture
def files(tmp_path: Path) -> Path:
    frame = load_breast_cancer(as_frame=True).frame
    frame.iloc[:450].to_csv(tmp_path / "train.csv", index=False)
    frame.iloc[450:].to_csv(tmp_path / "holdout.csv", index=False)
    return tmp_path


def go(registry: Registry, files: Path, **params: object) -> object:
    return run(
        release, registry=registry, executor=LocalExecutor(workers=1),
        params={"data": str(files / "train.csv"), "holdout": str(files / "holdout.csv"), **params},
    )  # fmt: skip


def test_a_release_pipeline_registers_once_and_deploys(
    sqlite_registry: Registry, files: Path
) -> None:
    first = go(sqlite_registry, files)
    assert first.status == "finished"  # type: ignore[attr-defined]
    assert sqlite_registry.get_version("cancer").version == 1
    assert get_deployment(sqlite_registry.db, "cancer-api").stable_version == 1
    again = go(sqlite_registry, files)
    statuses = {s.name: s.status for s in again.steps}  # type: ignore[attr-defined]
    assert statuses.pop("deploy_canary") == "succeeded"  # a side effect: never cached
    assert set(statuses.values()) == {"cached"}
    assert sqlite_registry.get_version("cancer").version == 1  # not registered twice
    deployment = get_deployment(sqlite_registry.db, "cancer-api")
    assert (deployment.stable_version, deployment.candidate_version) == (1, None)

    better = go(sqlite_registry, files, holdout=str(files / "train.csv"))  # a new gate input only
    assert better.status == "finished"  # type: ignore[attr-defined]
    retrained = run(
        release, registry=sqlite_registry, executor=LocalExecutor(workers=1), no_cache=True,
        params={"data": str(files / "train.csv"), "holdout": str(files / "holdout.csv")},
    )  # fmt: skip
    assert retrained.status == "finished"
    assert sqlite_registry.get_version("cancer").version == 2  # --no-cache registers again
    deployment = get_deployment(sqlite_registry.db, "cancer-api")
    assert (deployment.stable_version, deployment.candidate_version, deployment.mode) == (
        1, 2, "canary",
    )  # fmt: skip


def test_a_failed_gate_stops_the_run_before_deploying(
    sqlite_registry: Registry, files: Path
) -> None:
    with pytest.raises(StepFailedError) as failed:
        go(sqlite_registry, files, dummy=True, deployment="never")
    assert failed.value.steps == ("gate",)
    with sqlite_registry.db.engine.connect() as conn:
        record = fetch_pipeline_run(conn, failed.value.run_id or "")
    assert record is not None and record.status == "failed"
    steps = {s.name: s.status for s in record.steps}
    assert steps["gate"] == "failed" and steps["deploy_canary"] == "skipped"
    assert "GateFailedError" in (record.step("gate").error or "")
    assert sqlite_registry.get_version("cancer").version == 1  # registered, but not deployed
    from modelyard.errors import DeploymentNotFoundError

    with pytest.raises(DeploymentNotFoundError):
        get_deployment(sqlite_registry.db, "never")


def test_evaluate_matches_scikit_learn_overall_and_per_slice() -> None:
    frame = load_breast_cancer(as_frame=True).frame
    frame["big"] = np.where(frame["mean radius"] > 14, "yes", "no")
    X = frame.drop(columns=["target", "big"])
    model = LogisticRegression(max_iter=5000).fit(X, frame["target"])
    metrics = evaluate(model, frame, target="target", slices=["big"])
    proba = model.predict_proba(X)[:, 1]
    assert metrics["accuracy"] == pytest.approx(accuracy_score(frame["target"], model.predict(X)))
    assert metrics["f1"] == pytest.approx(f1_score(frame["target"], model.predict(X)))
    assert metrics["roc_auc"] == pytest.approx(roc_auc_score(frame["target"], proba))
    assert metrics["log_loss"] == pytest.approx(log_loss(frame["target"], proba))
    rows = frame["big"] == "yes"
    expected = roc_auc_score(frame["target"][rows], proba[rows.to_numpy()])
    assert metrics["roc_auc[big=yes]"] == pytest.approx(expected)


def test_validate_names_every_broken_constraint() -> None:
    reference = pd.DataFrame(
        {"x": [0.0, 1.0, 2.0], "kind": pd.Series(["a", "b", "a"], dtype="string"), "n": [1, 2, 3]}
    )
    table = pd.DataFrame(
        {"x": [5.0, None, None], "kind": pd.Series(["a", "z", "a"], dtype="string"), "m": [1, 2, 3]}
    )
    problems = constraint_problems(table, reference)
    assert problems == [
        "missing columns 'n'",
        "unexpected columns 'm'",
        "'x' is 66.7% null where the reference is 0.0%",
        "'x' spans [5, 5] outside the reference's [0, 2]",
        "'kind' has categories the reference lacks: 'z'",
    ]
    with pytest.raises(InvalidInputError, match=r"breaks 5 constraint\(s\) of its reference"):
        validate(table, reference)
    assert validate(reference, reference) is reference
