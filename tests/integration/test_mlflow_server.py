"""The MLflow tracking server bridge against a real ``mlflow server`` (SQLite backend, a local
artifact folder served through it, a free loopback port), one per module: resolving
``models:/...`` through ``modelyard.load`` and ``yard serve``, ``yard models import-mlflow``,
``yard models export-mlflow`` read back by MLflow itself, and ``start_run(mirror="mlflow")``."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import numpy as np
import pandas as pd
import pytest
from sklearn.linear_model import LogisticRegression

import modelyard
from modelyard.errors import (
    AliasNotFoundError,
    ModelNotFoundError,
    StorageError,
    UntrustedTypeError,
    VersionNotFoundError,
)
from modelyard.integrations.mlflow import import_model
from modelyard.registry import Registry
from modelyard.settings import Settings
from tests.conftest import blob_count
from tests.integration._server import ROOT, YARD, Server, free_port, server_env, wait_ok

pytestmark = [
    pytest.mark.slow,
    # MLflow's own warnings while a test logs a model the way its users do (pandas 3 deprecations
    # in its input-example code, type-hint notes from importing its pyfunc loaders): not ours
    pytest.mark.filterwarnings("ignore:::mlflow"),
]

#: The server's own virtualenv (``make mlflow-server``; ``make test`` makes it): the full
#: ``mlflow`` package cannot share .venv, which has the client (``modelyard[mlflow]``).
SERVER_BIN = ROOT / ".venv" / "mlflow-server" / "bin"
X = pd.DataFrame(np.random.default_rng(0).normal(size=(120, 4)), columns=["f0", "f1", "f2", "f3"])
Y = (X["f0"] + X["f1"] > 0).astype(int)


@dataclass(frozen=True)
class MlflowServer:
    url: str
    root: Path


@pytest.fixture(scope="module")
def mlflow_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MlflowServer]:
    """``mlflow server`` in its own process group (it starts uvicorn by name: its virtualenv's
    bin goes first on PATH); stopped with its workers at the end of the module."""
    if not (SERVER_BIN / "mlflow").is_file():
        reason = f"no MLflow server at {SERVER_BIN / 'mlflow'}: run 'make mlflow-server'"
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(f"{reason} (CI=true, so this is a failure, not a skip)", pytrace=False)
        pytest.skip(reason)
    root = tmp_path_factory.mktemp("mlflow")
    port = free_port()
    log = root / "server.log"
    env = {**os.environ, "PATH": f"{SERVER_BIN}{os.pathsep}{os.environ.get('PATH', '')}"}
    env.pop("VIRTUAL_ENV", None)
    with log.open("w") as out:
        proc = subprocess.Popen(
            [str(SERVER_BIN / "mlflow"), "server", "--host", "127.0.0.1", "--port", str(port),
             "--backend-store-uri", f"sqlite:///{root / 'mlflow.db'}",
             "--artifacts-destination", str(root / "artifacts"), "--workers", "1"],
            env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
        )  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    try:
        if not wait_ok(f"{url}/health", proc, log, timeout_s=120):
            raise RuntimeError(f"mlflow server not ready in 120 s: {log.read_text()}")
        yield MlflowServer(url, root)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(5)  # its state is thrown away: no need to wait out a slow shutdown
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()


@pytest.fixture
def home(tmp_path: Path) -> Path:
    return tmp_path / "home"


@pytest.fixture
def registry(home: Path) -> Iterator[Registry]:
    """The registry ``yard`` opens with ``server_env(home)``, and ``modelyard.load``'s."""
    reg = Registry(Settings(home=home, identity="tester"))
    modelyard.set_registry(reg)
    yield reg
    modelyard.set_registry(None)
    reg.close()


@pytest.fixture
def tracking(mlflow_server: MlflowServer, monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.setenv("MLFLOW_TRACKING_URI", mlflow_server.url)
    return mlflow_server.url


def log_mlflow_model(
    url: str, name: str, *, alias: str | None = None, fmt: str = "skops", c: float = 1.0
) -> tuple[int, str, LogisticRegression]:
    """Train, log and register a model the way an MLflow user does; (version, run id, model)."""
    import mlflow

    mlflow.set_tracking_uri(url)
    model = LogisticRegression(C=c).fit(X, Y)
    with mlflow.start_run() as run:
        mlflow.log_params({"C": c})
        mlflow.log_metric("accuracy", float(model.score(X, Y)))
        info = mlflow.sklearn.log_model(
            model, name="model", registered_model_name=name, input_example=X.head(3),
            serialization_format=fmt,
            # given, so MLflow does not load the model in a subprocess to infer them (seconds)
            pip_requirements=["scikit-learn", "skops"],
        )  # fmt: skip
    version = int(info.registered_model_version)
    if alias is not None:
        mlflow.MlflowClient(url).set_registered_model_alias(name, alias, str(version))
    return version, run.info.run_id, model


def yard(home: Path, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [YARD, *args], env=server_env(home, **env), capture_output=True, text=True, timeout=300,
        check=False,
    )  # fmt: skip


# -- resolving models:/ -------------------------------------------------------------------------


def test_load_resolves_an_mlflow_alias_once_and_records_where_it_came_from(
    mlflow_server: MlflowServer, tracking: str, registry: Registry
) -> None:
    number, run_id, model = log_mlflow_model(tracking, "churn", alias="prod", c=0.5)
    loaded = modelyard.load("models:/churn@prod")
    assert np.array_equal(np.asarray(loaded.predict(X.head(20))), model.predict(X.head(20)))
    version = registry.get_version("churn/1")
    assert version.tags["mlflow.tracking_uri"] == tracking
    assert version.tags["mlflow.model_name"] == "churn"
    assert version.tags["mlflow.model_version"] == str(number)
    assert version.tags["mlflow.run_id"] == run_id
    assert version.lineage.source == f"models:/churn/{number} on {tracking} (run {run_id})"
    assert version.params == {"C": "0.5"} and "accuracy" in version.metrics
    assert version.flavor == "sklearn" and version.signature is not None
    assert registry.checks("churn/1")[0].failed == ()  # verified once stored

    # the MLflow version's files are gone from the server: a second resolve must not need them
    import mlflow

    client = mlflow.MlflowClient(tracking)
    source = client.get_model_version("churn", str(number)).source  # models:/m-<logged model>
    logged = client.get_logged_model(source.removeprefix("models:/"))
    location = logged.artifact_location.removeprefix("mlflow-artifacts:/")
    shutil.rmtree(mlflow_server.root / "artifacts" / location)
    again = modelyard.load("models:/churn@prod")
    assert again.version.ref == "churn/1"
    assert registry.get_model("churn").latest_version == 1


def test_without_a_tracking_uri_models_uri_keeps_meaning_modelyards_registry(
    mlflow_server: MlflowServer, registry: Registry, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    registry.register(LogisticRegression().fit(X, Y), name="native", data=X)
    registry.set_alias("native/1", "production")
    assert modelyard.load("models:/native@production").version.ref == "native/1"
    # with one set, the plain forms are still modelyard's own
    monkeypatch.setenv("MLFLOW_TRACKING_URI", mlflow_server.url)
    assert modelyard.load("native@production").version.ref == "native/1"
    with pytest.raises(ModelNotFoundError, match="MLflow has no registered model 'native'"):
        modelyard.load("models:/native@production")


def test_yard_serve_an_mlflow_alias_answers_a_v2_request(
    mlflow_server: MlflowServer, home: Path, registry: Registry
) -> None:
    _, _, model = log_mlflow_model(mlflow_server.url, "served", alias="prod", c=2.0)
    env = server_env(home, MLFLOW_TRACKING_URI=mlflow_server.url)
    with Server(home, "models:/served@prod", env=env) as server:
        body = {"inputs": [{"name": c, "shape": [5], "datatype": "FP64",
                            "data": X[c].head(5).tolist()} for c in X.columns]}  # fmt: skip
        answer = httpx.post(f"{server.url}/v2/models/served/infer", json=body, timeout=30)
    assert answer.status_code == 200, answer.text
    outputs = {o["name"]: o["data"] for o in answer.json()["outputs"]}
    assert outputs["predict"] == model.predict(X.head(5)).tolist()
    assert answer.headers["x-model-version"] == "1"


# -- import-mlflow, export-mlflow ---------------------------------------------------------------


def test_import_mlflow_imports_every_version_once(
    mlflow_server: MlflowServer, home: Path, registry: Registry
) -> None:
    url = mlflow_server.url
    for c in (0.1, 0.2):
        log_mlflow_model(url, "history", c=c)
    first = yard(home, "models", "import-mlflow", "history", MLFLOW_TRACKING_URI=url)
    assert first.returncode == 0, first.stderr
    assert "2 new of 2 versions" in first.stdout
    assert [v.ref for v in registry.search_versions(name="history").items] == [
        "history/2", "history/1",
    ]  # fmt: skip
    # again, through the Python API (a process less): nothing new, then only the new version
    again = import_model(registry, "history", tracking_uri=url)
    assert [(r.mlflow_version, r.version.ref, r.new) for r in again] == [
        (1, "history/1", False), (2, "history/2", False),
    ]  # fmt: skip
    log_mlflow_model(url, "history", c=0.3)
    third = import_model(registry, "history", tracking_uri=url)
    assert [(r.mlflow_version, r.version.ref, r.new) for r in third] == [
        (1, "history/1", False), (2, "history/2", False), (3, "history/3", True),
    ]  # fmt: skip
    assert registry.get_version("history/3").params == {"C": "0.3"}
    assert registry.get_model("history").latest_version == 3


def test_export_mlflow_is_read_back_by_mlflow(
    mlflow_server: MlflowServer, home: Path, registry: Registry, monkeypatch: pytest.MonkeyPatch
) -> None:
    import mlflow

    model = LogisticRegression(C=0.7).fit(X, Y)
    version = registry.register(
        model, name="iris", data=X, metrics={"auc": 0.91}, params={"C": 0.7},
        tags={"team": "risk"},
    )  # fmt: skip
    url = mlflow_server.url
    done = yard(home, "models", "export-mlflow", "iris/1", "--name", "iris-yard",
                MLFLOW_TRACKING_URI=url)  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "registered iris/1 in MLflow as models:/iris-yard/1" in done.stdout
    client = mlflow.MlflowClient(url)
    mv = client.get_model_version("iris-yard", "1")
    assert mv.tags["modelyard.version"] == "iris/1"
    assert mv.tags["modelyard.sha256"] == version.file("model").sha256  # type: ignore[union-attr]
    run = client.get_run(mv.run_id)
    assert run.data.metrics == {"auc": 0.91} and run.data.params == {"C": "0.7"}
    assert run.data.tags["team"] == "risk"
    # MLflow refuses to deserialize any model file without this switch, skops included
    monkeypatch.setenv("MLFLOW_ALLOW_PICKLE_DESERIALIZATION", "true")
    mlflow.set_tracking_uri(url)
    pyfunc = mlflow.pyfunc.load_model("models:/iris-yard/1")
    assert np.array_equal(np.asarray(pyfunc.predict(X.head(10))), model.predict(X.head(10)))
    assert [c["name"] for c in pyfunc.metadata.get_input_schema().to_dict()] == list(X.columns)
    native = mlflow.sklearn.load_model("models:/iris-yard/1")
    assert np.array_equal(native.predict_proba(X), model.predict_proba(X))
    twice = yard(home, "models", "export-mlflow", "iris/1", "--name", "iris-yard",
                 MLFLOW_TRACKING_URI=url)  # fmt: skip
    assert "already registered iris/1 in MLflow as models:/iris-yard/1" in twice.stdout
    assert len(client.search_model_versions("name = 'iris-yard'")) == 1


def test_an_onnx_version_is_exported_under_mlflows_onnx_flavor(
    mlflow_server: MlflowServer, registry: Registry, tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:  # fmt: skip
    import mlflow
    from skl2onnx import to_onnx

    from modelyard.integrations.mlflow import export_version

    model = LogisticRegression().fit(X, Y)
    path = tmp_path / "logreg.onnx"
    path.write_bytes(to_onnx(model, X.to_numpy(np.float32)[:1]).SerializeToString())
    version = registry.register_file(path, name="graph", metrics={"auc": 0.8})
    exported = export_version(registry, "graph/1", tracking_uri=mlflow_server.url)
    assert (exported.name, exported.version, exported.new) == ("graph", 1, True)
    client = mlflow.MlflowClient(mlflow_server.url)
    mv = client.get_model_version("graph", "1")
    assert mv.tags["modelyard.sha256"] == version.file("model").sha256  # type: ignore[union-attr]
    monkeypatch.setenv("MLFLOW_ALLOW_PICKLE_DESERIALIZATION", "true")
    mlflow.set_tracking_uri(mlflow_server.url)
    onnx_model = mlflow.onnx.load_model("models:/graph/1")
    assert onnx_model.SerializeToString() == path.read_bytes()  # the same bytes
    answer = mlflow.pyfunc.load_model("models:/graph/1").predict(X.to_numpy(np.float32)[:10])
    assert np.array_equal(np.asarray(answer["output_label"]), model.predict(X.head(10)))


def test_a_version_mlflow_cannot_read_is_refused_before_anything_is_sent(
    registry: Registry,
) -> None:
    from modelyard.errors import UnsupportedFormatError
    from modelyard.integrations.mlflow import export_version

    registry.register(LogisticRegression().fit(X, Y), name="pickled", flavor="pickle",
                      trust_pickle=True, data=X)  # fmt: skip
    # no server at all: the refusal comes first
    with pytest.raises(UnsupportedFormatError, match=r"Model pickled/1 is a pickle version .*"
                       "--convert onnx"):  # fmt: skip
        export_version(registry, "pickled/1", tracking_uri="http://127.0.0.1:1")


def test_a_run_mirror_needs_a_tracking_uri_and_a_known_mirror(
    registry: Registry, monkeypatch: pytest.MonkeyPatch
) -> None:
    from modelyard.errors import ConfigError, InvalidSpecError

    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    with pytest.raises(ConfigError, match="set MLFLOW_TRACKING_URI"):
        modelyard.start_run("train", mirror="mlflow")
    with pytest.raises(InvalidSpecError, match="Unknown run mirror 'comet'; use 'mlflow', "):
        modelyard.start_run("train", mirror="comet")
    assert registry.list_runs().total == 0


def test_start_run_mirrors_params_and_metrics_to_mlflow(tracking: str, registry: Registry) -> None:
    import mlflow

    with modelyard.start_run("train", mirror="mlflow", params={"lr": 0.1}) as run:
        run.log_params({"depth": 4})
        run.log_metrics({"auc": 0.90})
        run.log_metrics({"auc": 0.95, "loss": 0.2})
        run.set_tags({"team": "risk"})
    mirrored_id = registry.get_run(run.id).tags["mlflow.run_id"]
    client = mlflow.MlflowClient(tracking)
    mirrored = client.get_run(mirrored_id)
    assert mirrored.info.status == "FINISHED" and mirrored.info.run_name == "train"
    assert mirrored.data.params == {"lr": "0.1", "depth": "4"}
    assert mirrored.data.metrics == {"auc": 0.95, "loss": 0.2}
    assert [m.value for m in client.get_metric_history(mirrored_id, "auc")] == [0.90, 0.95]
    assert mirrored.data.tags["team"] == "risk"
    assert mirrored.data.tags["modelyard.run_id"] == run.id
    assert registry.get_run(run.id).params == {"lr": "0.1", "depth": "4"}


# -- bad inputs ---------------------------------------------------------------------------------


def test_unknown_mlflow_model_alias_or_version_is_one_line_and_stores_nothing(
    mlflow_server: MlflowServer, tracking: str, registry: Registry, home: Path
) -> None:
    log_mlflow_model(tracking, "known", alias="prod")
    with pytest.raises(ModelNotFoundError, match=r"MLflow has no registered model 'nope' on "):
        modelyard.load("models:/nope@prod")
    with pytest.raises(AliasNotFoundError, match=r"MLflow has no alias 'gone' on model 'known'"):
        modelyard.load("models:/known@gone")
    with pytest.raises(VersionNotFoundError, match=r"MLflow has no model 'known' version 9"):
        modelyard.load("models:/known/9")
    assert registry.list_models().total == 0
    done = yard(home, "models", "import-mlflow", "nope", MLFLOW_TRACKING_URI=tracking)
    assert done.returncode == 1
    assert done.stderr.count("\n") == 1 and "MLflow has no registered model 'nope'" in done.stderr


def test_an_unreachable_tracking_uri_fails_fast_naming_it(
    registry: Registry, home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    url = f"http://127.0.0.1:{free_port()}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", url)
    started = time.monotonic()
    with pytest.raises(StorageError, match=rf"MLflow tracking server {url} does not answer"):
        modelyard.load("models:/churn@prod")
    assert time.monotonic() - started < 10
    served = yard(home, "serve", "models:/churn@prod", "--port", str(free_port()),
                  MLFLOW_TRACKING_URI=url)  # fmt: skip
    assert served.returncode == 1
    assert served.stderr.count("\n") == 1
    assert f"error: The MLflow tracking server {url} does not answer" in served.stderr
    assert "fix MLFLOW_TRACKING_URI" in served.stderr


def test_a_server_that_fails_every_call_is_retried_briefly_by_yard(
    registry: Registry, home: Path
) -> None:
    """A tracking server whose /health answers but whose API says 503 (a proxy in front of a
    dead MLflow): MLflow's client would retry for about 4 minutes; yard gives up in seconds."""
    import http.server
    import threading

    class Failing(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(200 if self.path == "/health" else 503)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    with http.server.ThreadingHTTPServer(("127.0.0.1", 0), Failing) as stub:
        threading.Thread(target=stub.serve_forever, daemon=True).start()
        url = f"http://127.0.0.1:{stub.server_address[1]}"
        started = time.monotonic()
        done = yard(home, "models", "import-mlflow", "churn", MLFLOW_TRACKING_URI=url)
        took = time.monotonic() - started
        stub.shutdown()
    assert done.returncode == 1, done.stdout
    assert done.stderr.count("\n") == 1, done.stderr
    assert done.stderr.startswith(f"error: MLflow on {url} refused registered model 'churn': ")
    assert took < 40, took
    assert registry.list_models().total == 0


def test_a_pickled_mlflow_model_needs_trust_and_nothing_is_stored_without_it(
    mlflow_server: MlflowServer, tracking: str, registry: Registry, home: Path
) -> None:
    log_mlflow_model(tracking, "pickled", alias="prod", fmt="cloudpickle")
    with pytest.raises(UntrustedTypeError, match="pass --trust-pickle") as caught:
        modelyard.load("models:/pickled@prod")
    assert str(caught.value).startswith(f"MLflow model 'pickled' version 1 on {tracking}: ")
    assert registry.list_models().total == 0
    assert blob_count(home / "artifacts") == 0
    done = yard(home, "models", "import-mlflow", "pickled", MLFLOW_TRACKING_URI=tracking)
    assert done.returncode == 1 and "pass --trust-pickle" in done.stderr
    loaded = modelyard.load("models:/pickled@prod", trust_pickle=True)
    assert loaded.version.ref == "pickled/1"
    assert loaded.version.flavor == "sklearn" and not loaded.version.untrusted  # re-saved: skops


def test_a_missing_mlflow_extra_names_the_install_command(tmp_path: Path) -> None:
    script = (
        "import sys; sys.modules['mlflow'] = None\n"
        "from modelyard.integrations._mlflow_client import mlflow_client\n"
        "mlflow_client('http://127.0.0.1:1')\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=60, check=False
    )
    assert "ConfigError" in done.stderr
    assert "pip install 'modelyard[mlflow]'" in done.stderr
