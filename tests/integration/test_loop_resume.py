"""The loop survives its controller: a ``yard loop run`` killed (SIGKILL, with its pipeline
workers) while the pipeline trains, or after it registered the version, is resumed by the next
controller without training twice; two controllers started together run one loop."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from modelyard import loop
from modelyard.loop import LoopController
from modelyard.pipelines.records import get_pipeline_run
from modelyard.settings import Settings
from tests.integration._loop import Project, make_project, write_config
from tests.integration._server import server_env

YARD = str(Path(sys.executable).parent / "yard")


@pytest.fixture
def project(tmp_path: Path) -> Iterator[Project]:
    made = make_project(tmp_path / "project", f"sqlite:///{tmp_path / 'meta.db'}")
    yield made
    made.registry.close()


def controller_process(project: Project, config: Path, log: Path) -> subprocess.Popen[bytes]:
    env = server_env(project.home, MODELYARD_CONFIG=str(config))
    with log.open("wb") as out:
        return subprocess.Popen(
            [YARD, "loop", "run", "--interval", "0.2"], cwd=project.root, env=env,
            stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
        )  # fmt: skip


def wait_for(path: Path, proc: subprocess.Popen[bytes], log: Path, timeout_s: float = 60) -> None:
    deadline = time.monotonic() + timeout_s
    while not path.exists():
        if proc.poll() is not None:
            raise AssertionError(f"the controller exited: {log.read_text()}")
        if time.monotonic() > deadline:
            raise AssertionError(f"{path.name} did not appear: {log.read_text()}")
        time.sleep(0.05)


def kill(proc: subprocess.Popen[bytes]) -> None:
    os.killpg(proc.pid, signal.SIGKILL)  # the controller and its pipeline workers
    proc.wait(10)


def resumed(project: Project, config: Path) -> LoopController:
    """A new controller from the same configuration, acting once the dead one's lease (30 s on
    SQLite) has run out."""
    import tomllib

    settings = Settings(**tomllib.loads(config.read_text()))
    return LoopController(project.registry, settings)


def latest(project: Project) -> int:
    return project.registry.get_model("churn").latest_version


def trained(project: Project) -> int:
    counter = project.root / "counter"
    return len(counter.read_text().splitlines()) if counter.exists() else 0


@pytest.mark.parametrize("where", ["block", "finish_block"])
def test_a_killed_controller_is_resumed_without_training_twice(
    project: Project, tmp_path: Path, where: str
) -> None:
    block = project.root / "hold"
    block.touch()
    config = write_config(project, {where: str(block), "counter": str(project.root / "counter")})
    loop.trigger(project.registry.db, "churn", "decay")
    log = tmp_path / "controller.log"
    proc = controller_process(project, config, log)
    try:
        wait_for(block.with_name("hold.started"), proc, log)
    finally:
        kill(proc)
    [status] = loop.loop_status(project.registry.db, "churn")
    assert status.state == "training"
    first_run = status.run_id
    assert first_run is not None
    # killed in fit: nothing trained; killed in finish: trained once and registered churn/2
    assert trained(project) == (0 if where == "block" else 1)
    block.unlink()
    later = datetime.now(UTC) + timedelta(seconds=60)
    controller = resumed(project, config)
    result = controller.step("churn", now=later)
    assert result.action == "gating", result
    assert trained(project) == 1
    assert latest(project) == 2  # one version registered for the one trigger
    [status] = loop.loop_status(project.registry.db, "churn")
    assert status.candidate == "churn/2"
    rerun = [t for t in status.transitions if t.from_state == t.to_state == "training"]
    assert len(rerun) == 1 and rerun[0].evidence["rerun_of"] == first_run
    assert status.run_id == rerun[0].evidence["run_id"] != first_run
    abandoned = get_pipeline_run(project.registry, first_run)
    assert abandoned is not None and abandoned.status == "failed"
    held = abandoned.step("fit" if where == "block" else "finish")
    assert held.status == "cancelled"
    assert held.cache_note is not None and f"run again as {status.run_id}" in held.cache_note
    assert controller.step("churn", now=later).action == "canary"


def test_two_controllers_started_together_run_one_loop(project: Project, tmp_path: Path) -> None:
    config = write_config(project, {"counter": str(project.root / "counter")})
    loop.trigger(project.registry.db, "churn", "decay")
    logs = [tmp_path / "a.log", tmp_path / "b.log"]
    procs = [controller_process(project, config, log) for log in logs]
    try:
        deadline = time.monotonic() + 90
        while loop.loop_status(project.registry.db, "churn")[0].state != "canary":
            assert time.monotonic() < deadline, [log.read_text() for log in logs]
            time.sleep(0.1)
    finally:
        for proc in procs:
            kill(proc)
    assert trained(project) == 1
    assert latest(project) == 2
    [status] = loop.loop_status(project.registry.db, "churn")
    assert [(t.from_state, t.to_state) for t in status.transitions] == [
        ("idle", "triggered"), ("triggered", "training"), ("training", "gating"),
        ("gating", "canary"),
    ]  # fmt: skip
