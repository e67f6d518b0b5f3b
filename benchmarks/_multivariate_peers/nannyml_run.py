"""NannyML's DataReconstructionDriftCalculator (defaults: 65% of the variance, mean and most
frequent imputation, frequency encoding, thresholds at the reference chunks' mean +- 3 std) on
one reference/analysis pair of Parquet files in chunks of CHUNK rows. Run inside the NannyML
venv (benchmarks/.envs/nannyml):

    python nannyml_run.py REFERENCE.parquet ANALYSIS.parquet CHUNK OUT.json

Writes version, fit_s, calculate_s and per analysis chunk the error, the sampling error, the
thresholds and the alert.
"""

from __future__ import annotations

import json
import logging
import sys
import time
import warnings

warnings.filterwarnings("ignore")
logging.disable(logging.WARNING)


def main() -> None:
    import nannyml as nml
    import pandas as pd

    reference_path, analysis_path, chunk, out = sys.argv[1:5]
    reference = pd.read_parquet(reference_path)
    analysis = pd.read_parquet(analysis_path)
    columns = list(reference.columns)
    started = time.perf_counter()
    calculator = nml.DataReconstructionDriftCalculator(column_names=columns, chunk_size=int(chunk))
    calculator.fit(reference)
    fitted = time.perf_counter()
    result = calculator.calculate(analysis).filter(period="analysis").to_df()
    done = time.perf_counter()
    part = result["reconstruction_error"]
    json.dump(
        {
            "version": nml.__version__,
            "fit_s": fitted - started,
            "calculate_s": done - fitted,
            "error": part["value"].tolist(),
            "sampling_error": part["sampling_error"].tolist(),
            "lower_threshold": float(part["lower_threshold"].iloc[0]),
            "upper_threshold": float(part["upper_threshold"].iloc[0]),
            "alert": part["alert"].astype(bool).tolist(),
        },
        open(out, "w"),  # noqa: SIM115
    )


if __name__ == "__main__":
    main()
