"""Registry benchmark: warm load, list latency with 10,000 versions, and register + load against
MLflow 3 in the same run. Prints the ratios and writes JSON to benchmarks/results/.

    .venv/bin/python benchmarks/registry.py [--versions 10000] [--repeat 20] [--skip-mlflow]

MLflow is installed into its own virtualenv (benchmarks/.envs/mlflow) the first time.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

HERE = Path(__file__).resolve().parent
ENVS = HERE / ".envs"
RESULTS = HERE / "results"
MLFLOW_SPEC = "mlflow>=3,<4"

MLFLOW_SCRIPT = r"""
import json, sys, time, tempfile, warnings, logging
warnings.filterwarnings("ignore")
logging.disable(logging.WARNING)
import numpy as np
from sklearn.datasets import load_breast_cancer
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
import mlflow, mlflow.sklearn, mlflow.pyfunc
repeat = int(sys.argv[1])
root = tempfile.mkdtemp()
mlflow.set_tracking_uri(f"sqlite:///{root}/mlflow.db")
mlflow.set_experiment("bench")
X, y = load_breast_cancer(return_X_y=True, as_frame=True)
model = make_pipeline(StandardScaler(), LogisticRegression(max_iter=1000)).fit(X, y)
out = {"version": mlflow.__version__}
# "default": log_model as most users call it (MLflow infers pip requirements);
# "pinned": requirements given, which skips that inference: the fairest case for MLflow.
for mode, extra in (("default", {}), ("pinned", {"pip_requirements": ["scikit-learn"]})):
    reg, load = [], []
    for i in range(repeat):
        t0 = time.perf_counter()
        with mlflow.start_run():
            info = mlflow.sklearn.log_model(model, name="model", registered_model_name=mode,
                                            input_example=X.head(5), **extra)
        reg.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        loaded = mlflow.pyfunc.load_model(f"models:/{mode}/{i + 1}")
        load.append(time.perf_counter() - t0)
        assert (loaded.predict(X.head(50)) == model.predict(X.head(50))).all()
    out[mode] = {"register_s": reg, "load_s": load}
print(json.dumps(out))
"""


def median_ms(values: list[float]) -> float:
    return statistics.median(values) * 1000


def modelyard_side(repeat: int, n_versions: int) -> dict[str, object]:
    from sklearn.datasets import load_breast_cancer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    from modelyard.registry import Registry

    root = Path(tempfile.mkdtemp())
    registry = Registry(
        database_url=f"sqlite:///{root}/meta.db", artifact_root=str(root / "artifacts")
    )
    X, y = load_breast_cancer(return_X_y=True, as_frame=True)
    model = make_pipeline(StandardScaler(), LogisticRegression(max_iter=1000)).fit(X, y)
    reg, load = [], []
    for i in range(repeat):
        t0 = time.perf_counter()
        registry.register(model, name="bench", data=X, target=y)
        reg.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        loaded = registry.load(f"bench/{i + 1}")
        load.append(time.perf_counter() - t0)
        assert (loaded.predict(X.head(50)) == model.predict(X.head(50))).all()
    registry.set_alias("bench/1", "production")
    registry.load("bench@production")
    warm = []
    for _ in range(max(repeat, 50)):
        t0 = time.perf_counter()
        registry.load("bench@production")
        warm.append(time.perf_counter() - t0)
    list_ms = fill_and_list(registry, n_versions)
    return {
        "register_s": reg,
        "load_s": load,
        "warm_load_median_ms": median_ms(warm),
        "list_page_ms": list_ms,
    }


def fill_and_list(registry: object, n_versions: int) -> dict[str, float]:
    """Insert ``n_versions`` version rows directly (registering 10k models would take minutes
    and measure registration, not listing), then time listing pages of 50."""
    from datetime import UTC, datetime

    import sqlalchemy as sa

    from modelyard.store.schema import model_versions, models, version_files, version_tags

    db = registry.db  # type: ignore[attr-defined]
    now = datetime.now(UTC)
    with db.write() as conn:
        conn.execute(
            sa.insert(models),
            [
                {"name": f"m{i:03d}", "created_at": now, "updated_at": now, "latest_version": 100}
                for i in range(n_versions // 100)
            ],
        )
        ids = dict(conn.execute(sa.select(models.c.name, models.c.id)).all())
        rows = []
        for i in range(n_versions):
            rows.append(
                {
                    "model_id": ids[f"m{i // 100:03d}"],
                    "version": i % 100 + 1,
                    "flavor": "sklearn",
                    "flavor_meta": {},
                    "metrics": {"auc": 0.9},
                    "params": {"C": "1"},
                    "lineage": {"python": platform.python_version()},
                    "created_by": "bench",
                    "created_at": now,
                }
            )
        conn.execute(sa.insert(model_versions), rows)
        vids = (
            conn.execute(
                sa.select(model_versions.c.id).where(model_versions.c.created_by == "bench")
            )
            .scalars()
            .all()
        )
        conn.execute(
            sa.insert(version_files),
            [
                {
                    "version_id": v,
                    "name": "model.skops",
                    "role": "model",
                    "sha256": "0" * 64,
                    "size_bytes": 1,
                }
                for v in vids
            ],
        )
        conn.execute(
            sa.insert(version_tags), [{"version_id": v, "key": "team", "value": "a"} for v in vids]
        )
    timings: dict[str, list[float]] = {"first": [], "middle": [], "by_model": [], "by_tag": []}
    for _ in range(20):
        for key, kwargs in (
            ("first", {"page": 1}),
            ("middle", {"page": n_versions // 100}),
            ("by_model", {"name": "m050"}),
            ("by_tag", {"tag": "team=a", "page": 3}),
        ):
            t0 = time.perf_counter()
            page = registry.search_versions(page_size=50, **kwargs)  # type: ignore[attr-defined]
            timings[key].append(time.perf_counter() - t0)
            assert len(page.items) == 50
    return {key: median_ms(values) for key, values in timings.items()}


def mlflow_side(repeat: int) -> dict[str, object]:
    env = ENVS / "mlflow"
    python = env / "bin" / "python"
    if not python.exists():
        print(f"installing {MLFLOW_SPEC} into {env} (first run only)...", flush=True)
        subprocess.run([sys.executable, "-m", "venv", str(env)], check=True)
        uv = Path(sys.executable).parent / "uv"
        installer = [str(uv), "pip", "install", "-q", "--python", str(python)]
        if not uv.exists():
            installer = [str(python), "-m", "pip", "install", "-q"]
        subprocess.run([*installer, MLFLOW_SPEC, "scikit-learn"], check=True)
    out = subprocess.run(
        [str(python), "-c", MLFLOW_SCRIPT, str(repeat)],
        cwd=tempfile.mkdtemp(),  # MLflow writes its artifacts under ./mlruns
        capture_output=True,
        text=True,
        check=True,
        env={**os.environ, "PYTHONWARNINGS": "ignore"},
    )
    result: dict[str, object] = json.loads(out.stdout.strip().splitlines()[-1])
    return result


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--versions", type=int, default=10_000)
    parser.add_argument("--repeat", type=int, default=20)
    parser.add_argument("--skip-mlflow", action="store_true")
    args = parser.parse_args()
    ours = modelyard_side(args.repeat, args.versions)
    print(
        f"modelyard warm load(NAME@production): median {ours['warm_load_median_ms']:.2f} ms "
        "(target <= 5 ms)"
    )
    for key, value in ours["list_page_ms"].items():  # type: ignore[attr-defined]
        print(
            f"modelyard list, {args.versions} versions, page of 50 ({key}): {value:.2f} ms "
            "(target <= 50 ms)"
        )
    our_reg = median_ms(ours["register_s"])  # type: ignore[arg-type]
    our_load = median_ms(ours["load_s"])  # type: ignore[arg-type]
    print(f"modelyard register: median {our_reg:.1f} ms; cold load: median {our_load:.2f} ms")
    report: dict[str, object] = {"modelyard": ours}
    if not args.skip_mlflow:
        theirs = mlflow_side(args.repeat)
        report["mlflow"] = theirs
        for mode in ("default", "pinned"):
            side = theirs[mode]  # type: ignore[index]
            their_reg = median_ms(side["register_s"])
            their_load = median_ms(side["load_s"])
            print(
                f"MLflow {theirs['version']} ({mode} requirements) log_model+register: median "
                f"{their_reg:.1f} ms; pyfunc.load_model: median {their_load:.1f} ms"
            )
            ratio = (their_reg + their_load) / (our_reg + our_load)
            print(
                f"ratio register+load, MLflow ({mode}) / modelyard: {ratio:.1f}x (target >= 5x);"
                f" register {their_reg / our_reg:.1f}x, load {their_load / our_load:.1f}x"
            )
            report[f"ratio_register_load_{mode}"] = ratio
    report["machine"] = {"python": platform.python_version(), "cpus": os.cpu_count()}
    report["at"] = datetime.now(UTC).isoformat()
    commit = subprocess.run(
        ["git", "rev-parse", "HEAD"], capture_output=True, text=True, check=False
    )
    report["commit"] = commit.stdout.strip()
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "registry.json").write_text(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
