"""Serving benchmark: one HistGradientBoostingClassifier (20 features) behind `yard serve` (native
and ONNX runtimes) and behind MLflow 3, BentoML 1.4 and MLServer 1.7 (each with and without
adaptive batching where it has it), against a bare uvicorn ASGI callable (the limit) and an
identity-width model on `yard serve` (the server's own cost). Each server is pinned to one CPU,
wrk to the other; each sends a 1-row JSON request in the server's native protocol. Group grpc:
yard and MLServer over the Open Inference Protocol's gRPC, 1-row and 1000-row requests, loaded
by h2load (and with --grpc-aio a grpc.aio client); see benchmarks/_grpc_load.py. The prediction
log's cost: yard-onnx against yard-onnx-logged (a local folder) and yard-onnx-logged-s3 (a bucket
on moto's S3 server, a process of its own), and a check that every answer reached the log; see
benchmarks/_logcheck.py. A yard server on ONNX is measured once the tree kernel runs its model
(onnx.tree_kernel = "auto" moves it there in the background after ready; the JSON records the
kernel and how long after ready it took).

    .venv/bin/python benchmarks/serving.py [--duration 15] [--conns 1,8,32]
        [--only yard,mlflow,bentoml,mlserver,asgi,grpc] [--quick] [--grpc-aio]

Needs wrk (`apt-get install -y wrk`), taskset, and for gRPC h2load
(`apt-get install -y nghttp2-client`). The gRPC-vs-REST ratio needs yard-onnx in the same run
(`--only yard-onnx,grpc`), the log's ratios yard-onnx beside the logged servers
(`--only yard-onnx,yard-onnx-logged,yard-onnx-logged-s3`). The peers are installed into their own
virtualenvs under benchmarks/.envs/ on first run. Prints a table, the ratios and the targets;
writes JSON to benchmarks/results/serving.json (serving-quick.json with --quick).

On a machine whose speed drifts (a shared host), ``--rounds N`` measures the servers in turn N
times (A B C, A B C, ...): the ratios and targets are each round's median, and each round's
ratios are printed and kept in the JSON (``rounds``), so that a ratio of two servers is not the
drift between two minutes.
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import json
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from _grpc_load import (
    GrpcTarget,
    Load,
    grpc_ratios,
    h2load_version,
    measure_grpc,
    print_grpc_report,
)
from _harness import git_commit, machine, write_report
from _logcheck import S3Store, check_log, fmt_check, local_rows, wait_s3

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
ENVS = HERE / ".envs"
PEERS = HERE / "_serving_peers"
RESULTS = HERE / "results"
BIN = Path(sys.executable).parent
UV = BIN / "uv"
# torch==2.13.0's CPU build on these machines' local disk (uv does not read pip.conf)
FIND_LINKS = ["--find-links", "/opt/wheels"] if Path("/opt/wheels").is_dir() else []

N_FEATURES = 20
COLUMNS = [f"f{i}" for i in range(N_FEATURES)]
SEED = 0
BATCH_SIZE = 64
MLSERVER_BATCH_TIME_S = 0.005

# Targets from the issues (REST and ready time as issue 12 raised them): (key in ratios,
# comparison, threshold, description).
TARGETS = [
    ("vs_mlflow", ">=", 50.0, "yard >= 50x MLflow req/s"),
    ("vs_bentoml", ">=", 10.0, "yard >= 10x BentoML (best) req/s"),
    ("vs_mlserver", ">=", 15.0, "yard >= 15x MLServer (best) req/s"),
    ("p99_ms", "<=", 5.0, "yard p99 <= 5 ms"),
    ("errors", "<=", 0.0, "yard: zero non-2xx and socket errors"),
    ("of_bare_asgi", ">=", 0.60, "yard >= 60% of the bare ASGI limit"),
    ("c1_p50_ms", "<=", 0.5, "yard p50 at c=1 <= 0.5 ms"),
    ("log_on_vs_off", ">=", 0.90, "yard with the prediction log >= 90% of yard without"),
    ("log_s3_on_vs_off", ">=", 0.90, "yard logging to S3 >= 90% of yard without"),
    ("log_p99_ratio", "<=", 2.0, "yard p99 with the log <= 2x without"),
    ("log_s3_p99_ratio", "<=", 2.0, "yard p99 logging to S3 <= 2x without"),
    ("log_lost", "<=", 0.0, "prediction log: every answer logged, none dropped"),
    ("ready_s", "<=", 1.0, "yard time-to-ready <= 1.0 s"),
    ("of_identity", ">=", 0.80, "yard >= 80% of the identity model"),
    ("grpc_vs_rest", ">=", 1.0, "yard gRPC >= yard REST req/s"),
    ("grpc_vs_mlserver", ">=", 5.0, "yard gRPC >= 5x MLServer gRPC (best) req/s"),
    ("grpc_p99_ms", "<=", 10.0, "yard gRPC p99 <= 10 ms"),
    ("grpc_rows_per_s", ">=", 1e6, "yard gRPC 1000-row >= 1M rows/s, one core"),
    ("grpc_errors", "<=", 0.0, "yard gRPC: zero failed or short answers"),
]


# -- peer virtualenvs ------------------------------------------------------------------------


def peer_specs() -> dict[str, list[str]]:
    """Packages per peer venv; scikit-learn is pinned to ours so the joblib files load."""
    import sklearn

    sk = f"scikit-learn=={sklearn.__version__}"
    return {
        "mlflow": ["mlflow>=3,<4", sk],
        "bentoml": ["bentoml>=1.4,<1.5", sk, "joblib"],
        "mlserver": ["mlserver==1.7.1", "mlserver-sklearn==1.7.1", "uvloop==0.21.0", sk, "joblib"],
        "asgi": ["uvicorn[standard]", "orjson"],
    }


def ensure_env(name: str, specs: list[str]) -> Path:
    """Create benchmarks/.envs/NAME with ``specs`` once; a marker file makes reruns free."""
    env = ENVS / name
    python = env / "bin" / "python"
    marker = env / ".serving-bench"
    wanted = "\n".join(specs)
    if python.exists() and marker.exists() and marker.read_text() == wanted:
        return python
    print(f"  installing {' '.join(specs)} into {env} ...", flush=True)
    if not python.exists():
        subprocess.run([sys.executable, "-m", "venv", str(env)], check=True, timeout=300)
    installer = [str(UV), "pip", "install", "-q", "--python", str(python), *FIND_LINKS]
    if not UV.exists():
        installer = [str(python), "-m", "pip", "install", "-q"]
    out = sh([*installer, *specs], timeout=1200)
    if out.returncode != 0:
        raise RuntimeError(f"install failed: {tail(out.stderr or out.stdout, 3)}")
    marker.write_text(wanted)
    return python


def activated(python: Path) -> dict[str, str]:
    """Environment variables of an activated venv (MLflow runs `uvicorn` from PATH)."""
    path = f"{python.parent}{os.pathsep}{os.environ.get('PATH', '')}"
    return {"PATH": path, "VIRTUAL_ENV": str(python.parent.parent)}


def asgi_python() -> Path:
    """Our own venv when it has uvicorn[standard] and orjson (the versions yard runs on), else a
    venv of its own."""
    probe = "import uvicorn, uvloop, httptools, orjson"
    if sh([sys.executable, "-c", probe]).returncode == 0:
        return Path(sys.executable)
    return ensure_env("asgi", peer_specs()["asgi"])


def dist_versions(python: Path, dists: list[str]) -> dict[str, str]:
    code = (
        "import json, sys, importlib.metadata as m\n"
        "out = {}\n"
        "for d in sys.argv[1:]:\n"
        "    try: out[d] = m.version(d)\n"
        "    except m.PackageNotFoundError: pass\n"
        "print(json.dumps(out))"
    )
    out = sh([str(python), "-c", code, *dists])
    return json.loads(out.stdout) if out.returncode == 0 else {}


# -- model and request bodies ----------------------------------------------------------------


@dataclass
class Context:
    args: argparse.Namespace
    tmp: Path
    row: list[float] = field(default_factory=list)
    named_model: Path | None = None  # fitted on a DataFrame (feature names), for MLflow
    bare_model: Path | None = None  # same model without feature names, for ndarray peers
    sample_json: Path | None = None
    yard_home: Path | None = None
    yard_reason: str | None = None  # why `yard serve` cannot run, once known
    cache: dict[str, Any] = field(default_factory=dict)
    # Processes that outlive one server (moto's S3 server), stopped when the run ends.
    stack: contextlib.ExitStack = field(default_factory=contextlib.ExitStack)


def train(ctx: Context, fit: bool) -> None:
    """Make the data and keep one request row; with ``fit``, fit the scenario's model and write
    the model files the peers load. random_state is set so early stopping (on by default past
    10,000 rows) is reproducible."""
    import joblib
    import numpy as np
    import pandas as pd
    from sklearn.datasets import make_classification
    from sklearn.dummy import DummyClassifier
    from sklearn.ensemble import HistGradientBoostingClassifier

    t0 = time.perf_counter()
    X, y = make_classification(n_samples=100_000, n_features=N_FEATURES, random_state=SEED)
    ctx.row = [float(v) for v in X[np.random.default_rng(SEED).integers(len(X))]]
    if not fit:
        return
    df = pd.DataFrame(X, columns=COLUMNS, dtype="float64")
    model = HistGradientBoostingClassifier(max_iter=100, random_state=SEED).fit(df, y)
    print(f"  trained HGB in {time.perf_counter() - t0:.1f} s ({model.n_iter_} iterations)")
    sample = df.sample(2000, random_state=SEED)
    ctx.named_model = ctx.tmp / "hgb_named.joblib"
    joblib.dump(model, ctx.named_model)
    bare = copy.deepcopy(model)
    del bare.feature_names_in_  # BentoML and MLServer pass ndarrays: avoid a warning per call
    ctx.bare_model = ctx.tmp / "hgb.joblib"
    joblib.dump(bare, ctx.bare_model)
    ctx.sample_json = ctx.tmp / "sample.json"
    ctx.sample_json.write_text(
        json.dumps({"columns": COLUMNS, "data": sample.head(100).to_numpy().tolist()})
    )
    ctx.cache["model"] = model
    ctx.cache["sample"] = sample
    ctx.cache["identity"] = DummyClassifier().fit(df, y)


def oip_tensor(row: list[float], name: str) -> dict[str, Any]:
    return {"inputs": [{"name": name, "shape": [1, len(row)], "datatype": "FP64", "data": row}]}


def oip_columns(row: list[float]) -> dict[str, Any]:
    return {
        "inputs": [
            {"name": c, "shape": [1], "datatype": "FP64", "data": [v]}
            for c, v in zip(COLUMNS, row, strict=True)
        ]
    }


# -- launching servers -----------------------------------------------------------------------


@dataclass
class Launch:
    cmd: list[str]
    ready_path: str
    infer_path: str
    body: dict[str, Any]
    env: dict[str, str] = field(default_factory=dict)
    cwd: Path | None = None
    versions: dict[str, str] = field(default_factory=dict)
    settings: dict[str, Any] = field(default_factory=dict)
    grpc: GrpcTarget | None = None  # measured over gRPC (benchmarks/_grpc_load.py) when set
    # A logged server: rows and parts in its log now, and how long the log may take to hold an
    # answer (benchmarks/_logcheck.py checks it after the runs, before the server stops).
    log_rows: Callable[[], tuple[int, int]] | None = None
    log_wait_s: float = 0.0
    # yard on ONNX: wait, after ready, until /admin/models says the tree kernel runs the model
    # (onnx.tree_kernel = "auto" builds it in the background), so that no run measures the build
    kernel_path: str | None = None


@dataclass
class Server:
    name: str
    group: str
    describe: str
    prepare: Callable[[Context, int], Launch]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def sh(cmd: list[str], timeout: float = 60.0, **kwargs: Any) -> subprocess.CompletedProcess[str]:
    """Run a command to completion (bounded by ``timeout``), capturing its text output."""
    return subprocess.run(
        cmd, check=False, capture_output=True, text=True, timeout=timeout, **kwargs
    )


def tail(text: str, lines: int = 8) -> str:
    return "\n".join(text.strip().splitlines()[-lines:])


def error_line(text: str) -> str:
    """The ``SomeError: message`` line of a traceback (else the last line)."""
    lines = [x for x in text.strip().splitlines() if x.strip()]
    for line in reversed(lines):
        head = line.split(":", 1)[0]
        if not line[0].isspace() and ("Error" in head or "Exception" in head):
            return line
    return lines[-1] if lines else ""


def prepare_yard(
    runtime: str,
    model_name: str,
    *,
    log: bool = False,
    grpc: bool = False,
    log_store: str = "local",
) -> Callable[[Context, int], Launch]:
    """``log_store``: where the prediction log goes with ``log``, ``local`` (a folder) or
    ``s3`` (a bucket on moto's S3 server, through the server's local spool)."""

    def prepare(ctx: Context, port: int) -> Launch:
        home = yard_home(ctx)
        log_root = home / f"log-{port}"
        env = {
            "MODELYARD_HOME": str(home),
            "MODELYARD_DATABASE_URL": f"sqlite:///{home}/m.db",
            "MODELYARD_ARTIFACT_ROOT": str(home / "artifacts"),
            "MODELYARD_MONITORING__LOG_ROOT": str(log_root),
        }
        log_rows: Callable[[], tuple[int, int]] = lambda: local_rows(log_root)  # noqa: E731
        log_wait_s = 15.0  # a flush every second
        if log and log_store == "s3":
            store = s3_store(ctx)
            name = f"log-{port}"
            env |= store.env | {"MODELYARD_MONITORING__LOG_ROOT": store.log_root(name)}
            log_rows = lambda: store.rows(name)  # noqa: E731
            log_wait_s = 45.0  # an upload every 10 s, then retries with backoff
        ref = f"{model_name}@production"
        cmd = [str(BIN / "yard"), "serve", ref, "--host", "127.0.0.1", "--port", str(port)]
        cmd += ["--runtime", runtime]
        if log:
            cmd.append("--log-predictions")
        target = None
        if grpc:
            if "--grpc-port" not in sh([*cmd[:2], "--help"]).stdout:
                raise RuntimeError("this `yard serve` has no --grpc-port option")
            target = GrpcTarget(free_port(), model_name, ctx.args.yard_body, tuple(COLUMNS))
            cmd += ["--grpc-port", str(target.port)]
        if ctx.args.yard_body == "tensor":
            body = oip_tensor(ctx.row, "input")
        else:
            body = oip_columns(ctx.row)
        versions = dist_versions(
            Path(sys.executable), ["modelyard", "scikit-learn", "onnxruntime", "uvicorn", "numpy"]
        )
        return Launch(
            cmd,
            "/v2/health/ready",
            f"/v2/models/{model_name}/infer",
            body,
            env=env,
            versions=versions,
            settings={"runtime": runtime, "body": ctx.args.yard_body, "log_predictions": log}
            | ({"log_root": env["MODELYARD_MONITORING__LOG_ROOT"]} if log else {}),
            grpc=target,
            log_rows=log_rows if log else None,
            log_wait_s=log_wait_s,
            kernel_path="/admin/models" if runtime == "onnx" else None,
        )

    return prepare


def s3_store(ctx: Context) -> S3Store:
    """moto's S3 server as a process of its own (started once per run) with the log's bucket.

    It is pinned to the load generator's CPU, not the server's: in production the object store is
    another machine, so what it does with an upload is no cost of the server's, while what
    uploading costs the server (concatenating the batch, writing it, the PUT through s3fs) still
    runs in the server process, on the server's CPU. moto works for a moment once per upload
    interval; wrk shares its CPU with it then."""
    store: S3Store | None = ctx.cache.get("s3")
    if store is not None:
        return store
    exe = BIN / "moto_server"
    if not exe.exists():
        raise RuntimeError(f"{exe} not found: install the dev extra (moto[server])")
    port = free_port()
    launch = Launch([str(exe), "-H", "127.0.0.1", "-p", str(port)], "/", "", {})
    proc = ctx.stack.enter_context(running(launch, ctx.tmp / "moto.log", ctx.args.client_cpu))
    store = S3Store(f"http://127.0.0.1:{port}", proc)
    wait_s3(store)
    ctx.cache["s3"] = store
    return store


def yard_home(ctx: Context) -> Path:
    """Check that `yard serve` exists, then register the model and the identity model into a
    temporary MODELYARD_HOME (once)."""
    if ctx.yard_reason is not None:
        raise RuntimeError(ctx.yard_reason)
    if ctx.yard_home is not None:
        return ctx.yard_home
    probe = sh([str(BIN / "yard"), "serve", "--help"])
    if probe.returncode != 0:
        ctx.yard_reason = tail(probe.stderr or probe.stdout, 2) or f"exit {probe.returncode}"
        raise RuntimeError(ctx.yard_reason)
    import modelyard

    home = ctx.tmp / "yard"
    home.mkdir()
    try:
        reg = modelyard.Registry(
            database_url=f"sqlite:///{home}/m.db", artifact_root=f"{home}/artifacts"
        )
        try:
            sample = ctx.cache["sample"]
            reg.register(ctx.cache["model"], name="hgb", data=sample, convert="onnx")
            reg.set_alias("hgb/1", "production")
            # DummyClassifier has no ONNX converter: the identity model is served natively.
            reg.register(ctx.cache["identity"], name="identity", data=sample)
            reg.set_alias("identity/1", "production")
        finally:
            reg.close()
    except Exception as e:
        ctx.yard_reason = f"registering the models failed: {type(e).__name__}: {e}"
        raise RuntimeError(ctx.yard_reason) from e
    ctx.yard_home = home
    return home


def prepare_mlflow(ctx: Context, port: int) -> Launch:
    python = ensure_env("mlflow", peer_specs()["mlflow"])
    model_dir = ctx.tmp / "mlflow_model"
    if not model_dir.exists():
        save = [str(python), str(PEERS / "mlflow_save.py"), str(ctx.named_model)]
        out = sh([*save, str(ctx.sample_json), str(model_dir)], timeout=600)
        if out.returncode != 0:
            raise RuntimeError(f"saving the MLflow model failed: {error_line(out.stderr)}")
    cmd = [str(python.parent / "mlflow"), "models", "serve", "-m", str(model_dir)]
    cmd += ["--env-manager", "local", "-h", "127.0.0.1", "-p", str(port), "-w", "1"]
    body = {"dataframe_split": {"columns": COLUMNS, "data": [ctx.row]}}
    versions = dist_versions(python, ["mlflow", "scikit-learn", "uvicorn", "fastapi"])
    return Launch(cmd, "/ping", "/invocations", body, env=activated(python), versions=versions)


def prepare_bentoml(batching: bool) -> Callable[[Context, int], Launch]:
    def prepare(ctx: Context, port: int) -> Launch:
        python = ensure_env("bentoml", peer_specs()["bentoml"])
        env = {
            "BENCH_MODEL_PATH": str(ctx.bare_model),
            "BENCH_BENTO_BATCHING": "1" if batching else "0",
            "BENCH_BENTO_MAX_LATENCY_MS": str(ctx.args.bento_max_latency_ms),
            "BENTOML_HOME": str(ctx.tmp / "bentoml_home"),
            "BENTOML_DO_NOT_TRACK": "True",
            **activated(python),
        }
        cmd = [str(python.parent / "bentoml"), "serve", "bento_service:HGB"]
        cmd += ["--working-dir", str(PEERS), "--host", "127.0.0.1", "--port", str(port)]
        settings: dict[str, Any] = {"workers": 1, "batching": batching}
        if batching:
            settings |= {
                "max_batch_size": BATCH_SIZE,
                "max_latency_ms": env["BENCH_BENTO_MAX_LATENCY_MS"],
            }
        return Launch(
            cmd,
            "/readyz",
            "/predict",
            {"input": [ctx.row]},
            env=env,
            cwd=PEERS,
            versions=dist_versions(python, ["bentoml", "scikit-learn", "uvicorn", "starlette"]),
            settings=settings,
        )

    return prepare


def prepare_mlserver(batching: bool, *, grpc: bool = False) -> Callable[[Context, int], Launch]:
    def prepare(ctx: Context, port: int) -> Launch:
        python = ensure_env("mlserver", peer_specs()["mlserver"])
        root = Path(tempfile.mkdtemp(prefix="mlserver-", dir=ctx.tmp))
        model_dir = root / "hgb"
        model_dir.mkdir()
        shutil.copy(str(ctx.bare_model), model_dir / "model.joblib")
        model_settings: dict[str, Any] = {
            "name": "hgb",
            "implementation": "mlserver_sklearn.SKLearnModel",
            "parameters": {"uri": "./model.joblib"},
        }
        if batching:
            model_settings |= {"max_batch_size": BATCH_SIZE, "max_batch_time": ctx.args.batch_time}
        (model_dir / "model-settings.json").write_text(json.dumps(model_settings))
        settings = {
            "host": "127.0.0.1",
            "http_port": port,
            "grpc_port": free_port(),
            "metrics_port": free_port(),
            "parallel_workers": 0,
        }
        (root / "settings.json").write_text(json.dumps(settings))
        cmd = [str(python.parent / "mlserver"), "start", str(root)]
        return Launch(
            cmd,
            "/v2/health/ready",
            "/v2/models/hgb/infer",
            oip_tensor(ctx.row, "input-0"),
            env=activated(python),
            cwd=root,
            versions=dist_versions(python, ["mlserver", "mlserver-sklearn", "scikit-learn"]),
            settings={"parallel_workers": 0}
            | {k: v for k, v in model_settings.items() if "batch" in k},
            grpc=GrpcTarget(settings["grpc_port"], "hgb", "tensor", tuple(COLUMNS), "input-0")
            if grpc
            else None,
        )

    return prepare


def prepare_asgi(ctx: Context, port: int) -> Launch:
    python = asgi_python()
    cmd = [str(python), "-m", "uvicorn", "bare_asgi:app", "--app-dir", str(PEERS)]
    cmd += ["--host", "127.0.0.1", "--port", str(port), "--loop", "uvloop", "--http", "httptools"]
    cmd += ["--lifespan", "off", "--no-access-log", "--log-level", "warning"]
    return Launch(
        cmd,
        "/",
        "/v2/models/hgb/infer",
        oip_tensor(ctx.row, "input"),
        versions=dist_versions(python, ["uvicorn", "uvloop", "httptools", "orjson"]),
    )


SERVERS = [
    Server("yard-native", "yard", "yard serve --runtime native", prepare_yard("native", "hgb")),
    Server("yard-onnx", "yard", "yard serve --runtime onnx", prepare_yard("onnx", "hgb")),
    Server(
        "yard-onnx-logged",
        "yard",
        "yard serve --runtime onnx --log-predictions (Parquet prediction log on)",
        prepare_yard("onnx", "hgb", log=True),
    ),
    Server(
        "yard-onnx-logged-s3",
        "yard",
        "yard serve --runtime onnx --log-predictions to s3:// (moto's S3 server, spooled)",
        prepare_yard("onnx", "hgb", log=True, log_store="s3"),
    ),
    Server(
        "yard-identity",
        "yard",
        "yard serve, DummyClassifier on the same 20 columns (native)",
        prepare_yard("native", "identity"),
    ),
    Server("mlflow", "mlflow", "mlflow models serve (MLflow 3)", prepare_mlflow),
    Server("bentoml", "bentoml", "BentoML 1.4, 1 worker", prepare_bentoml(False)),
    Server("bentoml-batch", "bentoml", "BentoML 1.4, adaptive batching", prepare_bentoml(True)),
    Server("mlserver", "mlserver", "MLServer 1.7.1, parallel_workers 0", prepare_mlserver(False)),
    Server(
        "mlserver-batch", "mlserver", "MLServer 1.7.1, adaptive batching", prepare_mlserver(True)
    ),
    Server("asgi", "asgi", "bare uvicorn ASGI + orjson (the limit)", prepare_asgi),
    # The Open Inference Protocol over gRPC (benchmarks/_grpc_load.py): 1-row and 1000-row calls.
    Server(
        "yard-grpc",
        "grpc",
        "yard serve --runtime onnx --grpc-port",
        prepare_yard("onnx", "hgb", grpc=True),
    ),
    Server("mlserver-grpc", "grpc", "MLServer 1.7.1 gRPC", prepare_mlserver(False, grpc=True)),
    Server(
        "mlserver-batch-grpc",
        "grpc",
        "MLServer 1.7.1 gRPC, adaptive batching",
        prepare_mlserver(True, grpc=True),
    ),
]


@contextlib.contextmanager
def running(launch: Launch, log: Path, cpu: str) -> Iterator[subprocess.Popen[bytes]]:
    """Start the server pinned to ``cpu`` in its own process group; always kill the group."""
    env = {**os.environ, "PYTHONUNBUFFERED": "1", **launch.env}
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            ["taskset", "-c", cpu, *launch.cmd],
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env=env,
            cwd=launch.cwd,
            start_new_session=True,
        )
    try:
        yield proc
    finally:
        stop(proc)


def stop(proc: subprocess.Popen[bytes], grace: float = 5.0) -> None:
    """SIGTERM the process group, then SIGKILL it (MLflow ignores SIGTERM) and any descendant
    that left it (BentoML's workers run in sessions of their own)."""
    family = descendants(proc.pid)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGTERM)
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(grace)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)
    wait_gone(family, grace)
    for pid, started in family.items():
        if start_time(pid) == started:  # the same process, not a reused pid
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
    wait_gone(family, 5.0)
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(5)


def wait_gone(family: dict[int, str], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and any(start_time(p) == t for p, t in family.items()):
        time.sleep(0.05)


def start_time(pid: int) -> str | None:
    """The start time of a live (not zombie) process, to tell it from a later one with its pid."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None
    return None if fields[0] in ("Z", "X") else fields[19]


def descendants(root: int) -> dict[int, str]:
    """Every process below ``root`` (from /proc), with its start time."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError, IndexError, ValueError):
                ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
                children.setdefault(ppid, []).append(int(entry.name))
    found: dict[int, str] = {}
    todo = list(children.get(root, []))
    while todo:
        pid = todo.pop()
        if (started := start_time(pid)) is not None:
            found[pid] = started
        todo.extend(children.get(pid, []))
    return found


def http(url: str, body: bytes | None = None, timeout: float = 5.0) -> tuple[int, bytes]:
    request = urllib.request.Request(url, data=body, method="POST" if body else "GET")
    if body:
        request.add_header("Content-Type", "application/json")
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()


def wait_ready(proc: subprocess.Popen[bytes], url: str, started: float, timeout: float) -> float:
    """Poll ``url`` until it answers 200; seconds from process start."""
    while time.perf_counter() - started < timeout:
        if proc.poll() is not None:
            raise RuntimeError(f"exited with code {proc.returncode} before ready")
        with contextlib.suppress(OSError):
            if http(url, timeout=1.0)[0] == 200:
                return time.perf_counter() - started
        time.sleep(0.01)
    raise RuntimeError(f"not ready after {timeout:.0f} s")


def wait_kernel(url: str, timeout_s: float) -> tuple[str, float]:
    """What runs the first model once it is on the tree kernel, or after ``timeout_s`` (numba
    missing, or a model the kernel does not cover: onnxruntime), and the seconds waited."""
    started = time.perf_counter()
    kernel = "onnxruntime"
    while time.perf_counter() - started < timeout_s:
        status, body = http(url)
        if status == 200:
            kernel = json.loads(body)[0]["kernel"]
            if kernel != "onnxruntime":
                break
        time.sleep(0.1)
    return kernel, time.perf_counter() - started


def run_wrk(
    url: str, body_file: Path, conns: int, duration: int, cpu: str, script: Path | None = None
) -> dict[str, Any]:
    """wrk with ``script`` (post.lua: the one body in ``body_file``, every request)."""
    cmd = ["taskset", "-c", cpu, "wrk", "-t1", f"-c{conns}", f"-d{duration}s", "--latency"]
    cmd += ["-s", str(script or PEERS / "post.lua"), url]
    env = {**os.environ, "BENCH_BODY_FILE": str(body_file)}
    out = sh(cmd, timeout=duration + 60, env=env)
    line = next((x for x in out.stdout.splitlines() if x.startswith("WRK_JSON ")), None)
    if out.returncode != 0 or line is None:
        raise RuntimeError(f"wrk failed ({out.returncode}): {tail(out.stderr or out.stdout)}")
    raw = json.loads(line.removeprefix("WRK_JSON "))
    errors = raw["errors"]
    latency = raw["latency_us"]
    return {
        "conns": conns,
        "requests": raw["requests"],
        "rps": raw["requests"] / (raw["duration_us"] / 1e6),
        "p50_ms": latency["p50"] / 1000,
        "p90_ms": latency["p90"] / 1000,
        "p99_ms": latency["p99"] / 1000,
        "mean_ms": latency["mean"] / 1000,
        "max_ms": latency["max"] / 1000,
        "non_2xx": errors["status"],
        "socket_errors": errors["connect"] + errors["read"] + errors["write"] + errors["timeout"],
        "statuses": raw["statuses"],
    }


def measure(server: Server, ctx: Context) -> dict[str, Any]:
    """Start one server, check one request, warm it up, run wrk at each concurrency."""
    args = ctx.args
    port = free_port()
    launch = server.prepare(ctx, port)
    base = f"http://127.0.0.1:{port}"
    body = json.dumps(launch.body).encode()
    body_file = ctx.tmp / f"{server.name}.json"
    body_file.write_bytes(body)
    log = ctx.tmp / f"{server.name}.log"
    result: dict[str, Any] = {
        "describe": server.describe,
        "command": " ".join(launch.cmd),
        "versions": launch.versions,
        "settings": launch.settings,
        "request": {"path": launch.infer_path, "bytes": len(body)},
        "loadavg_before": os.getloadavg(),
    }
    started = time.perf_counter()
    with running(launch, log, args.server_cpu) as proc:
        try:
            result["ready_s"] = wait_ready(
                proc, base + launch.ready_path, started, args.ready_timeout
            )
            if launch.kernel_path is not None:
                result["kernel"], result["kernel_after_ready_s"] = wait_kernel(
                    base + launch.kernel_path, timeout_s=60.0
                )
                print(
                    f"    runs on {result['kernel']} "
                    f"({result['kernel_after_ready_s']:.1f} s after ready)", flush=True,
                )  # fmt: skip
            if launch.grpc is not None:
                alive = lambda: proc.poll() is None  # noqa: E731
                # 1 row: the REST request's row; 1000 rows: it, then 999 rows of the sample.
                data = [ctx.row, *ctx.cache["sample"].to_numpy()[:999].tolist()]
                return result | measure_grpc(
                    launch.grpc, args.grpc_load, data=data, tmp=ctx.tmp, alive=alive,
                    started=started,
                )  # fmt: skip
            status, answer = http(base + launch.infer_path, body, timeout=30)
            result["sample_response"] = answer[:300].decode(errors="replace")
            if status != 200:
                raise RuntimeError(f"request answered {status}: {answer[:300]!r}")
            answered = 1  # the request above
            if args.warmup > 0:
                warm = run_wrk(base + launch.infer_path, body_file, 8, args.warmup, args.client_cpu)
                answered += warm["statuses"].get("200", 0)
            runs = []
            for conns in args.conns:
                if proc.poll() is not None:
                    raise RuntimeError(f"exited with code {proc.returncode} during the runs")
                run = run_wrk(
                    base + launch.infer_path, body_file, conns, args.duration, args.client_cpu
                )
                print(f"    c={conns:<3} {fmt_run(run)}", flush=True)
                runs.append(run)
            result["runs"] = runs
            if launch.log_rows is not None:
                answered += sum(r["statuses"].get("200", 0) for r in runs)
                result["log_check"] = check_log(
                    base, launch.log_rows, answered=answered,
                    in_flight=8 * (args.warmup > 0) + sum(args.conns), timeout_s=launch.log_wait_s,
                )  # fmt: skip
                print(f"    {fmt_check(result['log_check'])}", flush=True)
        except Exception as e:
            text = log.read_text(errors="replace")
            cause = error_line(text)
            raise RuntimeError(
                f"{e}{f' ({cause})' if cause else ''}\n--- server log tail ---\n{tail(text)}"
            ) from e
    return result


def fmt_run(run: dict[str, Any]) -> str:
    return (
        f"{run['rps']:>9,.0f} req/s  p50 {run['p50_ms']:7.2f}  p90 {run['p90_ms']:7.2f}  "
        f"p99 {run['p99_ms']:7.2f} ms  non-2xx {run['non_2xx']}  socket errors "
        f"{run['socket_errors']}"
    )


# -- reporting -------------------------------------------------------------------------------


def run_at(result: dict[str, Any] | None, conns: int) -> dict[str, Any] | None:
    if not result or "runs" not in result:
        return None
    return next((r for r in result["runs"] if r["conns"] == conns), None)


def best(
    results: dict[str, Any], names: list[str], conns: int
) -> tuple[str, dict[str, Any]] | None:
    found = [(n, r) for n in names if (r := run_at(results.get(n), conns))]
    return max(found, key=lambda item: item[1]["rps"]) if found else None


def ratios(results: dict[str, Any], conns_list: list[int]) -> dict[str, Any]:
    top = 32 if 32 in conns_list else max(conns_list)
    out: dict[str, Any] = {"at_conns": top}
    yard = best(results, ["yard-native", "yard-onnx"], top)

    def peer_rps(names: list[str]) -> tuple[str, float] | None:
        found = best(results, names, top)
        return (found[0], found[1]["rps"]) if found else None

    peers = {
        "vs_mlflow": peer_rps(["mlflow"]),
        "vs_bentoml": peer_rps(["bentoml", "bentoml-batch"]),
        "vs_mlserver": peer_rps(["mlserver", "mlserver-batch"]),
    }
    limit = peer_rps(["asgi"])
    identity = peer_rps(["yard-identity"])
    out["peers"] = {k: v[0] for k, v in peers.items() if v}
    if limit:
        out["asgi_rps"] = limit[1]
    if not yard:
        return out
    name, run = yard
    out["yard"] = name
    out["yard_rps"] = run["rps"]
    for key, peer in peers.items():
        if peer:
            out[key] = run["rps"] / peer[1]
    if limit:
        out["of_bare_asgi"] = run["rps"] / limit[1]
    if identity:
        out["of_identity"] = run["rps"] / identity[1]
    out["p99_ms"] = run["p99_ms"]
    out["errors"] = sum(r["non_2xx"] + r["socket_errors"] for r in results[name]["runs"])
    plain = run_at(results.get("yard-onnx"), top)
    for server, prefix in (("yard-onnx-logged", "log"), ("yard-onnx-logged-s3", "log_s3")):
        logged = run_at(results.get(server), top)
        if logged and plain:
            out[f"{prefix}_on_vs_off"] = logged["rps"] / plain["rps"]
            out[f"{prefix}_p99_ratio"] = logged["p99_ms"] / plain["p99_ms"]
    checks = [r["log_check"] for r in results.values() if "log_check" in r]
    if checks:
        out["log_lost"] = sum(c["lost"] for c in checks)
    if c1 := run_at(results[name], 1):
        out["c1_p50_ms"] = c1["p50_ms"]
    out["ready_s"] = results[name]["ready_s"]
    return out


def check_targets(found: dict[str, Any]) -> list[dict[str, Any]]:
    checks = []
    for key, op, threshold, text in TARGETS:
        value = found.get(key)
        if value is None:
            verdict = "n/a"
        elif op == ">=":
            verdict = "PASS" if value >= threshold else "FAIL"
        else:
            verdict = "PASS" if value <= threshold else "FAIL"
        checks.append({"target": text, "key": key, "value": value, "verdict": verdict})
    return checks


def print_report(results: dict[str, Any], found: dict[str, Any], *, title: str) -> None:
    print()
    if title != "round 1 of 1":
        print(f"{title}:")
    head = f"{'server':<19} {'ready s':>7} {'c':>3} {'req/s':>9} {'p50 ms':>8} {'p90 ms':>8}"
    print(head + f" {'p99 ms':>8} {'non-2xx':>8} {'sock err':>8}")
    for name, result in results.items():
        if "grpc_runs" in result:
            continue  # print_grpc_report's table
        if "runs" not in result:
            reason = (result.get("error") or "?").splitlines()[0][:100]
            print(f"{name:<19} not measured: {reason}")
            continue
        for i, run in enumerate(result["runs"]):
            ready = f"{result['ready_s']:7.2f}" if i == 0 else " " * 7
            print(
                f"{name if i == 0 else '':<19} {ready} {run['conns']:>3} {run['rps']:>9,.0f} "
                f"{run['p50_ms']:>8.2f} {run['p90_ms']:>8.2f} {run['p99_ms']:>8.2f} "
                f"{run['non_2xx']:>8} {run['socket_errors']:>8}"
            )
    print()
    top = found["at_conns"]
    if "yard" in found:
        print(f"ratios at c={top}, yard = {found['yard']} ({found['yard_rps']:,.0f} req/s):")
        for key in ("vs_mlflow", "vs_bentoml", "vs_mlserver"):
            if key in found:
                print(f"  yard / {found['peers'][key]:<15} {found[key]:8.1f}x")
        if "of_bare_asgi" in found:
            print(f"  yard / bare ASGI limit  {found['of_bare_asgi']:8.1%}")
        if "of_identity" in found:
            print(f"  yard / identity model   {found['of_identity']:8.1%}")
        for store, prefix in (("local disk", "log"), ("S3", "log_s3")):
            if f"{prefix}_on_vs_off" in found:
                print(
                    f"  log on {store:<10} / off  {found[f'{prefix}_on_vs_off']:8.1%} req/s, "
                    f"p99 {found[f'{prefix}_p99_ratio']:.2f}x"
                )
        for name, result in results.items():
            if "log_check" in result:
                print(f"  {name:<22} {fmt_check(result['log_check'])}")
    else:
        print(f"no yard result at c={top}: ratios not computed")
        peers = [
            n
            for n in ("mlflow", "bentoml", "bentoml-batch", "mlserver", "mlserver-batch")
            if run_at(results.get(n), top)
        ]
        if "asgi_rps" in found and peers:
            limit = found["asgi_rps"]
            print(f"peers as a fraction of the bare ASGI limit ({limit:,.0f} req/s) at c={top}:")
            for n in peers:
                print(f"  {n:<15} {run_at(results[n], top)['rps'] / limit:8.2%}")
    print_grpc_report(results, found)


def print_targets(checks: list[dict[str, Any]]) -> None:
    print("\ntargets:")
    for check in checks:
        value = check["value"]
        shown = "-" if value is None else f"{value:.3g}"
        print(f"  {check['verdict']:<4}  {check['target']:<42} {shown}")


# -- machine ---------------------------------------------------------------------------------


def machine_with_memory() -> dict[str, Any]:
    mem_kb = 0
    with contextlib.suppress(OSError, ValueError, IndexError):
        mem_kb = int(Path("/proc/meminfo").read_text().split()[1])
    wrk = sh(["wrk", "--version"])
    return machine(
        memory_gb=round(mem_kb / 1024 / 1024, 1),
        wrk=(wrk.stdout or wrk.stderr).splitlines()[0] if (wrk.stdout or wrk.stderr) else "",
        h2load=h2load_version(),
    )


# -- main ------------------------------------------------------------------------------------


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--duration", type=int, default=15, help="seconds per wrk run")
    parser.add_argument("--conns", default="1,8,32", help="wrk concurrencies, comma-separated")
    parser.add_argument(
        "--only", default="", help="servers or groups: " + ",".join(s.name for s in SERVERS)
    )
    parser.add_argument("--quick", action="store_true", help="3 s runs, 1 s warm-up (smoke)")
    parser.add_argument(
        "--rounds", type=int, default=1,
        help="measure the servers in turn this many times; ratios are the rounds' median",
    )  # fmt: skip
    parser.add_argument("--warmup", type=int, default=2, help="seconds of warm-up at c=8")
    parser.add_argument("--yard-body", choices=["per-column", "tensor"], default="per-column")
    parser.add_argument("--bento-max-latency-ms", type=int, default=1000)
    parser.add_argument(
        "--batch-time",
        type=float,
        default=MLSERVER_BATCH_TIME_S,
        help="MLServer max_batch_time (s)",
    )
    parser.add_argument("--grpc-rows", default="1,1000", help="rows per gRPC request")
    parser.add_argument(
        "--grpc-modes",
        default="streams,conns",
        help="streams: 1 connection, c streams; conns: c connections, 1 stream each",
    )
    parser.add_argument("--grpc-aio", action="store_true", help="also load with a grpc.aio client")
    parser.add_argument("--grpc-contents", choices=["raw", "typed"], default="raw")
    parser.add_argument("--grpc-dtype", choices=["FP64", "FP32"], default="FP64")
    parser.add_argument("--ready-timeout", type=float, default=120.0)
    parser.add_argument("--server-cpu", default="0")
    parser.add_argument("--client-cpu", default="1")
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    try:
        args.conns = [int(c) for c in args.conns.split(",") if c.strip()]
    except ValueError:
        parser.error("--conns takes comma-separated integers, e.g. 1,8,32")
    if not args.conns or min(args.conns) < 1 or args.duration < 1:
        parser.error("--conns needs at least one value >= 1 and --duration >= 1")
    if args.rounds < 1:
        parser.error("--rounds must be at least 1")
    if args.quick:
        args.duration, args.warmup = 3, 1
    if args.out is None:
        args.out = RESULTS / ("serving-quick.json" if args.quick else "serving.json")
    wanted = {x.strip() for x in args.only.split(",") if x.strip()}
    known = {s.name for s in SERVERS} | {s.group for s in SERVERS}
    if unknown := wanted - known:
        parser.error(f"unknown servers: {', '.join(sorted(unknown))}")
    args.servers = [s for s in SERVERS if not wanted or {s.name, s.group} & wanted]
    modes = tuple(m.strip() for m in args.grpc_modes.split(",") if m.strip())
    if not modes or set(modes) - {"streams", "conns"}:
        parser.error("--grpc-modes takes streams, conns or both")
    try:
        rows = tuple(int(n) for n in args.grpc_rows.split(",") if n.strip())
    except ValueError:
        parser.error("--grpc-rows takes comma-separated integers, e.g. 1,1000")
    args.grpc_load = Load(
        rows=rows,
        conns=tuple(args.conns),
        modes=modes,
        clients=("h2load", "aio") if args.grpc_aio else ("h2load",),
        duration_s=args.duration,
        warmup_s=args.warmup,
        client_cpu=args.client_cpu,
        dtype=args.grpc_dtype,
        contents=args.grpc_contents,
        ready_timeout_s=args.ready_timeout,
    )
    return args


def measure_round(ctx: Context, index: int) -> dict[str, Any]:
    """Every server of the run, one after the other."""
    if ctx.args.rounds > 1:
        print(f"round {index + 1} of {ctx.args.rounds}", flush=True)
    results: dict[str, Any] = {}
    for server in ctx.args.servers:
        print(f"{server.name}: {server.describe}", flush=True)
        try:
            results[server.name] = measure(server, ctx)
            print(f"    ready in {results[server.name]['ready_s']:.2f} s", flush=True)
        except Exception as e:
            if server.group == "yard":
                print(f"    yard serve not available: {e}", flush=True)
            else:
                print(f"    {server.name} not available: {e}", flush=True)
            results[server.name] = {"describe": server.describe, "error": str(e)}
    return results


def round_ratios(results: dict[str, Any], conns: list[int]) -> dict[str, Any]:
    """One round's ratios, REST and gRPC."""
    found = ratios(results, conns)
    rest = run_at(results.get("yard-onnx"), found["at_conns"])
    return found | grpc_ratios(
        results,
        top=found["at_conns"],
        yard="yard-grpc",
        peers=["mlserver-grpc", "mlserver-batch-grpc"],
        rest_rps=rest["rps"] if rest else None,
    )


#: Counts, added over the rounds; every other number is the rounds' median.
_SUMMED = ("errors", "log_lost", "grpc_errors")
#: The ratios printed round by round with ``--rounds``.
_ROUND_KEYS = (
    "yard_rps", "of_bare_asgi", "vs_mlserver", "log_on_vs_off", "log_s3_on_vs_off",
    "log_p99_ratio", "log_s3_p99_ratio", "grpc_vs_rest",
)  # fmt: skip


def combined(each: list[dict[str, Any]]) -> dict[str, Any]:
    """The rounds' ratios as one: a number found in every round is their median (counts are
    added); anything else (names, the per-mode gRPC table) is the first round's."""
    if len(each) == 1:
        return each[0]
    out = dict(each[0])
    for key, first in each[0].items():
        values = [found.get(key) for found in each]
        if isinstance(first, bool) or not all(isinstance(v, int | float) for v in values):
            continue
        out[key] = sum(values) if key in _SUMMED else statistics.median(values)
    return out


def print_rounds(each: list[dict[str, Any]], found: dict[str, Any]) -> None:
    print(f"\neach round ({len(each)}), and the median the targets read:")
    for key in _ROUND_KEYS:
        if key not in found:
            continue
        shown = "  ".join(_shown(found_round.get(key)) for found_round in each)
        print(f"  {key:<19} {shown}   median {_shown(found[key])}")


def _shown(value: Any) -> str:
    if not isinstance(value, int | float):
        return "-"
    return f"{value:,.0f}" if value >= 100 else f"{value:.3f}"


def main() -> None:
    args = parse_args()
    for tool in ("wrk", "taskset"):
        if shutil.which(tool) is None:
            sys.exit(
                f"{tool} not found (apt-get install -y {'wrk' if tool == 'wrk' else 'util-linux'})"
            )
    if any(s.group == "grpc" for s in args.servers) and shutil.which("h2load") is None:
        sys.exit("h2load not found, the gRPC load generator (apt-get install -y nghttp2-client)")
    # Turn SIGTERM into an exception so every running server's finally: block kills it.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    started = datetime.now(UTC)
    with (
        tempfile.TemporaryDirectory(prefix="serving-bench-") as tmp,
        contextlib.ExitStack() as stack,
    ):
        ctx = Context(args=args, tmp=Path(tmp), stack=stack)
        fit = any(s.group != "asgi" for s in args.servers)
        print("making the data and training the model ..." if fit else "making the data ...")
        train(ctx, fit)
        rounds = [measure_round(ctx, index) for index in range(args.rounds)]
    each = [round_ratios(results, args.conns) for results in rounds]
    found = combined(each)
    checks = check_targets(found)
    for index, results in enumerate(rounds):
        print_report(results, each[index], title=f"round {index + 1} of {len(rounds)}")
    if len(rounds) > 1:
        print_rounds(each, found)
    print_targets(checks)
    report = {
        "scenario": "serving: HGB(max_iter=100) on make_classification(100k, 20), 1-row JSON",
        "started_at": started.isoformat(),
        "machine": machine_with_memory(),
        "git": git_commit(),
        "config": {
            "duration_s": args.duration,
            "warmup_s": args.warmup,
            "conns": args.conns,
            "rounds": args.rounds,
            "server_cpu": args.server_cpu,
            "client_cpu": args.client_cpu,
            "wrk": "wrk -t1 --latency -s benchmarks/_serving_peers/post.lua",
            "yard_body": args.yard_body,
            "grpc": {
                "h2load": "h2load -t1 (streams: -c1 -mC; conns: -cC -m1), one raw gRPC frame",
                "load": vars(args.grpc_load),
            },
            "seed": SEED,
        },
        "servers": rounds[0],
        "ratios": found,
        "rounds": [{"servers": r, "ratios": f} for r, f in zip(rounds, each, strict=True)]
        if len(rounds) > 1
        else None,
        "targets": checks,
    }
    write_report(args.out, report)


if __name__ == "__main__":
    main()
