"""Deployments served by real ``yard serve`` processes: canary, A/B, shadow, retries on stable
and the in-server controller's automatic rollback and promotion."""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import Iterator

import httpx
import numpy as np
import pytest

from modelyard import rollout
from tests.integration._server import Server, server_env
from tests.integration.conftest import ServedHome

FAST = {"MODELYARD_SERVING__ROLLOUT_INTERVAL_S": "0.3", "MODELYARD_SERVING__POLL_INTERVAL_S": "0.3"}


def xy(x: float) -> dict[str, object]:
    return {"inputs": [{"name": "x", "shape": [1], "datatype": "FP64", "data": [x]},
                       {"name": "y", "shape": [1], "datatype": "FP64", "data": [0.0]}]}  # fmt: skip


def hgb_body(served_home: ServedHome) -> dict[str, object]:
    row = served_home.X.head(1)
    return {"inputs": [{"name": "x", "shape": [1, 20], "datatype": "FP64",
                        "data": row.to_numpy().tolist()}]}  # fmt: skip


@pytest.fixture
def registry(served_home: ServedHome) -> Iterator[object]:
    reg = served_home.registry()
    yield reg
    reg.close()


def load(url: str, bodies: Iterator[dict[str, object]], *, seconds: float, until=None):
    """Closed-loop load from 8 clients; returns every (status, route, version)."""
    seen: list[tuple[int, str | None, str | None]] = []

    async def client_loop(client: httpx.AsyncClient, stop: float) -> None:
        while time.monotonic() < stop and not (until and until()):
            r = await client.post(url, json=next(bodies))
            seen.append((r.status_code, r.headers.get("x-route"), r.headers.get("x-model-version")))

    async def main() -> None:
        async with httpx.AsyncClient(timeout=30) as client:
            stop = time.monotonic() + seconds
            await asyncio.gather(*(client_loop(client, stop) for _ in range(8)))

    asyncio.run(main())
    return seen


def test_failing_candidate_is_rolled_back_and_clients_see_no_error(served_home, registry) -> None:
    rollout.deploy(registry, "guarded", model_ref="echo/1")
    rollout.start_candidate(
        registry, "guarded", ref="picky/1", mode="canary", weight=50, auto=True,
        policy={"min_requests": 20, "max_error_rate": 0.05},
    )  # fmt: skip
    rng = np.random.default_rng(0)
    bodies = (xy(-1.0 if rng.random() < 0.2 else 1.0) for _ in iter(int, 1))
    env = server_env(served_home.home, **FAST)
    with Server(served_home.home, "--deployment", "guarded", "--trust-pickle", env=env) as s:
        state = lambda: rollout.get_deployment(registry.db, "guarded").state  # noqa: E731
        seen = load(f"{s.url}/v2/models/guarded/infer", bodies, seconds=30,
                    until=lambda: state() == "rolled_back")  # fmt: skip
        assert rollout.get_deployment(registry.db, "guarded").state == "rolled_back"
        assert Counter(status for status, _, _ in seen) == {200: len(seen)}
        routes = Counter(route for _, route, _ in seen)
        assert routes["candidate"] > 0 and routes["stable"] > 0
        events = rollout.history(registry.db, "guarded")
        assert any(e.action == "rollback" and "error rate" in str(e.reason) + str(e.detail)
                   for e in events), events  # fmt: skip
        time.sleep(1.0)
        after = httpx.post(f"{s.url}/v2/models/guarded/infer", json=xy(1.0))
        assert after.headers["x-route"] == "stable" and after.headers["x-model-version"] == "1"


def test_slow_candidate_is_rolled_back_on_the_p99_rule(served_home, registry) -> None:
    rollout.deploy(registry, "laggy", model_ref="echo/1")
    rollout.start_candidate(
        registry, "laggy", ref="lagged/1", mode="canary", weight=50, auto=True,
        policy={"min_requests": 20, "max_p99_ratio": 1.5, "max_output_distance": None},
    )  # fmt: skip
    bodies = (xy(1.0) for _ in iter(int, 1))
    env = server_env(served_home.home, **FAST)
    with Server(served_home.home, "--deployment", "laggy", "--trust-pickle", env=env) as s:
        state = lambda: rollout.get_deployment(registry.db, "laggy").state  # noqa: E731
        seen = load(f"{s.url}/v2/models/laggy/infer", bodies, seconds=30,
                    until=lambda: state() == "rolled_back")  # fmt: skip
    assert rollout.get_deployment(registry.db, "laggy").state == "rolled_back"
    assert all(status == 200 for status, _, _ in seen)
    rollback = next(e for e in rollout.history(registry.db, "laggy") if e.action == "rollback")
    assert "p99" in str(rollback.reason), rollback


def test_ab_keys_are_sticky_and_split_by_weight(served_home, registry) -> None:
    rollout.deploy(registry, "ab", model_ref="hgb/1")
    rollout.start_candidate(
        registry, "ab", ref="hgb/2", mode="ab", weight=50, sticky_header="X-User-Id"
    )
    body = hgb_body(served_home)
    with Server(served_home.home, "--deployment", "ab") as s:

        async def ask(client: httpx.AsyncClient, user: int) -> tuple[int, str]:
            r = await client.post(f"{s.url}/v2/models/ab/infer", json=body,
                                  headers={"X-User-Id": f"user-{user}"})  # fmt: skip
            assert r.status_code == 200
            return user, r.headers["x-model-version"]

        async def main() -> list[tuple[int, str]]:
            async with httpx.AsyncClient(timeout=30) as client:
                out = []
                for start in range(0, 2000, 100):  # every key twice, in bounded bursts
                    out += await asyncio.gather(
                        *(ask(client, u % 1000) for u in range(start, start + 100))
                    )
                return out

        answers = asyncio.run(main())
    by_user: dict[int, set[str]] = {}
    for user, version in answers:
        by_user.setdefault(user, set()).add(version)
    assert len(by_user) == 1000 and all(len(v) == 1 for v in by_user.values())
    share = sum(v == {"2"} for v in by_user.values()) / 1000
    assert 0.4 < share < 0.6, share


def test_shadow_answers_from_stable_and_records_the_candidate(served_home, registry) -> None:
    rollout.deploy(registry, "mirror", model_ref="hgb/1")
    rollout.start_candidate(registry, "mirror", ref="hgb/2", mode="shadow", sample=1.0)
    body = hgb_body(served_home)
    expected = served_home.registry().load("hgb/1").predict(served_home.X.head(1)).tolist()
    with Server(served_home.home, "--deployment", "mirror") as s:
        for _ in range(40):
            r = httpx.post(f"{s.url}/v2/models/mirror/infer", json=body)
            assert r.headers["x-route"] == "stable" and r.headers["x-model-version"] == "1"
            assert r.json()["outputs"][0]["data"] == expected
        time.sleep(2.0)  # one flush of the route statistics
    revision = rollout.get_deployment(registry.db, "mirror").revision
    summary = rollout.route_summary(registry.db, "mirror", revision=revision)
    assert summary.stable.requests == 40
    assert summary.candidate.requests == 40 and summary.candidate.errors == 0
    assert sum(summary.candidate.output_counts.values()) == 40


def test_good_candidate_advances_every_step_and_is_promoted(served_home, registry) -> None:
    registry.set_alias("hgb/1", "champion")
    rollout.deploy(registry, "steady", model_ref="hgb@champion")
    rollout.start_candidate(
        registry, "steady", ref="hgb/2", mode="canary", steps=[20, 50, 100], bake_s=0.5,
        auto=True, policy={"min_requests": 15, "max_output_distance": None, "p99_floor_ms": 50},
    )  # fmt: skip
    body = hgb_body(served_home)
    bodies = iter(lambda: body, None)
    env = server_env(served_home.home, **FAST)
    with Server(served_home.home, "--deployment", "steady", env=env) as s:
        state = lambda: rollout.get_deployment(registry.db, "steady").state  # noqa: E731
        seen = load(f"{s.url}/v2/models/steady/infer", bodies, seconds=60,
                    until=lambda: state() == "promoted")  # fmt: skip
        assert state() == "promoted"
        assert all(status == 200 for status, _, _ in seen)
        actions = [e.action for e in reversed(rollout.history(registry.db, "steady"))]
        assert actions.count("advance") == 2 and actions[-1] == "promote", actions
        assert registry.get_version("hgb@champion").version == 2
        time.sleep(1.0)
        r = httpx.post(f"{s.url}/v2/models/steady/infer", json=body)
        assert r.headers["x-model-version"] == "2" and r.headers["x-route"] == "stable"


def test_ten_promote_and_rollback_cycles_under_load(served_home, registry, capsys) -> None:
    rollout.deploy(registry, "cycling", model_ref="hgb/1")
    body = hgb_body(served_home)
    env = server_env(served_home.home, MODELYARD_SERVING__POLL_INTERVAL_S="0.2")
    statuses: Counter[int] = Counter()
    errors: list[str] = []
    versions: Counter[str] = Counter()
    with Server(served_home.home, "--deployment", "cycling", env=env) as s:
        url = f"{s.url}/v2/models/cycling/infer"

        async def client_loop(client: httpx.AsyncClient, done: asyncio.Event) -> None:
            while not done.is_set():
                try:
                    r = await client.post(url, json=body)
                except httpx.TransportError as exc:
                    errors.append(repr(exc))
                    continue
                statuses[r.status_code] += 1
                versions[r.headers.get("x-model-version", "?")] += 1

        async def cycles(done: asyncio.Event) -> None:
            for i in range(10):
                stable = await asyncio.to_thread(rollout.get_deployment, registry.db, "cycling")
                other = "hgb/2" if stable.stable_version == 1 else "hgb/1"
                await asyncio.to_thread(
                    rollout.start_candidate, registry, "cycling", ref=other, mode="canary",
                    weight=50,
                )  # fmt: skip
                await asyncio.sleep(3)
                if i % 2 == 0:
                    await asyncio.to_thread(rollout.promote, registry, "cycling")
                else:
                    await asyncio.to_thread(rollout.abort, registry, "cycling", reason="cycle")
                await asyncio.sleep(3)
            done.set()

        async def main() -> None:
            done = asyncio.Event()
            limits = httpx.Limits(max_connections=32)
            async with httpx.AsyncClient(timeout=30, limits=limits) as client:
                await asyncio.gather(cycles(done), *(client_loop(client, done) for _ in range(32)))

        asyncio.run(main())
    with capsys.disabled():
        answered = sum(statuses.values())
        print(f"\n10 promote/rollback cycles, 60 s at c=32: {answered} answers {dict(statuses)},"
              f" {len(errors)} socket errors, versions {dict(versions)}")  # fmt: skip
    assert errors == [] and set(statuses) == {200}
    assert versions["1"] > 0 and versions["2"] > 0
    actions = [e.action for e in rollout.history(registry.db, "cycling")]
    assert actions.count("promote") == 5 and actions.count("abort") == 5
