"""Rollback walks back through an alias's history (issue 11, A6): after 1->2->3, rollbacks give
3->2, then 2->1, then "nothing earlier", never 3->2->3; a move after a rollback is undone first."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from sklearn.linear_model import LogisticRegression

import modelyard
from modelyard.errors import AliasNotFoundError, ConflictError
from modelyard.registry import Registry
from modelyard.settings import Settings
from tests.integration.test_rollout_cli import env, yard

__all__ = ["env"]  # the fixture, imported for pytest

X = np.random.default_rng(3).normal(size=(40, 3))


def register_versions(registry: Registry, count: int) -> None:
    for i in range(count):
        model = LogisticRegression().fit(X, (X[:, i % 3] > 0).astype(int))
        registry.register(model, name="churn", data=X)


def moves(registry: Registry) -> list[tuple[int | None, int | None]]:
    return [(e.from_version, e.to_version) for e in reversed(registry.history("churn"))]


def test_rollbacks_walk_back_and_stop_at_the_first_version(registry: Registry) -> None:
    register_versions(registry, 4)
    for version in (1, 2, 3):
        registry.set_alias(f"churn/{version}", "production")
    assert registry.rollback("churn", "production").to_version == 2
    event = registry.rollback("churn", "production", reason="still bad")
    assert (event.from_version, event.to_version) == (2, 1)
    assert event.reason == "rollback from version 2: still bad"
    before = moves(registry)
    with pytest.raises(ConflictError) as info:
        registry.rollback("churn", "production")
    assert str(info.value) == (
        "Alias 'production' of 'churn' has no earlier version to roll back to: nothing earlier "
        "than version 1, where it was first set, and every move since has been rolled back; "
        "move it with 'yard models alias churn/VERSION production' (modelyard.set_alias)."
    )
    assert moves(registry) == before  # nothing changed
    assert registry.get_version("churn@production").version == 1

    registry.set_alias("churn/4", "production")  # a new move after the rollbacks
    registry.set_alias("churn/3", "production")
    for current, earlier in ((3, 4), (4, 1)):  # the preview says what the rollback then does
        assert registry.rollback_target("churn", "production") == (current, earlier)
        event = registry.rollback("churn", "production")
        assert (event.from_version, event.to_version) == (current, earlier)
    with pytest.raises(ConflictError, match="nothing earlier than version 1"):
        registry.rollback_target("churn", "production")
    with pytest.raises(ConflictError, match="nothing earlier than version 1"):
        registry.rollback("churn", "production")
    assert moves(registry) == [
        (None, 1), (1, 2), (2, 3), (3, 2), (2, 1), (1, 4), (4, 3), (3, 4), (4, 1),
    ]  # fmt: skip
    undone = [e.undoes for e in reversed(registry.history("churn"))]
    ids = [e.id for e in reversed(registry.history("churn"))]
    assert undone == [None, None, None, ids[2], ids[1], None, None, ids[6], ids[5]]


def test_an_alias_set_once_has_nothing_to_roll_back(registry: Registry) -> None:
    """The end of the README's Python tour: ``modelyard.rollback`` on an alias set once."""
    register_versions(registry, 1)
    modelyard.set_registry(registry)
    try:
        modelyard.set_alias("churn/1", "production", reason="first release")
        with pytest.raises(ConflictError) as info:
            modelyard.rollback("churn", "production", reason="bad canary")
    finally:
        modelyard.set_registry(None)
    assert str(info.value) == (
        "Alias 'production' of 'churn' has no earlier version to roll back to: it was set to "
        "version 1 and has not moved since; move it with 'yard models alias churn/VERSION "
        "production' (modelyard.set_alias)."
    )
    registry.delete_alias("churn", "production")
    with pytest.raises(AliasNotFoundError, match="has no alias 'production', so there is nothing"):
        registry.rollback("churn", "production")
    assert moves(registry) == [(None, 1), (1, None)]


@pytest.fixture
def cli_registry(env: dict[str, str]) -> Iterator[Registry]:
    reg = Registry(Settings(home=Path(env["MODELYARD_HOME"])), identity="setup")
    register_versions(reg, 3)
    yield reg
    reg.close()


def test_the_cli_walks_back(env: dict[str, str], cli_registry: Registry) -> None:
    for version in (1, 2, 3):
        yard(env, "models", "alias", f"churn/{version}", "production")
    out = yard(env, "models", "rollback", "churn", "production").stdout
    assert out == "churn@production: version 3 -> version 2 (rollback from version 3)\n"
    out = yard(env, "models", "rollback", "churn", "production", "--reason", "worse").stdout
    assert out == "churn@production: version 2 -> version 1 (rollback from version 2: worse)\n"
    bad = yard(env, "models", "rollback", "churn", "production", check=1)
    assert bad.stderr.startswith(
        "error: Alias 'production' of 'churn' has no earlier version to roll back to: nothing "
        "earlier than version 1"
    )
    assert len(bad.stderr.splitlines()) == 1
    events = json.loads(yard(env, "models", "history", "churn", "--json").stdout)
    assert [(e["from_version"], e["to_version"]) for e in events] == [
        (2, 1), (3, 2), (2, 3), (1, 2), (None, 1),
    ]  # fmt: skip
    assert [e["undoes"] for e in events] == [events[3]["id"], events[2]["id"], None, None, None]
