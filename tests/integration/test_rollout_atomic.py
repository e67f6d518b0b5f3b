"""Promotion, abort and automatic rollback are one transaction each (issue 11, A4): a fault
injected between their steps (a real database trigger failing the later statement) leaves the
deployment, its audit log and the alias exactly as they were."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any

import numpy as np
import pytest
import sqlalchemy as sa
from sklearn.linear_model import LogisticRegression

from modelyard import rollout
from modelyard.registry import Registry
from modelyard.rollout.buckets import LATENCY_BUCKETS

X = np.random.default_rng(5).normal(size=(60, 3))


@pytest.fixture
def reg(registry: Registry) -> Registry:
    """churn/1 (production) and churn/2; deployment web follows churn@production, churn/2 is
    its canary at 100%."""
    for i in range(2):
        model = LogisticRegression().fit(X, (X[:, i] > 0).astype(int))
        registry.register(model, name="churn", data=X)
    registry.set_alias("churn/1", "production")
    rollout.deploy(registry, "web", model_ref="churn@production")
    rollout.start_candidate(
        registry, "web", ref="churn/2", mode="canary", weight=100, auto=True,
        policy={"min_requests": 10},
    )  # fmt: skip
    return registry


@contextmanager
def failing_inserts(registry: Registry, table: str) -> Iterator[None]:
    """Every INSERT into ``table`` fails with 'injected fault' while the block runs."""
    engine = registry.db.engine
    if engine.dialect.name == "sqlite":
        create = [f"CREATE TRIGGER inject BEFORE INSERT ON {table} "
                  "BEGIN SELECT RAISE(ABORT, 'injected fault'); END"]  # fmt: skip
        drop = ["DROP TRIGGER inject"]
    else:
        create = [
            "CREATE FUNCTION inject() RETURNS trigger AS $$ BEGIN "
            "RAISE EXCEPTION 'injected fault'; END $$ LANGUAGE plpgsql",
            f"CREATE TRIGGER inject BEFORE INSERT ON {table} FOR EACH ROW "
            "EXECUTE FUNCTION inject()",
        ]
        drop = [f"DROP TRIGGER inject ON {table}", "DROP FUNCTION inject()"]
    with engine.begin() as conn:
        for statement in create:
            conn.execute(sa.text(statement))
    try:
        yield
    finally:
        with engine.begin() as conn:
            for statement in drop:
                conn.execute(sa.text(statement))


def state(registry: Registry) -> tuple[Any, ...]:
    return (
        rollout.get_deployment(registry.db, "web"),
        rollout.history(registry.db, "web"),
        registry.history("churn"),
        registry.get_version("churn@production").version,
    )


def test_a_promotion_whose_alias_move_fails_changes_nothing(reg: Registry) -> None:
    before = state(reg)
    with failing_inserts(reg, "alias_events"), pytest.raises(Exception, match="injected fault"):
        rollout.promote(reg, "web", reason="looks good")
    assert state(reg) == before
    d = rollout.promote(reg, "web", reason="looks good")  # and it works once the fault is gone
    assert (d.stable_ref, d.state, d.revision) == ("churn/2", "promoted", before[0].revision + 1)
    assert reg.get_version("churn@production").version == 2
    assert [e.action for e in rollout.history(reg.db, "web")] == ["promote", "start", "deploy"]
    assert [(e.from_version, e.to_version) for e in reg.history("churn")] == [(1, 2), (None, 1)]


def test_a_promotion_whose_audit_row_fails_moves_no_alias(reg: Registry) -> None:
    before = state(reg)
    with failing_inserts(reg, "deployment_events"), pytest.raises(Exception, match="injected"):
        rollout.promote(reg, "web")
    assert state(reg) == before


def test_an_abort_whose_audit_row_fails_changes_nothing(reg: Registry) -> None:
    before = state(reg)
    with failing_inserts(reg, "deployment_events"), pytest.raises(Exception, match="injected"):
        rollout.abort(reg, "web", reason="latency")
    assert state(reg) == before


def test_an_automatic_rollback_and_promotion_that_fail_change_nothing(reg: Registry) -> None:
    d = rollout.get_deployment(reg.db, "web")
    counts = [0] * LATENCY_BUCKETS
    counts[3] = 50
    rollout.record_route_stats(
        reg.db, deployment="web", revision=d.revision, replica="a",
        window_start=datetime.now(UTC), route="candidate", requests=50, errors=25,
        latency_counts=counts, output_counts={"1": 25},
    )  # fmt: skip
    before = state(reg)
    with failing_inserts(reg, "deployment_events"), pytest.raises(Exception, match="injected"):
        rollout.step(reg, "web")
    assert state(reg) == before
    assert rollout.step(reg, "web").action == "rollback"
    assert rollout.get_deployment(reg.db, "web").state == "rolled_back"

    rollout.start_candidate(reg, "web", ref="churn/2", mode="canary", weight=100, auto=True,
                            policy={"min_requests": 10})  # fmt: skip
    d = rollout.get_deployment(reg.db, "web")
    rollout.record_route_stats(
        reg.db, deployment="web", revision=d.revision, replica="a",
        window_start=datetime.now(UTC), route="candidate", requests=50, errors=0,
        latency_counts=counts, output_counts={"1": 25, "0": 25},
    )  # fmt: skip
    before = state(reg)
    with failing_inserts(reg, "alias_events"), pytest.raises(Exception, match="injected"):
        rollout.step(reg, "web")
    assert state(reg) == before
    assert rollout.step(reg, "web").action == "promote"
    assert reg.get_version("churn@production").version == 2
