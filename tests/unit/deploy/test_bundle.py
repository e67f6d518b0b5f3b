"""A bundle is a registry of the served versions only: it keeps their numbers, aliases and the
deployment, opens as a registry that loads them, and refuses any file that changed."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from sklearn.linear_model import LinearRegression

from modelyard.deploy import resolve_target
from modelyard.deploy.bundle import (
    DATABASE,
    MANIFEST,
    open_bundle,
    read_manifest,
    verify_bundle,
    write_bundle,
)
from modelyard.errors import AliasNotFoundError, IntegrityError, InvalidInputError
from modelyard.registry import Registry
from modelyard.rollout import deploy, get_deployment, start_candidate

X = pd.DataFrame({"a": [0.0, 1.0, 2.0, 3.0], "b": [1.0, 0.0, 1.0, 0.0]})


def fit(scale: float) -> LinearRegression:
    return LinearRegression().fit(X, scale * X["a"] + X["b"])


@pytest.fixture
def three_versions(sqlite_registry: Registry) -> Registry:
    for scale in (1.0, 2.0, 3.0):
        sqlite_registry.register(fit(scale), name="lin", data=X)
    sqlite_registry.set_alias("lin/2", "production")
    sqlite_registry.set_alias("lin/3", "staging")
    return sqlite_registry


def opened(root: Path, tmp_path: Path) -> Registry:
    _, database_url, artifact_root = open_bundle(root, tmp_path / "work")
    return Registry(database_url=database_url, artifact_root=artifact_root)


def test_a_bundle_holds_only_the_served_version_under_its_number_and_aliases(
    three_versions: Registry, tmp_path: Path
) -> None:
    target = resolve_target(three_versions, "lin@production", None)
    manifest = write_bundle(three_versions, target, tmp_path / "bundle")
    assert manifest.versions == ("lin/2",) and manifest.target.ref == "lin@production"
    files = {f.path for f in manifest.files}
    assert DATABASE in files
    assert {f"artifacts/sha256/{f.sha256[:2]}/{f.sha256}" for f in target.versions[0].files} <= (
        files
    )
    assert not any(
        p.name.endswith(("-wal", "-shm", ".lock")) for p in (tmp_path / "bundle").iterdir()
    )

    inside = opened(tmp_path / "bundle", tmp_path)
    assert inside.get_version("lin@production").version == 2
    assert inside.get_version("lin").version == 2  # the newest version the bundle holds
    with pytest.raises(AliasNotFoundError):
        inside.get_version("lin@staging")  # points at a version left out
    assert [v.version for v in inside.search_versions(name="lin").items] == [2]
    model = inside.load("lin@production")
    np.testing.assert_allclose(model.predict(X), fit(2.0).predict(X))
    inside.close()


def test_a_deployment_bundle_keeps_both_routes_and_the_deployment(
    three_versions: Registry, tmp_path: Path
) -> None:
    deploy(three_versions, "api", model_ref="lin@production")
    start_candidate(three_versions, "api", ref="lin/3", mode="canary", weight=10)
    target = resolve_target(three_versions, None, "api")
    manifest = write_bundle(three_versions, target, tmp_path / "bundle")
    assert manifest.versions == ("lin/2", "lin/3") and manifest.target.deployment == "api"
    inside = opened(tmp_path / "bundle", tmp_path)
    copied = get_deployment(inside.db, "api")
    original = get_deployment(three_versions.db, "api")
    assert (copied.stable_ref, copied.candidate_ref, copied.weight, copied.revision) == (
        original.stable_ref, original.candidate_ref, original.weight, original.revision,
    )  # fmt: skip
    assert inside.get_version("lin@staging").version == 3
    inside.close()


def test_every_altered_or_missing_file_is_refused_by_name(
    three_versions: Registry, tmp_path: Path
) -> None:
    root = tmp_path / "bundle"
    manifest = write_bundle(three_versions, resolve_target(three_versions, "lin/1", None), root)
    assert verify_bundle(root) == manifest
    blob = next(f.path for f in manifest.files if f.path.startswith("artifacts/"))
    original = (root / blob).read_bytes()
    (root / blob).write_bytes(original[:-1] + bytes([original[-1] ^ 1]))
    with pytest.raises(IntegrityError, match=f"{blob} of the bundle at .* was altered"):
        open_bundle(root, tmp_path / "work")
    assert not (tmp_path / "work" / DATABASE).exists()  # refused before anything is opened
    (root / blob).unlink()
    with pytest.raises(IntegrityError, match=f"missing {blob}"):
        verify_bundle(root)


def test_a_manifest_cannot_name_files_outside_the_bundle(
    three_versions: Registry, tmp_path: Path
) -> None:
    root = tmp_path / "bundle"
    write_bundle(three_versions, resolve_target(three_versions, "lin/1", None), root)
    raw = json.loads((root / MANIFEST).read_text())
    raw["files"][0]["path"] = "../../etc/passwd"
    (root / MANIFEST).write_text(json.dumps(raw))
    with pytest.raises(IntegrityError, match="outside the bundle"):
        read_manifest(root)
    (root / MANIFEST).unlink()
    with pytest.raises(InvalidInputError, match="is not a modelyard bundle"):
        read_manifest(root)


def test_a_read_only_bundle_serves_from_a_copy_of_its_database(
    three_versions: Registry, tmp_path: Path
) -> None:
    root = tmp_path / "bundle"
    write_bundle(three_versions, resolve_target(three_versions, "lin/3", None), root)
    for path in [root, *root.rglob("*")]:
        os.chmod(path, 0o555 if path.is_dir() else 0o444)
    try:
        inside = opened(root, tmp_path)
        assert inside.load("lin/3").predict(X).shape == (4,)
        inside.set_alias("lin/3", "local")  # the copy is writable (rollout statistics go there)
        inside.close()
        assert verify_bundle(root).versions == ("lin/3",)  # and the bundle did not change
    finally:
        for path in [root, *root.rglob("*")]:
            os.chmod(path, 0o755 if path.is_dir() else 0o644)
