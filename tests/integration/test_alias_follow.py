"""A deployment whose stable route follows an alias follows its moves (issue 11, A5):
``yard models alias`` and ``yard models rollback`` change what it serves (a new revision the
servers load, warm and swap in), in the same transaction as the alias move. While it rolls out a
candidate, or when the alias would be removed, the move is refused, naming the deployment."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import pytest
from sklearn.linear_model import LogisticRegression

from modelyard import rollout
from modelyard.errors import ConflictError
from modelyard.registry import Registry
from modelyard.settings import Settings
from tests.integration._server import Server, server_env
from tests.integration.test_rollout_cli import env, yard

__all__ = ["env"]  # the fixture, imported for pytest

X = np.random.default_rng(6).normal(size=(40, 3))
BODY = {"inputs": [{"name": "x", "shape": [1, 3], "datatype": "FP64", "data": [[0.1, 0.2, 0.3]]}]}


def register_versions(registry: Registry, count: int) -> None:
    for i in range(count):
        model = LogisticRegression().fit(X, (X[:, i % 3] > 0).astype(int))
        registry.register(model, name="churn", data=X)


@pytest.fixture
def cli_registry(env: dict[str, str]) -> Iterator[Registry]:
    reg = Registry(Settings(home=Path(env["MODELYARD_HOME"])), identity="setup")
    register_versions(reg, 3)
    yield reg
    reg.close()


def deployments(env: dict[str, str]) -> list[tuple[str, int, str | None, int]]:
    listed = json.loads(yard(env, "rollout", "list", "--json").stdout)
    return [(d["name"], d["stable_version"], d["stable_alias"], d["revision"]) for d in listed]


def test_alias_moves_and_rollbacks_move_the_deployments_that_follow(
    env: dict[str, str], cli_registry: Registry
) -> None:
    yard(env, "models", "alias", "churn/1", "production")
    yard(env, "deploy", "web", "--model", "churn@production")
    yard(env, "deploy", "pinned", "--model", "churn/1")
    out = yard(env, "models", "alias", "churn/3", "production", "--reason", "better auc").stdout
    assert out == "churn@production: version 1 -> version 3 (better auc)\n"
    assert deployments(env) == [("pinned", 1, None, 1), ("web", 3, "production", 2)]
    yard(env, "models", "rollback", "churn", "production")
    assert deployments(env) == [("pinned", 1, None, 1), ("web", 1, "production", 3)]
    events = json.loads(yard(env, "rollout", "history", "web", "--json").stdout)
    assert [(e["action"], e["revision"], e["actor"], e["reason"]) for e in events] == [
        ("follow", 3, "cli-user", "rollback from version 3"),
        ("follow", 2, "cli-user", "better auc"),
        ("deploy", 1, "cli-user", None),
    ]
    assert events[0]["detail"] == {"alias": "churn@production", "from": "churn/3", "to": "churn/1"}
    assert "follow" in yard(env, "rollout", "history", "web").stdout

    yard(env, "models", "alias", "churn/3", "production")
    yard(env, "deploy", "web", "--canary", "churn/2", "--weight", "10")
    for args in (["models", "alias", "churn/3", "production"],
                 ["models", "rollback", "churn", "production"]):  # fmt: skip
        bad = yard(env, *args, check=1)
        assert bad.stderr == (
            "error: Deployment 'web' follows churn@production and is rolling out candidate "
            "churn/2 (rolling); promote it with 'yard rollout promote web' or abort it with "
            "'yard rollout abort web --reason ...' before moving the alias.\n"
        )
    assert cli_registry.get_version("churn@production").version == 3  # nothing moved
    assert len(cli_registry.history("churn")) == 4
    yard(env, "rollout", "promote", "web")  # promotion moves the alias and the deployment
    assert cli_registry.get_version("churn@production").version == 2
    assert deployments(env)[1][:3] == ("web", 2, "production")


def test_removing_a_followed_alias_is_refused(registry: Registry) -> None:
    register_versions(registry, 2)
    registry.set_alias("churn/2", "production")
    rollout.deploy(registry, "web", model_ref="churn@production")
    with pytest.raises(ConflictError) as info:
        registry.delete_alias("churn", "production")
    assert str(info.value) == (
        "Deployment 'web' follows churn@production; pin it to a version first with 'yard deploy "
        "web --model churn/2', then remove the alias."
    )
    assert registry.get_version("churn@production").version == 2
    registry.set_alias("churn/1", "production")  # the Python API follows too
    d = rollout.get_deployment(registry.db, "web")
    assert (d.stable_ref, d.revision) == ("churn/1", 2)


def test_a_server_swaps_to_the_version_the_alias_moved_to(
    env: dict[str, str], cli_registry: Registry, tmp_path: Path
) -> None:
    yard(env, "models", "alias", "churn/1", "production")
    yard(env, "deploy", "web", "--model", "churn@production")
    home = Path(env["MODELYARD_HOME"])
    with Server(home, "--deployment", "web", env=server_env(home)) as s:

        def served() -> str:
            r = httpx.post(f"{s.url}/v2/models/web/infer", json=BODY, timeout=30)
            assert r.status_code == 200, r.text
            return r.headers["x-model-version"]

        def wait_for(version: str) -> None:
            deadline = time.monotonic() + 60
            while served() != version:
                assert time.monotonic() < deadline, f"still not {version}: {s.log.read_text()}"
                time.sleep(0.1)

        assert served() == "1"
        yard(env, "models", "alias", "churn/3", "production")
        wait_for("3")
        yard(env, "models", "rollback", "churn", "production")
        wait_for("1")
