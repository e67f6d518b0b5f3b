"""Where ``yard container serve`` finds its models: the bundle it is given (a folder or an fsspec
URL, as Vertex AI's AIP_STORAGE_URI is), /opt/ml/model where SageMaker puts one, or the shared
registry; what it serves and on which port."""

from __future__ import annotations

from pathlib import Path

import fsspec
import pandas as pd
import pytest
from sklearn.linear_model import LinearRegression

from modelyard.deploy import resolve_target
from modelyard.deploy.bundle import write_bundle
from modelyard.deploy.container import plan_container
from modelyard.errors import ConfigError, InvalidInputError
from modelyard.registry import Registry
from modelyard.settings import Settings

X = pd.DataFrame({"a": [0.0, 1.0, 2.0], "b": [1.0, 0.0, 1.0]})


@pytest.fixture
def bundle(sqlite_registry: Registry, tmp_path: Path) -> Path:
    sqlite_registry.register(LinearRegression().fit(X, X["a"]), name="lin", data=X)
    sqlite_registry.set_alias("lin/1", "production")
    target = resolve_target(sqlite_registry, "lin@production", None)
    write_bundle(sqlite_registry, target, tmp_path / "bundle")
    return tmp_path / "bundle"


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return Settings(home=tmp_path / "scratch" / ".modelyard")


def test_a_bundle_folder_is_verified_and_served_from_a_copy_of_its_database(
    bundle: Path, settings: Settings, tmp_path: Path
) -> None:
    plan = plan_container(settings, bundle=str(bundle), model_dir=tmp_path / "none")
    assert plan.refs == ["lin@production"] and plan.deployments == []  # the bundle's own target
    copy = settings.home_dir / "container" / "modelyard.db"
    assert plan.settings.database_url == f"sqlite:///{copy}" and copy.is_file()
    assert plan.settings.artifact_root == str(bundle / "artifacts")
    assert "files verified" in plan.describe()
    registry = Registry(plan.settings)
    assert registry.load("lin@production").predict(X).shape == (3,)
    registry.close()
    pinned = plan_container(settings, bundle=str(bundle), ref="lin/1", http_port=9000)
    assert pinned.refs == ["lin/1"] and pinned.settings.serving.port == 9000


def test_a_bundle_url_is_copied_under_home_first(
    bundle: Path, settings: Settings, tmp_path: Path
) -> None:
    fs = fsspec.filesystem("memory")
    for path in bundle.rglob("*"):
        if path.is_file():
            fs.pipe_file(f"/models/lin/{path.relative_to(bundle).as_posix()}", path.read_bytes())
    try:
        plan = plan_container(settings, bundle="memory://models/lin", model_dir=tmp_path / "x")
    finally:
        fs.rm("/models", recursive=True)
    copied = settings.home_dir / "container" / "bundle"
    assert plan.settings.artifact_root == str(copied / "artifacts")
    assert (copied / "manifest.json").is_file() and plan.refs == ["lin@production"]


def test_sagemakers_model_folder_is_used_when_it_holds_a_bundle(
    bundle: Path, settings: Settings, tmp_path: Path
) -> None:
    plan = plan_container(settings, model_dir=bundle)
    assert plan.settings.artifact_root == str(bundle / "artifacts")
    empty = tmp_path / "opt-ml-model"
    empty.mkdir()  # SageMaker without ModelDataUrl: an empty folder, so the registry it is
    with pytest.raises(ConfigError, match="MODELYARD_DATABASE_URL is not set"):
        plan_container(settings, ref="lin/1", model_dir=empty)


def test_the_shared_registry_needs_a_target_and_a_database(
    settings: Settings, tmp_path: Path
) -> None:
    shared = settings.model_copy(update={"database_url": f"sqlite:///{tmp_path / 'm.db'}"})
    plan = plan_container(shared, deployment="api", model_dir=tmp_path)
    assert plan.deployments == ["api"] and plan.settings.database_url == shared.database_url
    with pytest.raises(ConfigError, match="Nothing to serve: set MODELYARD_CONTAINER_REF"):
        plan_container(shared, model_dir=tmp_path)
    with pytest.raises(InvalidInputError, match="set one"):
        plan_container(shared, ref="lin/1", deployment="api", model_dir=tmp_path)
    assert not settings.home_dir.exists()  # nothing is written for the shared registry
