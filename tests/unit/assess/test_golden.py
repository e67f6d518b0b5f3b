"""Golden projects score what their evidence supports, and one more piece of evidence (a gate in
the CI workflow, an alert rule, a canary) raises exactly the tests it should and nothing else."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest

from modelyard.assess import assess
from modelyard.assess.types import Evidence
from modelyard.pipelines.project import init_project
from tests.unit.assess._golden import (
    DRIFT_RULE,
    GATE_WORKFLOW,
    assessed,
    automated,
    changed,
    open_registry,
    second_version,
    served_project,
)

SERVED = {"data-1", "infra-5", "monitor-2"}


def test_an_empty_folder_scores_zero_with_every_test_missing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    a = assessed(tmp_path, monkeypatch)
    assert automated(a) == set()
    assert {t.status for t in a.tests} == {"missing"}
    assert (a.score, a.band.range, a.model, a.deployment) == (0, "0", None, None)
    assert [s.points for s in a.sections] == [0, 0, 0, 0]
    assert len(a.plan) == 28 and a.plan[0].gain == 1 and a.plan[0].effort == 1
    assert a.cost.status == "not_measured"


def test_a_yard_init_scaffold_scores_its_pipeline_tests_and_workflow(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    project = tmp_path / "scaffold"
    init_project(project, name="churn")
    a = assessed(project, monkeypatch)
    # validate() in the pipeline, a test that trains it, CI runs it ('yard run') and gates it
    assert automated(a) == {"data-1", "infra-2", "infra-3", "infra-4"}
    tests = {t.id: t for t in a.tests}
    assert any(e.where.startswith("pipeline.py:") for e in tests["data-1"].evidence)
    assert any(
        e.where.startswith(".github/workflows/model-ci.yml:") and "yard gate" in e.detail
        for e in tests["infra-4"].evidence
    )
    # its drift rule names a deployment that does not exist yet: shown, not scored
    assert tests["monitor-3"].status == "missing"
    assert any(e.kind == "alert_rule" for e in tests["monitor-3"].evidence)
    assert a.score == 0 and [s.points for s in a.sections] == [1, 0, 3, 0]


def test_a_served_model_scores_its_schema_example_and_validated_inputs(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    project = served_project(tmp_path / "served", monkeypatch)
    a = assessed(project, monkeypatch)
    assert (a.model, a.deployment) == ("churn/1", "churn")
    assert automated(a) == SERVED
    infra1 = next(t for t in a.tests if t.id == "infra-1")
    assert infra1.status == "missing"  # lineage is there, the dependencies are not pinned
    assert {e.detail.split(" ")[0] for e in infra1.evidence} >= {"dataset"}
    (project / "requirements.txt").write_text("scikit-learn==1.9.0\nnumpy==2.4.0\n")
    assert changed(a, assessed(project, monkeypatch)) == {"infra-1": ("missing", "automated")}


def test_a_gate_in_the_ci_workflow_raises_infra_4_only(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    project = served_project(tmp_path / "served", monkeypatch)
    before = assessed(project, monkeypatch)
    (project / ".github/workflows").mkdir(parents=True)
    (project / ".github/workflows/ci.yml").write_text(GATE_WORKFLOW)
    after = assessed(project, monkeypatch)
    assert changed(before, after) == {"infra-4": ("missing", "automated")}
    infra4 = next(t for t in after.tests if t.id == "infra-4")
    assert [e.where for e in infra4.evidence] == [".github/workflows/ci.yml:8"]
    assert infra4.next_step is None


def test_a_drift_alert_rule_raises_monitor_3_only(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    project = served_project(tmp_path / "served", monkeypatch)
    before = assessed(project, monkeypatch)
    with (project / "modelyard.toml").open("a") as toml:
        toml.write(DRIFT_RULE)
    after = assessed(project, monkeypatch)
    assert changed(before, after) == {"monitor-3": ("missing", "automated")}
    rule = next(
        e
        for e in next(t for t in after.tests if t.id == "monitor-3").evidence
        if e.kind == "alert_rule"
    )
    assert rule.where == "churn-drift (modelyard.toml:7)"
    assert "drift_share >= 0.5" in rule.detail
    assert [r["name"] for r in after.monitoring["rules"]] == ["churn-drift"]  # type: ignore[index]  # a list of rules
    assert "drift_share" not in {p["metric"] for p in after.monitoring["proposed"]}  # type: ignore[union-attr, index]  # a list of proposals


def test_a_canary_raises_infra_6_and_its_latency_analysis_monitor_6(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from modelyard.rollout import start_candidate

    project = served_project(tmp_path / "served", monkeypatch)
    second_version(project, monkeypatch)
    before = assessed(project, monkeypatch)
    registry = open_registry(project, monkeypatch)
    try:
        start_candidate(registry, "churn", ref="churn/2", mode="canary", steps=[10, 50, 100])
    finally:
        registry.close()
    after = assessed(project, monkeypatch)
    assert changed(before, after) == {
        "infra-6": ("missing", "automated"),
        "monitor-6": ("missing", "automated"),  # the canary compares p99 with stable's
    }
    assert "canary" in after.architecture and "10%" in after.architecture


def test_unknown_model_and_deployment_are_one_line_errors(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from modelyard.errors import DeploymentNotFoundError, InvalidInputError, ModelNotFoundError

    project = served_project(tmp_path / "served", monkeypatch)
    with pytest.raises(ModelNotFoundError, match="No model named 'nope'"):
        assessed(project, monkeypatch, model="nope")
    with pytest.raises(DeploymentNotFoundError, match="nope"):
        assessed(project, monkeypatch, deployment="nope")
    registry = open_registry(project, monkeypatch)
    try:
        with pytest.raises(InvalidInputError, match="does not exist or is not a folder"):
            assess(registry, registry.settings, project=project / "missing")
    finally:
        registry.close()
    assert not (project / "missing").exists()


def test_a_rollback_raises_infra_7_only(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    project = served_project(tmp_path / "served", monkeypatch)
    second_version(project, monkeypatch)
    registry = open_registry(project, monkeypatch)
    try:
        registry.set_alias("churn/2", "production", reason="release 2")
        before = assessed(project, monkeypatch)
        infra7 = next(t for t in before.tests if t.id == "infra-7")
        assert [e.detail for e in infra7.evidence] == [
            "2 alias moves recorded; no rollback done yet"
        ]
        registry.rollback("churn", "production", reason="drill")
    finally:
        registry.close()
    after = assessed(project, monkeypatch)
    assert changed(before, after) == {"infra-7": ("missing", "automated")}
    [rolled] = next(t for t in after.tests if t.id == "infra-7").evidence
    assert rolled.where == "churn@production" and rolled.detail.startswith("rolled back 2 -> 1")


def test_an_aborted_canary_counts_as_a_rollback(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from modelyard.rollout import abort, start_candidate

    project = served_project(tmp_path / "served", monkeypatch)
    second_version(project, monkeypatch)
    registry = open_registry(project, monkeypatch)
    try:
        start_candidate(registry, "churn", ref="churn/2", mode="canary", weight=10)
        before = assessed(project, monkeypatch)
        abort(registry, "churn", reason="p99 too high")
    finally:
        registry.close()
    after = assessed(project, monkeypatch)
    assert changed(before, after) == {"infra-7": ("missing", "automated")}


def test_a_retraining_loop_on_age_raises_monitor_4_and_its_gate_and_canary(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    project = served_project(tmp_path / "served", monkeypatch)
    before = assessed(project, monkeypatch)
    with (project / "modelyard.toml").open("a") as toml:
        toml.write('\n[loops.churn]\ntrigger.max_age = "30d"\ntrain.pipeline = "pipeline.py"\n')
    after = assessed(project, monkeypatch)
    # the loop retrains on age (Monitor 4), gates each candidate (Infra 4, the default
    # threshold) and rolls it out as a canary (Infra 6, the default mode)
    assert changed(before, after) == {
        "monitor-4": ("missing", "automated"),
        "infra-4": ("missing", "automated"),
        "infra-6": ("missing", "automated"),
    }
    monitor4 = next(t for t in after.tests if t.id == "monitor-4")
    assert monitor4.evidence[0].detail == "retrains on max_age 30d"
    assert monitor4.evidence[0].where == "loops.churn (modelyard.toml:6)"
    assert after.maintenance["retraining"]["max_age"] == "30d"  # type: ignore[index]


def test_gate_slices_in_a_pipeline_raise_model_6(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    project = served_project(tmp_path / "served", monkeypatch)
    before = assessed(project, monkeypatch)
    (project / "pipeline.py").write_text(
        "from modelyard.pipelines import pipeline\n"
        "from modelyard.pipelines.builtin import evaluate\n\n"
        "@pipeline\ndef training() -> None:\n"
        "    evaluate(model, table, target='y', slices=['region'])\n"
    )
    after = assessed(project, monkeypatch)
    assert changed(before, after) == {"model-6": ("missing", "automated")}
    [sliced] = next(t for t in after.tests if t.id == "model-6").evidence
    assert sliced.where == "pipeline.py:6"


def test_labels_joined_to_logged_predictions_raise_model_4_with_the_label_delay(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With a drift rule already there, labels arriving (2 h after the predictions) make the
    staleness measurable (Model 4); the maintenance plan says how late labels come."""
    import pandas as pd

    from modelyard.monitoring.labels import ingest_labels
    from tests.unit.monitoring.test_labels import NOW, write_log

    project = served_project(tmp_path / "served", monkeypatch)
    with (project / "modelyard.toml").open("a") as toml:
        toml.write(DRIFT_RULE)
    log = project / ".modelyard" / "predictions"
    write_log(log, "churn", ["a", "b", "c"])
    before = assessed(project, monkeypatch)
    assert before.maintenance["label_delay"] == "no labels ingested"
    later = NOW + timedelta(hours=2)
    labels = pd.DataFrame({"request_id": ["a", "b"], "label": [1, 0], "time": [later, later]})
    ingest_labels(log, "churn", labels)
    after = assessed(project, monkeypatch)
    assert changed(before, after) == {"model-4": ("missing", "automated")}
    assert after.maintenance["label_delay"] == (
        "median 2.0 h from prediction to label, over 2 labelled predictions"
    )


def test_privacy_settings_support_data_5_but_only_an_attestation_scores_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from modelyard.assess import attest

    project = served_project(tmp_path / "served", monkeypatch)
    before = assessed(project, monkeypatch)
    toml = (project / "modelyard.toml").read_text()
    # a commented line mentioning the setting is not where it is set
    toml = toml.replace(
        "log = true\n", "log = true\n# drop_columns are...\ndrop_columns = ['email']\n"
    )
    (project / "modelyard.toml").write_text(toml)
    after = assessed(project, monkeypatch)
    assert changed(before, after) == {}
    [privacy] = next(t for t in after.tests if t.id == "data-5").evidence
    assert privacy.where == "modelyard.toml:6" and "email" in privacy.detail
    registry = open_registry(project, monkeypatch)
    try:
        attest(registry, "Data 5", by="Ada", note="privacy review: docs/privacy.md")
    finally:
        registry.close()
    assert changed(after, assessed(project, monkeypatch)) == {"data-5": ("missing", "manual")}


def test_a_dependency_bot_raises_monitor_1_and_a_lock_file_infra_1(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    project = served_project(tmp_path / "served", monkeypatch)
    before = assessed(project, monkeypatch)
    (project / ".github").mkdir()
    (project / ".github/dependabot.yml").write_text("version: 2\nupdates: []\n")
    bot = assessed(project, monkeypatch)
    assert changed(before, bot) == {"monitor-1": ("missing", "automated")}
    (project / "requirements.txt").write_text("scikit-learn>=1.5  # loose\nnumpy==2.4.0\n")
    loose = assessed(project, monkeypatch)
    assert changed(bot, loose) == {}
    infra1 = next(t for t in loose.tests if t.id == "infra-1")
    assert "not pinned: requirements.txt: scikit-learn>=1.5" in [e.detail for e in infra1.evidence]
    (project / "uv.lock").write_text("version = 1\n")
    assert changed(loose, assessed(project, monkeypatch)) == {"infra-1": ("missing", "automated")}


SLICED_PIPELINE = """
import pandas as pd
from sklearn.linear_model import LogisticRegression

from modelyard.pipelines import pipeline, step
from modelyard.pipelines.builtin import evaluate


@step
def table() -> pd.DataFrame:
    return pd.DataFrame({"x": [0.0, 1.0, 2.0, 3.0] * 5, "region": ["a", "b"] * 10,
                         "y": [0, 0, 1, 1] * 5})


@step
def train(table: pd.DataFrame) -> LogisticRegression:
    return LogisticRegression().fit(table[["x"]], table["y"])


@pipeline
def sliced() -> None:
    data = table()
    evaluate(train(data), data, target="y", slices=["region"])
"""


def test_a_pipeline_run_that_scored_slices_raises_model_6(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The run's recorded per-slice metrics are the evidence (the code is outside the project)."""
    import importlib

    from modelyard.pipelines import run

    project = served_project(tmp_path / "served", monkeypatch)
    before = assessed(project, monkeypatch)
    code = tmp_path / "code"
    code.mkdir()
    (code / "sliced_pipeline.py").write_text(SLICED_PIPELINE)
    monkeypatch.syspath_prepend(str(code))
    module = importlib.import_module("sliced_pipeline")
    registry = open_registry(project, monkeypatch)
    try:
        done = run(module.sliced, registry=registry)
    finally:
        registry.close()
    assert any("[region=a]" in k for k in done.metrics), done.metrics
    after = assessed(project, monkeypatch)
    assert changed(before, after) == {"model-6": ("missing", "automated")}
    [evidence] = next(t for t in after.tests if t.id == "model-6").evidence
    assert evidence == Evidence(
        kind="run", where=f"run {done.id}", detail="step evaluate scored slices"
    )


def test_a_verification_of_the_files_shows_under_infra_1(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    project = served_project(tmp_path / "served", monkeypatch)
    registry = open_registry(project, monkeypatch)
    try:
        registry.verify("churn/1")
    finally:
        registry.close()
    infra1 = next(t for t in assessed(project, monkeypatch).tests if t.id == "infra-1")
    assert infra1.evidence[-1].detail.startswith("files re-hashed by tester on ")
    assert infra1.evidence[-1].detail.endswith(": all match")
