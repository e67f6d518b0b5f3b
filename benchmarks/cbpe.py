"""CBPE benchmark: NannyML 0.13.1's CBPE against modelyard's (``monitoring.estimation``) on the
same seeded data and the same chunks. Reports per metric the largest difference between the two
over all chunks (estimate, sampling error, thresholds), alerts that differ, and the wall time of
fit and estimate; writes JSON to benchmarks/results/cbpe.json.

    .venv/bin/python benchmarks/cbpe.py [--reference 100000] [--rows 1000000] [--chunk 10000]
        [--repeat 3] [--skip-nannyml]

The data sets (seeded, made once under benchmarks/results/cbpe-data/):
- binary: x ~ N(0, 1); the model's score sigmoid(1.5 x), predicted class score > 0.5; the label
  ~ Bernoulli(sigmoid(2.5 x + 0.3)), so the scores need calibration. The analysis rows' second
  half has x ~ N(-0.8, 1) (a covariate shift).
- multiclass: three classes a, b, c (Gaussian blobs in 2-D, sd 1.2, at (0,0), (2,0), (0,2)); the
  model's probabilities a softmax of 0.6 x the log-densities (under-confident), predicted class
  the most probable. The analysis rows' second half is shifted by (0.7, 0.7).

NannyML runs in its own virtualenv (benchmarks/.envs/nannyml, installed on first run) in a child
process; modelyard runs in this process. Both times leave out imports and reading the Parquet
files; neither is pinned to a CPU. Each tool runs ``--repeat`` times and the run with the least
fit + estimate time counts (all are recorded): the development machine is shared, and its load
only ever adds time.
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
from _harness import ensure_venv, git_commit, machine, write_report

HERE = Path(__file__).resolve().parent
ENVS = HERE / ".envs"
PEERS = HERE / "_cbpe_peers"
RESULTS = HERE / "results"
DATA = RESULTS / "cbpe-data"
# statsmodels: nannyml 0.13.1 imports it (its plots) but its wheel's metadata does not require it
NANNYML_SPECS = ["nannyml==0.13.1", "statsmodels"]
METRICS = ["roc_auc", "f1", "precision", "recall", "accuracy"]
FIELDS = ("value", "sampling_error", "lower_threshold", "upper_threshold", "alert")
CLASSES = {"binary": ["0", "1"], "multiclass": ["a", "b", "c"]}


def binary_rows(rng: np.random.Generator, n: int, shift: float) -> pd.DataFrame:
    x = rng.normal(shift, 1.0, n)
    score = 1.0 / (1.0 + np.exp(-1.5 * x))
    truth = rng.random(n) < 1.0 / (1.0 + np.exp(-(2.5 * x + 0.3)))
    return pd.DataFrame({"proba": score, "pred": (score > 0.5).astype(np.int64),
                         "y": truth.astype(np.int64)})  # fmt: skip


def multiclass_rows(rng: np.random.Generator, n: int, shift: float) -> pd.DataFrame:
    centers = np.array([[0.0, 0.0], [2.0, 0.0], [0.0, 2.0]])
    y = rng.integers(0, 3, n)
    x = centers[y] + rng.normal(0.0, 1.2, (n, 2)) + shift
    logits = -0.5 * ((x[:, None, :] - centers[None]) ** 2).sum(-1)
    p = np.exp(0.6 * logits)
    p /= p.sum(axis=1, keepdims=True)
    names = np.array(CLASSES["multiclass"])
    frame = pd.DataFrame({f"p_{c}": p[:, j] for j, c in enumerate(names)})
    frame["pred"] = names[p.argmax(axis=1)]
    frame["y"] = names[y]
    return frame


def ensure_data(kind: str, reference: int, rows: int) -> tuple[Path, Path]:
    folder = DATA / f"{kind}-{reference}-{rows}"
    paths = folder / "reference.parquet", folder / "analysis.parquet"
    if all(p.exists() for p in paths):
        return paths
    folder.mkdir(parents=True, exist_ok=True)
    make = binary_rows if kind == "binary" else multiclass_rows
    shift = -0.8 if kind == "binary" else 0.7
    rng = np.random.default_rng(11 if kind == "binary" else 12)
    make(rng, reference, 0.0).to_parquet(paths[0])
    half = rows // 2
    both = [make(rng, half, 0.0), make(rng, rows - half, shift)]
    pd.concat(both, ignore_index=True).to_parquet(paths[1])
    return paths


def run_nannyml(kind: str, paths: tuple[Path, Path], chunk: int) -> dict[str, Any]:
    python = ensure_venv(ENVS / "nannyml", NANNYML_SPECS)
    out = paths[0].parent / "nannyml.json"
    command = [str(python), str(PEERS / "nannyml_run.py"), str(paths[0]), str(paths[1]),
               str(chunk), ",".join(CLASSES[kind]), str(out)]  # fmt: skip
    env = {**os.environ, "NML_DISABLE_USAGE_LOGGING": "1"}
    subprocess.run(command, check=True, timeout=3600, env=env)
    found: dict[str, Any] = json.loads(out.read_text())
    return found


def run_modelyard(kind: str, paths: tuple[Path, Path], chunk: int) -> dict[str, Any]:
    import scipy.stats  # noqa: F401
    import sklearn.isotonic
    import sklearn.metrics
    import sklearn.model_selection  # noqa: F401

    from modelyard.monitoring.estimation import CBPE, row_chunks

    reference, analysis = (pd.read_parquet(p) for p in paths)
    names = CLASSES[kind]
    columns = ["proba"] if kind == "binary" else [f"p_{c}" for c in names]
    classes: list[Any] = [0, 1] if kind == "binary" else names
    started = time.perf_counter()
    cbpe = CBPE(chunk_size=chunk).fit(
        reference["y"].to_numpy(), reference[columns].to_numpy().squeeze(),
        reference["pred"].to_numpy(), classes=classes,
    )  # fmt: skip
    fitted = time.perf_counter()
    chunks = cbpe.estimate(
        analysis[columns].to_numpy().squeeze(), analysis["pred"].to_numpy(),
        starts=row_chunks(len(analysis), chunk),
    )  # fmt: skip
    done = time.perf_counter()
    found = {m: {f: [getattr(c.metrics[m], f) for c in chunks] for f in FIELDS} for m in METRICS}
    return {"fit_s": fitted - started, "estimate_s": done - fitted, "chunks": len(chunks),
            "metrics": found, "calibrated": list(cbpe.calibrated_)}  # fmt: skip


def best(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """The run with the least fit + estimate time, with every run's times beside it."""
    chosen = min(runs, key=lambda r: r["fit_s"] + r["estimate_s"])
    return {**chosen, "runs_s": [[r["fit_s"], r["estimate_s"]] for r in runs]}


def agreement(ours: dict[str, Any], theirs: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for m in METRICS:
        row: dict[str, Any] = {}
        for key in ("value", "sampling_error", "lower_threshold", "upper_threshold"):
            a = np.array([np.nan if v is None else v for v in ours["metrics"][m][key]], float)
            b = np.array([np.nan if v is None else v for v in theirs["metrics"][m][key]], float)
            both = np.isfinite(a) & np.isfinite(b)
            row[f"max_abs_diff_{key}"] = (
                float(np.max(np.abs(a[both] - b[both]))) if both.any() else None
            )
            row[f"missing_{key}"] = int((np.isfinite(a) != np.isfinite(b)).sum())
        alerts = zip(ours["metrics"][m]["alert"], theirs["metrics"][m]["alert"], strict=True)
        row["alerts_differing"] = sum(bool(x) != bool(y) for x, y in alerts)
        row["alerts_modelyard"] = sum(bool(x) for x in ours["metrics"][m]["alert"])
        out[m] = row
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--reference", type=int, default=100_000)
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--chunk", type=int, default=10_000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--skip-nannyml", action="store_true")
    args = parser.parse_args()
    report: dict[str, Any] = {
        "machine": machine(shared="yes: other jobs ran on the same cores"),
        "commit": git_commit(),
        "reference_rows": args.reference,
        "analysis_rows": args.rows,
        "chunk_rows": args.chunk,
        "data": {},
    }
    for kind in ("binary", "multiclass"):
        paths = ensure_data(kind, args.reference, args.rows)
        print(f"{kind}: reference {args.reference:,} rows, analysis {args.rows:,} rows, "
              f"chunks of {args.chunk:,}", flush=True)  # fmt: skip
        ours = best([run_modelyard(kind, paths, args.chunk) for _ in range(args.repeat)])
        entry: dict[str, Any] = {"modelyard": {k: v for k, v in ours.items() if k != "metrics"}}
        print(f"  modelyard  fit {ours['fit_s']:7.2f} s  estimate {ours['estimate_s']:7.2f} s",
              flush=True)  # fmt: skip
        if not args.skip_nannyml:
            theirs = best([run_nannyml(kind, paths, args.chunk) for _ in range(args.repeat)])
            entry["nannyml"] = {k: v for k, v in theirs.items() if k != "metrics"}
            print(
                f"  nannyml    fit {theirs['fit_s']:7.2f} s  estimate {theirs['estimate_s']:7.2f} s"
            )
            total = (theirs["fit_s"] + theirs["estimate_s"]) / (ours["fit_s"] + ours["estimate_s"])
            entry["speedup_total"] = total
            entry["speedup_estimate"] = theirs["estimate_s"] / ours["estimate_s"]
            entry["speedup_fit"] = theirs["fit_s"] / ours["fit_s"]
            entry["agreement"] = agreement(ours, theirs)
            print(f"  speed-up: fit + estimate {total:.1f}x, estimate alone "
                  f"{entry['speedup_estimate']:.1f}x, fit {entry['speedup_fit']:.1f}x")  # fmt: skip
            for m, row in entry["agreement"].items():
                print(f"  {m:<10} max |ours - nannyml|: value {row['max_abs_diff_value']:.2e}, "
                      f"sampling error {row['max_abs_diff_sampling_error']:.2e}, thresholds "
                      f"{row['max_abs_diff_lower_threshold']:.2e}/"
                      f"{row['max_abs_diff_upper_threshold']:.2e}; alerts differing "
                      f"{row['alerts_differing']} (ours {row['alerts_modelyard']})")  # fmt: skip
        report["data"][kind] = entry
    write_report(RESULTS / "cbpe.json", report)


if __name__ == "__main__":
    main()
