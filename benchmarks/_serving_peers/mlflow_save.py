"""Save a joblib-dumped scikit-learn model as an MLflow model directory (MLflow 3's default skops
format, trusting the types skops reports for this model, which we just trained), with a signature
inferred from a JSON sample ({"columns": [...], "data": [[...]]}). Run inside the MLflow venv:

    python mlflow_save.py MODEL.joblib SAMPLE.json OUT_DIR
"""

from __future__ import annotations

import json
import logging
import sys
import warnings

import joblib
import mlflow.sklearn
import pandas as pd
import skops.io
from mlflow.models import infer_signature

warnings.filterwarnings("ignore")
logging.disable(logging.WARNING)

model_path, sample_path, out_dir = sys.argv[1:4]
model = joblib.load(model_path)
with open(sample_path) as f:
    sample = json.load(f)
X = pd.DataFrame(sample["data"], columns=sample["columns"], dtype="float64")
signature = infer_signature(X, model.predict(X))
trusted = skops.io.get_untrusted_types(data=skops.io.dumps(model))
mlflow.sklearn.save_model(
    model, out_dir, signature=signature, input_example=X.head(2), skops_trusted_types=trusted
)
print(mlflow.__version__)
