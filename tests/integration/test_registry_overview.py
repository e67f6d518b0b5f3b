"""The registry's lean listings (``registry.overview``) on real SQLite and PostgreSQL: the model
list's filters and columns, a model's version table, the alias timeline, and a registry of
200 models x 50 versions listed without reading any version's JSON documents."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta

import numpy as np
import pandas as pd
import pytest
import sqlalchemy as sa
from sklearn.linear_model import LinearRegression

from modelyard.errors import InvalidInputError, ModelNotFoundError
from modelyard.registry import Registry
from modelyard.registry.overview import (
    ModelSummary,
    alias_spans,
    model_summaries,
    version_summaries,
)
from modelyard.store.schema import aliases, model_versions, models, version_tags


@pytest.fixture(scope="module")
def data() -> pd.DataFrame:
    rng = np.random.default_rng(0)
    return pd.DataFrame(rng.normal(size=(40, 2)), columns=["a", "b"])


def _register(registry: Registry, data: pd.DataFrame, name: str, **kwargs: object) -> int:
    model = LinearRegression().fit(data, data["a"])
    return registry.register(model, name=name, data=data, **kwargs).version  # type: ignore[arg-type]  # the test's keyword arguments


def test_models_list_with_latest_flavor_tags_aliases_and_counts(
    registry: Registry, data: pd.DataFrame
) -> None:
    _register(registry, data, "churn", tags={"team": "risk"})
    _register(registry, data, "churn", tags={"team": "growth", "stage": "b"}, metrics={"r2": 1})
    _register(registry, data, "fraud-Detect")
    registry.set_alias("churn/1", "production")
    page = model_summaries(registry.db)
    assert [m.name for m in page.items] == ["fraud-Detect", "churn"]  # newest first
    churn = page.items[1]
    assert isinstance(churn, ModelSummary)
    assert (churn.latest_version, churn.versions, churn.flavor) == (2, 2, "sklearn")
    assert churn.aliases == {"production": 1}
    assert churn.tags == {"stage": "b", "team": "growth"}  # the latest version's tags
    assert churn.registered_at is not None and churn.registered_at.tzinfo is not None
    assert page.total == 2


def test_models_filters_match_any_version(registry: Registry, data: pd.DataFrame) -> None:
    _register(registry, data, "churn", tags={"team": "risk"})
    _register(registry, data, "churn")
    _register(registry, data, "fraud", tags={"team": "ops"})
    _register(registry, data, "churn_5")
    _register(registry, data, "churnx5")
    registry.set_alias("fraud/1", "staging")

    def names(**filters: str) -> list[str]:
        return sorted(m.name for m in model_summaries(registry.db, **filters).items)

    assert names(search="URN") == ["churn", "churn_5", "churnx5"]  # any case, anywhere
    assert names(search="n_5") == ["churn_5"]  # "_" is no wildcard
    assert names(prefix="fr") == ["fraud"]
    assert names(tag="team") == ["churn", "fraud"]
    assert names(tag="team=risk") == ["churn"]
    assert names(tag="team=nobody") == []
    assert names(alias="staging") == ["fraud"]
    assert names(flavor="sklearn", prefix="churn") == ["churn", "churn_5", "churnx5"]
    assert names(flavor="onnx") == []


def test_models_pages(registry: Registry, data: pd.DataFrame) -> None:
    for name in ("m1", "m2", "m3"):
        _register(registry, data, name)
    first = model_summaries(registry.db, page=1, page_size=2)
    second = model_summaries(registry.db, page=2, page_size=2)
    assert [m.name for m in first.items] == ["m3", "m2"] and first.total == 3
    assert [m.name for m in second.items] == ["m1"] and second.next_page is None
    assert model_summaries(registry.db, page=3, page_size=2).items == ()
    with pytest.raises(InvalidInputError, match="pages start at 1"):
        model_summaries(registry.db, page=0)


def test_version_table_newest_first_with_metrics_and_aliases(
    registry: Registry, data: pd.DataFrame
) -> None:
    for i in range(3):
        _register(registry, data, "churn", metrics={"r2": 0.5 + i / 10})
    registry.set_alias("churn/2", "production")
    registry.set_alias("churn/2", "champion")
    registry.archive("churn/1")
    page = version_summaries(registry.db, "churn", page=1, page_size=2)
    assert [v.version for v in page.items] == [3, 2] and page.total == 3
    assert page.items[1].aliases == ("champion", "production")
    assert page.items[0].metrics == {"r2": pytest.approx(0.7)}
    last = version_summaries(registry.db, "churn", page=2, page_size=2).items
    assert [(v.version, v.archived) for v in last] == [(1, True)]
    with pytest.raises(ModelNotFoundError, match="No model named 'nope'"):
        version_summaries(registry.db, "nope")


def test_alias_spans_say_which_version_held_each_alias_when(
    registry: Registry, data: pd.DataFrame
) -> None:
    for _ in range(3):
        _register(registry, data, "churn")
    registry.set_alias("churn/1", "production")
    registry.set_alias("churn/2", "production", reason="better auc")
    registry.set_alias("churn/3", "staging")
    registry.rollback("churn", "production", reason="alert")
    spans = alias_spans(registry.history("churn"))
    production = [s for s in spans if s.alias == "production"]
    assert [s.version for s in production] == [1, 2, 1]  # newest first
    assert production[0].end is None and production[0].rollback
    assert production[0].reason == "rollback from version 2: alert"
    assert production[1].end == production[0].start and production[1].reason == "better auc"
    assert production[2].end == production[1].start and not production[2].rollback
    assert [s.version for s in spans if s.alias == "staging"] == [3]


def _bulk(registry: Registry, n_models: int, n_versions: int) -> None:
    """Rows straight into the tables (registering 10,000 versions would take minutes), each
    version with a signature and lineage as large as a 200-column model's."""
    big = {"kind": "columns", "inputs": [{"name": f"c{i}", "dtype": "float64"} for i in range(200)]}
    start = datetime(2026, 1, 1, tzinfo=UTC)
    with registry.db.write() as conn:
        conn.execute(
            sa.insert(models),
            [{"name": f"model-{m:03d}", "latest_version": n_versions,
              "created_at": start, "updated_at": start + timedelta(minutes=m)}
             for m in range(n_models)],
        )  # fmt: skip
        ids = dict(conn.execute(sa.select(models.c.name, models.c.id)).all())  # type: ignore[arg-type]  # (name, id) rows
        conn.execute(
            sa.insert(model_versions),
            [{"model_id": ids[f"model-{m:03d}"], "version": v, "flavor": "sklearn",
              "signature": big, "flavor_meta": {"model": big}, "metrics": {"auc": v / 100},
              "params": {}, "lineage": {"packages": {"x": "1"}}, "created_by": "bulk",
              "created_at": start + timedelta(minutes=m, seconds=v)}
             for m in range(n_models) for v in range(1, n_versions + 1)],
        )  # fmt: skip
        latest = conn.execute(
            sa.select(model_versions.c.id).where(model_versions.c.version == n_versions)
        ).scalars()
        conn.execute(sa.insert(version_tags), [{"version_id": i, "key": "team", "value": "a"}
                                               for i in latest])  # fmt: skip
        conn.execute(sa.insert(aliases), [{"model_id": i, "alias": "production", "version": 1,
                                           "updated_at": start} for i in ids.values()])  # fmt: skip


@pytest.mark.slow
def test_two_hundred_models_of_fifty_versions_list_quickly(registry: Registry) -> None:
    _bulk(registry, 200, 50)
    started = time.perf_counter()
    page = model_summaries(registry.db, page=2, page_size=50)
    listed_s = time.perf_counter() - started
    assert page.total == 200 and len(page.items) == 50
    first = page.items[0]
    assert (first.name, first.latest_version, first.versions) == ("model-149", 50, 50)
    assert first.tags == {"team": "a"} and first.aliases == {"production": 1}
    filtered = model_summaries(registry.db, tag="team=a", alias="production", search="MODEL-00")
    assert filtered.total == 10
    started = time.perf_counter()
    versions = version_summaries(registry.db, "model-007", page=2, page_size=25)
    versions_s = time.perf_counter() - started
    assert [v.version for v in versions.items][:2] == [25, 24]
    # generous bounds for a shared 2-core machine; measured here well under 0.1 s each
    assert listed_s < 2 and versions_s < 2, (listed_s, versions_s)
