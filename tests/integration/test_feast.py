"""The Feast bridge against a real Feast 0.67 repository (applied and materialized by Feast) and
its feature server: training data by point-in-time retrieval from the feature service, a real
``yard serve`` answering v2 requests that carry only ``customer_id``, the skew check, and Redis
as a second online store."""

from __future__ import annotations

import io
import json
import subprocess
import time
from collections.abc import Iterator
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pandas as pd
import pytest
from sklearn.linear_model import LogisticRegression

from modelyard.core.types import ModelVersion
from modelyard.integrations.feast import FeastOnlineFeatures
from modelyard.integrations.feast_offline import measure_skew
from modelyard.pipelines import LocalExecutor, pipeline, run, step
from modelyard.pipelines.builtin import feast_training_data, register
from modelyard.registry import Registry
from modelyard.serving.features import EntityKey
from modelyard.settings import Settings
from tests.integration._feast import (
    CUSTOMERS,
    FEAST_BIN,
    SERVICE,
    T1,
    T2,
    FeastRepo,
    expected,
    feature_server,
    redis_server,
    require,
    write_repo,
)
from tests.integration._server import YARD, Server, server_env

pytestmark = pytest.mark.slow


@dataclass
class Stores:
    sqlite: FeastRepo
    redis: FeastRepo | None


@pytest.fixture(scope="module")
def stores(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stores]:
    """Both repositories set up at once (Feast's imports take seconds each), then served."""
    require(FEAST_BIN / "feast", f"Feast at {FEAST_BIN / 'feast'}: run 'make feast-server'")
    root = tmp_path_factory.mktemp("feast")
    with ExitStack() as stack:
        sqlite = write_repo(root / "sqlite", "  type: sqlite\n  path: data/online.db")
        redis_setup = None
        try:
            address = stack.enter_context(redis_server(root))
        except pytest.skip.Exception:
            address = None  # the Redis test skips; the rest runs
        if address is not None:
            redis_setup = write_repo(
                root / "redis", f"  type: redis\n  connection_string: '{address}'"
            )
        repo = stack.enter_context(feature_server(root / "sqlite", sqlite))
        redis = (
            stack.enter_context(feature_server(root / "redis", redis_setup))
            if redis_setup is not None else None
        )  # fmt: skip
        yield Stores(repo, redis)


def entity_rows(path: Path) -> Path:
    """Each customer twice: between T1 and T2 (the old values) and after T2 (the new ones)."""
    early = pd.DataFrame({"customer_id": CUSTOMERS, "event_timestamp": T1 + pd.Timedelta("10D")})
    late = early.assign(event_timestamp=T2 + pd.Timedelta("10D"))
    rows = pd.concat([early, late], ignore_index=True)
    features = pd.concat([expected(T1).loc[CUSTOMERS], expected(T2).loc[CUSTOMERS]])
    rows["churned"] = (features["tenure"].to_numpy() < 10).astype(int)
    rows.to_parquet(path, index=False)
    return path


@step
def fit_churn(table: pd.DataFrame) -> LogisticRegression:
    return LogisticRegression().fit(table[["tenure", "spend"]], table["churned"])


@pipeline
def churn_training(entities: str = "", repo: str = "", python: str = "") -> None:
    data = feast_training_data(entities, SERVICE, repo, python=python)
    register(fit_churn(data.table), data.table, name="churn", target="churned", tags=data.tags)


@dataclass
class Served:
    server: Server
    env: dict[str, str]
    home: Path


@pytest.fixture(scope="module")
def served(stores: Stores, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    """The pipeline run (training data from Feast, fit, register with the service's tags), then
    ``yard serve churn/1 --feast-url URL --workers 2``."""
    home = tmp_path_factory.mktemp("home")
    entities = entity_rows(home / "entities.parquet")
    registry = Registry(Settings(home=home))
    params = {"entities": str(entities), "repo": str(stores.sqlite.path),
              "python": stores.sqlite.python}  # fmt: skip
    done = run(churn_training, registry=registry, executor=LocalExecutor(workers=1), params=params)
    assert done.status == "finished"
    registry.close()
    env = server_env(
        home, MODELYARD_MONITORING__LOG_ROOT=str(home / "log"),
        MODELYARD_MONITORING__FLUSH_INTERVAL_S="30",  # SIGTERM's flush writes them
    )  # fmt: skip
    # two workers: each builds its Feast sources itself (integrations.feast.app_from_env)
    server = Server(
        home, "churn/1", "--feast-url", stores.sqlite.url, "--log-predictions", "--workers", "2",
        env=env,
    ).wait_ready()  # fmt: skip
    try:
        yield Served(server, env, home)
    finally:
        server.stop()


def registered(served: Served) -> tuple[ModelVersion, pd.DataFrame, Any]:
    """The version the pipeline registered, its training features (the reference sample: all
    80 rows) and its model."""
    registry = Registry(Settings(home=served.home))
    try:
        version = registry.get_version("churn/1")
        sample = pd.read_parquet(io.BytesIO(registry.read_file("churn/1", "sample")))
        return version, sample, registry.load("churn/1").predictor
    finally:
        registry.close()


def infer(url: str, ids: list[int], name: str = "customer_id") -> httpx.Response:
    body = {"inputs": [{"name": name, "shape": [len(ids)], "datatype": "INT64", "data": ids}]}
    return httpx.post(f"{url}/v2/models/churn/infer", json=body, timeout=10)


def test_training_data_is_point_in_time_and_declares_the_service(served: Served) -> None:
    version, sample, _ = registered(served)
    assert [spec.name for spec in version.signature.inputs] == ["tenure", "spend"]
    # Feast returns rows in its own order: compare by value, as of each row's timestamp
    want = pd.concat([expected(T1).loc[CUSTOMERS], expected(T2).loc[CUSTOMERS]])
    got = sample[["tenure", "spend"]].sort_values(["tenure", "spend"]).to_numpy()
    assert np.allclose(got, want.sort_values(["tenure", "spend"]).to_numpy())
    tags = version.tags
    assert tags["feast.feature_service"] == SERVICE
    assert tags["feast.entity_keys"] == "customer_id:int64"
    assert tags["feast.project"] == "churn"
    view, digest = tags["feast.feature_views"].split(":")
    assert view.startswith("customer_stats@") and len(digest) == 16
    # the version's lineage records the service and its feature views; yard models show says
    # how to retrieve the same features again
    out = subprocess.run(
        [YARD, "models", "show", "churn/1"], env=served.env, capture_output=True, text=True,
        check=True,
    )  # fmt: skip
    assert f"feast://churn/{SERVICE}" in out.stdout
    assert tags["feast.feature_views"] in out.stdout
    assert "feast_training_data(" in out.stdout


def test_an_unknown_service_or_repository_is_one_line(stores: Stores, tmp_path: Path) -> None:
    from modelyard.errors import ConfigError, NotReadyError

    source = FeastOnlineFeatures(
        stores.sqlite.url, "nope", (EntityKey("customer_id", "int64"),), timeout_s=5
    )
    with pytest.raises(NotReadyError, match="has no feature service 'nope'; run 'feast apply'"):
        source.fetch({"customer_id": [1]})
    source.close()
    with pytest.raises(ConfigError, match="is not a Feast repository"):
        feast_training_data.fn(
            str(entity_rows(tmp_path / "e.parquet")), SERVICE, str(tmp_path),
            python=stores.sqlite.python,
        )  # fmt: skip


def test_serve_answers_v2_requests_that_carry_only_entity_keys(served: Served) -> None:
    url = served.server.url
    meta = httpx.get(f"{url}/v2/models/churn", timeout=5).json()
    assert [i["name"] for i in meta["inputs"]] == ["customer_id"]
    ids = [2, 3, 40]
    response = infer(url, ids)
    assert response.status_code == 200, response.text
    (predict,) = (o for o in response.json()["outputs"] if o["name"] == "predict")
    metrics = httpx.get(f"{url}/metrics", timeout=5).text
    assert 'modelyard_feature_fetch_seconds_count{model="churn"}' in metrics
    # the online store holds the newest values (materialized after T2)
    _, _, model = registered(served)
    assert predict["data"] == model.predict(expected(T2).loc[ids]).tolist()


def test_an_unknown_entity_is_404_naming_it_and_a_missing_key_is_400(served: Served) -> None:
    response = infer(served.server.url, [1, 999])
    assert response.status_code == 404
    assert "customer_id=999" in response.json()["error"]
    response = infer(served.server.url, [1], name="tenure")
    assert response.status_code == 400
    assert "missing customer_id" in response.json()["error"]


def test_a_version_that_declares_a_service_is_not_served_without_feast(served: Served) -> None:
    server = Server(served.home, "churn/1", env=served.env)
    try:
        server.proc.wait(120)
    finally:
        server.stop()
    assert server.proc.returncode != 0
    assert (
        "takes its features from Feast feature service 'churn_features'; give the feature "
        "server with --feast-url" in server.log.read_text()
    )


def test_the_prediction_log_holds_the_features_used(served: Served) -> None:
    ids = [4, 5]
    assert infer(served.server.url, ids).status_code == 200
    assert served.server.stop() == 0, served.server.log.read_text()
    out = subprocess.run(
        [YARD, "monitor", "log", "churn", "--json", "--limit", "1000"],
        env=served.env, capture_output=True, text=True, check=True,
    )  # fmt: skip
    logged = [r for r in json.loads(out.stdout) if r.get("in_tenure") is not None]
    want = expected(T2)
    pairs = {(r["in_tenure"], r["in_spend"]) for r in logged}
    assert {tuple(want.loc[i]) for i in ids} <= pairs


def test_skew_check_reports_the_share_of_mismatching_values(stores: Stores, tmp_path: Path) -> None:
    # as of now the offline store agrees with what was materialized; as of a time between T1
    # and T2 it holds the old values, and half the customers (the even ones) changed since
    between = pd.DataFrame({"customer_id": CUSTOMERS, "event_timestamp": T1 + pd.Timedelta("1D")})
    between.to_csv(tmp_path / "between.csv", index=False)
    done = subprocess.run(
        [YARD, "features", "skew", str(tmp_path / "between.csv"), "--service", SERVICE,
         "--repo", str(stores.sqlite.path), "--feast-url", stores.sqlite.url, "--json",
         "--max-share", "0.1"],
        env=server_env(tmp_path, MODELYARD_FEAST__PYTHON=stores.sqlite.python),
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert done.returncode == 1, done.stderr
    assert done.stdout, done.stderr
    report = json.loads(done.stdout)
    assert report["rows"] == len(CUSTOMERS)
    assert report["mismatch_share"] == {"tenure": 0.5, "spend": 0.5}


def test_redis_as_a_second_online_store(stores: Stores) -> None:
    if stores.redis is None:
        require(None, "redis-server on PATH (apt-get install redis-server; make system does)")
    assert stores.redis is not None
    keys = (EntityKey("customer_id", "int64"),)
    ids = [int(i) for i in CUSTOMERS[:10]]
    fetched = []
    for repo in (stores.sqlite, stores.redis):
        source = FeastOnlineFeatures(repo.url, SERVICE, keys, timeout_s=5)
        fetched.append(source.fetch({"customer_id": ids}))
        source.close()
    assert fetched[0] == fetched[1]
    assert fetched[1].columns["tenure"] == expected(T2).loc[ids, "tenure"].tolist()
    started = time.perf_counter()
    report = measure_skew(
        pd.DataFrame({"customer_id": CUSTOMERS}), repo=str(stores.redis.path), service=SERVICE,
        url=stores.redis.url, python=stores.redis.python, timeout_s=5,
    )  # fmt: skip
    assert report.mismatch_share == {"tenure": 0.0, "spend": 0.0}, time.perf_counter() - started
