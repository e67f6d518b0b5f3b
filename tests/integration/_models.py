"""Small models with known behaviour for the server tests (importable by the server process)."""

from __future__ import annotations

import time

import numpy as np


class SlowModel:
    """Answers the first column after sleeping ``delay_s`` per call (per batch)."""

    def __init__(self, delay_s: float) -> None:
        self.delay_s = delay_s

    def predict(self, X: object) -> np.ndarray:
        time.sleep(self.delay_s)
        return np.asarray(X, dtype=float)[:, 0]


class PickyModel:
    """Raises on any batch holding a negative first column; answers the column otherwise."""

    def predict(self, X: object) -> np.ndarray:
        values = np.asarray(X, dtype=float)
        if (values[:, 0] < 0).any():
            raise RuntimeError("negative values are not allowed")
        return values[:, 0]


class SleepyModel:
    """Sleeps as many seconds as the largest value of the second column, then answers the first:
    a call whose length the request chooses (its input example, all zeros, warms it at once)."""

    def predict(self, X: object) -> np.ndarray:
        values = np.asarray(X, dtype=float)
        time.sleep(float(values[:, 1].max()))
        return values[:, 0]


class BusyModel:
    """Spends ``cpu_s_per_row`` seconds of its thread's CPU time on each row, then answers the
    first column: a model whose cost is known."""

    def __init__(self, cpu_s_per_row: float) -> None:
        self.cpu_s_per_row = cpu_s_per_row

    def predict(self, X: object) -> np.ndarray:
        values = np.asarray(X, dtype=float)
        until = time.thread_time() + self.cpu_s_per_row * len(values)
        while time.thread_time() < until:
            pass
        return values[:, 0]
