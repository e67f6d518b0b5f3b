"""The Feast bridge's serving side without Feast: which versions get a feature source, the entity
keys a version declares, and a feature server that cannot be reached or a bad URL, each refused
in one line that names the next step and never a password."""

from __future__ import annotations

import socket
import time
from datetime import UTC, datetime

import pytest

from modelyard.core.types import Lineage, ModelVersion
from modelyard.errors import ConfigError, StorageError
from modelyard.integrations.feast import FeastOnlineFeatures, entity_keys, online_features
from modelyard.serving.features import EntityKey
from modelyard.settings import FeastSettings


def version(**tags: str) -> ModelVersion:
    return ModelVersion(
        name="churn", version=3, flavor="sklearn", files=(), signature=None, input_example=None,
        flavor_meta={}, metrics={}, params={}, tags=tags, description=None, lineage=Lineage(),
        run_id=None, created_by="test", created_at=datetime.now(UTC),
    )  # fmt: skip


FEAST = {"feast.feature_service": "churn_features", "feast.entity_keys": "customer_id:int64"}


def test_only_a_version_that_declares_a_service_gets_a_source() -> None:
    sources = online_features(FeastSettings(url="http://127.0.0.1:6566"))
    assert sources(version()) is None
    source = sources(version(**FEAST))
    assert source is not None
    assert source.entity_keys == (EntityKey("customer_id", "int64"),)
    assert source.label == "feature service 'churn_features' at http://127.0.0.1:6566"


def test_a_declared_service_without_a_feature_server_is_refused_at_load() -> None:
    with pytest.raises(
        ConfigError, match=r"^Model churn/3 takes its features from Feast .*--feast-url"
    ):
        online_features(FeastSettings())(version(**FEAST))


def test_entity_keys_are_read_from_the_tag_in_order() -> None:
    tags = {**FEAST, "feast.entity_keys": "customer_id:int64, region:string,store"}
    assert entity_keys(version(**tags)) == (
        EntityKey("customer_id", "int64"), EntityKey("region", "string"),
        EntityKey("store", "string"),
    )  # fmt: skip
    with pytest.raises(ConfigError, match=r"no entity keys; tag it feast\.entity_keys="):
        entity_keys(version(**{"feast.feature_service": "churn_features"}))


def test_a_feature_server_nobody_listens_on_is_a_storage_error_without_the_password() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]  # bound, not listening: connections are refused
        source = FeastOnlineFeatures(
            f"http://bob:pw@127.0.0.1:{port}/", "churn_features",
            (EntityKey("customer_id", "int64"),), timeout_s=2,
        )  # fmt: skip
        started = time.monotonic()
        with pytest.raises(StorageError) as caught:
            source.fetch({"customer_id": [1]})
    assert time.monotonic() - started < 5
    message = str(caught.value)
    assert message.startswith(f"Feast's feature server at http://127.0.0.1:{port} did not answer")
    assert "pw" not in message and "\n" not in message
    assert message.endswith("start it ('feast serve') or check --feast-url.")


@pytest.mark.parametrize("url", ["127.0.0.1:6566", "grpc://127.0.0.1:6566", "http://"])
def test_a_url_that_is_not_http_is_refused(url: str) -> None:
    with pytest.raises(ConfigError, match=r"not http\(s\)://HOST:PORT"):
        FeastOnlineFeatures(url, "churn_features", (), timeout_s=1)
