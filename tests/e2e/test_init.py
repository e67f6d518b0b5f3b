"""``yard init``: the scaffolded project's own test passes right away, its pipeline reruns from the
cache, and the gate its workflow runs passes; bad targets write nothing."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pandas as pd
import pytest
import yaml

from tests.integration._server import YARD, free_port, server_env

ROOT = Path(__file__).resolve().parents[2]


def yard(*args: str, cwd: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [YARD, *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=900, check=False
    )


def test_a_scaffolded_project_has_its_files_and_workflow(tmp_path: Path) -> None:
    env = server_env(tmp_path / "unused-home")
    made = yard("init", "churn-model", "--name", "churn", cwd=tmp_path, env=env)
    assert made.returncode == 0, made.stderr
    project = tmp_path / "churn-model"
    expected = ["pipeline.py", "modelyard.toml", "tests/test_pipeline.py", ".gitignore",
                ".github/workflows/model-ci.yml", "data/train.csv", "data/holdout.csv",
                "data/reference.csv", "data/new.parquet", "README.md"]  # fmt: skip
    for name in expected:
        assert (project / name).is_file(), name
    workflow = yaml.safe_load((project / ".github/workflows/model-ci.yml").read_text())
    assert workflow[True] == {"pull_request": None}  # YAML 1.1 reads the key 'on' as true
    assert any("yard gate" in s.get("run", "") for s in workflow["jobs"]["model"]["steps"])
    assess = [
        s["run"] for s in workflow["jobs"]["model"]["steps"] if "yard assess" in s.get("run", "")
    ]
    assert len(assess) == 1 and "--fail-under" in assess[0], assess
    new = pd.read_parquet(project / "data/new.parquet")
    holdout = pd.read_csv(project / "data/holdout.csv")
    assert list(new.columns) == [c for c in holdout.columns if c != "target"]
    assert len(new) == len(holdout)


def readme_commands(readme: str) -> list[str]:
    """The commands of the README's ``sh`` block, continuation lines joined, comments dropped."""
    block = re.search(r"```sh\n(.*?)```", readme, re.S)
    assert block is not None, readme
    joined = block.group(1).replace("\\\n", " ")
    return [line.split("  #")[0].strip() for line in joined.splitlines() if line.strip()]


def served(command: str, project: Path, env: dict[str, str]) -> None:
    """Run the README's ``yard serve`` as written (on a free port: 8080 may be in use), ask it for
    predictions of holdout rows, stop it."""
    port = free_port()
    log = (project / "serve.log").open("w")
    proc = subprocess.Popen(
        ["bash", "-c", f"exec {command}"], cwd=project, stdout=log, stderr=subprocess.STDOUT,
        env={**env, "MODELYARD_SERVING__PORT": str(port)},
    )  # fmt: skip
    try:
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 120
        while not ready(url):
            assert proc.poll() is None, (project / "serve.log").read_text()
            assert time.monotonic() < deadline, (project / "serve.log").read_text()
            time.sleep(0.1)
        rows = pd.read_csv(project / "data/holdout.csv").drop(columns=["target"]).head(3)
        answer = httpx.post(
            f"{url}/invocations", json={"dataframe_split": rows.to_dict(orient="split")}, timeout=30
        )
        assert answer.status_code == 200, answer.text
        assert answer.headers["X-Model-Version"] == "2"
        assert len(answer.json()["predictions"]) == 3
    finally:
        proc.terminate()
        proc.wait(30)
        log.close()


def ready(url: str) -> bool:
    try:
        return httpx.get(f"{url}/v2/health/ready", timeout=1).status_code == 200
    except httpx.TransportError:
        return False


@pytest.mark.slow
def test_the_generated_readme_runs_as_written(tmp_path: Path) -> None:
    """Every command of the README ``yard init`` writes, in order, in the new project: the
    versions it names exist, the gate passes, batch scoring reads the data the project ships and
    the served model answers."""
    env = server_env(tmp_path / "unused-home")
    env.pop("MODELYARD_HOME")
    env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), env["PATH"]])  # pytest, yard
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), str(tmp_path / "churn-model")])
    assert yard("init", "churn-model", "--name", "churn", cwd=tmp_path, env=env).returncode == 0
    project = tmp_path / "churn-model"
    commands = readme_commands((project / "README.md").read_text())
    assert len(commands) == 9, commands
    for command in commands:
        if command.startswith("yard serve "):
            served(command, project, env)
            continue
        done = subprocess.run(
            ["bash", "-c", command], cwd=project, env=env, capture_output=True, text=True,
            timeout=900, check=False,
        )  # fmt: skip
        assert done.returncode == 0, f"{command}\n{done.stdout}\n{done.stderr}"
    assert "roc_auc" in (project / "gate.md").read_text()
    scores = pd.concat(pd.read_parquet(p) for p in sorted((project / "scores").glob("part-*")))
    assert len(scores) == len(pd.read_parquet(project / "data/new.parquet"))
    assert (project / ".modelyard").is_dir()  # the registry lives in the project

    # what the README says next: the same run again is all cache hits and registers nothing
    again = yard("run", "pipeline.py", "--json", "--param", "max_iter=200", cwd=project, env=env)
    assert again.returncode == 0, again.stderr
    assert '"status":"cached"' in again.stdout.replace(" ", "")
    # and the workflow's gate step, as the pull request would run it (baseline: production)
    workflow = yaml.safe_load((project / ".github/workflows/model-ci.yml").read_text())
    gate = next(s for s in workflow["jobs"]["model"]["steps"] if "yard gate" in s.get("run", ""))
    done = subprocess.run(
        ["bash", "-ec", gate["run"]], cwd=project, env=env, capture_output=True, text=True,
        timeout=900, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    assert "churn@production" in (project / "gate.md").read_text()
    # and its assessment step: the score goes to the job's summary, a CI gate once raised
    step = next(s for s in workflow["jobs"]["model"]["steps"] if "yard assess" in s.get("run", ""))
    summary = project / "summary.md"
    done = subprocess.run(
        ["bash", "-ec", step["run"]], cwd=project, capture_output=True, text=True, timeout=300,
        env={**env, "GITHUB_STEP_SUMMARY": str(summary)}, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    assert "## 1. Current state assessment" in summary.read_text()


def test_init_refuses_a_folder_in_use_and_a_bad_name(tmp_path: Path) -> None:
    env = server_env(tmp_path / "home")
    used = tmp_path / "used"
    used.mkdir()
    (used / "notes.txt").write_text("mine")
    out = yard("init", str(used), cwd=tmp_path, env=env)
    assert out.returncode != 0 and "is not an empty folder" in out.stderr
    assert sorted(p.name for p in used.iterdir()) == ["notes.txt"]
    bad = yard("init", str(tmp_path / "new"), "--name", "9 lives", cwd=tmp_path, env=env)
    assert bad.returncode != 0 and "Model name '9 lives' is not valid" in bad.stderr
    assert not (tmp_path / "new").exists()
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []
