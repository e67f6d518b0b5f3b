"""Evidently's DataDriftPreset (defaults) on one reference/current pair of Parquet files, with the
column types given explicitly. Run inside the Evidently venv (benchmarks/.envs/evidently):

    python evidently_run.py REFERENCE.parquet CURRENT.parquet NUMERIC,... CATEGORICAL,...

Prints one JSON line: version, load_s, compute_s, peak_mb, rss_after_load_mb, drifted_columns
and per column the method, score and threshold Evidently chose.
"""

from __future__ import annotations

import json
import logging
import resource
import sys
import time
import warnings

warnings.filterwarnings("ignore")
logging.disable(logging.WARNING)


def rss_mb() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * resource.getpagesize() / 2**20


def main() -> None:
    import pandas as pd
    from evidently import DataDefinition, Dataset, Report
    from evidently import __version__ as version
    from evidently.presets import DataDriftPreset

    reference_path, current_path, numeric, categorical = sys.argv[1:5]
    definition = DataDefinition(
        numerical_columns=numeric.split(","), categorical_columns=categorical.split(",")
    )
    t0 = time.perf_counter()
    reference_df = pd.read_parquet(reference_path)
    current_df = pd.read_parquet(current_path)
    load_s = time.perf_counter() - t0
    after_load = rss_mb()

    t0, cpu0 = time.perf_counter(), time.process_time()
    reference = Dataset.from_pandas(reference_df, data_definition=definition)
    current = Dataset.from_pandas(current_df, data_definition=definition)
    # include_tests only adds each column's pass/fail (Evidently's own drift_detected) to the
    # snapshot; the drift computation is the preset's default.
    snapshot = Report([DataDriftPreset()], include_tests=True).run(current, reference)
    compute_s, compute_cpu_s = time.perf_counter() - t0, time.process_time() - cpu0

    # Each ValueDrift metric carries one test, "Value Drift for column NAME", that FAILs when the
    # column drifted (drift_detected: score >= threshold for distances, < for p-values).
    data = snapshot.dict()
    prefix = "Value Drift for column "
    drifted = sorted(
        t["name"].removeprefix(prefix)
        for t in data["tests"]
        if t["name"].startswith(prefix) and t["status"] == "FAIL"
    )
    columns = {}
    count = None
    for metric in data["metrics"]:
        config = metric.get("config", {})
        if config.get("type", "").endswith("DriftedColumnsCount"):
            count = metric["value"]["count"]
        if config.get("type", "").endswith("ValueDrift"):
            columns[config["column"]] = {
                "method": config.get("method"),
                "threshold": config.get("threshold"),
                "score": metric["value"],
            }
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    out = {
        "version": version,
        "pandas": pd.__version__,
        "load_s": load_s,
        "compute_s": compute_s,
        "compute_cpu_s": compute_cpu_s,  # all threads: robust to other load on the machine
        "peak_mb": peak_mb,
        "rss_after_load_mb": after_load,
        "drifted_columns": drifted,
        "drifted_count": count,  # DriftedColumnsCount: should equal len(drifted_columns)
        "columns": columns,
    }
    print(json.dumps(out))


if __name__ == "__main__":
    main()
