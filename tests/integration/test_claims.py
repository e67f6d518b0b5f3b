"""Claims of the README that no other test checked: an expired token is refused, A/B routes stick
to an input field's value, an invalid request among a batch of valid ones leaves them unaffected,
and a load uses exactly the bytes whose hash it checked."""

from __future__ import annotations

import asyncio
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import numpy as np
import pandas as pd
import pytest

from modelyard import rollout
from modelyard.errors import IntegrityError
from modelyard.registry import Registry
from modelyard.store.artifacts import ArtifactStore
from tests.integration._server import YARD, Server, server_env
from tests.integration.conftest import ServedHome


@contextmanager
def started(server: Server) -> Iterator[Server]:
    """``server`` once ready (a generous deadline: starting is slow on a busy machine), stopped
    on the way out whatever happens."""
    try:
        yield server.wait_ready(timeout_s=240)
    finally:
        server.stop()


def lin_body(rows: list[list[float]]) -> dict[str, object]:
    return {"inputs": [{"name": "x", "shape": [len(rows), 3], "datatype": "FP64",
                        "data": [v for row in rows for v in row]}]}  # fmt: skip


def test_an_expired_token_is_refused(own_home: ServedHome) -> None:
    env = server_env(own_home.home)
    with started(Server(own_home.home, "lin/1", "--auth", env=env)) as server:
        created = subprocess.run(
            [YARD, "tokens", "create", "--scope", "predict", "--expires", "10s"], env=env,
            capture_output=True, text=True, timeout=120, check=True,
        )  # fmt: skip
        expired_after = time.monotonic() + 10  # it was created before the command ended
        headers = {"Authorization": f"Bearer {created.stdout.strip().splitlines()[0]}"}
        url = f"{server.url}/v2/models/lin/infer"
        fresh = httpx.post(url, json=lin_body([[1.0, 0.0, 0.0]]), headers=headers, timeout=30)
        assert fresh.status_code == 200, fresh.text  # valid, and now in the server's cache
        time.sleep(max(0.0, expired_after - time.monotonic()) + 1.0)
        late = httpx.post(url, json=lin_body([[1.0, 0.0, 0.0]]), headers=headers, timeout=30)
        assert late.status_code == 401, late.text
        assert "expired" in late.json()["error"]


def test_ab_routes_stick_to_an_input_field(own_home: ServedHome) -> None:
    registry = own_home.registry()
    rollout.deploy(registry, "abf", model_ref="hgb/1")
    rollout.start_candidate(registry, "abf", ref="hgb/2", mode="ab", weight=50, sticky_field="x")
    registry.close()
    rows = own_home.X.head(1).to_numpy()

    def body(user: int) -> dict[str, object]:
        row = rows.copy()
        row[0, 0] = float(user)  # the field's first value is the user's key
        return {"inputs": [{"name": "x", "shape": [1, 20], "datatype": "FP64",
                            "data": row.tolist()}]}  # fmt: skip

    with started(Server(own_home.home, "--deployment", "abf")) as server:

        async def ask(client: httpx.AsyncClient, user: int, header: str) -> tuple[int, str]:
            r = await client.post(f"{server.url}/v2/models/abf/infer", json=body(user),
                                  headers={"X-User-Id": header})  # fmt: skip
            assert r.status_code == 200, r.text
            return user, r.headers["x-model-version"]

        async def main() -> list[tuple[int, str]]:
            async with httpx.AsyncClient(timeout=30) as client:
                out: list[tuple[int, str]] = []
                for repeat in range(3):  # every key three times, each time another header
                    for start in range(0, 400, 50):
                        out += await asyncio.gather(*(
                            ask(client, u, f"h{repeat}-{u}") for u in range(start, start + 50)
                        ))  # fmt: skip
                return out

        answers = asyncio.run(main())
    by_user: dict[int, set[str]] = {}
    for user, version in answers:
        by_user.setdefault(user, set()).add(version)
    assert len(by_user) == 400
    assert [u for u, versions in by_user.items() if len(versions) != 1] == []  # sticky
    share = sum(v == {"2"} for v in by_user.values()) / 400
    # 400 keys at 50%: standard deviation 2.5 points; the band is 5 of them
    assert 0.375 < share < 0.625, share


def test_an_invalid_request_leaves_its_batch_unaffected(own_home: ServedHome) -> None:
    rng = np.random.default_rng(7)
    args = ["lin/1", "--max-batch-size", "64", "--max-batch-delay-ms", "50"]
    with started(Server(own_home.home, *args)) as server:
        url = f"{server.url}/v2/models/lin/infer"
        invalid = [
            {"inputs": [{"name": "x", "shape": [1, 2], "datatype": "FP64", "data": [1.0, 2.0]}]},
            {"inputs": [{"name": "x", "shape": [1, 3], "datatype": "BYTES",
                         "data": ["a", "b", "c"]}]},
            {"inputs": [{"name": "x", "shape": [1, 3], "datatype": "FP64",
                         "data": [1.0, "two", 3.0]}]},
        ]  # fmt: skip

        async def round_(bad: dict[str, object]) -> None:
            valid = [rng.integers(0, 50, size=(int(rng.integers(1, 4)), 3)).astype(float)
                     for _ in range(20)]  # fmt: skip
            async with httpx.AsyncClient(timeout=30) as client:
                calls = [client.post(url, json=lin_body(rows.tolist())) for rows in valid]
                calls.insert(10, client.post(url, json=bad))
                answers = await asyncio.gather(*calls)
            refused = answers.pop(10)
            assert refused.status_code == 400, refused.text
            assert refused.json()["error"]
            for rows, answer in zip(valid, answers, strict=True):
                assert answer.status_code == 200, answer.text
                expected = rows[:, 0] + 10 * rows[:, 1] + 100 * rows[:, 2]
                np.testing.assert_allclose(answer.json()["outputs"][0]["data"], expected, atol=1e-6)

        for bad in invalid:
            asyncio.run(round_(bad))
        metrics = httpx.get(f"{server.url}/metrics").text
    batches = rows_total = 0.0
    for line in metrics.splitlines():
        if line.startswith('modelyard_batch_rows_count{model="lin"}'):
            batches = float(line.rsplit(" ", 1)[1])
        if line.startswith('modelyard_batch_rows_sum{model="lin"}'):
            rows_total = float(line.rsplit(" ", 1)[1])
    assert rows_total > batches > 0  # the valid requests did share batches


class SwapAfterCheck(ArtifactStore):
    """The real store, except that right after a blob's bytes are read and checked, the file on
    disk is replaced with ``replacement``: what a writer racing the load would do."""

    replacement: bytes = b""

    def get(self, sha256: str, *, label: str) -> bytes:
        data = super().get(sha256, label=label)
        if self.replacement:
            Path(self.path_of(sha256)).write_bytes(self.replacement)
        return data


def test_a_load_uses_exactly_the_bytes_it_checked(tmp_path: Path) -> None:
    from sklearn.linear_model import LinearRegression

    registry = Registry(
        database_url=f"sqlite:///{tmp_path / 'meta.db'}", artifact_root=str(tmp_path / "art")
    )
    X = pd.DataFrame(np.random.default_rng(0).normal(size=(50, 3)), columns=["a", "b", "c"])
    weights = np.array([1.0, 2.0, 3.0])
    one = registry.register(LinearRegression().fit(X, X @ weights), name="m", data=X)
    two = registry.register(LinearRegression().fit(X, -(X @ weights)), name="m", data=X)
    other = registry.read_file("m/2", "model")
    assert one.file("model").sha256 != two.file("model").sha256  # type: ignore[union-attr]

    store = SwapAfterCheck(registry.artifacts.root)
    store.replacement = other
    registry.artifacts = store
    loaded = registry.load("m/1")
    probe = pd.DataFrame([[1.0, 2.0, 3.0]], columns=["a", "b", "c"])
    np.testing.assert_allclose(loaded.predictor.model.predict(probe), [14.0])  # type: ignore[attr-defined]
    blob = Path(store.path_of(one.file("model").sha256))  # type: ignore[union-attr]
    assert blob.read_bytes() == other  # the file really was changed under the load

    store.replacement = b""
    with pytest.raises(IntegrityError, match=r"File 'model.*' of model m/1 was altered"):
        registry.load("m/1")  # and the next load refuses it
    registry.close()
