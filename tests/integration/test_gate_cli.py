"""``yard gate`` as CI runs it: real subprocesses against a registry in a temporary
MODELYARD_HOME (exit 0 pass, 1 fail, 2 cannot run), and the Python API on SQLite and
PostgreSQL."""

from __future__ import annotations

import json
import subprocess
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from modelyard.pipelines.gate import gate_step
from modelyard.registry import Registry
from modelyard.settings import Settings
from tests.integration._server import YARD, server_env


def _eval_data(n: int = 300) -> pd.DataFrame:
    rng = np.random.default_rng(1)
    frame = pd.DataFrame({"a": rng.normal(size=n), "b": rng.normal(size=n)})
    frame["label"] = (frame["a"] + 0.5 * rng.normal(size=n) > 0).astype(int)
    frame["region"] = np.where(frame["b"] > 0, "eu", "us")
    return frame


def _register(registry: Registry) -> None:
    """churn/1 a prior-only dummy, churn/2 (production) a logistic regression; price/1 and
    price/2 constant regressors with R² -0.5 and -0.125 on y = 0, 2, 4, 6, 8."""
    from sklearn.dummy import DummyClassifier, DummyRegressor
    from sklearn.linear_model import LogisticRegression

    train = _eval_data()
    X, y = train[["a", "b"]], train["label"]
    registry.register(DummyClassifier(strategy="prior").fit(X, y), name="churn", data=X)
    registry.register(LogisticRegression().fit(X, y), name="churn", data=X)
    registry.set_alias("churn/2", "production")
    x = pd.DataFrame({"x": [0.0, 1.0, 2.0, 3.0, 4.0]})
    for constant in (6.0, 5.0):
        model = DummyRegressor(strategy="constant", constant=constant)
        registry.register(model.fit(x, [0.0, 2.0, 4.0, 6.0, 8.0]), name="price", data=x)


@dataclass
class Home:
    path: Path
    env: dict[str, str]


@pytest.fixture(scope="module")
def home(tmp_path_factory: pytest.TempPathFactory) -> Home:
    path = tmp_path_factory.mktemp("gate-cli")
    registry = Registry(Settings(home=path / "home"), identity="setup")
    _register(registry)
    registry.close()
    _eval_data().to_csv(path / "eval.csv", index=False)
    _eval_data().drop(columns="b").to_csv(path / "no_b.csv", index=False)
    prices = {"x": [0.0, 1.0, 2.0, 3.0, 4.0], "y": [0.0, 2.0, 4.0, 6.0, 8.0]}
    pd.DataFrame(prices).to_parquet(path / "prices.parquet")
    return Home(path=path, env=server_env(path / "home"))


# -- real processes, for the exit codes --------------------------------------------------------

CHURN = ["--data", "eval.csv", "--target", "label"]
RUNS: dict[str, list[str]] = {
    "pass": ["--candidate", "churn@production", "--baseline", "churn/1", *CHURN,
             "--metric", "roc_auc:threshold=0.8", "--metric", "roc_auc:min_relative_change=0.01",
             "--slice", "region", "--markdown", "pass.md"],
    "fail": ["--candidate", "churn/1", "--baseline", "churn@production", *CHURN,
             "--metric", "roc_auc:threshold=0.8", "--markdown", "fail.md"],
    "json": ["--candidate", "price/2", "--baseline", "price/1", "--data", "prices.parquet",
             "--target", "y", "--metric", "r2:min_relative_change=0.1", "--json"],
    "malformed": ["--candidate", "churn/2", *CHURN, "--metric", "roc_auc:threshold=0,8",
                  "--markdown", "malformed.md"],
    "no target": ["--candidate", "churn/2", "--data", "eval.csv", "--target", "churned",
                  "--metric", "roc_auc:threshold=0.8", "--markdown", "no-target.md"],
    "no model": ["--candidate", "churn/9", *CHURN, "--metric", "roc_auc:threshold=0.8",
                 "--markdown", "no-model.md"],
    "typer usage": ["--candidate", "churn/2", "--metric", "roc_auc"],
}  # fmt: skip


@dataclass
class Run:
    code: int
    stdout: str
    stderr: str


@pytest.fixture(scope="module")
def runs(home: Home) -> dict[str, Run]:
    """Every ``yard gate`` of RUNS, started at once (each pays the CLI's start-up)."""
    pipe = subprocess.PIPE
    procs = {}
    for name, args in RUNS.items():
        command = [YARD, "gate", *args]
        procs[name] = subprocess.Popen(
            command, env=home.env, cwd=home.path, stdout=pipe, stderr=pipe, text=True
        )
    done = {}
    for name, proc in procs.items():
        stdout, stderr = proc.communicate(timeout=180)
        done[name] = Run(proc.returncode, stdout, stderr)
    return done


def test_a_better_candidate_passes_with_exit_0(home: Home, runs: dict[str, Run]) -> None:
    run = runs["pass"]
    assert (run.code, run.stderr) == (0, "")
    assert run.stdout.startswith(
        "Gate PASSED: churn/2 against churn/1 on eval.csv (300 rows, target label, binary "
        "classification)."
    )
    assert "by region" in run.stdout
    text = (home.path / "pass.md").read_text()
    assert text.startswith("## ✅ passed: model gate for `churn/2` vs `churn/1`\n")
    assert "**Candidate** `churn/2` (`churn@production`) · **baseline** `churn/1`" in text
    assert "| roc_auc | " in text and "≥ 0.8, relative Δ ≥ +1% | ✅ pass |" in text


def test_a_worse_candidate_fails_with_exit_1_and_keeps_its_report(
    home: Home, runs: dict[str, Run]
) -> None:
    run = runs["fail"]
    assert (run.code, run.stderr) == (1, "")
    assert run.stdout.startswith("Gate FAILED: churn/1 against churn/2")
    assert run.stdout.rstrip().endswith("failed: roc_auc on all rows: 0.5000 < 0.8")
    text = (home.path / "fail.md").read_text()
    assert text.startswith("## ❌ failed: model gate for `churn/1` vs `churn/2`\n")


def test_json_output_and_a_negative_baseline(runs: dict[str, Run]) -> None:
    """R² -0.5 (baseline) to -0.125 is +75 % against |baseline| and passes; MLflow's
    (c - b) / b would be -75 %."""
    run = runs["json"]
    assert run.code == 0, run.stderr
    result = json.loads(run.stdout)
    [r2] = result["results"]
    assert (result["passed"], result["task"], result["rows"]) == (True, "regression", 5)
    assert (r2["candidate"], r2["baseline"]) == (pytest.approx(-0.125), pytest.approx(-0.5))
    assert r2["relative_delta"] == pytest.approx(0.75)
    assert (r2["candidate"] - r2["baseline"]) / r2["baseline"] == pytest.approx(-0.75)
    assert r2["checks"][0] == {
        "kind": "min_relative_change", "required": 0.1, "actual": pytest.approx(0.75),
        "passed": True, "reason": "relative Δ +75.00% ≥ +10%",
    }  # fmt: skip


def test_usage_errors_exit_2_with_one_line_and_no_report(home: Home, runs: dict[str, Run]) -> None:
    assert (runs["malformed"].code, runs["malformed"].stderr) == (
        2,
        "error: --metric 'roc_auc:threshold=0,8' has an unknown option '8'; use threshold, "
        "min_absolute_change, min_relative_change, greater_is_better, slice.\n",
    )
    assert (runs["no target"].code, runs["no target"].stderr) == (
        2,
        "error: The data has no target column 'churned'; its columns are a, b, label, region: "
        "pass one with --target.\n",
    )
    assert runs["typer usage"].code == 2 and "Missing option" in runs["typer usage"].stderr
    assert not (home.path / "malformed.md").exists()
    assert not (home.path / "no-target.md").exists()


def test_a_missing_model_exits_2_not_1(home: Home, runs: dict[str, Run]) -> None:
    """exit 2 and one line on stderr: the gate could not run, which CI must not read as a failed
    gate (exit 1); tests/integration/test_gate_exit_codes.py covers every such error."""
    run = runs["no model"]
    assert run.code == 2 and run.stdout == ""
    assert run.stderr == (
        "error: Model 'churn' has no version 9 (latest is 2); run 'yard models list churn'.\n"
    )
    assert not (home.path / "no-model.md").exists()


# -- every bad input, in this process ----------------------------------------------------------

# case: (options replacing the good ones, None dropping one; the one-line message)
BAD: dict[str, tuple[dict[str, str | None], str]] = {
    "unknown metric": (
        {"--metric": "auc:threshold=0.8"},
        "Unknown gate metric 'auc'; classification models support accuracy, precision, recall, "
        "f1, roc_auc, log_loss, brier.",
    ),
    "metric of the other task": (
        {"--metric": "mae:threshold=0.8"},
        "Metric 'mae' is a regression metric but churn/2 is a classifier; use one of accuracy, "
        "precision, recall, f1, roc_auc, log_loss, brier.",
    ),
    "malformed metric": (
        {"--metric": "roc_auc:threshold=0,8"},
        "--metric 'roc_auc:threshold=0,8' has an unknown option '8'; use threshold, "
        "min_absolute_change, min_relative_change, greater_is_better, slice.",
    ),
    "change bound without a baseline": (
        {"--metric": "roc_auc:min_absolute_change=0.01", "--baseline": None},
        "Metric 'roc_auc' has min_absolute_change=0.01 but there is no baseline; pass "
        "--baseline REF or keep only threshold=.",
    ),
    "missing data file": (
        {"--data": "missing.csv"},
        "The data file 'missing.csv' does not exist; check the path.",
    ),
    "missing target column": (
        {"--target": "churned"},
        "The data has no target column 'churned'; its columns are a, b, label, region: pass one "
        "with --target.",
    ),
    "missing feature column": (
        {"--data": "no_b.csv"},
        "The data lacks feature column(s) b that churn/2 takes; its columns are a, label, region.",
    ),
    "unknown slice column": (
        {"--slice": "country"},
        "The data has no slice column 'country'; its columns are a, b, label, region.",
    ),
}


@pytest.mark.parametrize("case", list(BAD))
def test_bad_input_is_one_line_exit_2_and_no_report(
    home: Home, case: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    from typer.testing import CliRunner

    from modelyard.cli.main import app

    monkeypatch.chdir(home.path)
    report = home.path / "bad.md"
    options: dict[str, str | None] = {
        "--candidate": "churn/2", "--baseline": "churn/1", "--data": "eval.csv",
        "--target": "label", "--metric": "roc_auc:threshold=0.8", "--markdown": str(report),
    }  # fmt: skip
    options.update(BAD[case][0])
    args = [part for key, value in options.items() if value is not None for part in (key, value)]
    result = CliRunner().invoke(app, ["gate", *args], env=home.env, catch_exceptions=False)
    assert (result.exit_code, result.stderr) == (2, f"error: {BAD[case][1]}\n")
    assert result.stdout == ""
    assert not report.exists() and not list(home.path.glob("*.tmp"))


def test_the_api_on_each_backend(registry: Registry, tmp_path: Path) -> None:
    _register(registry)
    report = tmp_path / "gate.md"
    result = gate_step(
        registry, candidate="churn@production", baseline="churn/1", data=_eval_data(),
        target="label", thresholds=["roc_auc:threshold=0.8,min_absolute_change=0.1"],
        slices=["region"], markdown=report,
    )  # fmt: skip
    assert result.passed and result.candidate_version == "churn/2"
    assert [r.slice_value for r in result.results] == [None, "eu", "us"]
    assert report.read_text().startswith("## ✅ passed")
