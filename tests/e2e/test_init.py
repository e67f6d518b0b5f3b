"""``yard init``: the scaffolded project's own test passes right away, its pipeline reruns from the
cache, and the gate its workflow runs passes; bad targets write nothing."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import yaml

from tests.integration._server import YARD, server_env

ROOT = Path(__file__).resolve().parents[2]


def yard(*args: str, cwd: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [YARD, *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=300, check=False
    )


def test_a_scaffolded_project_tests_trains_and_gates(tmp_path: Path) -> None:
    env = server_env(tmp_path / "unused-home")
    env.pop("MODELYARD_HOME")  # the project's modelyard.toml says where its registry lives
    made = yard("init", "churn-model", "--name", "churn", cwd=tmp_path, env=env)
    assert made.returncode == 0, made.stderr
    project = tmp_path / "churn-model"
    expected = ["pipeline.py", "modelyard.toml", "tests/test_pipeline.py", ".gitignore",
                ".github/workflows/model-ci.yml", "data/train.csv", "data/holdout.csv"]  # fmt: skip
    for name in expected:
        assert (project / name).is_file(), name
    workflow = yaml.safe_load((project / ".github/workflows/model-ci.yml").read_text())
    assert workflow[True] == {"pull_request": None}  # YAML 1.1 reads the key 'on' as true
    assert any("yard gate" in s.get("run", "") for s in workflow["jobs"]["model"]["steps"])

    own = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "tests"],
        cwd=project, env={**env, "PYTHONPATH": os.pathsep.join([str(ROOT), str(project)])},
        capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip
    assert own.returncode == 0, own.stdout + own.stderr

    first = yard("run", "pipeline.py", cwd=project, env=env)
    assert first.returncode == 0, first.stderr
    again = yard("run", "pipeline.py", "--json", cwd=project, env=env)
    assert again.returncode == 0, again.stderr
    assert '"status":"cached"' in again.stdout.replace(" ", "")
    gate = yard(
        "gate", "--candidate", "churn", "--data", "data/holdout.csv", "--target", "target",
        "--metric", "roc_auc:threshold=0.95", "--markdown", "gate.md", cwd=project, env=env,
    )  # fmt: skip
    assert gate.returncode == 0, gate.stdout + gate.stderr
    assert "roc_auc" in (project / "gate.md").read_text()
    assert (project / ".modelyard").is_dir()  # the registry lives in the project


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
