"""``modelyard.start_run(mirror=...)`` to Weights & Biases and Neptune, each with its real client
in offline mode, the files it wrote read back: W&B's ``.wandb`` transaction log decoded with
W&B's own protobuf records, Neptune's offline operation log with Neptune's own ``DiskQueue``.

Nothing may reach the network: the clients are told to be online (``WANDB_MODE``,
``NEPTUNE_MODE``) with a W&B server on a closed loopback port and no API key, and the mirrors must
still write offline files only."""

from __future__ import annotations

import json
import logging
import struct
import sys
import threading
import time
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import modelyard
from modelyard.errors import ConfigError, InvalidSpecError
from modelyard.registry import Registry
from modelyard.settings import RunsSettings, Settings

pytestmark = [
    # neptune 1.14 imports swagger_spec_validator, which imports jsonschema's deprecated
    # RefResolver: not ours to fix
    pytest.mark.filterwarnings("ignore:jsonschema.RefResolver is deprecated:DeprecationWarning"),
]


@pytest.fixture(scope="module")
def offline_root(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """Where both clients write, for the whole module: W&B reads its environment once per
    process (at its first ``wandb.init``), so a later test cannot move it. Both are asked, by
    their own environment, to go online to nowhere: the mirrors must override that."""
    root = tmp_path_factory.mktemp("offline")
    with pytest.MonkeyPatch.context() as env:
        env.setenv("WANDB_DIR", str(root))
        env.setenv("WANDB_MODE", "online")
        env.setenv("WANDB_BASE_URL", "http://127.0.0.1:9")
        env.setenv("WANDB_SILENT", "true")
        env.setenv("WANDB_ERROR_REPORTING", "false")  # wandb-core sends its own crashes otherwise
        env.setenv("WANDB_CONFIG_DIR", str(root / "wandb-config"))
        env.delenv("WANDB_API_KEY", raising=False)
        env.setenv("NEPTUNE_MODE", "async")
        env.setenv("NEPTUNE_DATA_DIRECTORY", str(root / ".neptune"))
        env.delenv("NEPTUNE_API_TOKEN", raising=False)
        yield root


@pytest.fixture
def registry(offline_root: Path, tmp_path: Path) -> Iterator[Registry]:
    """The process-wide registry on SQLite, ``[runs] wandb_project`` set."""
    reg = Registry(Settings(home=tmp_path / "home", identity="tester",
                            runs=RunsSettings(wandb_project="acme/churn")))  # fmt: skip
    modelyard.set_registry(reg)
    yield reg
    modelyard.set_registry(None)
    reg.close()


def offline_runs(root: Path) -> set[Path]:
    return {*root.glob("wandb/offline-run-*"), *root.glob(".neptune/offline/*")}


# -- reading the offline files back ---------------------------------------------------------------


def wandb_records(offline_dir: str, *, timeout_s: float = 10.0) -> list[Any]:
    """The records of a finished run's ``.wandb`` file, once W&B's service has written its
    ``exit`` record (``finish`` can return before the file is flushed)."""
    deadline = time.monotonic() + timeout_s
    while True:
        records = read_wandb_file(offline_dir)
        if any(r.WhichOneof("record_type") == "exit" for r in records):
            return records
        assert time.monotonic() < deadline, f"no exit record in {offline_dir}"
        time.sleep(0.05)


def read_wandb_file(offline_dir: str) -> list[Any]:
    """The records of a run's ``.wandb`` file: a 7-byte header (``:W&B``, magic 0xBEE1, version
    0), then LevelDB-log framing (32 KiB blocks; each chunk a CRC-32 of type and data, a length,
    a type: full, first, middle, last), each record one ``wandb_internal_pb2.Record``."""
    from wandb.proto import wandb_internal_pb2

    (path,) = Path(offline_dir).glob("*.wandb")
    data = path.read_bytes()
    assert data[:7] == b":W&B\xe1\xbe\x00"
    records, pending, offset = [], b"", 7
    while offset + 7 <= len(data):  # a chunk cut short by a write in progress is left out
        if 32768 - offset % 32768 < 7:  # a block's tail too short for a header is padding
            offset += 32768 - offset % 32768
            continue
        crc, length, kind = struct.unpack("<IHB", data[offset : offset + 7])
        chunk = data[offset + 7 : offset + 7 + length]
        if len(chunk) < length:
            break
        assert zlib.crc32(bytes([kind]) + chunk) == crc, f"bad checksum at byte {offset}"
        offset += 7 + length
        pending += chunk
        if kind in (1, 4):  # full or last
            record = wandb_internal_pb2.Record()
            record.ParseFromString(pending)
            records.append(record)
            pending = b""
    return records


def wandb_run(offline_dir: str) -> dict[str, Any]:
    """What a later ``wandb sync`` would send: config, history rows, summary, tags, exit code."""
    out: dict[str, Any] = {"config": {}, "history": [], "summary": {}, "exit_code": None}
    for record in wandb_records(offline_dir):
        kind = record.WhichOneof("record_type")
        if kind == "run":
            out.update(project=record.run.project, entity=record.run.entity,
                       name=record.run.display_name, tags=list(record.run.tags),
                       run_id=record.run.run_id)  # fmt: skip
            items = record.run.config.update
        elif kind == "config":
            items = record.config.update
        elif kind == "history":
            row = {"/".join(i.nested_key) or i.key: json.loads(i.value_json)
                   for i in record.history.item}  # fmt: skip
            out["history"].append({k: v for k, v in row.items() if not k.startswith("_")})
            continue
        elif kind == "summary":
            for item in record.summary.update:
                out["summary"]["/".join(item.nested_key) or item.key] = json.loads(item.value_json)
            continue
        elif kind == "exit":
            out["exit_code"] = record.exit.exit_code
            continue
        else:
            continue
        out["config"].update({i.key: json.loads(i.value_json) for i in items if i.key != "_wandb"})
    return out


def neptune_fields(neptune_run_id: str, data_dir: Path) -> dict[str, Any]:
    """The fields of an offline Neptune run, replayed from its operation log read with
    Neptune's own ``DiskQueue`` and ``Operation.from_dict``."""
    from neptune.core.components.queue.disk_queue import DiskQueue
    from neptune.internal.operation import Operation

    (folder,) = (data_dir / "offline").glob(f"run__{neptune_run_id.removeprefix('offline/')}__*")
    queue = DiskQueue(folder, to_dict=lambda op: op.to_dict(), from_dict=Operation.from_dict,
                      lock=threading.RLock())  # fmt: skip
    fields: dict[str, Any] = {}
    while (element := queue.get()) is not None:
        op = element.obj.to_dict()
        path = "/".join(op["path"])
        if op["type"].startswith("Assign"):
            fields[path] = op["value"]
        elif op["type"] == "LogFloats":
            fields.setdefault(path, []).extend(point["value"] for point in op["values"])
        elif op["type"] == "AddStrings":
            fields.setdefault(path, set()).update(op["values"])
        elif op["type"] == "RemoveStrings":
            fields.setdefault(path, set()).difference_update(op["values"])
    queue.close()
    return fields


# -- W&B --------------------------------------------------------------------------------------


def test_start_run_mirrors_params_metrics_and_tags_to_an_offline_wandb_run(
    registry: Registry, offline_root: Path
) -> None:
    commit = "fix: the scaler saw the holdout rows too, so the AUC was optimistic by 0.02"
    with modelyard.start_run("train", mirror="wandb", params={"lr": 0.1}) as run:
        run.log_params({"depth": 4})
        run.log_metrics({"auc": 0.90})
        run.log_metrics({"auc": 0.95, "loss": 0.2})
        run.set_tags({"team": "risk", "commit": commit})
        run.set_tags({"team": "fraud"})
    recorded = registry.get_run(run.id)
    assert recorded.params == {"lr": "0.1", "depth": "4"}
    assert recorded.metrics == {"auc": 0.95, "loss": 0.2}
    assert recorded.status == "finished" and "wandb.mirror_error" not in recorded.tags
    offline_dir = recorded.tags["wandb.offline_dir"]
    assert Path(offline_dir).parent == offline_root / "wandb"
    mirrored = wandb_run(offline_dir)
    # the project from [runs] wandb_project, W&B's run id on modelyard's run and the reverse
    assert (mirrored["entity"], mirrored["project"], mirrored["name"]) == ("acme", "churn", "train")
    assert mirrored["run_id"] == recorded.tags["wandb.run_id"]
    assert mirrored["config"] == {"lr": "0.1", "depth": "4"}
    assert [row["auc"] for row in mirrored["history"]] == [0.90, 0.95]
    assert mirrored["history"][1]["loss"] == 0.2
    assert mirrored["summary"]["auc"] == 0.95 and mirrored["summary"]["loss"] == 0.2
    assert sorted(mirrored["tags"]) == sorted(["team=fraud", f"modelyard.run_id={run.id}"])
    # past W&B's 64 characters a tag goes to the summary whole
    assert mirrored["summary"]["tags/commit"] == commit
    assert mirrored["exit_code"] == 0


# -- Neptune and several mirrors -------------------------------------------------------------------


def test_a_failed_run_mirrored_to_neptune_and_wandb_is_failed_in_both(
    registry: Registry, offline_root: Path
) -> None:
    with (
        pytest.raises(RuntimeError, match="diverged"),
        modelyard.start_run(
            "train", mirror=["neptune", "wandb:tuning"], params={"lr": 0.1}, tags={"team": "risk"}
        ) as run,
    ):
        run.log_metrics({"loss": 0.7})
        run.log_metrics({"loss": 0.4, "auc": 0.8})
        run.log_params({"depth": 4})
        run.set_tags({"team": "fraud"})
        raise RuntimeError("the loss diverged")
    recorded = registry.get_run(run.id)
    assert recorded.status == "failed"
    assert recorded.tags["neptune.run_id"].startswith("offline/")
    fields = neptune_fields(recorded.tags["neptune.run_id"], offline_root / ".neptune")
    assert fields["sys/name"] == "train" and fields["sys/failed"] is True
    assert {k: v for k, v in fields.items() if k.startswith("parameters/")} == {
        "parameters/lr": "0.1", "parameters/depth": "4",
    }  # fmt: skip
    assert fields["metrics/loss"] == [0.7, 0.4] and fields["metrics/auc"] == [0.8]
    assert fields["sys/tags"] == {"team=fraud", f"modelyard.run_id={run.id}"}
    mirrored = wandb_run(recorded.tags["wandb.offline_dir"])
    assert (mirrored["entity"], mirrored["project"]) == ("", "tuning")  # the argument wins
    assert mirrored["config"] == {"lr": "0.1", "depth": "4"} and mirrored["exit_code"] == 1


def test_a_mirror_that_fails_mid_run_is_detached_and_loses_nothing_of_modelyards_run(
    registry: Registry, offline_root: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """The W&B run is finished early by the user's own code: modelyard warns once, records
    every value, tags which mirror stopped and why; Neptune keeps receiving."""
    with (
        caplog.at_level(logging.WARNING, logger="modelyard.registry.runs"),
        modelyard.start_run("train", mirror=["wandb", "neptune"]) as run,
    ):
        run.log_metrics({"auc": 0.90})
        wandb_mirror, _ = run.mirrors
        wandb_mirror.run.finish()  # type: ignore[attr-defined]
        run.log_metrics({"auc": 0.95})
        run.log_params({"depth": 4})
        run.log_metrics({"auc": 0.97})
    recorded = registry.get_run(run.id)
    assert recorded.status == "finished" and run.detached == ("wandb",)
    assert recorded.metrics == {"auc": 0.97} and recorded.params == {"depth": "4"}
    assert recorded.tags["wandb.mirror_error"].startswith("W&B failed during the metrics of run")
    assert "is finished" in recorded.tags["wandb.mirror_error"]
    warnings = [r for r in caplog.records if "mirror of run" in r.getMessage()]
    assert len(warnings) == 1 and "The wandb mirror of run" in warnings[0].getMessage()
    assert [row["auc"] for row in wandb_run(recorded.tags["wandb.offline_dir"])["history"]] == [
        0.90
    ]
    fields = neptune_fields(recorded.tags["neptune.run_id"], offline_root / ".neptune")
    assert fields["metrics/auc"] == [0.90, 0.95, 0.97] and "sys/failed" in fields
    assert fields["sys/failed"] is False


# -- bad inputs ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("mirror", "message"),
    [
        ("comet", "Unknown run mirror 'comet'; use 'mlflow', 'neptune' or 'wandb' (or a list"),
        (["wandb", "mlflow", "wandb:x"], "Run mirror 'wandb' is named twice; name each tool once"),
        ([3], "A run mirror must be a string like 'wandb', got 3"),
        ("wandb:acme/churn/v2", "Run mirror 'wandb:acme/churn/v2' names no W&B project; write "),
        ("neptune:acme/churn", "Run mirror 'neptune:acme/churn' takes no project: an offline"),
    ],
)
def test_a_bad_mirror_is_refused_before_any_run_starts(
    registry: Registry, offline_root: Path, mirror: Any, message: str
) -> None:
    before = offline_runs(offline_root)
    with pytest.raises(InvalidSpecError, match=f"^{message[:40]}".replace("(", r"\(")) as caught:
        modelyard.start_run("train", mirror=mirror)
    assert message in str(caught.value) and "\n" not in str(caught.value)
    assert registry.list_runs().total == 0
    assert offline_runs(offline_root) == before


def test_a_bad_param_or_tag_is_refused_before_any_tracker_has_a_run(
    registry: Registry, offline_root: Path
) -> None:
    from modelyard.errors import InvalidInputError

    before = offline_runs(offline_root)
    with pytest.raises(InvalidInputError, match=r"^Tag key '' must be a non-empty string"):
        modelyard.start_run("train", mirror=["wandb", "neptune"], tags={"": "x"})
    with pytest.raises(InvalidInputError, match=r"^Param key 3 must be a non-empty string"):
        modelyard.start_run("train", mirror="wandb", params={3: "x"})
    assert registry.list_runs().total == 0 and offline_runs(offline_root) == before


def test_a_missing_extra_names_its_install_and_leaves_no_run_anywhere(
    registry: Registry, offline_root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    before = offline_runs(offline_root)
    monkeypatch.setitem(sys.modules, "neptune", None)  # as if modelyard[neptune] were missing
    with pytest.raises(ConfigError, match=r"^The Neptune run mirror needs neptune \(not "
                       r"installed\); run pip install 'modelyard\[neptune\]'\.$"):  # fmt: skip
        modelyard.start_run("train", mirror=["wandb", "neptune"], params={"lr": 0.1})
    assert registry.list_runs().total == 0
    # the W&B run opened first was ended as failed, not left running
    (offline_dir,) = offline_runs(offline_root) - before
    assert offline_dir.parent.name == "wandb" and wandb_run(str(offline_dir))["exit_code"] == 1


# -- pipeline runs and the [runs] mirror setting -----------------------------------------------


def test_runs_mirror_setting_mirrors_pipeline_runs_and_start_run(
    offline_root: Path, tmp_path: Path
) -> None:
    """``[runs] mirror`` sends a pipeline run (params, each step's metrics as STEP.NAME, tags,
    a failed end) and a plain ``start_run`` to Neptune; ``mirror=[]`` turns it off for one run."""
    from tests.integration._tiny_pipeline import TinyPipeline

    settings = Settings(home=tmp_path / "home", runs=RunsSettings(mirror=["neptune"]))
    reg = Registry(settings)
    modelyard.set_registry(reg)
    tiny = TinyPipeline(tmp_path / "project")
    try:
        ok, failed = tiny.run(reg, n=4), tiny.run(reg, n=4, fail=True)
        with modelyard.start_run("train") as plain:
            plain.log_metrics({"auc": 0.9})
        with modelyard.start_run("quiet", mirror=[]) as quiet:
            pass
    finally:
        tiny.close()
        modelyard.set_registry(None)
        reg.close()
    fields = neptune_fields(ok.tags["neptune.run_id"], offline_root / ".neptune")
    assert fields["sys/name"] == "tiny" and fields["sys/failed"] is False
    assert fields["parameters/n"] == "4" and fields["parameters/fail"] == "false"
    assert fields["metrics/total.total"] == [6.0]
    assert {"modelyard.pipeline=tiny", f"modelyard.run_id={ok.id}"} <= fields["sys/tags"]
    failed_fields = neptune_fields(failed.tags["neptune.run_id"], offline_root / ".neptune")
    assert failed.status == "failed" and failed_fields["sys/failed"] is True
    assert "metrics/total.total" not in failed_fields
    plain_fields = neptune_fields(
        reg.get_run(plain.id).tags["neptune.run_id"], offline_root / ".neptune"
    )
    assert plain_fields["metrics/auc"] == [0.9]
    assert not any(key.startswith("neptune.") for key in reg.get_run(quiet.id).tags)


def test_a_bad_mirror_setting_refuses_a_pipeline_run_before_it_is_recorded(
    offline_root: Path, tmp_path: Path
) -> None:
    from tests.integration._tiny_pipeline import TinyPipeline

    reg = Registry(Settings(home=tmp_path / "home", runs=RunsSettings(mirror=["wandb", "comet"])))
    tiny = TinyPipeline(tmp_path / "project")
    before = offline_runs(offline_root)
    try:
        with pytest.raises(InvalidSpecError, match=r"^Unknown run mirror 'comet'; use "):
            tiny.run(reg)
        assert reg.list_runs().total == 0 and offline_runs(offline_root) == before
    finally:
        tiny.close()
        reg.close()


@pytest.mark.slow  # a yard subprocess: about 10 s
def test_yard_run_mirror_sends_the_run_to_neptune_and_keeps_json_on_stdout(
    offline_root: Path, tmp_path: Path
) -> None:
    import subprocess

    from tests.integration._server import YARD, server_env
    from tests.integration._tiny_pipeline import TINY

    (tmp_path / "tiny.py").write_text(TINY)
    env = server_env(tmp_path / "home", NEPTUNE_DATA_DIRECTORY=str(offline_root / ".neptune"))
    done = subprocess.run(
        [YARD, "run", "tiny.py", "--mirror", "neptune", "--json", "-p", "n=3"],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    recorded = json.loads(done.stdout)  # nothing but the JSON: Neptune's own lines went to stderr
    assert "Neptune initialized" in done.stderr
    fields = neptune_fields(recorded["tags"]["neptune.run_id"], offline_root / ".neptune")
    assert fields["metrics/total.total"] == [3.0] and fields["parameters/n"] == "3"
