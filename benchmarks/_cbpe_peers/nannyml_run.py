"""NannyML's CBPE (defaults: isotonic calibration where it helps, thresholds at mean +- 3 std of
the reference chunks) on one reference/analysis pair of Parquet files. Run inside the NannyML venv
(benchmarks/.envs/nannyml):

    python nannyml_run.py REFERENCE.parquet ANALYSIS.parquet CHUNK_SIZE CLASSES OUT.json

CLASSES is ``0,1`` (binary: columns ``proba``, ``pred``, ``y``) or the class names (multiclass:
columns ``p_<class>``, ``pred``, ``y``). Writes per chunk and metric: value, sampling error,
thresholds, alert; and fit_s, estimate_s (imports and reading excluded) and the version.
"""

from __future__ import annotations

import json
import logging
import os
import sys
import time
import warnings

os.environ.setdefault("NML_DISABLE_USAGE_LOGGING", "1")  # no telemetry calls from the benchmark
warnings.filterwarnings("ignore")
logging.disable(logging.WARNING)

METRICS = ["roc_auc", "f1", "precision", "recall", "accuracy"]


def main() -> None:
    import nannyml
    import pandas as pd

    reference_path, analysis_path, chunk, classes, out = sys.argv[1:6]
    names = classes.split(",")
    reference = pd.read_parquet(reference_path)
    analysis = pd.read_parquet(analysis_path).drop(columns=["y"])
    if names == ["0", "1"]:
        options = {"y_pred_proba": "proba", "problem_type": "classification_binary"}
    else:
        options = {
            "y_pred_proba": {c: f"p_{c}" for c in names},
            "problem_type": "classification_multiclass",
        }
    started = time.perf_counter()
    estimator = nannyml.CBPE(
        y_pred="pred", y_true="y", metrics=METRICS, chunk_size=int(chunk), **options
    )
    estimator.fit(reference)
    fitted = time.perf_counter()
    result = estimator.estimate(analysis)
    done = time.perf_counter()
    frame = result.filter(period="analysis").to_df()
    found = {
        m: {
            key: [None if v != v else v for v in frame[(m, column)].tolist()]
            for key, column in (
                ("value", "value"),
                ("sampling_error", "sampling_error"),
                ("lower_threshold", "lower_threshold"),
                ("upper_threshold", "upper_threshold"),
                ("alert", "alert"),
            )
        }
        for m in METRICS
    }
    report = {
        "version": nannyml.__version__,
        "fit_s": fitted - started,
        "estimate_s": done - fitted,
        "chunks": len(frame),
        "metrics": found,
    }
    with open(out, "w") as f:
        json.dump(report, f)


if __name__ == "__main__":
    main()
