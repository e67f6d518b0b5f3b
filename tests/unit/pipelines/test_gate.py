"""The quality gate's Python API: bad input first (one sentence, nothing written), then the
threshold semantics (MLflow's, with the relative change against |baseline|), slices, the
Markdown report and the pipeline-step form."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import msgspec
import numpy as np
import pandas as pd
import pytest

from modelyard.errors import (
    GateFailedError,
    InvalidInputError,
    InvalidSpecError,
    SignatureMismatchError,
    ValidationError,
    VersionNotFoundError,
)
from modelyard.pipelines.gate import (
    GateResult,
    MetricResult,
    MetricThreshold,
    gate,
    gate_step,
    parse_metric_option,
    render_markdown,
)
from modelyard.registry import Registry
from modelyard.settings import Settings

# y = 0, 2, 4, 6, 8 (variance 8): a constant prediction 2 off the mean has R² = -4/8 = -0.5, one
# 1 off has R² = -1/8 = -0.125; a fitted line 2 (or 1) above every y has mae and rmse 2 (or 1).
REG_X = pd.DataFrame({"x": [0.0, 1.0, 2.0, 3.0, 4.0]})
REG_Y = pd.Series([0.0, 2.0, 4.0, 6.0, 8.0], name="y")


def _classification_data(n: int = 300) -> pd.DataFrame:
    rng = np.random.default_rng(0)
    frame = pd.DataFrame({"a": rng.normal(size=n), "b": rng.normal(size=n)})
    frame["label"] = (frame["a"] + 0.5 * rng.normal(size=n) > 0).astype(int)
    frame["region"] = np.where(frame["b"] > 0, "eu", "us")
    frame.loc[:2, "region"] = "tiny"  # three rows of one class: no roc_auc there
    frame.loc[:2, "label"] = 1
    return frame


@pytest.fixture(scope="module")
def reg(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Registry]:
    """clf/1 a prior-only dummy, clf/2 a logistic regression; reg/1 and reg/2 constant
    regressors (R² -0.5 and -0.125 on REG_Y); lin/1 and lin/2 lines 2 and 1 above REG_Y;
    multi/1 a 3-class model; svc/1 no predict_proba; arr/1 trained on an array (a tensor
    signature: its features are the data's columns in order)."""
    from sklearn.dummy import DummyClassifier, DummyRegressor
    from sklearn.linear_model import LinearRegression, LogisticRegression
    from sklearn.svm import LinearSVC

    home = tmp_path_factory.mktemp("gate")
    registry = Registry(
        Settings(home=home, database_url=f"sqlite:///{home / 'meta.db'}", identity="tester")
    )
    train = _classification_data()
    X, y = train[["a", "b"]], train["label"]
    registry.register(DummyClassifier(strategy="prior").fit(X, y), name="clf", data=X)
    registry.register(LogisticRegression().fit(X, y), name="clf", data=X)
    for offset in (2.0, 1.0):
        model = DummyRegressor(strategy="constant", constant=4.0 + offset).fit(REG_X, REG_Y)
        registry.register(model, name="reg", data=REG_X)
        registry.register(LinearRegression().fit(REG_X, REG_Y + offset), name="lin", data=REG_X)
    three = (train["a"] > 0.5).astype(int) + (train["a"] > -0.5).astype(int)
    registry.register(LogisticRegression().fit(X, three), name="multi", data=X)
    registry.register(LinearSVC().fit(X, y), name="svc", data=X)
    registry.register(LogisticRegression().fit(X.to_numpy(), y), name="arr", data=X.to_numpy())
    yield registry
    registry.close()


@pytest.fixture(scope="module")
def data() -> pd.DataFrame:
    return _classification_data()


def _regression_data() -> pd.DataFrame:
    return REG_X.assign(y=REG_Y)


def _only(result: GateResult, metric: str, slice_value: str | None = None) -> MetricResult:
    [found] = [r for r in result.results if r.metric == metric and r.slice_value == slice_value]
    return found


# -- bad input: one sentence, nothing written ---------------------------------------------------


@pytest.mark.parametrize(
    ("option", "message"),
    [
        (":threshold=0.8", "--metric ':threshold=0.8' does not start with a metric name; write "
         "it as METRIC[:threshold=X,min_absolute_change=X,min_relative_change=X,"
         "slice=COL=VALUE]."),
        ("roc_auc:treshold=0.8", "--metric 'roc_auc:treshold=0.8' has an unknown option "
         "'treshold'; use threshold, min_absolute_change, min_relative_change, "
         "greater_is_better, slice."),
        ("roc_auc:threshold", "--metric 'roc_auc:threshold': threshold needs a value, e.g. "
         "threshold=0.8."),
        ("roc_auc:threshold=high", "--metric 'roc_auc:threshold=high': threshold='high' is not "
         "a finite number."),
        ("roc_auc:threshold=nan", "--metric 'roc_auc:threshold=nan': threshold='nan' is not a "
         "finite number."),
        ("roc_auc:threshold=0.8,threshold=0.9", "--metric 'roc_auc:threshold=0.8,threshold=0.9' "
         "gives threshold twice; give it once."),
        ("roc_auc:greater_is_better=yes", "--metric 'roc_auc:greater_is_better=yes': "
         "greater_is_better is true or false."),
    ],
)  # fmt: skip
def test_a_malformed_metric_option_is_one_sentence(option: str, message: str) -> None:
    with pytest.raises(InvalidSpecError) as caught:
        parse_metric_option(option)
    assert str(caught.value) == message


def _bad(
    reg: Registry, tmp_path: Path, *, candidate: str = "clf/2", baseline: str | None = "clf/1",
    data: pd.DataFrame | str | Path, target: str = "label", metrics: tuple[str, ...],
    slices: tuple[str, ...] = (),
) -> str:  # fmt: skip
    """The message of the ValidationError the step raises; its report must not exist."""
    report = tmp_path / "report.md"
    before = sorted(tmp_path.iterdir())
    with pytest.raises(ValidationError) as caught:
        gate_step(
            reg, candidate=candidate, baseline=baseline, data=data, target=target,
            thresholds=list(metrics), slices=slices, markdown=report,
        )  # fmt: skip
    assert sorted(tmp_path.iterdir()) == before  # no report, no temporary file
    return str(caught.value)


def test_an_unknown_metric_lists_the_metrics_of_the_task(
    reg: Registry, data: pd.DataFrame, tmp_path: Path
) -> None:
    message = _bad(reg, tmp_path, data=data, metrics=("auc:threshold=0.8",))
    assert message == (
        "Unknown gate metric 'auc'; classification models support accuracy, precision, recall, "
        "f1, roc_auc, log_loss, brier."
    )
    message = _bad(reg, tmp_path, candidate="reg/2", baseline="reg/1", data=_regression_data(),
                   target="y", metrics=("rsquared:threshold=0",))  # fmt: skip
    assert message == (
        "Unknown gate metric 'rsquared'; regression models support mae, mse, rmse, r2, mape."
    )


def test_a_metric_of_the_other_task_names_the_task(
    reg: Registry, data: pd.DataFrame, tmp_path: Path
) -> None:
    message = _bad(reg, tmp_path, data=data, metrics=("r2:threshold=0.5",))
    assert message == (
        "Metric 'r2' is a regression metric but clf/2 is a classifier; use one of accuracy, "
        "precision, recall, f1, roc_auc, log_loss, brier."
    )
    message = _bad(reg, tmp_path, candidate="reg/2", baseline="reg/1", data=_regression_data(),
                   target="y", metrics=("roc_auc:threshold=0.5",))  # fmt: skip
    assert message == (
        "Metric 'roc_auc' is a classification metric but reg/2 is a regressor; use one of mae, "
        "mse, rmse, r2, mape."
    )


def test_metrics_the_model_cannot_give(reg: Registry, data: pd.DataFrame, tmp_path: Path) -> None:
    message = _bad(reg, tmp_path, candidate="multi/1", baseline=None, data=data,
                   metrics=("brier:threshold=0.2",))  # fmt: skip
    assert message == (
        "Metric 'brier' needs a binary classifier but multi/1 has 3 classes; use log_loss instead."
    )
    message = _bad(reg, tmp_path, candidate="svc/1", data=data, metrics=("roc_auc:threshold=0.8",))
    assert message == (
        "Metric 'roc_auc' needs predicted probabilities but svc/1 has no predict_proba; use "
        "accuracy, precision, recall or f1."
    )


def test_models_of_two_tasks_are_not_compared(
    reg: Registry, data: pd.DataFrame, tmp_path: Path
) -> None:
    message = _bad(reg, tmp_path, baseline="reg/1", data=data, metrics=("accuracy",))
    assert message == (
        "Candidate clf/2 is a classifier but baseline reg/1 is a regressor; gate models of one "
        "task."
    )


def test_a_change_bound_needs_a_baseline(reg: Registry, data: pd.DataFrame, tmp_path: Path) -> None:
    message = _bad(reg, tmp_path, baseline=None, data=data,
                   metrics=("roc_auc:threshold=0.8,min_relative_change=0.01",))  # fmt: skip
    assert message == (
        "Metric 'roc_auc' has min_relative_change=0.01 but there is no baseline; pass "
        "--baseline REF or keep only threshold=."
    )


def test_greater_is_better_may_not_contradict_the_metric(
    reg: Registry, data: pd.DataFrame, tmp_path: Path
) -> None:
    metric = "log_loss:threshold=1,greater_is_better=true"
    message = _bad(reg, tmp_path, data=data, metrics=(metric,))
    assert message == "Metric 'log_loss' is better when lower; drop greater_is_better=true."


def test_a_missing_data_file(reg: Registry, tmp_path: Path) -> None:
    missing = tmp_path / "eval.csv"
    message = _bad(reg, tmp_path, data=missing, metrics=("accuracy:threshold=0.5",))
    assert message == f"The data file {str(missing)!r} does not exist; check the path."


def test_a_missing_target_column_lists_the_columns(
    reg: Registry, data: pd.DataFrame, tmp_path: Path
) -> None:
    path = tmp_path / "eval.csv"
    data.to_csv(path, index=False)
    message = _bad(reg, tmp_path, data=path, target="churned", metrics=("accuracy",))
    assert message == (
        "The data has no target column 'churned'; its columns are a, b, label, region: pass one "
        "with --target."
    )
    path.unlink()


def test_missing_labels_are_refused(reg: Registry, data: pd.DataFrame, tmp_path: Path) -> None:
    holes = data.assign(label=data["label"].where(data.index > 1))
    message = _bad(reg, tmp_path, data=holes, metrics=("accuracy",))
    assert message == "The target column 'label' has 2 missing value(s); drop those rows."


def test_missing_feature_columns_name_the_model(
    reg: Registry, data: pd.DataFrame, tmp_path: Path
) -> None:
    with pytest.raises(SignatureMismatchError):
        gate(reg, "clf/2", baseline=None, data=data.drop(columns="b"), target="label",
             thresholds=[MetricThreshold(metric="accuracy")])  # fmt: skip
    message = _bad(reg, tmp_path, data=data.drop(columns="b"), metrics=("accuracy",))
    assert message == (
        "The data lacks feature column(s) b that clf/2 takes; its columns are a, label, region."
    )


def test_bad_slices(reg: Registry, data: pd.DataFrame, tmp_path: Path) -> None:
    message = _bad(reg, tmp_path, data=data, metrics=("accuracy",), slices=("country",))
    assert message == (
        "The data has no slice column 'country'; its columns are a, b, label, region."
    )
    message = _bad(reg, tmp_path, data=data, metrics=("accuracy:threshold=0.5,slice=region=asia",))
    assert message == (
        "Metric 'accuracy' names slice 'region=asia' but column 'region' has no value 'asia' "
        "(its values: eu, tiny, us); check the slice."
    )
    message = _bad(reg, tmp_path, data=data, metrics=("accuracy",), slices=("a",))
    assert message == (
        "Slice column 'a' has 300 distinct values (at most 100); slice by a column with fewer "
        "values."
    )


def test_an_unwritable_report_is_refused_before_any_work(
    reg: Registry, data: pd.DataFrame, tmp_path: Path
) -> None:
    nowhere = tmp_path / "missing" / "report.md"
    with pytest.raises(InvalidInputError) as caught:
        gate_step(reg, candidate="nope/1", data=data, target="label", thresholds=["accuracy"],
                  markdown=nowhere)  # fmt: skip
    assert str(caught.value) == (
        f"--markdown {str(nowhere)!r}: the folder {str(nowhere.parent)!r} does not exist; "
        "create it first."
    )


def test_an_unknown_model_is_a_not_found_error(reg: Registry, data: pd.DataFrame) -> None:
    with pytest.raises(VersionNotFoundError):
        gate(reg, "clf/9", baseline=None, data=data, target="label",
             thresholds=[MetricThreshold(metric="accuracy")])  # fmt: skip


# -- semantics ---------------------------------------------------------------------------------


def _run(
    reg: Registry, *metrics: str, pair: str = "clf/2 clf/1", data: pd.DataFrame | Path,
    target: str = "label", slices: tuple[str, ...] = (),
) -> GateResult:  # fmt: skip
    """``gate`` on ``pair`` ("CANDIDATE [BASELINE]") with ``--metric`` options."""
    candidate, _, baseline = pair.partition(" ")
    thresholds = [parse_metric_option(m) for m in metrics]
    return gate(reg, candidate, baseline=baseline or None, data=data, target=target,
                thresholds=thresholds, slices=slices)  # fmt: skip


def test_an_improvement_over_a_negative_baseline_passes(reg: Registry) -> None:
    """R² from -0.5 to -0.125: MLflow's (c - b) / b is -0.75 and fails min_relative_change=0.1;
    taken against |b| it is +0.75 and passes."""
    prices = _regression_data()
    result = _run(reg, "r2:min_relative_change=0.1", pair="reg/2 reg/1", data=prices, target="y")
    r2 = _only(result, "r2")
    assert (r2.candidate, r2.baseline) == (pytest.approx(-0.125), pytest.approx(-0.5))
    mlflow_relative = (r2.candidate - r2.baseline) / r2.baseline  # type: ignore[operator]
    assert mlflow_relative == pytest.approx(-0.75)  # < 0.1: MLflow would fail the candidate
    assert r2.relative_delta == pytest.approx(0.75)
    assert result.passed and r2.passed
    assert r2.checks[0].reason == "relative Δ +75.00% ≥ +10%"
    # and the way back, -0.125 to -0.5, is a regression of 300 %
    back = _run(reg, "r2:min_relative_change=-0.5", pair="reg/1 reg/2", data=prices, target="y")
    assert _only(back, "r2").relative_delta == pytest.approx(-3.0)
    assert not back.passed
    assert back.failures == ("r2 on all rows: relative Δ -300.00% < -50%",)


def test_lower_is_better_metrics_mirror_the_bounds(reg: Registry) -> None:
    """mae 2 (baseline) to 1 (candidate): Δ = -1, relative Δ = -50 %."""
    result = _run(
        reg,
        "mae:threshold=1",  # 1 <= 1 (up to rounding): a bound met exactly passes
        "mae:min_absolute_change=0.5",  # -1 <= -0.5
        "mae:min_relative_change=0.6",  # -50 % is not <= -60 %
        "rmse:threshold=0.5",  # 1 > 0.5
        pair="lin/2 lin/1", data=_regression_data(), target="y",
    )  # fmt: skip
    mae = _only(result, "mae")
    assert (mae.candidate, mae.baseline) == (pytest.approx(1.0), pytest.approx(2.0))
    assert (mae.delta, mae.relative_delta) == (pytest.approx(-1.0), pytest.approx(-0.5))
    assert not mae.greater_is_better
    assert [(c.kind, c.passed, c.reason) for c in mae.checks] == [
        ("threshold", True, "1.0000 ≤ 1"),
        ("min_absolute_change", True, "Δ -1.0000 ≤ -0.5"),
        ("min_relative_change", False, "relative Δ -50.00% > -60%"),
    ]
    assert result.failures == (
        "mae on all rows: relative Δ -50.00% > -60%",
        "rmse on all rows: 1.0000 > 0.5",
    )
    assert not result.passed


def test_absolute_bounds_without_a_baseline(reg: Registry, data: pd.DataFrame) -> None:
    result = _run(reg, "roc_auc:threshold=0.9", "log_loss:threshold=0.1", pair="clf/2", data=data)
    roc, loss = _only(result, "roc_auc"), _only(result, "log_loss")
    assert roc.candidate is not None and roc.candidate > 0.9 and roc.passed
    assert roc.baseline is None and roc.delta is None
    assert loss.candidate is not None and loss.candidate > 0.1 and not loss.passed
    assert result.baseline_version is None
    assert result.failures == (f"log_loss on all rows: {loss.candidate:.4f} > 0.1",)


def test_a_better_classifier_passes_and_a_worse_one_fails(
    reg: Registry, data: pd.DataFrame
) -> None:
    metrics = ("roc_auc:threshold=0.8,min_relative_change=0.01", "accuracy:min_absolute_change=0.1")
    better = _run(reg, *metrics, data=data)
    assert better.passed and better.failures == ()
    assert _only(better, "roc_auc").baseline == 0.5  # the dummy ranks every row alike
    assert better.task == "binary classification"
    worse = _run(reg, *metrics, pair="clf/1 clf/2", data=data)
    assert not worse.passed
    assert [f.split(":")[0] for f in worse.failures] == [
        "roc_auc on all rows", "roc_auc on all rows", "accuracy on all rows",
    ]  # fmt: skip


def test_a_zero_baseline_passes_a_relative_bound_when_the_candidate_is_better(
    reg: Registry, data: pd.DataFrame
) -> None:
    """Every label 0: the prior-only dummy (it predicts the majority, 1) scores accuracy 0."""
    zeros = data[data["label"] == 0]
    result = _run(reg, "accuracy:min_relative_change=0.5", data=zeros)
    accuracy = _only(result, "accuracy")
    assert accuracy.baseline == 0.0 and accuracy.relative_delta is None
    assert accuracy.checks[0].reason == "the baseline is 0 and the candidate is better"
    assert result.passed
    same = _run(reg, "accuracy:min_relative_change=0.5", pair="clf/1 clf/1", data=zeros)
    assert same.failures == ("accuracy on all rows: the baseline is 0 and the candidate is equal",)


def test_a_multiclass_model(reg: Registry, data: pd.DataFrame) -> None:
    three = data.assign(label=(data["a"] > 0.5).astype(int) + (data["a"] > -0.5).astype(int))
    result = _run(reg, "accuracy:threshold=0.8", "f1", "roc_auc", "log_loss", pair="multi/1",
                  data=three, slices=("region",))  # fmt: skip
    assert result.task == "classification (3 classes)" and result.passed
    for metric in ("accuracy", "f1", "roc_auc"):
        value = _only(result, metric).candidate
        assert value is not None and 0.8 < value <= 1.0
    assert sorted(set(three["label"][:3])) == [1, 2]  # tiny: two of the three classes
    assert _only(result, "roc_auc", "tiny").candidate is not None  # one-vs-rest over those two
    one_class = three[three["label"] == 2]
    only = _run(reg, "roc_auc", pair="multi/1", data=one_class)
    assert _only(only, "roc_auc").note == "only one class in the target"


def test_a_tensor_signature_takes_the_other_columns_in_order(
    reg: Registry, data: pd.DataFrame, tmp_path: Path
) -> None:
    """Without the slice column the data has one column too many for arr/1."""
    assert _run(reg, "roc_auc:threshold=0.8", pair="arr/1", data=data.drop(columns="region")).passed
    sliced = _run(reg, "roc_auc:threshold=0.8", pair="arr/1", data=data, slices=("region",))
    assert sliced.passed
    message = _bad(reg, tmp_path, candidate="arr/1", baseline=None, data=data,
                   metrics=("roc_auc",))  # fmt: skip
    assert message == (
        "arr/1 takes 2 features but the data has 3 columns besides the target 'label'; give "
        "exactly its feature columns and the target."
    )


def test_a_csv_file_is_read(reg: Registry, data: pd.DataFrame, tmp_path: Path) -> None:
    path = tmp_path / "eval.csv"
    data.to_csv(path, index=False)
    result = _run(reg, "f1:threshold=0.5", pair="clf/2", data=path)
    assert result.data == str(path) and result.rows == len(data) and result.passed


# -- slices ------------------------------------------------------------------------------------


def test_per_slice_thresholds(reg: Registry, data: pd.DataFrame) -> None:
    result = _run(
        reg, "roc_auc:threshold=0.8,slice=region", "accuracy:threshold=0.99,slice=region=eu",
        data=data, slices=("region",),
    )  # fmt: skip
    assert result.slices == ("region",)
    overall = _only(result, "roc_auc")
    assert overall.checks == () and overall.passed is None  # the bounds name slices only
    tiny = _only(result, "roc_auc", "tiny")
    assert (tiny.rows, tiny.candidate, tiny.passed) == (3, None, None)
    assert tiny.note == "only one class in the target"  # skipped under slice=region
    eu, us = _only(result, "roc_auc", "eu"), _only(result, "roc_auc", "us")
    assert eu.passed and us.passed and eu.rows + us.rows + tiny.rows == len(data)
    assert _only(result, "accuracy", "us").checks == ()
    assert result.failures == (
        f"accuracy on region=eu: {_only(result, 'accuracy', 'eu').candidate:.4f} < 0.99",
    )


def test_a_named_slice_that_cannot_be_scored_fails(reg: Registry, data: pd.DataFrame) -> None:
    result = _run(reg, "roc_auc:threshold=0.5,slice=region=tiny", data=data)
    assert result.slices == ("region",)  # a slice named by a bound is scored without --slice
    assert result.failures == (
        "roc_auc on region=tiny: candidate n/a: only one class in the target",
    )


def test_slice_star_covers_all_rows_and_every_slice(reg: Registry, data: pd.DataFrame) -> None:
    result = _run(reg, "log_loss:threshold=0.5,slice=*", pair="clf/2", data=data,
                  slices=("region",))  # fmt: skip
    checked = [(r.slice_value, len(r.checks)) for r in result.results]
    assert checked == [(None, 1), ("eu", 1), ("tiny", 1), ("us", 1)]
    assert result.passed


# -- the report and the step -------------------------------------------------------------------


def test_the_markdown_report(reg: Registry, data: pd.DataFrame) -> None:
    result = _run(
        reg, "roc_auc:threshold=0.8,min_relative_change=0.01",
        "accuracy:threshold=0.99,slice=region=eu", data=data, slices=("region",),
    )  # fmt: skip
    text = render_markdown(result)
    lines = text.splitlines()
    assert lines[0] == "## ❌ failed: model gate for `clf/2` vs `clf/1`"
    assert lines[2] == (
        "**Candidate** `clf/2` · **baseline** `clf/1` · **data** `DataFrame` (300 rows) · "
        "**target** `label` (binary classification)"
    )
    roc = _only(result, "roc_auc")
    assert (
        f"| roc_auc | {roc.candidate:.4f} | 0.5000 | +{roc.delta:.4f} | "
        f"+{roc.relative_delta:.2%} | ≥ 0.8, relative Δ ≥ +1% | ✅ pass |"
    ) in lines
    assert "### By `region`" in lines
    tiny = next(line for line in lines if line.startswith("| tiny | 3 | roc_auc |"))
    assert tiny.endswith("| n/a: only one class in the target |")
    assert "**1 failed check(s)**" in lines
    assert any(line.startswith("- accuracy on region=eu: ") for line in lines)
    assert text.endswith("MLflow's MetricThreshold._\n")


def test_markdown_escapes_pipes_in_values(reg: Registry, data: pd.DataFrame) -> None:
    odd = data.assign(region=data["region"].replace({"eu": "eu|west"}))
    result = _run(reg, "accuracy", pair="clf/2", data=odd, slices=("region",))
    assert "| eu\\|west | " in render_markdown(result)


def test_the_step_writes_the_report_and_raises_on_breach(
    reg: Registry, data: pd.DataFrame, tmp_path: Path
) -> None:
    report = tmp_path / "gate.md"
    result = gate_step(reg, candidate="clf/2", baseline="clf/1", data=data, target="label",
                       thresholds=["roc_auc:threshold=0.8"], markdown=report)  # fmt: skip
    assert result.passed and report.read_text().startswith("## ✅ passed")
    with pytest.raises(GateFailedError) as caught:
        gate_step(reg, candidate="clf/1", baseline="clf/2", data=data, target="label",
                  thresholds=["roc_auc:threshold=0.8"], markdown=report)  # fmt: skip
    assert str(caught.value) == (
        "Gate failed for clf/1 against clf/2: 1 check(s) failed (roc_auc on all rows: 0.5000 < "
        "0.8); see the gate report."
    )
    assert report.read_text().startswith("## ❌ failed")  # the report of a failed gate is kept
    assert sorted(p.name for p in tmp_path.iterdir()) == ["gate.md"]  # no temporary file left
    kept = gate_step(reg, candidate="clf/1", baseline="clf/2", data=data, target="label",
                     thresholds=["roc_auc:threshold=0.8"], fail_on_breach=False)  # fmt: skip
    assert not kept.passed


def test_the_result_encodes_as_json(reg: Registry, data: pd.DataFrame) -> None:
    result = _run(reg, "roc_auc:threshold=0.8", data=data)
    decoded = msgspec.json.decode(msgspec.json.encode(result), type=GateResult)
    assert decoded == result
