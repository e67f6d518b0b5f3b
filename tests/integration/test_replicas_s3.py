"""Replicas that share one PostgreSQL database and one bucket (moto's real S3 server): both load
the model from the bucket, log to the same prefix, follow an alias move within 2 s, and every
reader (``yard monitor``, ``yard labels``, drift) sees both replicas' rows. And a store that goes
down mid-load loses no acknowledged prediction."""

from __future__ import annotations

import json
import subprocess
import threading
import time
from collections import Counter
from pathlib import Path

import httpx
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from sklearn.linear_model import LinearRegression

from modelyard.registry import Registry
from tests._s3 import S3Server
from tests.conftest import POSTGRES_URL, SKIP_POSTGRES, reset_postgres
from tests.integration._server import YARD, Server, server_env

COLUMNS = ("a", "b", "c")


def body(row: np.ndarray) -> dict[str, object]:
    return {"inputs": [{"name": c, "shape": [1], "datatype": "FP64", "data": [float(v)]}
                       for c, v in zip(COLUMNS, row, strict=True)]}  # fmt: skip


def register(registry: Registry, scales: tuple[float, ...]) -> None:
    X = pd.DataFrame(np.random.default_rng(0).normal(size=(200, 3)), columns=list(COLUMNS))
    for scale in scales:
        model = LinearRegression().fit(X, (X["a"] + 10 * X["b"] + 100 * X["c"]) * scale)
        registry.register(model, name="lin", data=X)


def logged(s3: S3Server, bucket: str, prefix: str) -> Counter[str]:
    """How many times each request id is in the bucket's log (one row per request here)."""
    client = s3.client()
    ids: Counter[str] = Counter()
    for key in s3.keys(bucket, f"{prefix}/deployment="):
        table = pq.read_table(
            pa.BufferReader(client.get_object(Bucket=bucket, Key=key)["Body"].read())
        )
        ids.update(table.column("request_id").to_pylist())
    return ids


def yard(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(
        [YARD, *args], env=env, capture_output=True, text=True, timeout=300, check=False
    )
    assert done.returncode == 0, done.stderr
    return done


@pytest.mark.postgres
@SKIP_POSTGRES
def test_two_replicas_share_the_bucket_and_the_database(
    s3: S3Server, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    assert POSTGRES_URL is not None
    reset_postgres(POSTGRES_URL)
    bucket = s3.bucket()
    artifacts, log = f"s3://{bucket}/artifacts", f"s3://{bucket}/predictions"
    registry = Registry(database_url=POSTGRES_URL, artifact_root=artifacts, identity="tester")
    request.addfinalizer(registry.close)
    register(registry, (1.0, 2.0))
    registry.set_alias("lin/1", "production")
    assert any(k.startswith("artifacts/sha256/") for k in s3.keys(bucket))

    def env(home: Path) -> dict[str, str]:
        home.mkdir(exist_ok=True)
        return server_env(
            home, MODELYARD_DATABASE_URL=POSTGRES_URL, MODELYARD_ARTIFACT_ROOT=artifacts,
            MODELYARD_MONITORING__LOG_ROOT=log, MODELYARD_MONITORING__UPLOAD_INTERVAL_S="1",
            **s3.env,
        )  # fmt: skip

    rng = np.random.default_rng(1)
    sent: dict[str, str] = {}  # request id -> replica
    homes = [tmp_path / "one", tmp_path / "two"]
    replicas = [Server(h, "lin@production", "--log-predictions", env=env(h)) for h in homes]
    try:
        for replica in replicas:
            replica.wait_ready()
        with httpx.Client(timeout=10) as client:
            for i in range(60):
                replica = replicas[i % 2]
                r = client.post(f"{replica.url}/v2/models/lin/infer", json=body(rng.normal(size=3)))
                assert r.status_code == 200, r.text
                sent[r.headers["x-request-id"]] = replica.url
            # an alias move reaches both replicas within 2 s (they poll the database every 1 s)
            probe = body(np.array([1.0, 0.0, 0.0]))
            registry.set_alias("lin/2", "production")
            moved, reached = time.monotonic(), {}
            while len(reached) < 2 and time.monotonic() - moved < 30:
                for replica in replicas:
                    r = client.post(f"{replica.url}/v2/models/lin/infer", json=probe)
                    if replica.url not in reached and r.json()["model_version"] == "2":
                        reached[replica.url] = time.monotonic() - moved
                    sent[r.headers["x-request-id"]] = replica.url
        assert len(reached) == 2 and max(reached.values()) <= 2.0, reached
    finally:
        codes = [replica.stop() for replica in replicas]
    assert codes == [0, 0], [r.log.read_text() for r in replicas]
    assert logged(s3, bucket, "predictions") == Counter(dict.fromkeys(sent, 1))

    # a third machine reads both replicas' rows through the CLI
    reader = env(tmp_path / "reader")
    rows = json.loads(yard(reader, "monitor", "log", "lin", "--json", "--limit", "10000").stdout)
    assert Counter(r["request_id"] for r in rows) == Counter(dict.fromkeys(sent, 1))
    labels = tmp_path / "labels.csv"
    pd.DataFrame({"request_id": list(sent), "label": 1.0}).to_csv(labels, index=False)
    ingested = json.loads(yard(reader, "labels", "ingest", "lin", str(labels), "--json").stdout)
    assert (ingested["rows"], ingested["matched"]) == (len(sent), len(sent))
    assert [k for k in s3.keys(bucket, "predictions/labels/")]  # published to the bucket
    other = env(tmp_path / "another-reader")  # sees the labels through the bucket
    performance = json.loads(yard(other, "labels", "performance", "lin", "--json").stdout)
    assert (performance["labelled"], performance["predictions"]) == (len(sent), len(sent))
    drift = json.loads(yard(other, "monitor", "drift", "lin", "--json").stdout)
    assert drift["current_rows"] == len(sent), drift


def test_a_store_down_mid_load_loses_no_acknowledged_prediction(
    s3: S3Server, tmp_path: Path
) -> None:
    bucket = s3.bucket()
    registry = Registry(
        database_url=f"sqlite:///{tmp_path / 'meta.db'}", artifact_root=str(tmp_path / "art")
    )
    register(registry, (1.0,))
    registry.close()
    env = server_env(
        tmp_path, MODELYARD_DATABASE_URL=f"sqlite:///{tmp_path / 'meta.db'}",
        MODELYARD_ARTIFACT_ROOT=str(tmp_path / "art"),
        MODELYARD_MONITORING__LOG_ROOT=f"s3://{bucket}/log",
        MODELYARD_MONITORING__UPLOAD_INTERVAL_S="0.5",
        MODELYARD_MONITORING__UPLOAD_BACKOFF_MAX_S="1", **s3.env,
    )  # fmt: skip
    acknowledged: list[str] = []
    stop = threading.Event()

    def load(url: str) -> None:
        with httpx.Client(timeout=10) as client:
            while not stop.is_set():
                r = client.post(f"{url}/v2/models/lin/infer", json=body(np.ones(3)))
                if r.status_code == 200:
                    acknowledged.append(r.headers["x-request-id"])

    def metric(url: str, name: str) -> float:
        text = httpx.get(f"{url}/metrics", timeout=10).text
        return sum(float(line.split()[-1]) for line in text.splitlines()
                   if line.startswith(name + " ") or line.startswith(name + "{"))  # fmt: skip

    server = Server(tmp_path, "lin/1", "--log-predictions", env=env).wait_ready()
    try:
        threads = [threading.Thread(target=load, args=(server.url,)) for _ in range(2)]
        for thread in threads:
            thread.start()
        time.sleep(2)
        s3.stop()  # the object store goes down mid-load
        try:
            down = time.monotonic()
            while time.monotonic() - down < 60:
                failures = metric(server.url, "modelyard_prediction_log_upload_failures_total")
                if failures > 0 and metric(server.url, "modelyard_prediction_log_backlog_rows") > 0:
                    break
                time.sleep(0.2)
            else:
                pytest.fail(f"no backlog seen while the store was down: {server.log.read_text()}")
            during = len(acknowledged)
        finally:
            s3.start()
        time.sleep(2)
        stop.set()
        for thread in threads:
            thread.join()
        deadline = time.monotonic() + 60
        while metric(server.url, "modelyard_prediction_log_backlog_rows") > 0:
            assert time.monotonic() < deadline, "the backlog never drained"
            time.sleep(0.2)
        # labels sent to the server go up to the bucket the same way; a made-up name leaves none
        labels = {"deployment": "lin", "labels": [{"request_id": acknowledged[0], "label": 1}]}
        assert httpx.post(f"{server.url}/v1/labels", json=labels).status_code == 202
        made_up = {**labels, "deployment": "no-such-model"}
        assert httpx.post(f"{server.url}/v1/labels", json=made_up).status_code == 404
    finally:
        stop.set()
        assert server.stop() == 0, server.log.read_text()
    assert during > 0 and len(acknowledged) > during  # served before, during and after
    assert logged(s3, bucket, "log") == Counter(dict.fromkeys(acknowledged, 1))
    (key,) = s3.keys(bucket, "log/labels/")
    assert key.startswith("log/labels/deployment=lin/")
