"""``yard loop`` in subprocesses, as a user runs it: a bad policy stops ``yard loop run`` before
anything runs, in one line naming the key; a loop is triggered, moved a round, rejected, and
``yard loop status`` shows each transition with its evidence (and ``--json``)."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.integration._loop import Project, make_project, write_config
from tests.integration._server import server_env

YARD = str(Path(sys.executable).parent / "yard")


@pytest.fixture
def project(tmp_path: Path) -> Iterator[Project]:
    made = make_project(tmp_path / "project", f"sqlite:///{tmp_path / 'meta.db'}")
    yield made
    made.registry.close()


def yard(project: Project, config: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [YARD, *args], cwd=project.root, capture_output=True, text=True, timeout=120,
        env=server_env(project.home, MODELYARD_CONFIG=str(config)), check=False,
    )  # fmt: skip


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (("holdout = 0.3", "holdout = 1.5"),
         "error: Loop setting loops.churn.gate.holdout = 1.5 is outside (0, 1); give the share"),
        (('cooldown = "0s"', 'cooldown = "0s"\nrequire_aproval = true'),
         "error: Invalid setting loops.churn.require_aproval (Extra inputs are not permitted)"),
        (("steps = [50, 100]", "steps = [50, 10]"),
         "error: Loop setting loops.churn.rollout.steps is invalid: Steps 50,10 do not increase"),
    ],
)  # fmt: skip
def test_a_bad_policy_stops_loop_run_in_one_line(
    project: Project, edit: tuple[str, str], message: str
) -> None:
    config = write_config(project, {})
    text = config.read_text().replace("[loops.churn.rollout]", "[loops.churn.gate]\nholdout = 0.3"
                                      "\n\n[loops.churn.rollout]")  # fmt: skip
    assert edit[0] in text
    config.write_text(text.replace(edit[0], edit[1]))
    proc = yard(project, config, "loop", "run", "--once")
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert proc.stderr.startswith(message), proc.stderr
    assert proc.stderr.count("\n") == 1 and proc.stdout == ""


def test_trigger_run_reject_and_status(project: Project) -> None:
    config = write_config(project, {})
    unknown = yard(project, config, "loop", "status", "nope")
    assert unknown.returncode == 1 and "Deployment 'nope' has no loop yet" in unknown.stderr
    idle = yard(project, config, "loop", "status", "churn")
    assert idle.stdout.startswith("loop of churn: idle (no loop yet;"), idle.stdout + idle.stderr
    triggered = yard(project, config, "loop", "trigger", "churn", "--reason", "decay seen")
    assert triggered.returncode == 0, triggered.stderr
    assert "deployment churn loop 1: triggered" in triggered.stdout
    ran = yard(project, config, "loop", "run", "--once")
    assert ran.returncode == 0, ran.stderr
    assert "churn loop 1: training (training): training run" in ran.stdout
    rejected = yard(project, config, "loop", "reject", "churn", "--reason", "wrong data")
    assert "rejected by controller" in rejected.stdout, rejected.stdout + rejected.stderr
    again = yard(project, config, "loop", "approve", "churn", "--reason", "fine")
    assert again.returncode == 1 and "nothing to approve" in again.stderr
    ran = yard(project, config, "loop", "run", "--once")
    assert "rejected (rejected): rejected by controller: wrong data" in ran.stdout, ran.stdout

    status = yard(project, config, "loop", "status")
    assert status.returncode == 0, status.stderr
    out = status.stdout
    assert "loop of churn: rejected since" in out and "(loop 1)" in out
    assert 'trigger: {"kind": "manual", "reason": "decay seen", "by": "controller"}' in out
    assert "reason: rejected by controller: wrong data" in out
    assert "idle -> triggered  by controller: decay seen" in out
    assert "triggered -> training  by loop-controller: training run" in out
    assert "training -> rejected  by loop-controller: rejected by controller: wrong data" in out
    assert '"holdout_rows": 90' in out and "      run_id: " in out
    data = json.loads(yard(project, config, "loop", "status", "churn", "--json").stdout)
    [loop] = data
    assert (loop["state"], loop["loop"], loop["reason"]) == (
        "rejected", 1, "rejected by controller: wrong data")  # fmt: skip
    moves = [(t["from_state"], t["to_state"]) for t in loop["transitions"]]
    assert moves == [("idle", "triggered"), ("triggered", "training"), ("training", "training"),
                     ("training", "rejected")]  # fmt: skip
    assert loop["transitions"][2]["evidence"] == {"decision": "rejected", "by": "controller"}
