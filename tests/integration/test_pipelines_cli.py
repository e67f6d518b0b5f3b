"""``yard run`` and ``yard runs`` in subprocesses, as a user runs them."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.integration._pipelines import DIAMOND

YARD = str(Path(sys.executable).parent / "yard")


@pytest.fixture
def project(tmp_path: Path) -> Iterator[Path]:
    root = tmp_path / "project"
    root.mkdir()
    (root / "diamond.py").write_text(DIAMOND)
    return root


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    out = {k: v for k, v in os.environ.items() if not k.startswith("MODELYARD_")}
    out["MODELYARD_HOME"] = str(tmp_path / "home")
    return out


def yard(
    env: dict[str, str], cwd: Path, *args: str, code: int = 0
) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(
        [YARD, *args], env=env, cwd=cwd, capture_output=True, text=True, timeout=180, check=False
    )
    assert proc.returncode == code, proc.stdout + proc.stderr
    return proc


def test_yard_run_then_runs_list_and_show(project: Path, env: dict[str, str]) -> None:
    first = yard(env, project, "run", "diamond.py", "--workers", "1", "--param", "n=40")
    assert "pipeline diamond: run " in first.stdout
    assert "5 steps, 0 cached; metrics: combine.total=" in first.stdout
    assert "[running] make\n[succeeded] make" in first.stderr  # one line per change
    second = yard(env, project, "run", "diamond.py:diamond", "-p", "n=40", "--json")
    record = json.loads(second.stdout)
    assert [s["status"] for s in record["steps"]] == ["cached"] * 5
    run_id, first_id = record["id"], record["steps"][0]["cached_from"]

    listed = yard(env, project, "runs", "list").stdout
    assert "5 (5 cached)" in listed and "5 (0 cached)" in listed
    shown = yard(env, project, "runs", "show", run_id).stdout
    for text in ("steps", "inputs", "artifacts", "series/parquet", "array/npy", "json/json",
                 f"make.output of run {first_id}", f"hit: run {first_id}"):  # fmt: skip
        assert text in shown, text
    assert re.search(r"\b\d+(\.\d)? (B|KiB)\b", shown), shown  # artifact sizes in binary units
    log = yard(env, project, "runs", "show", first_id, "--log", "means").stdout
    assert log == "grouping\n\n"


def test_yard_run_exit_codes(project: Path, env: dict[str, str]) -> None:
    unknown = yard(env, project, "run", "diamond.py", "--param", "m=3", code=2)
    assert unknown.stderr == (
        "error: Pipeline 'diamond' has no parameter 'm'; its parameters are: n, fail.\n"
    )
    (project / "two.py").write_text(
        DIAMOND + "\nagain = diamond\nother = pipeline(name='b')(diamond.fn)\n"
    )
    several = yard(env, project, "run", "two.py", code=2)
    assert "defines 2 pipelines; choose one: two.py:diamond, two.py:other" in several.stderr
    assert not (Path(env["MODELYARD_HOME"]) / "artifacts").exists()

    failed = yard(env, project, "run", "diamond.py", "-p", "fail=yes", "--workers", "1", code=1)
    assert "│ combine │ failed" in failed.stdout
    assert "│ summary │ skipped" in failed.stdout
    assert "step 'combine' failed:\n" in failed.stderr
    assert 'diamond.py", line' in failed.stderr
    assert "RuntimeError: cannot combine\nerror: Step 'combine'" in failed.stderr
