"""``yard assess`` in subprocesses: the JSON shape scripts rely on, --fail-under as a CI gate,
reports written by suffix, attestations through the CLI, and one-line errors for bad input."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import POSTGRES_URL, SKIP_POSTGRES, reset_postgres
from tests.integration._server import YARD, server_env

TOP_KEYS = {
    "version",
    "rubric",
    "generated_at",
    "project",
    "model",
    "deployment",
    "score",
    "band",
    "sections",
    "tests",
    "plan",
    "architecture",
    "stack",
    "monitoring",
    "deployment_strategy",
    "maintenance",
    "risks",
    "cost",
}
TEST_KEYS = {
    "id",
    "label",
    "section",
    "number",
    "name",
    "status",
    "points",
    "judgement",
    "counts",
    "evidence",
    "reason",
    "next_step",
    "effort",
}


def yard(*args: str, cwd: Path, home: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [YARD, *args],
        cwd=cwd,
        env=server_env(home),
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


def one_line_error(done: subprocess.CompletedProcess[str], text: str) -> None:
    assert done.returncode == 1, done.stdout + done.stderr
    assert done.stderr.count("\n") == 1 and done.stderr.startswith("error: "), done.stderr
    assert text in done.stderr, done.stderr


def test_the_json_shape_is_versioned_and_complete(tmp_path: Path) -> None:
    done = yard("assess", str(tmp_path), "--json", cwd=tmp_path, home=tmp_path / "home")
    assert done.returncode == 0, done.stderr
    a = json.loads(done.stdout)
    assert set(a) == TOP_KEYS and a["version"] == 1
    assert (a["score"], a["band"]["range"]) == (0, "0")
    assert [s["id"] for s in a["sections"]] == ["data", "model", "infra", "monitor"]
    assert set(a["sections"][0]) == {"id", "name", "points", "max", "automated", "manual"}
    assert len(a["tests"]) == 28 and all(set(t) == TEST_KEYS for t in a["tests"])
    assert a["tests"][0]["id"] == "data-1" and a["tests"][0]["label"] == "Data 1"
    assert set(a["plan"][0]) == {"test", "label", "name", "gain", "effort", "next_step"}
    assert a["cost"] == {
        "status": "not_measured",
        "currency": None,
        "models": [],
        "detail": "not measured: no model is registered; register one and serve it with "
        "'yard serve NAME --log-predictions'",
    }
    assert a["architecture"].startswith("flowchart LR")


def test_fail_under_gates_ci_with_a_one_line_reason(tmp_path: Path) -> None:
    home = tmp_path / "home"
    passed = yard("assess", ".", "--fail-under", "0", cwd=tmp_path, home=home)
    assert passed.returncode == 0, passed.stderr
    failed = yard("assess", ".", "--fail-under", "0.5", cwd=tmp_path, home=home)
    one_line_error(failed, "the ML Test Score is 0, under --fail-under 0.5")
    assert failed.stdout.startswith("ML Test Score: 0 (band 0)")  # the summary still prints
    out_of_range = yard("assess", "--fail-under", "8", cwd=tmp_path, home=home)
    assert out_of_range.returncode == 2 and "--fail-under" in out_of_range.stderr


def test_reports_are_written_by_suffix(tmp_path: Path) -> None:
    home = tmp_path / "home"
    for name in ("report.md", "report.html"):
        done = yard("assess", "-o", name, cwd=tmp_path, home=home)
        assert done.returncode == 0, done.stderr
        assert f"Report written to {name}" in done.stdout
    assert (tmp_path / "report.md").read_text().startswith("# Production readiness")
    assert "<h2>8. Risk mitigation</h2>" in (tmp_path / "report.html").read_text()


def test_bad_inputs_are_one_line_errors_and_write_nothing(tmp_path: Path) -> None:
    home = tmp_path / "home"
    one_line_error(
        yard("assess", "-o", "report.pdf", cwd=tmp_path, home=home),
        "ending in .md (Markdown) or .html",
    )
    one_line_error(
        yard("assess", "nowhere", cwd=tmp_path, home=home),
        "Project folder 'nowhere' does not exist",
    )
    one_line_error(
        yard("assess", "--model", "nope", cwd=tmp_path, home=home), "No model named 'nope'"
    )
    one_line_error(yard("assess", "--deployment", "nope", cwd=tmp_path, home=home), "'nope'")
    one_line_error(
        yard("assess", "attest", "Data 9", "--by", "a", "--note", "n", cwd=tmp_path, home=home),
        "'Data 1' or 'data-1'",
    )
    assert sorted(p.name for p in tmp_path.iterdir()) == ["home"]


@pytest.mark.parametrize("form", ["Data 2", "data-2"])
def test_an_attestation_through_the_cli_shows_in_the_next_assessment(
    tmp_path: Path, form: str
) -> None:
    home = tmp_path / "home"
    done = yard(
        "assess",
        "attest",
        form,
        "--by",
        "Ada",
        "--note",
        "ablation: docs/ablation.md",
        cwd=tmp_path,
        home=home,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("Data 2 attested done by hand by Ada on ")
    a = json.loads(yard("assess", "--json", cwd=tmp_path, home=home).stdout)
    data2 = next(t for t in a["tests"] if t["id"] == "data-2")
    assert (data2["status"], data2["points"]) == ("manual", 0.5)
    assert data2["evidence"][0]["detail"] == "ablation: docs/ablation.md"
    assert a["sections"][0]["points"] == 0.5 and a["score"] == 0  # the minimum of the four


def test_a_scaffold_assessed_from_outside_reads_its_own_registry(tmp_path: Path) -> None:
    """``yard assess DIR`` reads DIR's modelyard.toml (rules, home) as DIR's commands do."""
    env_home = tmp_path / "unused-home"
    assert yard("init", "proj", "--name", "churn", cwd=tmp_path, home=env_home).returncode == 0
    env = server_env(env_home)
    env.pop("MODELYARD_HOME")
    done = subprocess.run(
        [YARD, "assess", "proj", "--json"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    a = json.loads(done.stdout)
    assert {t["id"] for t in a["tests"] if t["status"] == "automated"} == {
        "data-1",
        "infra-2",
        "infra-3",
        "infra-4",
    }
    assert [r["name"] for r in a["monitoring"]["rules"]] == ["churn-drift"]
    assert (tmp_path / "proj/.modelyard").is_dir() and not (tmp_path / ".modelyard").exists()


@pytest.mark.slow
def test_the_demos_project_after_it_ran_scores_its_evidence(tmp_path: Path) -> None:
    """What ``make demo``'s ``yard init`` project holds after its pipeline ran, its first
    version went to production and a deployment serves it: the registry adds the schema and
    profile (Data 1), the input example with predictions logged (Infra 5), validated inputs
    (Monitor 2) and the scaffold's drift rule on a real deployment (Monitor 3)."""
    env = server_env(tmp_path / "unused-home")
    env.pop("MODELYARD_HOME")  # the project's modelyard.toml says where its registry lives
    project = tmp_path / "proj"

    def run(*args: str, cwd: Path = project) -> subprocess.CompletedProcess[str]:
        done = subprocess.run([YARD, *args], cwd=cwd, env=env, capture_output=True, text=True,
                              timeout=900, check=False)  # fmt: skip
        assert done.returncode == 0, done.stdout + done.stderr
        return done

    run("init", "proj", "--name", "churn", cwd=tmp_path)
    run("run", "pipeline.py")
    run("models", "alias", "churn/1", "production")
    run("deploy", "churn", "--model", "churn@production")
    a = json.loads(run("assess", "--json").stdout)
    assert (a["model"], a["deployment"]) == ("churn/1", "churn")
    assert {t["id"] for t in a["tests"] if t["status"] == "automated"} == {
        "data-1", "infra-2", "infra-3", "infra-4", "infra-5", "monitor-2", "monitor-3",
    }  # fmt: skip
    assert [s["points"] for s in a["sections"]] == [1, 0, 4, 2] and a["score"] == 0
    assert "pipeline training (pipeline.py)" in a["architecture"]
    assert {"scikit-learn", "python", "modelyard"} <= {s["name"] for s in a["stack"]}
    run("assess", "-o", "assessment.html")
    assert "deployment churn" in (project / "assessment.html").read_text()


@pytest.mark.postgres
@SKIP_POSTGRES
def test_an_attestation_round_trips_through_postgresql(tmp_path: Path) -> None:
    assert POSTGRES_URL is not None
    reset_postgres(POSTGRES_URL)
    env = server_env(tmp_path / "home", MODELYARD_DATABASE_URL=POSTGRES_URL)

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([YARD, *args], cwd=tmp_path, env=env, capture_output=True,
                              text=True, timeout=300, check=False)  # fmt: skip

    done = run("assess", "attest", "Infra 5", "--by", "Ada", "--note", "replayed a request")
    assert done.returncode == 0, done.stderr
    a = json.loads(run("assess", "--json").stdout)
    infra5 = next(t for t in a["tests"] if t["id"] == "infra-5")
    assert (infra5["status"], infra5["points"]) == ("manual", 0.5)
    assert infra5["evidence"][0]["where"].startswith("attested by Ada on ")


def test_an_assessment_without_a_prediction_log_imports_nothing_heavy(tmp_path: Path) -> None:
    """It runs in CI on every pull request: no pandas, scipy, scikit-learn, pyarrow or DuckDB
    (seconds of imports) unless there is a log to read."""
    script = (
        "import sys\n"
        "from modelyard.cli.main import main\n"
        "try:\n"
        "    main(['assess', '--json'])\n"
        "except SystemExit as exc:\n"
        "    assert not exc.code, exc.code\n"
        "heavy = ('pandas', 'scipy', 'sklearn', 'pyarrow', 'duckdb')\n"
        "print('HEAVY', sorted(m for m in heavy if m in sys.modules))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script], cwd=tmp_path, env=server_env(tmp_path / "home"),
        capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines()[-1] == "HEAVY []"
