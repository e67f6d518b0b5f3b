"""Batch scoring benchmark: `batch_score` with the serving benchmark's model (a
HistGradientBoostingClassifier, max_iter=100, on make_classification(100k, 20), registered with
convert="onnx") over 10M rows of seeded Parquet, local against Ray and ONNX against native.

    .venv/bin/python benchmarks/batch.py [--rows 10000000] [--files 10] [--repeat 2]
        [--only tree-alone,local-onnx,local-onnx-ort,ray-onnx-2,...] [--batch-size 65536] [--quick]
        [--src OTHER/src]

Each scenario runs in a fresh subprocess pinned with taskset: to CPU 0 for the per-core numbers,
to CPUs 0-1 for the scaling numbers (Ray's own processes, started by that subprocess, inherit the
pinning). OMP_NUM_THREADS is the number of pinned CPUs (sklearn's native predictor in the local
engine; a Ray actor sets 1 for itself); onnxruntime runs one thread per session (our default). A
Ray scenario starts its own local Ray with one CPU per pinned CPU, so one scoring actor per CPU,
and stops it. With --repeat, the best run of each scenario counts (others' work on a shared
machine only slows a run down) and every run's rate is kept in the JSON.

"rows/s" is the scoring rate reported by the job (rows over the time after the model is loaded,
and after Ray and its actors started); "e2e rows/s" is rows over the job's whole time, start-up
included. "per CPU-s" is rows per CPU-second of the whole process tree (Ray's daemons and workers
included, from /proc) between the first and the last progress report: per core used, whatever
else runs on the machine. The ONNX scenarios run the model on modelyard's tree kernel (the
batch default, flavors/_onnx_trees.py) or, with the "-ort" suffix, on onnxruntime's TreeEnsemble
operator (MODELYARD_ONNX__TREE_KERNEL=off, one session thread). "tree-alone" and "ort-alone" are
the model alone on float32 batches already in memory, labels and probabilities from one run (the
limit for the scenarios that read and write Parquet). --src runs the scenarios against another
source tree (to measure a patch).

The data is benchmarks/results/batch-data/rows-N-files-F/ (made once, reused); results go to
benchmarks/results/batch.json (batch-quick.json with --quick). Prints a table, the ratios and the
targets: ONNX >= 1M rows/s per core; Ray >= 80% of local per core used.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from _harness import git_commit, machine, write_report

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
RESULTS = HERE / "results"
DATA = RESULTS / "batch-data"
N_FEATURES = 20
COLUMNS = [f"f{i}" for i in range(N_FEATURES)]
SEED = 0
ROW_GROUP = 131_072


@dataclass(frozen=True)
class Scenario:
    name: str
    engine: str  # local, ray, alone (the model alone, on batches in memory)
    runtime: str  # native, onnx
    cpus: str  # taskset list
    kernel: str = "tree"  # ONNX: tree (modelyard's tree kernel, the default) or ort (onnxruntime)

    @property
    def cores(self) -> int:
        return len(self.cpus.split(","))


SCENARIOS = [
    Scenario("tree-alone", "alone", "onnx", "0"),
    Scenario("ort-alone", "alone", "onnx", "0", kernel="ort"),
    Scenario("local-onnx", "local", "onnx", "0"),
    Scenario("local-onnx-ort", "local", "onnx", "0", kernel="ort"),
    Scenario("local-native", "local", "native", "0"),
    Scenario("ray-onnx-1", "ray", "onnx", "0"),
    Scenario("local-onnx-2", "local", "onnx", "0,1"),
    Scenario("ray-onnx-2", "ray", "onnx", "0,1"),
    Scenario("ray-native-2", "ray", "native", "0,1"),
]

# (ratio key, threshold, description)
TARGETS = [
    ("onnx_per_core", 1_000_000, "local ONNX >= 1M rows/s per core (wall)"),
    ("onnx_per_cpu_s", 1_000_000, "local ONNX >= 1M rows per CPU-second"),
    ("ray2_vs_local_per_core", 0.80, "Ray (2 CPUs) >= 80% of local per core (wall)"),
    ("ray2_vs_local_per_cpu_s", 0.80, "Ray (2 CPUs) >= 80% of local per CPU-second"),
]


# -- model and data ----------------------------------------------------------------------------


def make_home(home: Path) -> None:
    """Train the serving benchmark's model and register it (with its ONNX twin) as hgb/1."""
    import numpy as np
    import pandas as pd
    from sklearn.datasets import make_classification
    from sklearn.ensemble import HistGradientBoostingClassifier

    from modelyard.registry import Registry

    t0 = time.perf_counter()
    X, y = make_classification(n_samples=100_000, n_features=N_FEATURES, random_state=SEED)
    df = pd.DataFrame(X, columns=COLUMNS, dtype="float64")
    model = HistGradientBoostingClassifier(max_iter=100, random_state=SEED).fit(df, y)
    registry = Registry(
        database_url=f"sqlite:///{home}/m.db", artifact_root=str(home / "artifacts")
    )
    try:
        registry.register(
            model, name="hgb", data=df.sample(2000, random_state=SEED), convert="onnx"
        )
    finally:
        registry.close()
    del np
    print(f"  trained and registered HGB in {time.perf_counter() - t0:.1f} s "
          f"({model.n_iter_} iterations)")  # fmt: skip


def make_data(rows: int, files: int) -> Path:
    """``files`` Parquet files of seeded rows (make_classification's distribution, one seed per
    file) with an ``id`` key, row groups of 131,072 rows; reused when present."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.parquet as pq
    from sklearn.datasets import make_classification

    folder = DATA / f"rows-{rows}-files-{files}"
    marker = folder / ".complete"
    if marker.exists():
        return folder
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    t0 = time.perf_counter()
    per_file = -(-rows // files)
    start = 0
    for i in range(files):
        n = min(per_file, rows - start)
        X, _ = make_classification(n_samples=n, n_features=N_FEATURES, random_state=SEED + 1 + i)
        columns = {"id": pa.array(np.arange(start, start + n, dtype=np.int64))}
        columns.update({c: pa.array(X[:, j]) for j, c in enumerate(COLUMNS)})
        pq.write_table(
            pa.table(columns), folder / f"part-{i:03d}.parquet", row_group_size=ROW_GROUP
        )
        start += n
    marker.write_text(json.dumps({"rows": rows, "files": files, "seed": SEED}))
    print(f"  wrote {rows:,} rows in {files} files in {time.perf_counter() - t0:.1f} s")
    return folder


# -- one scenario (child process) ---------------------------------------------------------------


def child(args: argparse.Namespace) -> None:
    scenario = Scenario(**json.loads(args.child))
    if scenario.engine == "alone":
        print(json.dumps(alone(Path(args.home), tree=scenario.kernel == "tree")))
        return
    from modelyard.pipelines.batch import batch_score
    from modelyard.registry import Registry

    registry = Registry(
        database_url=f"sqlite:///{args.home}/m.db", artifact_root=f"{args.home}/artifacts"
    )
    out = Path(tempfile.mkdtemp(prefix="batch-bench-out-"))
    marks: list[tuple[int, float]] = []  # (rows done, CPU seconds of our process tree)

    def progress(done: int, total: int) -> None:
        if not marks or done == total:
            marks.append((done, tree_cpu_s()))

    try:
        summary = batch_score(
            registry, "hgb/1", f"{args.data}/*.parquet", out / "scored",
            engine=scenario.engine, runtime=scenario.runtime,  # type: ignore[arg-type]
            batch_size=args.batch_size, num_cpus=scenario.cores, progress=progress,
        )  # fmt: skip
    finally:
        shutil.rmtree(out, ignore_errors=True)
        registry.close()
    result = asdict(summary)
    for key in ("inputs", "outputs", "reasons"):
        result.pop(key)
    (rows0, cpu0), (rows1, cpu1) = marks[0], marks[-1]
    result["window_rows"], result["window_cpu_s"] = rows1 - rows0, cpu1 - cpu0
    print(json.dumps(result))


def tree_cpu_s() -> float:
    """CPU seconds (user + system) of this process and every live descendant (Ray's daemons and
    workers included), from /proc."""
    parents: dict[int, int] = {}
    times: dict[int, float] = {}
    tick = os.sysconf("SC_CLK_TCK")
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        with contextlib.suppress(OSError, ValueError, IndexError):
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            parents[int(entry.name)] = int(fields[1])
            times[int(entry.name)] = (int(fields[11]) + int(fields[12])) / tick
    ours, total = {os.getpid()}, 0.0
    for pid in sorted(times):  # walk up to ours; a few levels at most
        chain, p = [], pid
        while p not in ours and p in parents and p > 1:
            chain.append(p)
            p = parents[p]
        if p in ours:
            ours.update(chain)
            total += times[pid]
    return total


def alone(home: Path, *, tree: bool, rows: int = 2_000_000, batch: int = 65_536) -> dict[str, Any]:
    """The ONNX model alone, as batch scoring loads it (with the tree kernel, or onnxruntime with
    one session thread): float32 batches in memory, labels and probabilities from one run."""
    import numpy as np

    from modelyard.registry import Registry

    registry = Registry(database_url=f"sqlite:///{home}/m.db", artifact_root=f"{home}/artifacts")
    predictor: Any = registry.load("hgb/1", runtime="onnx", tree_kernel=tree).predictor
    registry.close()
    assert predictor.engine == ("tree kernel" if tree else "onnxruntime"), predictor.engine
    X = np.random.default_rng(SEED).standard_normal((rows, N_FEATURES)).astype(np.float32)
    predictor.predict_with_proba(X[:batch])
    t0, cpu0 = time.perf_counter(), time.process_time()
    for start in range(0, rows, batch):
        predictor.predict_with_proba(X[start : start + batch])
    seconds, cpu = time.perf_counter() - t0, time.process_time() - cpu0
    return {"rows": rows, "seconds": seconds, "rows_per_s": rows / seconds, "startup_s": 0.0,
            "window_rows": rows, "window_cpu_s": cpu}  # fmt: skip


# -- the parent ---------------------------------------------------------------------------------


def run(scenario: Scenario, args: argparse.Namespace, home: Path, data: Path) -> dict[str, Any]:
    env = {
        **os.environ,
        "OMP_NUM_THREADS": str(scenario.cores),
        "MODELYARD_ONNX__TREE_KERNEL": "batch" if scenario.kernel == "tree" else "off",
        "PYTHONPATH": os.pathsep.join(p for p in (args.src, os.environ.get("PYTHONPATH")) if p),
    }
    cmd = ["taskset", "-c", scenario.cpus, sys.executable, __file__, "--child",
           json.dumps(asdict(scenario)), "--home", str(home), "--data", str(data),
           "--batch-size", str(args.batch_size)]  # fmt: skip
    t0 = time.perf_counter()
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=3600, check=False)
    wall = time.perf_counter() - t0
    if done.returncode != 0:
        lines = (done.stderr or done.stdout).strip().splitlines()
        return {"error": lines[-1] if lines else f"exit {done.returncode}"}
    result = json.loads(done.stdout.strip().splitlines()[-1])
    result.update(cores=scenario.cores, cpus=scenario.cpus, process_s=wall)
    result["rows_per_s_per_core"] = result["rows_per_s"] / scenario.cores
    result["e2e_rows_per_s"] = result["rows"] / result["seconds"]
    result["rows_per_cpu_s"] = result["window_rows"] / max(result["window_cpu_s"], 1e-9)
    return result


def ratios(results: dict[str, dict[str, Any]]) -> dict[str, float]:
    """Per-core ratios two ways: wall-clock rows/s over pinned CPUs, and rows per CPU-second of
    the whole process tree while scoring (robust to other load on a shared machine)."""

    def get(name: str, key: str) -> float | None:
        value = results.get(name, {}).get(key)
        return None if value is None else float(value)

    out: dict[str, float] = {}
    for key, name in (("onnx_per_core", "local-onnx"), ("onnx_per_cpu_s", "local-onnx")):
        value = get(name, "rows_per_s_per_core" if key.endswith("core") else "rows_per_cpu_s")
        if value is not None:
            out[key] = value
    pairs = {
        "onnx_vs_native": ("local-onnx", "local-native"),
        "tree_vs_ort_alone": ("tree-alone", "ort-alone"),
        "local_tree_vs_local_ort": ("local-onnx", "local-onnx-ort"),
        "local_onnx_of_alone": ("local-onnx", "tree-alone"),
        "local_ort_of_alone": ("local-onnx-ort", "ort-alone"),
        "ray1_vs_local": ("ray-onnx-1", "local-onnx"),
        "ray2_vs_local": ("ray-onnx-2", "local-onnx"),
        "local2_vs_local": ("local-onnx-2", "local-onnx"),
        "ray_native2_vs_local_native": ("ray-native-2", "local-native"),
    }
    for key, (a, b) in pairs.items():
        for suffix, metric in (
            ("_per_core", "rows_per_s_per_core"),
            ("_per_cpu_s", "rows_per_cpu_s"),
        ):
            va, vb = get(a, metric), get(b, metric)
            if va is not None and vb:
                out[key + suffix] = va / vb
    a, b = get("ray-onnx-2", "e2e_rows_per_s"), get("local-onnx", "e2e_rows_per_s")
    if a and b:
        out["ray2_vs_local_per_core_e2e"] = a / 2 / b
    return out


def report(results: dict[str, dict[str, Any]], found: dict[str, float]) -> list[dict[str, Any]]:
    print()
    print(f"{'scenario':<14} {'cpus':>4} {'rows':>11} {'rows/s':>11} {'per core':>10} "
          f"{'per CPU-s':>10} {'e2e rows/s':>11} {'start-up s':>10} {'total s':>8}")  # fmt: skip
    for name, r in results.items():
        if "error" in r:
            print(f"{name:<14} failed: {r['error'][:100]}")
            continue
        print(
            f"{name:<14} {r['cores']:>4} {r['rows']:>11,} {r['rows_per_s']:>11,.0f} "
            f"{r['rows_per_s_per_core']:>10,.0f} {r['rows_per_cpu_s']:>10,.0f} "
            f"{r['e2e_rows_per_s']:>11,.0f} "
            f"{r['startup_s']:>10.1f} {r['seconds']:>8.1f}"
        )
    print("\nper core (wall, scoring rate) and per CPU-second, and their ratios:")
    for key, value in found.items():
        shown = f"{value:,.0f} rows/s" if key.startswith("onnx_per") else f"{value:.2f}"
        print(f"  {key:<40} {shown}")
    checks = []
    print("\ntargets:")
    for key, threshold, text in TARGETS:
        value = found.get(key)
        verdict = "n/a" if value is None else ("PASS" if value >= threshold else "MISS")
        shown = "-" if value is None else f"{value:,.3g}"
        print(f"  {verdict:<4}  {text:<42} {shown}")
        checks.append({"target": text, "key": key, "value": value, "verdict": verdict})
    return checks


def package_versions() -> dict[str, str]:
    import importlib.metadata as meta

    versions = {}
    for dist in ("pyarrow", "onnxruntime", "ray", "scikit-learn", "numpy", "pandas"):
        with contextlib.suppress(meta.PackageNotFoundError):
            versions[dist] = meta.version(dist)
    return versions


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=10_000_000)
    parser.add_argument("--files", type=int, default=10)
    parser.add_argument("--batch-size", type=int, default=65_536)
    parser.add_argument("--only", default="", help=",".join(s.name for s in SCENARIOS))
    parser.add_argument("--repeat", type=int, default=1, help="runs per scenario (the best counts)")
    parser.add_argument("--quick", action="store_true", help="1M rows in 4 files (smoke)")
    parser.add_argument("--src", default="", help="run against another source tree (a patch)")
    parser.add_argument("--out", type=Path, default=None)
    parser.add_argument("--child", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--home", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--data", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.quick:
        args.rows, args.files = 1_000_000, 4
    if args.out is None:
        args.out = RESULTS / ("batch-quick.json" if args.quick else "batch.json")
    wanted = {x.strip() for x in args.only.split(",") if x.strip()}
    if unknown := wanted - {s.name for s in SCENARIOS}:
        parser.error(f"unknown scenarios: {', '.join(sorted(unknown))}")
    args.scenarios = [s for s in SCENARIOS if not wanted or s.name in wanted]
    return args


def main() -> None:
    args = parse_args()
    if args.child is not None:
        child(args)
        return
    if shutil.which("taskset") is None:
        sys.exit("taskset not found (apt-get install -y util-linux)")
    started = datetime.now(UTC)
    load_before = os.getloadavg()
    results: dict[str, dict[str, Any]] = {}
    with tempfile.TemporaryDirectory(prefix="batch-bench-") as tmp:
        home = Path(tmp)
        print("training and registering the model ...", flush=True)
        make_home(home)
        print(f"making {args.rows:,} rows in {args.files} files ...", flush=True)
        data = make_data(args.rows, args.files)
        for scenario in args.scenarios:
            print(f"{scenario.name}: {scenario.engine} {scenario.runtime} on CPU {scenario.cpus}",
                  flush=True)  # fmt: skip
            runs = []
            for _ in range(args.repeat):
                r = run(scenario, args, home, data)
                if "error" in r:
                    print(f"    failed: {r['error']}", flush=True)
                    break
                print(f"    {r['rows_per_s']:,.0f} rows/s ({r['seconds']:.1f} s)", flush=True)
                runs.append(r)
            if runs:  # the best run: other processes on a shared machine only slow a run down
                best = max(runs, key=lambda x: x["rows_per_s"])
                results[scenario.name] = {
                    **best,
                    "runs_rows_per_s": [x["rows_per_s"] for x in runs],
                }
            else:
                results[scenario.name] = r
    found = ratios(results)
    checks = report(results, found)
    out = {
        "scenario": "batch scoring: HGB(max_iter=100) on make_classification(100k, 20), "
        f"{args.rows:,} rows in {args.files} Parquet files",
        "started_at": started.isoformat(),
        "machine": machine(versions=package_versions()),
        "load_average_before_after": [load_before, os.getloadavg()],
        "git": git_commit(),
        "config": {
            "rows": args.rows,
            "files": args.files,
            "batch_size": args.batch_size,
            "row_group": ROW_GROUP,
            "seed": SEED,
            "src": args.src or "src",
        },
        "results": results,
        "ratios": found,
        "targets": checks,
    }
    write_report(args.out, out)


if __name__ == "__main__":
    main()
