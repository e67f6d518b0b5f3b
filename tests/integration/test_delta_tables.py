"""Delta Lake tables as training data: ``load_table("delta://...", version=N)`` in a real pipeline
run (real deltalake tables in tmp_path), the table version in the lineage and the cache key, and
``yard models show`` saying how to read the same data again."""

from __future__ import annotations

import subprocess
from pathlib import Path

import deltalake  # the delta extra, in dev: make test fails without it, never skips
import pandas as pd
import pytest
from sklearn.linear_model import LogisticRegression

from modelyard.core.types import DataSource
from modelyard.errors import ConfigError, InvalidInputError, NotFoundError
from modelyard.pipelines import LocalExecutor, pipeline, run, step
from modelyard.pipelines.builtin import load_table, register, split
from modelyard.registry import Registry
from modelyard.registry.compare import compare_versions
from modelyard.settings import Settings
from tests.e2e.ui.conftest import UIServer
from tests.integration._server import YARD, server_env


@step
def fit(table: pd.DataFrame) -> LogisticRegression:
    return LogisticRegression().fit(table[["x"]], table["y"])


@pipeline
def train(data: str = "", version: int | None = None) -> None:
    parts = split(load_table(data, version=version), target="y", test_size=0.25, seed=0)
    register(fit(parts.train), parts.train, name="churn", target="y")


def frame(start: int, rows: int) -> pd.DataFrame:
    x = [float(i) for i in range(start, start + rows)]
    return pd.DataFrame({"x": x, "y": [i % 2 for i in range(rows)]})


@pytest.fixture
def table(tmp_path: Path) -> Path:
    folder = tmp_path / "customers"
    deltalake.write_deltalake(folder, frame(0, 40))
    deltalake.write_deltalake(folder, frame(40, 20), mode="append")  # version 1: 60 rows
    return folder


def make_settings(home: Path) -> Settings:
    return Settings(
        home=home, database_url=f"sqlite:///{home / 'modelyard.db'}",
        artifact_root=str(home / "artifacts"),
    )  # fmt: skip


def registry_at(home: Path) -> Registry:
    return Registry(make_settings(home))


def test_a_version_trained_on_a_delta_table_records_the_table_version(
    tmp_path: Path, table: Path
) -> None:
    home = tmp_path / "home"
    registry = registry_at(home)
    uri = f"delta://{table}"

    def go(**params: object) -> None:
        done = run(train, registry=registry, executor=LocalExecutor(workers=1),
                   params={"data": uri, **params})  # fmt: skip
        assert done.status == "finished"

    go(version=0)
    first = registry.get_version("churn/1")
    assert first.lineage.data_sources == (DataSource(kind="delta", uri=uri, version=0),)
    assert first.lineage.dataset is not None and first.lineage.dataset.rows == 30  # 40 * 0.75
    go(version=0)  # the same table version: a cache hit registers nothing
    assert registry.get_version("churn").version == 1
    go()  # the latest version (1) is another cache key
    latest = registry.get_version("churn/2")
    assert latest.lineage.data_sources[0].version == 1
    assert latest.lineage.dataset is not None and latest.lineage.dataset.rows == 45
    rows = {r.name: r for r in compare_versions(first, latest).lineage}
    assert (rows["data source 1"].a, rows["data source 1"].b) == (
        f"{uri} version 0",
        f"{uri} version 1",
    )
    registry.close()

    show = subprocess.run(
        [YARD, "models", "show", "churn/1"], env=server_env(home, COLUMNS="400"),
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert show.returncode == 0, show.stderr
    assert f"{uri} version 0" in show.stdout
    dashboard = UIServer(make_settings(home))  # the version page's lineage lists it too
    try:
        page = dashboard.get("/ui/models/churn/versions/2").text
    finally:
        dashboard.stop()
    assert f'data-testid="data-source"><code>{uri} version 1</code>' in page
    # and what the line names gives the same rows back
    again = load_table(uri, version=0)
    assert len(again) == 40 and again["x"].max() == 39.0


def test_bad_delta_inputs_get_one_line_errors(tmp_path: Path, table: Path) -> None:
    uri = f"delta://{table}"
    with pytest.raises(NotFoundError, match=r"has no version 7 \(versions 0 to 1\)"):
        load_table(uri, version=7)
    missing = tmp_path / "nowhere"
    with pytest.raises(NotFoundError, match=rf"No Delta table at 'delta://{missing}'"):
        load_table(f"delta://{missing}")
    with pytest.raises(InvalidInputError, match="is not a whole number; pass version=N"):
        load_table(uri, version="v1")
    plain = tmp_path / "plain.csv"
    frame(0, 4).to_csv(plain, index=False)
    with pytest.raises(InvalidInputError, match="applies to delta:// tables and DVC-tracked"):
        load_table(str(plain), version=1)
    with pytest.raises(InvalidInputError, match="names no table"):
        load_table("delta://")
    # a plain file still reads as before, with no data source attached
    assert "modelyard.data_sources" not in load_table(str(plain)).attrs


def test_a_missing_deltalake_names_the_extra(table: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import sys

    monkeypatch.setitem(sys.modules, "deltalake", None)  # what an absent package looks like
    with pytest.raises(ConfigError, match=r"pip install 'modelyard\[delta\]'"):
        load_table(f"delta://{table}")
