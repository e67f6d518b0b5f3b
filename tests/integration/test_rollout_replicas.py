"""Two ``yard serve`` replicas on one PostgreSQL store follow the same deployment."""

from __future__ import annotations

import math
import subprocess
import time
from pathlib import Path

import httpx
import numpy as np
import pandas as pd
import pytest

from modelyard import rollout
from modelyard.registry import Registry
from tests.conftest import POSTGRES_URL, SKIP_POSTGRES, reset_postgres
from tests.integration._server import YARD, Server, server_env

pytestmark = [pytest.mark.postgres, SKIP_POSTGRES]


def body(x: float) -> dict[str, object]:
    return {"inputs": [{"name": c, "shape": [1], "datatype": "FP64", "data": [x]}
                       for c in ("a", "b", "c")]}  # fmt: skip


# A canary's route is drawn at random per request (the router is not seeded): the candidate's
# share of N requests at weight p has standard deviation sqrt(p(1-p)/N). The band is 5 of them
# (1,000 requests at 30%: 0.3 +- 0.072): a correct router falls outside once in ~1.7 million runs,
# while one that ignores the weight (0%, 50%, 100%) or inverts it (70%) is far outside.
def share_band(weight: float, n: int, *, sds: float = 5.0) -> tuple[float, float]:
    spread = sds * math.sqrt(weight * (1 - weight) / n)
    return weight - spread, weight + spread


def test_replicas_follow_a_cli_weight_change_and_split_by_weight(tmp_path: Path) -> None:
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
        low, high = share_band(0.3, len(routes))
        assert low < share < high, (share, low, high)
        assert {routes[i % 2 :: 2].count("candidate") > 0 for i in range(2)} == {True}  # both

        # `yard rollout weight`, the command an operator runs, in its own process; both replicas
        # follow it (they poll every 0.2 s; the deadline is generous for a busy 2-core machine)
        cli = subprocess.run(
            [YARD, "rollout", "weight", "svc", "100", "--reason", "all in"], env=env,
            capture_output=True, text=True, timeout=120, check=False,
        )  # fmt: skip
        assert cli.returncode == 0, cli.stderr
        assert rollout.get_deployment(registry.db, "svc").weight == 100
        changed = time.monotonic()
        pending = {one.url, two.url}
        with httpx.Client(timeout=10) as client:
            while pending and time.monotonic() - changed < 30:
                for url in list(pending):
                    r = client.post(f"{url}/v2/models/svc/infer", json=body(1.0))
                    if r.headers["x-route"] == "candidate" and r.headers["x-model-version"] == "2":
                        pending.discard(url)
                time.sleep(0.05)
        assert not pending, f"not following the change after 30 s: {pending}"
        with httpx.Client(timeout=10) as client:  # and from then on, every request
            for i in range(50):
                r = client.post(
                    f"{(one if i % 2 else two).url}/v2/models/svc/infer", json=body(1.0)
                )
                assert r.headers["x-route"] == "candidate", i
    registry.close()
