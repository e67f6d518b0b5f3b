"""BentoML 1.4 service for benchmarks/serving.py: one worker serving a scikit-learn model loaded
from the joblib file named by $BENCH_MODEL_PATH. With BENCH_BENTO_BATCHING=1 the endpoint uses
adaptive batching (max_batch_size 64, max_latency_ms from $BENCH_BENTO_MAX_LATENCY_MS).

    bentoml serve bento_service:HGB --working-dir benchmarks/_serving_peers

Request body: {"input": [[20 floats]]} to POST /predict.
"""

from __future__ import annotations

import os

import bentoml
import joblib
import numpy as np

BATCHING = os.environ.get("BENCH_BENTO_BATCHING") == "1"
MAX_LATENCY_MS = int(os.environ.get("BENCH_BENTO_MAX_LATENCY_MS", "1000"))


@bentoml.service(workers=1)
class HGB:
    def __init__(self) -> None:
        self.model = joblib.load(os.environ["BENCH_MODEL_PATH"])

    if BATCHING:

        @bentoml.api(batchable=True, max_batch_size=64, max_latency_ms=MAX_LATENCY_MS)
        def predict(self, input: np.ndarray) -> np.ndarray:
            return self.model.predict(input)

    else:

        @bentoml.api
        def predict(self, input: np.ndarray) -> np.ndarray:
            return self.model.predict(input)
