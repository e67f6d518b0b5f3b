"""Feast online features for served versions, fetched from Feast's feature server.

A version declares its Feast feature service in tags (``feast_tags``; the pipeline step
``feast_training_data`` sets them from the service it trained on): the service's name, its
entity join keys with their dtypes, and its feature views (name, version, sha256 of the
definition). ``yard serve --feast-url URL`` then serves it with only the entity keys in each
request: ``online_features`` gives the server a ``FeastOnlineFeatures`` per such version, which
asks ``feast serve``'s ``POST /get-online-features`` for the whole batch in one call.

Feast 0.67 cannot be installed beside modelyard (it requires pandas < 3 and
prometheus-client < 0.25): its feature server runs in a virtualenv of its own, which is also
how Feast serves clients in other languages; this side needs only the standard library.
"""

from __future__ import annotations

import http.client
import json
import logging
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import orjson

from modelyard.core.types import DataSource
from modelyard.errors import ConfigError, NotReadyError, StorageError
from modelyard.serving.features import EntityKey, FetchedFeatures

if TYPE_CHECKING:
    from modelyard.core.types import ModelVersion
    from modelyard.serving.features import FeatureSource, FeatureSourceFactory
    from modelyard.serving.http import ModelServer
    from modelyard.settings import FeastSettings

logger = logging.getLogger(__name__)

SERVICE_TAG = "feast.feature_service"
ENTITY_KEYS_TAG = "feast.entity_keys"
VIEWS_TAG = "feast.feature_views"
PROJECT_TAG = "feast.project"
#: uvicorn's factory for each worker process of a server whose versions may fetch features.
FACTORY = "modelyard.integrations.feast:app_from_env"


def feast_tags(info: dict[str, Any]) -> dict[str, str]:
    """The tags that declare a feature service on a version, from the worker's description."""
    keys = ",".join(f"{k['name']}:{k['dtype']}" for k in info["entity_keys"])
    views = ",".join(
        f"{v['name']}@{v['version']}:{v['sha256'][:16]}" for v in info["feature_views"]
    )
    return {
        SERVICE_TAG: info["service"], ENTITY_KEYS_TAG: keys, VIEWS_TAG: views,
        PROJECT_TAG: info["project"],
    }  # fmt: skip


def feast_source(info: dict[str, Any], repo: str) -> DataSource:
    """The lineage record of training data retrieved from the described feature service."""
    views = feast_tags(info)[VIEWS_TAG]
    return DataSource(
        kind="feast", uri=f"feast://{info['project']}/{info['service']}", repo=repo,
        feature_views=tuple(filter(None, views.split(","))),
    )  # fmt: skip


def entity_keys(version: ModelVersion) -> tuple[EntityKey, ...]:
    """The entity join keys a version's requests carry (``ENTITY_KEYS_TAG``)."""
    text = version.tags.get(ENTITY_KEYS_TAG, "")
    keys = []
    for item in filter(None, (part.strip() for part in text.split(","))):
        name, _, dtype = item.partition(":")
        keys.append(EntityKey(name, dtype or "string"))
    if not keys:
        raise ConfigError(
            f"Model {version.ref} names feature service {version.tags.get(SERVICE_TAG)!r} but no "
            f"entity keys; tag it {ENTITY_KEYS_TAG}='customer_id:int64' (comma-separated)."
        )
    return tuple(keys)


class FeastOnlineFeatures:
    """A ``FeatureSource`` over Feast's feature server: one keep-alive connection, used from the
    served version's model thread only."""

    def __init__(
        self, url: str, service: str, keys: tuple[EntityKey, ...], *, timeout_s: float
    ) -> None:
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ConfigError(
                "The Feast URL is not http(s)://HOST:PORT; give the feature server's address "
                "(feast serve) with --feast-url."
            )
        # shown in messages and logs: never a user or password the URL may carry
        host = parts.hostname + (f":{parts.port}" if parts.port else "")
        self.url = f"{parts.scheme}://{host}{parts.path}".rstrip("/")
        self.label = f"feature service '{service}' at {self.url}"
        self.entity_keys = keys
        self._service = service
        self._parts = parts
        self._path = parts.path.rstrip("/") + "/get-online-features"
        self._timeout_s = timeout_s
        self._conn: http.client.HTTPConnection | None = None

    def fetch(self, entities: dict[str, list[Any]]) -> FetchedFeatures:
        body = orjson.dumps(
            {"feature_service": self._service, "entities": entities, "full_feature_names": False}
        )
        status, data = self._post(body)
        if status == 404:
            raise NotReadyError(
                f"Feast at {self.url} has no feature service '{self._service}'; run 'feast apply' "
                "in its repository, or serve the model with the Feast that trained it."
            )
        if status != 200:
            raise StorageError(
                f"Feast at {self.url} answered {status} for feature service '{self._service}': "
                f"{_first_line(data)}; check the feature server's log."
            )
        answer = orjson.loads(data)
        names = answer["metadata"]["feature_names"]
        results = answer["results"]
        columns = {name: result["values"] for name, result in zip(names, results, strict=True)}
        n = len(next(iter(entities.values()), []))
        found = [False] * n
        for name, result in zip(names, results, strict=True):
            if name in entities:
                continue
            for row, state in enumerate(result["statuses"]):
                if state == "PRESENT":
                    found[row] = True
        return FetchedFeatures(columns, found)

    def _post(self, body: bytes) -> tuple[int, bytes]:
        for attempt in (1, 2):  # a keep-alive connection the server closed: once more, anew
            conn = self._conn or self._connect()
            try:
                conn.request(
                    "POST", self._path, body,
                    {"Content-Type": "application/json", "Accept": "application/json"},
                )  # fmt: skip
                response = conn.getresponse()
                return response.status, response.read()
            except (OSError, http.client.HTTPException) as exc:
                self.close()
                if attempt == 2 or isinstance(exc, TimeoutError):
                    raise StorageError(
                        f"Feast's feature server at {self.url} did not answer ({exc}); start it "
                        "('feast serve') or check --feast-url."
                    ) from exc
        raise AssertionError("unreachable")

    def _connect(self) -> http.client.HTTPConnection:
        parts = self._parts
        cls = http.client.HTTPSConnection if parts.scheme == "https" else http.client.HTTPConnection
        assert parts.hostname is not None
        self._conn = cls(parts.hostname, parts.port, timeout=self._timeout_s)
        return self._conn

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None


def online_features(settings: FeastSettings) -> FeatureSourceFactory:
    """The server's feature sources: a version tagged with a feature service gets one."""

    def source(version: ModelVersion) -> FeatureSource | None:
        service = version.tags.get(SERVICE_TAG)
        if not service:
            return None
        if not settings.url:
            raise ConfigError(
                f"Model {version.ref} takes its features from Feast feature service "
                f"{service!r}; give the feature server with --feast-url (or MODELYARD_FEAST__URL)."
            )
        keys = entity_keys(version)
        source = FeastOnlineFeatures(settings.url, service, keys, timeout_s=settings.timeout_s)
        logger.info("%s fetches its features from %s", version.ref, source.label)
        return source

    return source


def app_from_env() -> ModelServer:
    """uvicorn's factory in each worker process when the server fetches Feast features."""
    import os

    from modelyard.serving.server import SPEC_ENV, build_app
    from modelyard.settings import Settings

    spec = json.loads(os.environ[SPEC_ENV])
    settings = Settings.model_validate(spec["settings"])
    return build_app(
        settings, spec["refs"], spec.get("deployments", []),
        features=online_features(settings.feast),
    )  # fmt: skip


def _first_line(data: bytes) -> str:
    text = data.decode("utf-8", "replace").strip().strip('"').replace('\\"', '"')
    return (text.splitlines() or ["(empty)"])[0][:300]
