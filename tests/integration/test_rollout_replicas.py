"""Two ``yard serve`` replicas on one PostgreSQL store follow the same deployment."""

from __future__ import annotations

import time
from pathlib import Path

import httpx
import numpy as np
import pandas as pd
import pytest

from modelyard import rollout
from modelyard.registry import Registry
from tests.conftest import POSTGRES_URL, SKIP_POSTGRES, reset_postgres
from tests.integration._server import Server, server_env

pytestmark = [pytest.mark.postgres, SKIP_POSTGRES]


def body(x: float) -> dict[str, object]:
    return {"inputs": [{"name": c, "shape": [1], "datatype": "FP64", "data": [x]}
                       for c in ("a", "b", "c")]}  # fmt: skip


def test_replicas_follow_a_cli_change_within_a_second_and_split_by_weight(tmp_path: Path) -> None:
    from sklearn.linear_model import LinearRegression

    assert POSTGRES_URL is not None
    reset_postgres(POSTGRES_URL)
    artifacts = str(tmp_path / "artifacts")
    registry = Registry(database_url=POSTGRES_URL, artifact_root=artifacts, identity="tester")
    X = pd.DataFrame(np.eye(3), columns=["a", "b", "c"])
    for scale in (1.0, 2.0):
        registry.register(LinearRegression().fit(X, X.sum(axis=1) * scale), name="lin", data=X)
    rollout.deploy(registry, "svc", model_ref="lin/1")
    rollout.start_candidate(registry, "svc", ref="lin/2", mode="canary", weight=30)
    env = server_env(
        tmp_path, MODELYARD_DATABASE_URL=POSTGRES_URL, MODELYARD_ARTIFACT_ROOT=artifacts,
        MODELYARD_SERVING__POLL_INTERVAL_S="0.2",
    )  # fmt: skip
    with (
        Server(tmp_path, "--deployment", "svc", env=env) as one,
        Server(tmp_path, "--deployment", "svc", env=env) as two,
    ):
        routes = []
        with httpx.Client(timeout=10) as client:
            for i in range(1000):
                url = (one if i % 2 else two).url
                r = client.post(f"{url}/v2/models/svc/infer", json=body(1.0))
                assert r.status_code == 200
                routes.append(r.headers["x-route"])
        share = routes.count("candidate") / len(routes)
        assert 0.25 < share < 0.35, share  # 30% within noise (sd ~1.5% for 1000 draws)

        # the same call `yard rollout weight svc 100` makes; timed from its commit
        rollout.set_weight(registry, "svc", weight=100)
        changed = time.monotonic()
        pending = {one.url, two.url}
        with httpx.Client(timeout=10) as client:
            while pending and time.monotonic() - changed < 5:
                for url in list(pending):
                    r = client.post(f"{url}/v2/models/svc/infer", json=body(1.0))
                    if r.headers["x-route"] == "candidate" and r.headers["x-model-version"] == "2":
                        pending.discard(url)
        assert not pending
        assert time.monotonic() - changed < 1.0
    registry.close()
