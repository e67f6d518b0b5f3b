"""Multivariate drift benchmark: NannyML 0.13's DataReconstructionDriftCalculator against
modelyard's ReconstructionDrift (monitoring.multivariate) on the same seeded data and chunks.
Prints and writes to benchmarks/results/multivariate.json: the largest difference of the chunk
errors, sampling errors and thresholds, whether the alerts agree, and the time of each (fit plus
calculation, data already in memory) with the ratio.

    .venv/bin/python benchmarks/multivariate.py [--reference 100000] [--rows 1000000]
        [--chunk 10000]

The data: 10 numeric columns driven by 3 latent factors (1% of values missing) and 3
categorical ones cut from those factors; in the analysis rows' second half, the loadings of
two factors change sign for half of the numeric columns (correlations flip) and one category
never seen in the reference appears. NannyML runs in its own virtualenv
(benchmarks/.envs/nannyml, made on first run), in a subprocess that times itself.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from _harness import ensure_venv, git_commit, machine, shown, write_report

HERE = Path(__file__).resolve().parent
ENVS = HERE / ".envs"
PEERS = HERE / "_multivariate_peers"
RESULTS = HERE / "results"
DATA = RESULTS / "multivariate-data"
# statsmodels: nannyml 0.13.1 imports it but its wheel's metadata does not require it
NANNYML_SPECS = ["nannyml==0.13.1", "statsmodels"]


def rows(rng: np.random.Generator, n: int, *, flipped: bool) -> pd.DataFrame:
    factors = rng.normal(size=(n, 3))
    loadings = np.random.default_rng(0).normal(size=(3, 10))  # the same in every call
    if flipped:
        loadings[:2, :5] *= -1
    numeric = factors @ loadings + 0.5 * rng.normal(size=(n, 10))
    numeric[rng.random(numeric.shape) < 0.01] = np.nan
    frame = pd.DataFrame(numeric, columns=[f"n{j}" for j in range(10)])
    levels = np.array(["a", "b", "c", "d"])
    for j in range(3):
        cut = np.digitize(factors[:, j] + 0.5 * rng.normal(size=n), [-0.7, 0.0, 0.7])
        values = levels[cut].astype(object)
        if flipped and j == 0:
            values[rng.random(n) < 0.05] = "new"
        frame[f"c{j}"] = values
    return frame


def ensure_data(reference: int, total: int) -> tuple[Path, Path]:
    folder = DATA / f"{reference}-{total}"
    paths = folder / "reference.parquet", folder / "analysis.parquet"
    if all(p.exists() for p in paths):
        return paths
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(21)
    rows(rng, reference, flipped=False).to_parquet(paths[0])
    half = total // 2
    both = [rows(rng, half, flipped=False), rows(rng, total - half, flipped=True)]
    pd.concat(both, ignore_index=True).to_parquet(paths[1])
    return paths


def run_nannyml(paths: tuple[Path, Path], chunk: int) -> dict[str, Any]:
    python = ensure_venv(ENVS / "nannyml", NANNYML_SPECS)  # shared with benchmarks/cbpe.py
    out = paths[0].parent / "nannyml.json"
    command = [str(python), str(PEERS / "nannyml_run.py"), str(paths[0]), str(paths[1]),
               str(chunk), str(out)]  # fmt: skip
    env = {**os.environ, "NML_DISABLE_USAGE_LOGGING": "1"}
    subprocess.run(command, check=True, timeout=3600, env=env)
    found: dict[str, Any] = json.loads(out.read_text())
    return found


def run_modelyard(paths: tuple[Path, Path], chunk: int) -> dict[str, Any]:
    from modelyard.monitoring.multivariate import ReconstructionDrift

    reference, analysis = (pd.read_parquet(p) for p in paths)
    started = time.perf_counter()
    model = ReconstructionDrift(chunks=len(reference) // chunk).fit(reference)
    fitted = time.perf_counter()
    errors = model.errors(analysis)
    windows = [model.window(errors[a : a + chunk]) for a in range(0, len(errors), chunk)]
    done = time.perf_counter()
    return {
        "fit_s": fitted - started,
        "calculate_s": done - fitted,
        "error": [w.error for w in windows],
        "sampling_error": [w.sampling_error for w in windows],
        "lower_threshold": model.lower_,
        "upper_threshold": model.upper_,
        "alert": [w.alert for w in windows],
        "components": len(model.components_),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--reference", type=int, default=100_000)
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--chunk", type=int, default=10_000)
    args = parser.parse_args()
    if args.reference % args.chunk or args.rows % args.chunk:
        parser.error("--reference and --rows must be multiples of --chunk (whole chunks)")
    paths = ensure_data(args.reference, args.rows)
    print(f"data: {shown(paths[0].parent)}; chunks of {args.chunk:,} rows")
    peer = run_nannyml(paths, args.chunk)
    mine = run_modelyard(paths, args.chunk)

    def gap(key: str) -> float:
        return float(np.max(np.abs(np.array(peer[key]) - np.array(mine[key]))))

    agreement = {
        "max_error_difference": gap("error"),
        "max_sampling_error_difference": gap("sampling_error"),
        "lower_threshold_difference": abs(peer["lower_threshold"] - mine["lower_threshold"]),
        "upper_threshold_difference": abs(peer["upper_threshold"] - mine["upper_threshold"]),
        "alerts_equal": peer["alert"] == mine["alert"],
        "alerts": [sum(peer["alert"]), sum(mine["alert"])],
        "chunks": len(mine["error"]),
    }
    times = {
        name: {"fit_s": found["fit_s"], "calculate_s": found["calculate_s"],
               "total_s": found["fit_s"] + found["calculate_s"]}
        for name, found in (("nannyml", peer), ("modelyard", mine))
    }  # fmt: skip
    ratio = times["nannyml"]["total_s"] / times["modelyard"]["total_s"]
    print(json.dumps(agreement, indent=2))
    for name, found in times.items():
        print(f"{name:10} fit {found['fit_s']:8.3f} s  calculate {found['calculate_s']:8.3f} s")
    print(f"speed ratio (NannyML / modelyard, fit + calculate): {ratio:.1f}x")
    write_report(
        RESULTS / "multivariate.json",
        {
            "benchmark": "multivariate",
            "reference_rows": args.reference, "analysis_rows": args.rows, "chunk": args.chunk,
            "nannyml_version": peer["version"], "components": mine["components"],
            "agreement": agreement, "times": times, "speed_ratio": ratio,
            "machine": machine(), "commit": git_commit(),
        },
    )  # fmt: skip


if __name__ == "__main__":
    main()
