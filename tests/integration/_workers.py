"""Process entry points for the concurrency tests (importable by spawned processes)."""

from __future__ import annotations

import numpy as np


def register_and_move(database_url: str, artifact_root: str, worker: int, count: int) -> list[int]:
    """Register ``count`` versions of 'shared', pointing 'production' at each one right away."""
    from sklearn.linear_model import LinearRegression

    from modelyard.registry import Registry

    X = np.arange(40, dtype=float).reshape(20, 2)
    model = LinearRegression().fit(X, X[:, 0] * (worker + 1))
    registry = Registry(
        database_url=database_url, artifact_root=artifact_root, identity=f"worker-{worker}"
    )
    moved = []
    for _ in range(count):
        version = registry.register(model, name="shared", data=X)
        registry.set_alias(version.ref, "production", reason=f"worker {worker}")
        moved.append(version.version)
    registry.close()
    return moved
