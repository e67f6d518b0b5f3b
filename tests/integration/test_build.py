"""``yard build`` end to end, as far as a machine without Docker allows: the context's
requirements.txt alone makes a fresh virtualenv (what the Dockerfile's builder stage does), and
the image's exact command (ENTRYPOINT + CMD, with the Dockerfile's ENV) runs from a read-only copy
of its WORKDIR with HOME and TMPDIR in a scratch folder (the emptyDir at /tmp), answering REST and
gRPC; the shared-registry image does the same from MODELYARD_DATABASE_URL. Every bad input is one
line and leaves nothing behind.

Marked slow: about 90 s here. The fixtures register the served models (the session's), build a
wheel, write three contexts and make a 700 MB virtualenv (about 2 s from uv's cache): 35 s; the
image's command starts five times (5-9 s for one that serves); the ten bad inputs are ten ``yard``
processes.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import IO

import httpx
import numpy as np
import pytest
import tritonclient.grpc as triton

from modelyard.deploy.bundle import verify_bundle
from modelyard.rollout import deploy, start_candidate
from tests._dockerfile import final_stage, hadolint
from tests.integration._server import YARD, free_port, server_env, wait_ok
from tests.integration.conftest import ServedHome

pytestmark = pytest.mark.slow

UV = str(Path(YARD).parent / "uv")
#: python:*-slim's own PATH, which the Dockerfile's ENV PATH extends.
BASE_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


@pytest.fixture(scope="module")
def home(served_home: ServedHome, tmp_path_factory: pytest.TempPathFactory) -> ServedHome:
    """This module's copy of the served registry (a test moves an alias)."""
    dest = tmp_path_factory.mktemp("build") / "home"
    shutil.copytree(served_home.home, dest, ignore=shutil.ignore_patterns("*.log"))
    home = ServedHome(home=dest, X=served_home.X, mixed=served_home.mixed)
    registry = home.registry()
    deploy(registry, "hgb-api", model_ref="hgb/1")  # pinned: a test moves the alias
    start_candidate(registry, "hgb-api", ref="hgb/2", mode="canary", weight=50)
    registry.close()
    return home


def yard(home: ServedHome, *args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [YARD, *args], env=server_env(home.home), cwd=cwd, capture_output=True, text=True,
        timeout=300, check=False,
    )  # fmt: skip


@pytest.fixture(scope="module")
def contexts(home: ServedHome, modelyard_wheel: Path) -> dict[str, Path]:
    """Contexts for hgb@production, ``baked`` (--bake) and ``shared`` (reads the registry), and
    ``deployment``: deployment hgb-api baked (hgb/1 stable, hgb/2 a 50% canary)."""
    out = home.home.parent / "contexts"
    made = {}
    for name, args in (
        ("baked", ["hgb@production", "--bake"]),
        ("shared", ["hgb@production"]),
        ("deployment", ["--deployment", "hgb-api", "--bake"]),
    ):
        done = yard(home, "build", *args, "-o", str(out / name), "--wheel", str(modelyard_wheel))
        assert done.returncode == 0, done.stderr
        assert f"wrote {out / name} for hgb/1" in done.stdout
        made[name] = out / name
    return made


def test_every_dockerfile_passes_hadolint(contexts: dict[str, Path]) -> None:
    for context in contexts.values():
        assert hadolint(context / "Dockerfile") == []


@pytest.fixture(scope="module")
def venv(contexts: dict[str, Path], tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A fresh virtualenv from the baked context's requirements.txt alone, installed as the
    Dockerfile does (--no-deps, then a check that the set is consistent). It installs from a copy
    of the context whose wheel is then removed: modelyard in it is a wheel install whose wheel
    is gone, as in the image."""
    root = tmp_path_factory.mktemp("image")
    source = root / "context"
    shutil.copytree(contexts["baked"], source, ignore=shutil.ignore_patterns("bundle"))
    venv = root / "venv"
    python = str(Path(YARD).parent / "python")
    for command in (
        [UV, "venv", "--quiet", "--python", python, str(venv)],
        [UV, "pip", "install", "--quiet", "--python", str(venv / "bin" / "python"), "--no-deps",
         "--requirement", "requirements.txt"],
        [UV, "pip", "check", "--python", str(venv / "bin" / "python")],
    ):  # fmt: skip
        done = subprocess.run(command, cwd=source, capture_output=True, text=True, check=False)
        assert done.returncode == 0, done.stderr
    shutil.rmtree(source / "wheels")
    return venv


@dataclass
class Container:
    """The image's command running from a read-only copy of its WORKDIR."""

    proc: subprocess.Popen[bytes]
    url: str
    grpc: str
    workdir: Path
    scratch: Path
    env: dict[str, str]
    log: Path
    log_file: IO[bytes]

    def wait_ready(self, timeout_s: float = 120) -> Container:
        try:
            ready = wait_ok(f"{self.url}/v2/health/ready", self.proc, self.log, timeout_s)
        except RuntimeError as exc:
            self.log_file.close()
            raise AssertionError(str(exc)) from None
        if not ready:
            self.proc.kill()
            self.exit_code(10)
            raise AssertionError(f"not ready in {timeout_s} s: {self.log.read_text()}")
        return self

    def stop(self) -> int:
        """SIGTERM, as Kubernetes and ``docker stop`` send it; the exit code."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        return self.exit_code(40)

    def exit_code(self, timeout_s: float) -> int:
        """The exit code once the process ends (killed after ``timeout_s``)."""
        try:
            self.proc.wait(timeout_s)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.log_file.close()
        return self.proc.returncode


def start(context: Path, venv: Path, tmp: Path, **extra: str) -> Container:
    stage = final_stage(context / "Dockerfile", {"PATH": BASE_PATH})
    assert stage.command == ["yard", "container", "serve"]
    workdir = tmp / "root" / stage.workdir.lstrip("/")
    workdir.mkdir(parents=True)
    for copied in stage.copies:  # the final stage's COPY of the context (the bundle)
        if not copied.startswith("--from"):
            src, dest = copied.split()
            shutil.copytree(context / src, workdir / dest)
    for path in [*workdir.rglob("*"), workdir]:  # read-only, as the image's root filesystem
        path.chmod(0o555 if path.is_dir() else 0o444)
    scratch = tmp / "emptydir"  # Kubernetes' emptyDir at /tmp
    scratch.mkdir()
    port, grpc_port = free_port(), free_port()
    env = {k: v.replace("/opt/venv", str(venv)) for k, v in stage.env.items()}
    env.update(
        HOME=str(scratch), TMPDIR=str(scratch), OMP_WAIT_POLICY="PASSIVE",
        MODELYARD_SERVING__PORT=str(port), MODELYARD_SERVING__GRPC_PORT=str(grpc_port), **extra,
    )  # fmt: skip
    executable = shutil.which(stage.command[0], path=env["PATH"])
    assert executable == str(venv / "bin" / "yard")  # the virtualenv's, not this one's
    log = tmp / "container.log"
    log_file = log.open("wb")
    proc = subprocess.Popen(
        [executable, *stage.command[1:]], cwd=workdir, env=env, stdout=log_file,
        stderr=subprocess.STDOUT,
    )  # fmt: skip
    return Container(
        proc, f"http://127.0.0.1:{port}", f"127.0.0.1:{grpc_port}", workdir, scratch, env, log,
        log_file,
    )  # fmt: skip


def listing(folder: Path) -> dict[str, int]:
    return {str(p.relative_to(folder)): p.stat().st_size for p in folder.rglob("*")}


def rest_infer(url: str, X: np.ndarray, columns: list[str]) -> dict[str, object]:
    body = {
        "inputs": [
            {"name": c, "shape": [len(X)], "datatype": "FP64", "data": X[:, i].tolist()}
            for i, c in enumerate(columns)
        ]
    }
    answer = httpx.post(f"{url}/v2/models/hgb/infer", json=body, timeout=10)
    assert answer.status_code == 200, answer.text
    return dict(answer.json())


def test_the_baked_image_serves_rest_and_grpc_from_its_verified_bundle(
    home: ServedHome, contexts: dict[str, Path], venv: Path, tmp_path: Path
) -> None:
    context = contexts["baked"]
    assert verify_bundle(context / "bundle").versions == ("hgb/1",)
    container = start(context, venv, tmp_path).wait_ready()
    try:
        before = listing(container.workdir)
        X = home.X.iloc[:8]
        expected = home.registry().load("hgb/1", runtime="onnx").predict(X)
        answer = rest_infer(container.url, X.to_numpy(), list(X.columns))
        assert answer["model_version"] == "1"
        outputs = answer["outputs"]
        assert isinstance(outputs, list)
        assert outputs[0]["data"] == expected.tolist()
        client = triton.InferenceServerClient(container.grpc)
        inputs = []
        for column in X.columns:
            item = triton.InferInput(column, [len(X)], "FP64")
            item.set_data_from_numpy(X[column].to_numpy())
            inputs.append(item)
        result = client.infer("hgb", inputs)
        assert result.get_response().model_version == "1"
        np.testing.assert_array_equal(result.as_numpy("predict"), expected)
        client.close()
        health = subprocess.run(
            [str(venv / "bin" / "yard"), "container", "health"], env=container.env,
            capture_output=True, text=True, timeout=30, check=False,
        )  # fmt: skip
        assert health.returncode == 0, health.stderr
    finally:
        code = container.stop()
    assert code == 0, container.log.read_text()  # drained on SIGTERM, then exit 0
    assert re.match(
        rf"yard container: serving hgb@production from the bundle at {container.workdir}/bundle "
        rf"\(5 files verified\) on 0\.0\.0\.0:\d+, gRPC on \d+\n",
        container.log.read_text(),
    )
    assert listing(container.workdir) == before  # nothing written beside the bundle
    assert (container.scratch / ".modelyard" / "container" / "modelyard.db").is_file()


def test_a_baked_deployment_image_routes_between_its_versions(
    home: ServedHome, contexts: dict[str, Path], venv: Path, tmp_path: Path
) -> None:
    stage = final_stage(contexts["deployment"] / "Dockerfile")
    assert stage.env["MODELYARD_CONTAINER_DEPLOYMENT"] == "hgb-api"
    container = start(contexts["deployment"], venv, tmp_path).wait_ready()
    try:
        X = home.X.iloc[:2].to_numpy()
        columns = list(home.X.columns)
        body = {
            "inputs": [
                {"name": c, "shape": [len(X)], "datatype": "FP64", "data": X[:, i].tolist()}
                for i, c in enumerate(columns)
            ]
        }
        seen = set()
        for _ in range(40):  # a 50% canary: both versions answer (all but surely)
            answer = httpx.post(f"{container.url}/v2/models/hgb-api/infer", json=body, timeout=10)
            assert answer.status_code == 200, answer.text
            seen.add(answer.json()["model_version"])
    finally:
        code = container.stop()
    assert seen == {"1", "2"} and code == 0


def test_the_registry_image_serves_what_the_registry_says_and_follows_alias_moves(
    home: ServedHome, contexts: dict[str, Path], venv: Path, tmp_path: Path
) -> None:
    shared = contexts["shared"]
    requirements = (shared / "requirements.txt").read_text()
    assert requirements == (contexts["baked"] / "requirements.txt").read_text()
    assert not (shared / "bundle").exists()
    settings = {
        "MODELYARD_DATABASE_URL": f"sqlite:///{home.home / 'modelyard.db'}",
        "MODELYARD_ARTIFACT_ROOT": str(home.home / "artifacts"),
    }
    container = start(shared, venv, tmp_path, **settings).wait_ready()
    registry = home.registry()
    try:
        X = home.X.iloc[:4]
        assert rest_infer(container.url, X.to_numpy(), list(X.columns))["model_version"] == "1"
        registry.set_alias("hgb/2", "production")
        deadline = time.monotonic() + 10
        while True:
            seen = rest_infer(container.url, X.to_numpy(), list(X.columns))["model_version"]
            if seen == "2" or time.monotonic() > deadline:
                break
            time.sleep(0.2)
        assert seen == "2"
    finally:
        code = container.stop()
        registry.set_alias("hgb/1", "production")
        registry.close()
    assert code == 0, container.log.read_text()


def test_the_registry_image_without_a_database_url_says_what_to_set(
    contexts: dict[str, Path], venv: Path, tmp_path: Path
) -> None:
    container = start(contexts["shared"], venv, tmp_path)
    assert container.exit_code(60) == 1
    assert container.log.read_text().splitlines() == [
        "error: This image reads the shared registry and MODELYARD_DATABASE_URL is not set; set "
        "it and MODELYARD_ARTIFACT_ROOT (from a Secret), or build the image with --bake."
    ]


def test_a_bundle_altered_after_the_build_is_refused_at_start(
    contexts: dict[str, Path], venv: Path, tmp_path: Path
) -> None:
    context = tmp_path / "context"
    shutil.copytree(contexts["baked"], context)
    blob = next((context / "bundle" / "artifacts").rglob("*/*/*"))
    blob.write_bytes(blob.read_bytes() + b"\0")
    container = start(context, venv, tmp_path)
    assert container.exit_code(60) == 1
    [line] = container.log.read_text().splitlines()
    assert line.startswith("error: artifacts/sha256/") and "was altered" in line
    assert "nothing was served" in line


def test_yard_build_where_no_wheel_can_be_had_says_to_pass_one(
    home: ServedHome, venv: Path, tmp_path: Path
) -> None:
    """In the image's environment modelyard is a wheel install whose wheel is gone."""
    env = server_env(home.home)
    env.pop("PYTHONPATH")
    done = subprocess.run(
        [str(venv / "bin" / "yard"), "build", "hgb/1", "-o", str(tmp_path / "ctx")], env=env,
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert done.returncode == 1
    [line] = done.stderr.splitlines()
    assert line.startswith("error: modelyard 0.1.0 was installed from a wheel that is no longer")
    assert "pass --wheel PATH" in line
    assert os.listdir(tmp_path) == []


BAD = [
    (["nope@production"], "No model named 'nope' is registered"),
    (["hgb@nope"], "Model 'hgb' has no alias 'nope'"),
    (["--deployment", "nope"], "nope"),
    (["hgb/1", "--deployment", "api"], "not both"),
    ([], "Give a model reference"),
    (["echo/1"], "echo/1 was registered as a pickle"),
    (["hgb/1", "--wheel", "missing.whl"], "--wheel 'missing.whl' is not a wheel file"),
    (["hgb/1", "--bake", "--wheel", "modelyard-0.0.1-py3-none-any.whl"], "is modelyard 0.0.1"),
    (["hgb/1", "--base-image", "not an image!"], "--base-image 'not an image!' is not a"),
    (["hgb/1", "--extras", "nosuch"], "modelyard has no extra 'nosuch'"),
    (["hgb/1", "-o", "taken"], "is not empty; pass --force"),
    (["hgb/1", "-o", "taken", "--force"], "is not one yard build wrote"),
]


@pytest.mark.parametrize(("args", "message"), BAD, ids=[m[:24] for _, m in BAD])
def test_every_bad_input_is_one_line_and_leaves_nothing_behind(
    args: list[str], message: str, home: ServedHome, modelyard_wheel: Path, tmp_path: Path
) -> None:
    (tmp_path / "taken").mkdir()
    (tmp_path / "taken" / "notes.txt").write_text("mine")
    (tmp_path / "modelyard-0.0.1-py3-none-any.whl").write_bytes(modelyard_wheel.read_bytes())
    before = listing(tmp_path)
    registry_before = listing(home.home)
    out = [] if "-o" in args else ["-o", "new/ctx"]
    done = yard(home, "build", *args, *out, cwd=tmp_path)
    assert done.returncode == 1, done.stdout
    [line] = done.stderr.splitlines()
    assert line.startswith("error: ") and message in line
    assert listing(tmp_path) == before
    assert {k for k in listing(home.home) if not k.endswith((".log", "-wal", "-shm"))} == {
        k for k in registry_before if not k.endswith((".log", "-wal", "-shm"))
    }


def test_the_image_started_as_vertex_ai_starts_it(
    home: ServedHome, contexts: dict[str, Path], venv: Path, tmp_path: Path
) -> None:
    """Vertex AI gives the port, the routes and the model's location in AIP_ variables: the
    registry image (no bundle of its own) serves the bundle at AIP_STORAGE_URI on them."""
    port = free_port()
    health, predict = "/v1/endpoints/1/deployedModels/2", "/v1/endpoints/1/deployedModels/2:predict"
    container = start(
        contexts["shared"], venv, tmp_path, AIP_HTTP_PORT=str(port), AIP_HEALTH_ROUTE=health,
        AIP_PREDICT_ROUTE=predict, AIP_STORAGE_URI=(contexts["baked"] / "bundle").as_uri(),
    )  # fmt: skip
    container.url = f"http://127.0.0.1:{port}"
    container.wait_ready()
    try:
        assert httpx.get(container.url + health, timeout=10).status_code == 200
        X = home.X.iloc[:4]
        expected = home.registry().load("hgb/1", runtime="onnx").predict(X).tolist()
        answer = httpx.post(
            container.url + predict, json={"instances": X.to_dict(orient="records")}, timeout=10
        )
        assert answer.status_code == 200, answer.text
        assert answer.json() == {"predictions": expected}
    finally:
        code = container.stop()
    assert code == 0, container.log.read_text()
