"""What a native scikit-learn server imports (issue 12's ready time): ``yard serve``'s own entry
point in a process of its own, which writes ``sys.modules`` when it exits. skops' default trust is
built without walking scikit-learn (flavors/_skops_io.py), and nothing the start does not use is
imported: no PyTorch, pytest, gRPC, dashboard or DuckDB."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
from sklearn.ensemble import HistGradientBoostingClassifier

from modelyard.registry import Registry
from modelyard.settings import Settings
from tests.integration._server import free_port, server_env, wait_ok

# Modules (and their submodules) a native scikit-learn start must not import.
NOT_IMPORTED = (
    "torch",  # pulled in by scikit-learn's all_estimators() through its array-API shims
    "pytest",
    "_pytest",
    "sklearn.utils._testing",  # the mark of all_estimators() having run
    "grpc",  # no --grpc-port
    "starlette",  # no --ui
    "jinja2",
    "duckdb",
    "alembic",
    "onnxruntime",  # --runtime native
    "ray",
    "mlflow",
)
# bin/yard, and the modules it had imported written out at exit (after SIGTERM's drain).
ENTRY = (
    "import atexit, json, os, sys\n"
    "def written():\n"
    "    with open(os.environ['MODULES_OUT'], 'w') as f:\n"
    "        json.dump(sorted(sys.modules), f)\n"
    "atexit.register(written)\n"
    "from modelyard.cli.main import main\n"
    "sys.exit(main())\n"
)


def test_a_native_scikit_learn_start_imports_only_what_it_serves_with(tmp_path: Path) -> None:
    X = np.random.default_rng(0).normal(size=(200, 4))
    registry = Registry(Settings(home=tmp_path))
    try:
        model = HistGradientBoostingClassifier(max_iter=5).fit(X, (X[:, 0] > 0).astype(int))
        registry.register(model, name="hgb", data=X)
    finally:
        registry.close()
    out, log, port = tmp_path / "modules.json", tmp_path / "server.log", free_port()
    args = ["serve", "hgb/1", "--runtime", "native", "--port", str(port)]
    with log.open("w") as sink:
        proc = subprocess.Popen(
            [sys.executable, "-c", ENTRY, *args],
            env=server_env(tmp_path, MODULES_OUT=str(out)), stdout=sink, stderr=subprocess.STDOUT,
        )  # fmt: skip
        try:
            assert wait_ok(f"http://127.0.0.1:{port}/v2/health/ready", proc, log, 120), (
                log.read_text()
            )
        finally:
            proc.terminate()
            proc.wait(30)

    assert proc.returncode == 0, log.read_text()
    modules = set(json.loads(out.read_text()))
    assert {"sklearn.ensemble", "skops.io"} <= modules  # it did load the model natively
    unwanted = sorted(
        m for m in modules if any(m == n or m.startswith(n + ".") for n in NOT_IMPORTED)
    )
    assert unwanted == []
