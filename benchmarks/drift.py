"""Drift benchmark: Evidently 0.7's DataDriftPreset against modelyard's drift `compare` on the same
seeded data (reference and current, 20 numeric and 5 categorical columns, 5 numeric columns
shifted in current) at 10k, 100k and 1M rows. Prints wall time, peak memory, the columns each
flags and the ratios; writes JSON to benchmarks/results/drift.json.

    .venv/bin/python benchmarks/drift.py [--sizes 10000,100000,1000000] [--repeat 3]
        [--skip-evidently] [--cpu 1]

Three tools, each measurement in a fresh subprocess pinned to one CPU (its peak memory is that
process's ru_maxrss, interpreter and imports included):
- evidently: DataDriftPreset with its defaults, the column types given in a DataDefinition, in
  its own virtualenv (benchmarks/.envs/evidently, pandas < 3: Evidently 0.7.23 fails to import
  with pandas 3), installed on first run.
- modelyard-exact: `compare(reference_df, current_df)`, raw reference against raw current.
- modelyard-profile: `compare(profile, current_df)`; the reference profile is computed beforehand
  and not timed (it is stored at registration); the timed process loads its JSON.
Every process reads the same Parquet files (benchmarks/results/drift-data/, made once per size).
"compute" is the drift computation alone; "total" is the process's wall time, from start to exit.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import os
import resource
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
from _harness import git_commit, machine, shown, write_report

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
ENVS = HERE / ".envs"
PEERS = HERE / "_drift_peers"
RESULTS = HERE / "results"
DATA = RESULTS / "drift-data"
BIN = Path(sys.executable).parent
UV = BIN / "uv"

EVIDENTLY_SPECS = ["evidently==0.7.23", "pandas<3", "pyarrow"]
SEED = 7  # reference; current uses SEED + 1
SIZES = [10_000, 100_000, 1_000_000]
TARGET_ROWS = 1_000_000

Sampler = Callable[[np.random.Generator, int], np.ndarray]

# name -> (reference distribution, sampler). Integer-valued columns stay int64.
NUMERIC: dict[str, tuple[str, Sampler]] = {
    "n00": ("normal(0, 1)", lambda g, n: g.normal(0.0, 1.0, n)),
    "n01": ("normal(50, 10)", lambda g, n: g.normal(50.0, 10.0, n)),
    "n02": ("lognormal(0, 0.5)", lambda g, n: g.lognormal(0.0, 0.5, n)),
    "n03": ("lognormal(3, 1)", lambda g, n: g.lognormal(3.0, 1.0, n)),
    "n04": ("uniform(0, 1)", lambda g, n: g.uniform(0.0, 1.0, n)),
    "n05": ("uniform(-5, 5)", lambda g, n: g.uniform(-5.0, 5.0, n)),
    "n06": ("exponential(1)", lambda g, n: g.exponential(1.0, n)),
    "n07": ("exponential(20)", lambda g, n: g.exponential(20.0, n)),
    "n08": ("gamma(2, 2)", lambda g, n: g.gamma(2.0, 2.0, n)),
    "n09": ("beta(2, 5)", lambda g, n: g.beta(2.0, 5.0, n)),
    "n10": ("poisson(3), int", lambda g, n: g.poisson(3.0, n)),
    "n11": ("poisson(30), int", lambda g, n: g.poisson(30.0, n)),
    "n12": ("binomial(10, 0.3), int", lambda g, n: g.binomial(10, 0.3, n)),
    "n13": ("student t(5)", lambda g, n: g.standard_t(5.0, n)),
    "n14": ("chi-square(4)", lambda g, n: g.chisquare(4.0, n)),
    "n15": ("10 * weibull(1.5)", lambda g, n: 10.0 * g.weibull(1.5, n)),
    "n16": (
        "0.4 normal(-2, 1) + 0.6 normal(3, 1.5)",
        lambda g, n: np.where(g.random(n) < 0.4, g.normal(-2.0, 1.0, n), g.normal(3.0, 1.5, n)),
    ),
    "n17": ("laplace(0, 2)", lambda g, n: g.laplace(0.0, 2.0, n)),
    "n18": ("integers [0, 100), int", lambda g, n: g.integers(0, 100, n)),
    "n19": ("logistic(10, 2)", lambda g, n: g.logistic(10.0, 2.0, n)),
}

# The shifted columns in current: (change, sampler). Each moves the distribution by about a third
# to a half of a reference standard deviation (Wasserstein distance / reference std 0.35-0.6).
SHIFTED: dict[str, tuple[str, Sampler]] = {
    "n00": ("mean +0.5 std: normal(0.5, 1)", lambda g, n: g.normal(0.5, 1.0, n)),
    "n03": ("log-mean +0.4: lognormal(3.4, 1)", lambda g, n: g.lognormal(3.4, 1.0, n)),
    "n07": ("scale x1.4: exponential(28)", lambda g, n: g.exponential(28.0, n)),
    "n10": ("rate 3 -> 4: poisson(4)", lambda g, n: g.poisson(4.0, n)),
    "n17": ("scale x1.5: laplace(0, 3)", lambda g, n: g.laplace(0.0, 3.0, n)),
}

# name -> (levels, Zipf exponent): level k has weight 1 / (k + 1) ** s. Strings in Parquet.
CATEGORICAL: dict[str, tuple[int, float]] = {
    "c0": (3, 1.5),
    "c1": (5, 1.0),
    "c2": (10, 1.2),
    "c3": (20, 1.0),
    "c4": (30, 1.5),
}

# (key in the 1M ratios, comparison, threshold, description)
TARGETS = [
    ("exact_speedup", ">=", 30.0, "modelyard-exact >= 30x faster than Evidently"),
    ("exact_memory", "<=", 0.5, "modelyard-exact peak <= 0.5x Evidently's"),
    ("profile_speedup", ">=", 100.0, "modelyard-profile >= 100x faster than Evidently"),
    ("exact_flags", "==", 1.0, "modelyard-exact flags the shifted columns and no others"),
    ("profile_flags", "==", 1.0, "modelyard-profile flags the shifted columns and no others"),
]


# -- data ------------------------------------------------------------------------------------


def data_spec() -> dict[str, Any]:
    return {
        "seed": SEED,
        "numeric": {name: desc for name, (desc, _) in NUMERIC.items()},
        "shifted": {name: desc for name, (desc, _) in SHIFTED.items()},
        "categorical": {
            name: f"{levels} levels, Zipf s={s}" for name, (levels, s) in CATEGORICAL.items()
        },
    }


def make_frame(rows: int, seed: int, *, shifted: bool) -> Any:
    import pyarrow as pa

    rng = np.random.default_rng(seed)
    columns: dict[str, Any] = {}
    for name, (_, reference_sampler) in NUMERIC.items():
        sample = SHIFTED[name][1] if shifted and name in SHIFTED else reference_sampler
        columns[name] = pa.array(sample(rng, rows))
    for name, (levels, s) in CATEGORICAL.items():
        weights = 1.0 / np.arange(1, levels + 1) ** s
        codes = rng.choice(levels, size=rows, p=weights / weights.sum()).astype(np.int32)
        names = pa.array([f"{name}_{k:02d}" for k in range(levels)])
        columns[name] = pa.DictionaryArray.from_arrays(codes, names).cast(pa.string())
    return pa.table(columns)


def ensure_data(rows: int) -> tuple[Path, Path]:
    """Write reference.parquet and current.parquet for ``rows`` once; reuse them while the spec
    (distributions and seed) is unchanged."""
    import pyarrow.parquet as pq

    spec = data_spec()
    tag = hashlib.sha256(json.dumps(spec, sort_keys=True).encode()).hexdigest()[:12]
    folder = DATA / f"{rows}"
    reference, current, meta = (
        folder / "reference.parquet",
        folder / "current.parquet",
        folder / "spec.json",
    )
    if reference.exists() and current.exists() and meta.exists():
        with contextlib.suppress(ValueError):
            if json.loads(meta.read_text()).get("tag") == tag:
                return reference, current
    print(f"  writing {rows:,}-row reference and current to {shown(folder)} ...", flush=True)
    folder.mkdir(parents=True, exist_ok=True)
    pq.write_table(make_frame(rows, SEED, shifted=False), reference)
    pq.write_table(make_frame(rows, SEED + 1, shifted=True), current)
    meta.write_text(json.dumps({"tag": tag, "rows": rows, **spec}, indent=2))
    return reference, current


# -- the measured processes ------------------------------------------------------------------


def peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def rss_mb() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * resource.getpagesize() / 2**20


def describe_result(result: Any) -> dict[str, Any]:
    return {
        "drifted_columns": sorted(c.name for c in result.columns if c.drifted),
        "columns": {
            c.name: {"method": c.method, "score": c.score, "threshold": c.threshold}
            for c in result.columns
        },
    }


def child(mode: str, paths: list[str]) -> None:
    """Run one measurement in this (fresh) process and print one JSON line."""
    import pandas as pd

    if mode == "make-profile":  # not timed: a profile is computed once, at registration
        from modelyard.core.profile import compute_profile, profile_to_json

        reference_path, out = paths
        t0 = time.perf_counter()
        profile, _ = compute_profile(pd.read_parquet(reference_path), sample_rows=0)
        Path(out).write_bytes(profile_to_json(profile))
        print(json.dumps({"seconds": time.perf_counter() - t0, "peak_mb": peak_mb()}))
        return

    from modelyard.monitoring.drift import compare

    t0 = time.perf_counter()
    if mode == "exact":
        reference: Any = pd.read_parquet(paths[0])
    else:
        from modelyard.core.profile import profile_from_json

        reference = profile_from_json(Path(paths[0]).read_bytes())
    current = pd.read_parquet(paths[1])
    load_s = time.perf_counter() - t0
    after_load = rss_mb()
    t0, cpu0 = time.perf_counter(), time.process_time()
    result = compare(reference, current)
    compute_s, compute_cpu_s = time.perf_counter() - t0, time.process_time() - cpu0
    out = {
        "load_s": load_s,
        "compute_s": compute_s,
        "compute_cpu_s": compute_cpu_s,  # all threads: robust to other load on the machine
        "peak_mb": peak_mb(),
        "rss_after_load_mb": after_load,
        "pandas": pd.__version__,
        **describe_result(result),
    }
    print(json.dumps(out))


def run_child(cmd: list[str], cpu: str, timeout: float) -> dict[str, Any]:
    """Run one measuring process; its JSON line plus ``total_s``, the wall time to exit."""
    if cpu and shutil.which("taskset"):
        cmd = ["taskset", "-c", cpu, *cmd]
    env = {**os.environ, "DO_NOT_TRACK": "1", "PYTHONWARNINGS": "ignore"}
    load_before = os.getloadavg()  # other work on the machine shows up as compute_s > cpu_s
    t0 = time.perf_counter()
    out = subprocess.run(
        cmd, capture_output=True, text=True, check=False, timeout=timeout, env=env, cwd=REPO
    )
    total_s = time.perf_counter() - t0
    lines = out.stdout.strip().splitlines()
    if out.returncode != 0 or not lines:
        raise RuntimeError(f"exit {out.returncode}: {error_line(out.stderr or out.stdout)}")
    result: dict[str, Any] = json.loads(lines[-1])
    result["total_s"] = total_s
    result["loadavg_before"] = load_before
    return result


def error_line(text: str) -> str:
    """The ``SomeError: message`` line of a traceback (else the last line)."""
    lines = [x for x in text.strip().splitlines() if x.strip()]
    for line in reversed(lines):
        head = line.split(":", 1)[0]
        if not line[0].isspace() and ("Error" in head or "Exception" in head):
            return line
    return lines[-1] if lines else ""


def ensure_evidently() -> Path:
    """benchmarks/.envs/evidently with EVIDENTLY_SPECS, made once (a marker makes reruns free)."""
    env = ENVS / "evidently"
    python = env / "bin" / "python"
    marker = env / ".drift-bench"
    wanted = "\n".join(EVIDENTLY_SPECS)
    if python.exists() and marker.exists() and marker.read_text() == wanted:
        return python
    print(f"  installing {' '.join(EVIDENTLY_SPECS)} into {shown(env)} ...", flush=True)
    if not python.exists():
        subprocess.run([sys.executable, "-m", "venv", str(env)], check=True, timeout=300)
    installer = [str(UV), "pip", "install", "-q", "--python", str(python)]
    if not UV.exists():
        installer = [str(python), "-m", "pip", "install", "-q"]
    subprocess.run([*installer, *EVIDENTLY_SPECS], check=True, timeout=1200)
    marker.write_text(wanted)
    return python


def measure_size(rows: int, args: argparse.Namespace) -> dict[str, Any]:
    reference, current = ensure_data(rows)
    me = [sys.executable, str(Path(__file__).resolve()), "--child"]
    timeout = 3600.0
    out: dict[str, Any] = {}
    if not args.skip_evidently:
        python = ensure_evidently()
        cmd = [str(python), str(PEERS / "evidently_run.py"), str(reference), str(current)]
        cmd += [",".join(NUMERIC), ",".join(CATEGORICAL)]
        out["evidently"] = attempt("evidently", lambda: run_child(cmd, args.cpu, timeout))
    exact = [*me, "exact", str(reference), str(current)]
    out["modelyard-exact"] = repeated("modelyard-exact", exact, args, timeout)
    profile = DATA / f"{rows}" / "reference.profile.json"
    make = [*me, "make-profile", str(reference), str(profile)]
    made = attempt("profile (not timed)", lambda: run_child(make, args.cpu, timeout))
    if "error" in made:
        out["modelyard-profile"] = {"error": f"computing the profile failed: {made['error']}"}
    else:
        from_profile = [*me, "profile", str(profile), str(current)]
        out["modelyard-profile"] = repeated("modelyard-profile", from_profile, args, timeout)
        out["modelyard-profile"]["profile"] = {
            "compute_s": made["seconds"],
            "peak_mb": made["peak_mb"],
            "bytes": profile.stat().st_size,
        }
    return out


def attempt(name: str, run: Callable[[], dict[str, Any]]) -> dict[str, Any]:
    print(f"  {name} ...", end=" ", flush=True)
    try:
        result = run()
    except (RuntimeError, subprocess.SubprocessError, ValueError) as e:
        print(f"failed: {e}", flush=True)
        return {"error": str(e)}
    if "compute_s" in result:
        print(
            f"{result['compute_s']:.3f} s compute, {result['total_s']:.2f} s total, "
            f"{result['peak_mb']:,.0f} MB peak",
            flush=True,
        )
    else:
        print(f"{result['total_s']:.2f} s", flush=True)
    return result


def repeated(name: str, cmd: list[str], args: argparse.Namespace, timeout: float) -> dict[str, Any]:
    """``args.repeat`` fresh processes; the run with the median compute time, the highest peak."""
    runs = []
    for _ in range(args.repeat):
        result = attempt(name, lambda: run_child(cmd, args.cpu, timeout))
        if "error" in result:
            return result
        runs.append(result)
    runs.sort(key=lambda r: r["compute_s"])
    chosen = dict(runs[(len(runs) - 1) // 2])
    chosen["peak_mb"] = max(r["peak_mb"] for r in runs)
    chosen["runs"] = [
        {k: r[k] for k in ("load_s", "compute_s", "compute_cpu_s", "total_s", "peak_mb")}
        for r in runs
    ]
    return chosen


# -- reporting -------------------------------------------------------------------------------


def flag_check(result: dict[str, Any]) -> str:
    found, wanted = set(result["drifted_columns"]), set(SHIFTED)
    if found == wanted:
        return "exact"
    parts = [f"+{c}" for c in sorted(found - wanted)] + [f"-{c}" for c in sorted(wanted - found)]
    return " ".join(parts)


def ratios(results: dict[str, Any]) -> dict[str, Any]:
    theirs = results.get("evidently", {})
    out: dict[str, Any] = {}
    for mode in ("exact", "profile"):
        ours = results.get(f"modelyard-{mode}", {})
        if "compute_s" in ours:
            out[f"{mode}_flags"] = 1.0 if flag_check(ours) == "exact" else 0.0
        if "compute_s" not in ours or "compute_s" not in theirs:
            continue
        out[f"{mode}_speedup"] = theirs["compute_s"] / ours["compute_s"]
        out[f"{mode}_speedup_cpu"] = theirs["compute_cpu_s"] / ours["compute_cpu_s"]
        out[f"{mode}_speedup_total"] = theirs["total_s"] / ours["total_s"]
        out[f"{mode}_memory"] = ours["peak_mb"] / theirs["peak_mb"]
    return out


def check_targets(found: dict[str, Any]) -> list[dict[str, Any]]:
    checks = []
    for key, op, threshold, text in TARGETS:
        value = found.get(key)
        if value is None:
            verdict = "n/a"
        elif op == ">=":
            verdict = "PASS" if value >= threshold else "MISS"
        elif op == "<=":
            verdict = "PASS" if value <= threshold else "MISS"
        else:
            verdict = "PASS" if value == threshold else "MISS"
        checks.append({"target": text, "key": key, "value": value, "verdict": verdict})
    return checks


def print_report(
    results: dict[int, dict[str, Any]], found: dict[int, dict[str, Any]], checks: list[Any]
) -> None:
    print(f"\nshifted in current: {', '.join(SHIFTED)}")
    for rows, by_tool in results.items():
        print(f"\n{rows:,} reference rows vs {rows:,} current rows")
        print(
            f"{'tool':<18} {'load s':>7} {'compute s':>10} {'cpu s':>8} {'total s':>8} "
            f"{'peak MB':>8}  {'vs shifted':<10}  drifted columns"
        )
        for tool, r in by_tool.items():
            if "compute_s" not in r:
                print(f"{tool:<18} not measured: {r.get('error', '?').splitlines()[0][:100]}")
                continue
            print(
                f"{tool:<18} {r['load_s']:>7.2f} {r['compute_s']:>10.3f} "
                f"{r['compute_cpu_s']:>8.3f} {r['total_s']:>8.2f} {r['peak_mb']:>8,.0f}  "
                f"{flag_check(r):<10}  {','.join(r['drifted_columns'])}"
            )
    print("\nratios (Evidently / modelyard for time, modelyard / Evidently for peak memory):")
    print(
        f"{'rows':>10} {'exact':>9} {'(cpu)':>8} {'(total)':>8} {'profile':>10} {'(cpu)':>8} "
        f"{'(total)':>8} {'exact mem':>10} {'profile mem':>12}"
    )

    def cell(value: float | None, fmt: str, width: int) -> str:
        """``value`` right-aligned in ``width``; a format ending in "x" appends an "x"."""
        if value is None:
            return f"{'-':>{width}}"
        text = f"{value:{fmt.removesuffix('x')}}" + ("x" if fmt.endswith("x") else "")
        return f"{text:>{width}}"

    for rows, f in found.items():
        print(
            f"{rows:>10,} {cell(f.get('exact_speedup'), '.1fx', 9)} "
            f"{cell(f.get('exact_speedup_cpu'), '.1fx', 8)} "
            f"{cell(f.get('exact_speedup_total'), '.1fx', 8)} "
            f"{cell(f.get('profile_speedup'), '.1fx', 10)} "
            f"{cell(f.get('profile_speedup_cpu'), '.1fx', 8)} "
            f"{cell(f.get('profile_speedup_total'), '.1fx', 8)} "
            f"{cell(f.get('exact_memory'), '.2f', 10)} {cell(f.get('profile_memory'), '.2f', 12)}"
        )
    if not checks:
        print(f"\ntargets are at {TARGET_ROWS:,} rows, which this run did not measure")
        return
    print(f"\ntargets at {TARGET_ROWS:,} rows (speed on compute time):")
    for check in checks:
        value = check["value"]
        shown = "-" if value is None else f"{value:.3g}"
        print(f"  {check['verdict']:<4}  {check['target']:<58} {shown}")


def versions(python: Path, dists: list[str]) -> dict[str, str]:
    code = (
        "import json, sys, importlib.metadata as m\n"
        "out = {}\n"
        "for d in sys.argv[1:]:\n"
        "    try: out[d] = m.version(d)\n"
        "    except m.PackageNotFoundError: pass\n"
        "print(json.dumps(out))"
    )
    out = subprocess.run(
        [str(python), "-c", code, *dists], capture_output=True, text=True, check=False
    )
    return json.loads(out.stdout) if out.returncode == 0 else {}


# -- main ------------------------------------------------------------------------------------


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", default=",".join(str(s) for s in SIZES))
    parser.add_argument("--skip-evidently", action="store_true")
    parser.add_argument(
        "--repeat", type=int, default=3, help="modelyard runs per size (median compute time)"
    )
    parser.add_argument("--cpu", default="1", help="taskset CPU list for the measured processes")
    parser.add_argument("--out", type=Path, default=RESULTS / "drift.json")
    parser.add_argument("--child", nargs="+", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        return args
    try:
        args.sizes = [int(s) for s in args.sizes.split(",") if s.strip()]
    except ValueError:
        parser.error("--sizes takes comma-separated integers, e.g. 10000,100000,1000000")
    if not args.sizes or min(args.sizes) < 2 or args.repeat < 1:
        parser.error("--sizes needs values >= 2 and --repeat >= 1")
    return args


def main() -> None:
    args = parse_args()
    if args.child:
        child(args.child[0], args.child[1:])
        return
    started = datetime.now(UTC)
    results: dict[int, dict[str, Any]] = {}
    for rows in args.sizes:
        print(f"{rows:,} rows:", flush=True)
        results[rows] = measure_size(rows, args)
    found = {rows: ratios(by_tool) for rows, by_tool in results.items()}
    checks = check_targets(found[TARGET_ROWS]) if TARGET_ROWS in found else []
    print_report(results, found, checks)
    dists = ["modelyard", "pandas", "numpy", "pyarrow", "scipy", "msgspec"]
    report = {
        "scenario": "drift: reference vs current, 20 numeric + 5 categorical, 5 numeric shifted",
        "started_at": started.isoformat(),
        "machine": machine(),
        "git": git_commit(),
        "config": {
            "sizes": args.sizes,
            "repeat": args.repeat,
            "cpu": args.cpu if args.cpu and shutil.which("taskset") else "not pinned",
        },
        "data": data_spec(),
        "versions": {"modelyard": versions(Path(sys.executable), dists)},
        "results": {str(k): v for k, v in results.items()},
        "ratios": {str(k): v for k, v in found.items()},
        "targets": checks,
    }
    evidently = ENVS / "evidently" / "bin" / "python"
    if not args.skip_evidently and evidently.exists():
        report["versions"]["evidently"] = versions(evidently, ["evidently", *dists[1:]])  # type: ignore[index]
    write_report(args.out, report)


if __name__ == "__main__":
    main()
