"""``yard gate``'s exit codes as CI reads them, in real subprocesses: 1 only when the gate ran
and failed; every error that keeps it from a verdict (a usage error, a model, version or alias
that does not exist, data it cannot read, a broken configuration or database) exits 2 with one
line on stderr and writes no report."""

from __future__ import annotations

import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest

from modelyard.registry import Registry
from modelyard.settings import Settings
from tests.integration._server import YARD, server_env
from tests.integration.test_gate_cli import _eval_data, _register

GOOD = {
    "--candidate": "churn/2", "--baseline": "churn/1", "--data": "eval.csv", "--target": "label",
    "--metric": "roc_auc:threshold=0.8",
}  # fmt: skip

# case: (options replacing GOOD's, None dropping one; extra environment; stderr's one line)
CASES: dict[str, tuple[dict[str, str | None], dict[str, str], str]] = {
    "unknown candidate model": (
        {"--candidate": "fraud/1"}, {},
        "error: No model named 'fraud' is registered; run 'yard models list' to see the models.",
    ),
    "unknown candidate version": (
        {"--candidate": "churn/9"}, {},
        "error: Model 'churn' has no version 9 (latest is 2); run 'yard models list churn'.",
    ),
    "unknown baseline alias": (
        {"--baseline": "churn@staging"}, {},
        "error: Model 'churn' has no alias 'staging'",
    ),
    "unknown baseline version": (
        {"--baseline": "churn/7"}, {},
        "error: Model 'churn' has no version 7 (latest is 2); run 'yard models list churn'.",
    ),
    "malformed reference": ({"--candidate": "churn//2"}, {}, "error: "),
    "missing data file": (
        {"--data": "missing.csv"}, {},
        "error: The data file 'missing.csv' does not exist; check the path.",
    ),
    "unknown metric": (
        {"--metric": "auc:threshold=0.8"}, {},
        "error: Unknown gate metric 'auc'; classification models support accuracy, precision, "
        "recall, f1, roc_auc, log_loss, brier.",
    ),
    "unreachable database": (
        {}, {"MODELYARD_DATABASE_URL": "postgresql+psycopg://postgres@127.0.0.1:1/none"},
        "error: Cannot use the metadata database postgresql+psycopg://postgres@127.0.0.1:1/none",
    ),
    "unsupported database": (
        {}, {"MODELYARD_DATABASE_URL": "nonsense://x"},
        "error: Unsupported database 'nonsense' in 'nonsense://x'; use SQLite or PostgreSQL.",
    ),
    "malformed modelyard.toml": (
        {}, {"MODELYARD_CONFIG": "broken.toml"},
        "error: The configuration file 'broken.toml' is not valid TOML (Expected ']' at the end "
        "of a table declaration (at line 1, column 12)); fix it or point MODELYARD_CONFIG at "
        "another file.",
    ),
    "bad setting value": (
        {}, {"MODELYARD_SERVING__MAX_BATCH_SIZE": "many"},
        "error: Invalid setting serving.max_batch_size (Input should be a valid integer, unable "
        "to parse string as an integer); fix it in modelyard.toml or the MODELYARD_ environment "
        "variables.",
    ),
}  # fmt: skip


@dataclass
class Run:
    code: int
    stdout: str
    stderr: str


@pytest.fixture(scope="module")
def home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("gate-exit")
    registry = Registry(Settings(home=path / "home"), identity="setup")
    _register(registry)
    registry.close()
    _eval_data().to_csv(path / "eval.csv", index=False)
    _eval_data().to_csv(path / "eval[red].csv", index=False)
    (path / "broken.toml").write_text("[monitoring\n")
    return path


@pytest.fixture(scope="module")
def runs(home: Path) -> dict[str, Run]:
    """Every case, and a passing and a failing gate, started at once (each pays the CLI's
    start-up)."""
    commands: dict[str, tuple[list[str], dict[str, str]]] = {
        "passes": (_args({}, "pass.md"), {}),
        "fails": (_args({"--metric": "roc_auc:threshold=0.99"}, "fail.md"), {}),
        "markup": (_args({"--data": "eval[red].csv"}, "markup.md"), {}),
    }
    for case, (options, extra, _) in CASES.items():
        commands[case] = (_args(options, f"{case}.md"), extra)
    procs = {
        name: subprocess.Popen(
            [YARD, "gate", *args],
            env={**server_env(home / "home"), **extra},
            cwd=home,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for name, (args, extra) in commands.items()
    }
    done = {}
    for name, proc in procs.items():
        stdout, stderr = proc.communicate(timeout=300)
        done[name] = Run(proc.returncode, stdout, stderr)
    return done


def _args(options: dict[str, str | None], report: str) -> list[str]:
    merged = {**GOOD, **options, "--markdown": report}
    return [part for key, value in merged.items() if value is not None for part in (key, value)]


def test_exit_0_when_the_gate_passes_and_1_only_when_it_fails(runs: dict[str, Run]) -> None:
    assert (runs["passes"].code, runs["passes"].stderr) == (0, "")
    assert runs["passes"].stdout.startswith("Gate PASSED: churn/2 against churn/1")
    assert (runs["fails"].code, runs["fails"].stderr) == (1, "")
    assert runs["fails"].stdout.startswith("Gate FAILED: churn/2 against churn/1")


@pytest.mark.parametrize("case", list(CASES))
def test_an_error_before_a_verdict_exits_2_with_one_line(
    home: Path, runs: dict[str, Run], case: str
) -> None:
    run = runs[case]
    assert run.code == 2, run.stderr
    assert run.stdout == ""
    assert run.stderr.startswith(CASES[case][2]) and run.stderr.count("\n") == 1, run.stderr
    assert not (home / f"{case}.md").exists()


def test_text_that_looks_like_markup_is_printed_as_given(runs: dict[str, Run]) -> None:
    run = runs["markup"]
    assert run.code == 0, run.stderr
    assert run.stdout.startswith("Gate PASSED: churn/2 against churn/1 on eval[red].csv ")
