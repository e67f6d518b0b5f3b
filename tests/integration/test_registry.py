"""The registry against real SQLite and (in CI) the machine's PostgreSQL."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from sklearn.base import BaseEstimator, TransformerMixin
from sklearn.datasets import load_breast_cancer, load_diabetes
from sklearn.linear_model import LinearRegression, LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from modelyard.errors import (
    AliasNotFoundError,
    ConflictError,
    IntegrityError,
    InvalidInputError,
    InvalidReferenceError,
    ModelNotFoundError,
    SignatureMismatchError,
    UnsupportedFormatError,
    UntrustedTypeError,
    VersionNotFoundError,
)
from modelyard.registry import Registry
from modelyard.registry.checks import VersionCheck
from tests.conftest import blob_count


@pytest.fixture(scope="module")
def cancer() -> tuple[pd.DataFrame, pd.Series]:
    frame = load_breast_cancer(as_frame=True)
    return frame.data, frame.target


@pytest.fixture(scope="module")
def clf(cancer: tuple[pd.DataFrame, pd.Series]) -> object:
    X, y = cancer
    return make_pipeline(StandardScaler(), LogisticRegression(max_iter=500)).fit(X[:400], y[:400])


def artifact_root(registry: Registry) -> Path:
    return Path(registry.settings.resolved_artifact_root)


def test_register_records_everything_and_loads_back(registry: Registry, cancer, clf) -> None:
    X, y = cancer
    v = registry.register(
        clf, name="churn", data=X[:400], target=y[:400], metrics={"auc": 0.99},
        params={"C": 1.0}, tags={"team": "risk"}, description="first",
    )  # fmt: skip
    assert (v.name, v.version, v.flavor) == ("churn", 1, "sklearn")
    roles = {f.role for f in v.files}
    assert {"model", "profile", "sample"} <= roles
    assert all(len(f.sha256) == 64 and f.size_bytes > 0 for f in v.files)
    assert v.signature is not None and v.signature.kind == "columns"
    assert v.signature.column_names == [str(c) for c in X.columns]
    assert [o.name for o in v.signature.outputs] == ["predict", "predict_proba"]
    assert v.signature.classes == (0, 1)
    assert v.input_example is not None and len(v.input_example["data"]) == 5
    assert v.metrics == {"auc": 0.99} and v.params == {"C": "1.0"} and v.tags == {"team": "risk"}
    assert v.lineage.dataset is not None and v.lineage.dataset.rows == 400
    assert "scikit-learn" in v.lineage.packages and v.lineage.python
    assert v.created_by == "tester" and v.description == "first"
    loaded = registry.load("churn")
    held_out = X[400:]
    np.testing.assert_array_equal(loaded.predict(held_out), clf.predict(held_out))
    np.testing.assert_allclose(loaded.predict_proba(held_out), clf.predict_proba(held_out))
    # records and 2-D arrays are accepted too
    records = held_out.head(3).to_dict(orient="records")
    np.testing.assert_array_equal(loaded.predict(records), clf.predict(held_out.head(3)))
    np.testing.assert_array_equal(
        loaded.predict(held_out.to_numpy()[:3]), clf.predict(held_out.head(3))
    )
    profile = json.loads(registry.read_file("churn/1", "profile"))
    assert profile["rows"] == 400
    sample = pd.read_parquet(__import__("io").BytesIO(registry.read_file("churn/1", "sample")))
    assert len(sample) == 400 and list(sample.columns) == [str(c) for c in X.columns]


def test_regressor_has_no_predict_proba(registry: Registry) -> None:
    X, y = load_diabetes(return_X_y=True, as_frame=True)
    model = LinearRegression().fit(X, y)
    registry.register(model, name="dose", data=X)
    loaded = registry.load("dose/1")
    assert not hasattr(loaded, "predict_proba")
    np.testing.assert_allclose(loaded.predict(X[:10]), model.predict(X[:10]))


def test_versions_grow_and_references_resolve(registry: Registry, cancer, clf) -> None:
    X, _ = cancer
    for _ in range(3):
        registry.register(clf, name="churn", data=X[:50])
    assert registry.get_version("churn").version == 3
    assert registry.get_version("models:/churn/2").version == 2
    assert registry.get_version("churn/latest").version == 3
    registry.set_alias("churn/2", "production")
    assert registry.get_version("churn@production").version == 2
    assert registry.get_version("models:/churn@production").version == 2
    assert registry.load("churn@production").version.version == 2


def test_unknown_things_are_clear_errors(registry: Registry, cancer, clf) -> None:
    X, _ = cancer
    registry.register(clf, name="churn", data=X[:50])
    with pytest.raises(ModelNotFoundError, match=r"No model named 'nope'.*yard models list"):
        registry.get_version("nope")
    with pytest.raises(VersionNotFoundError, match=r"no version 7 \(latest is 1\)"):
        registry.load("churn/7")
    with pytest.raises(AliasNotFoundError, match=r"no alias 'production' .*aliases: none"):
        registry.load("churn@production")
    with pytest.raises(InvalidReferenceError, match="Malformed model reference 'churn/x'"):
        registry.get_version("churn/x")
    with pytest.raises(InvalidReferenceError):
        registry.set_alias("churn/1", "7")


def test_alias_moves_are_audited_and_rollback_goes_back(registry: Registry, cancer, clf) -> None:
    X, _ = cancer
    for _ in range(3):
        registry.register(clf, name="churn", data=X[:50])
    registry.set_alias("churn/1", "production", reason="first release")
    registry.set_alias("churn/3", "production", reason="better auc")
    event = registry.rollback("churn", "production", reason="latency regression")
    assert (event.from_version, event.to_version) == (3, 1)
    assert "latency regression" in (event.reason or "")
    assert registry.get_version("churn@production").version == 1
    events = registry.history("churn", alias="production")
    assert [(e.from_version, e.to_version) for e in events] == [(3, 1), (1, 3), (None, 1)]
    assert all(e.actor == "tester" for e in events)
    assert events[2].reason == "first release"


def test_rollback_without_history_changes_nothing(registry: Registry, cancer, clf) -> None:
    X, _ = cancer
    registry.register(clf, name="churn", data=X[:50])
    with pytest.raises(AliasNotFoundError, match="nothing to roll back"):
        registry.rollback("churn", "production")
    registry.set_alias("churn/1", "production")
    with pytest.raises(ConflictError, match="no earlier version"):
        registry.rollback("churn", "production")
    assert len(registry.history("churn")) == 1


def test_archive_rules(registry: Registry, cancer, clf) -> None:
    X, _ = cancer
    registry.register(clf, name="churn", data=X[:50])
    registry.register(clf, name="churn", data=X[:50])
    registry.set_alias("churn/2", "production")
    with pytest.raises(ConflictError, match="alias 'production' and cannot be archived"):
        registry.archive("churn/2")
    assert not registry.get_version("churn/2").archived
    assert registry.archive("churn/1").archived
    with pytest.raises(ConflictError, match="archived and cannot take alias"):
        registry.set_alias("churn/1", "production")
    assert registry.get_version("churn@production").version == 2
    assert len(registry.history("churn")) == 1
    assert not registry.archive("churn/1", archived=False).archived
    registry.set_alias("churn/1", "staging")


def test_tags_and_description_are_the_only_mutable_fields(registry: Registry, cancer, clf) -> None:
    X, _ = cancer
    registry.register(clf, name="churn", data=X[:50], tags={"a": "1"})
    v = registry.set_tags("churn/1", {"a": "2", "b": "x"})
    assert v.tags == {"a": "2", "b": "x"}
    assert registry.delete_tag("churn/1", "a").tags == {"b": "x"}
    assert registry.set_description("churn/1", "new").description == "new"


def test_search_filters_and_pages(registry: Registry, cancer, clf) -> None:
    X, _ = cancer
    for i in range(5):
        registry.register(clf, name="churn", data=X[:30], tags={"even": str(i % 2 == 0)})
    registry.register(clf, name="fraud", data=X[:30])
    registry.set_alias("churn/4", "production")
    first = registry.search_versions(page_size=4)
    assert first.total == 6 and first.next_page == 2
    assert [v.ref for v in first.items] == ["fraud/1", "churn/5", "churn/4", "churn/3"]
    second = registry.search_versions(page=2, page_size=4)
    assert [v.ref for v in second.items] == ["churn/2", "churn/1"] and second.next_page is None
    evens = registry.search_versions(tag="even=True")
    assert [v.version for v in evens.items] == [5, 3, 1]
    assert registry.search_versions(tag="even").total == 5
    assert [v.ref for v in registry.search_versions(alias="production").items] == ["churn/4"]
    assert registry.search_versions(name_prefix="fr").total == 1
    assert registry.search_versions(flavor="onnx").total == 0
    models = registry.list_models()
    assert [m.name for m in models.items] == ["fraud", "churn"]
    assert models.items[1].aliases == {"production": 4}


def test_altered_or_missing_artifact_refuses_to_load(registry: Registry, cancer, clf) -> None:
    X, _ = cancer
    v = registry.register(clf, name="churn", data=X[:50])
    model_file = v.file("model")
    assert model_file is not None
    path = Path(registry.artifacts.path_of(model_file.sha256))
    path.write_bytes(path.read_bytes()[:-3] + b"xyz")
    with pytest.raises(IntegrityError, match=r"'model.skops' of model churn/1 was altered"):
        registry.load("churn/1")
    checks = {c.role: c.ok for c in registry.verify("churn/1")}
    assert checks["model"] is False and checks["profile"] is True
    assert registry.checks("churn/1") == [
        VersionCheck("tester", registry.checks("churn/1")[0].at, False, ("model.skops",))
    ]  # the verification is audited: who, when, which files failed
    registry.acting_as("ops").verify("churn/1")
    assert [(c.actor, c.ok) for c in registry.checks("churn/1")] == [
        ("ops", False),
        ("tester", False),
    ]
    path.unlink()
    with pytest.raises(IntegrityError, match=r"'model.skops' of model churn/1 is missing"):
        registry.load("churn/1")


def test_data_that_does_not_match_the_model_leaves_nothing(registry: Registry, cancer, clf) -> None:
    X, _ = cancer
    registry.register(clf, name="churn", data=X[:50])
    before = blob_count(artifact_root(registry))
    wrong = X.iloc[:50, :10]
    with pytest.raises(SignatureMismatchError, match="missing"):
        registry.register(clf, name="churn", data=wrong)
    with pytest.raises(SignatureMismatchError, match="no target column 'label'"):
        registry.register(clf, name="churn", data=X[:50], target="label")
    assert registry.get_version("churn").version == 1
    assert blob_count(artifact_root(registry)) == before


class Doubler:
    def predict(self, X: object) -> np.ndarray:
        return np.asarray(X).sum(axis=1) * 2


def test_pickle_needs_trust_at_registration_and_at_every_load(registry: Registry) -> None:
    X = np.arange(12, dtype=float).reshape(4, 3)
    with pytest.raises(UnsupportedFormatError, match="trust_pickle=True"):
        registry.register(Doubler(), name="odd", data=X)
    with pytest.raises(UntrustedTypeError, match="trust_pickle=True"):
        registry.register(Doubler(), name="odd", data=X, flavor="pickle")
    with pytest.raises(ModelNotFoundError):
        registry.get_version("odd")
    assert blob_count(artifact_root(registry)) == 0
    v = registry.register(Doubler(), name="odd", data=X, trust_pickle=True)
    assert v.untrusted and v.flavor == "pickle"
    with pytest.raises(UntrustedTypeError, match="registered as a pickle"):
        registry.load("odd/1")
    loaded = registry.load("odd/1", trust_pickle=True)
    np.testing.assert_array_equal(loaded.predict(X), X.sum(axis=1) * 2)


def test_runs_record_params_metrics_and_link_versions(registry: Registry, cancer, clf) -> None:
    X, _ = cancer
    with registry.start_run("train", params={"C": 1}) as run:
        run.log_metrics({"auc": 0.97})
        run.log_params({"penalty": "l2"})
        v = registry.register(clf, name="churn", data=X[:50], run=run)
    assert v.run_id == run.id
    stored = registry.get_run(run.id)
    assert stored.status == "finished" and stored.end_time is not None
    assert stored.params == {"C": "1", "penalty": "l2"} and stored.metrics == {"auc": 0.97}
    assert registry.list_runs().total == 1
    with pytest.raises(Exception, match="No run 'missing'"):
        registry.register(clf, name="churn", data=X[:50], run="missing")
    assert registry.get_version("churn").version == 1


def test_onnx_twin_is_kept_and_loads(registry: Registry, cancer, clf) -> None:
    X, _ = cancer
    v = registry.register(clf, name="churn", data=X[:400], convert="onnx")
    assert v.file("onnx") is not None and "onnx" in v.flavor_meta
    native = registry.load("churn/1")
    onnx = registry.load("churn/1", runtime="onnx")
    assert onnx.runtime == "onnx"
    assert registry.load("churn/1", runtime="auto").runtime == "onnx"
    np.testing.assert_allclose(
        onnx.predict_proba(X[400:]), native.predict_proba(X[400:]), atol=1e-4
    )
    with pytest.raises(InvalidInputError, match=r"convert='onx' is unknown; use 'onnx'"):
        registry.register(clf, name="churn", data=X[:400], convert="onx")  # type: ignore[arg-type]
    assert registry.get_version("churn").version == 1  # nothing written


class Shift(BaseEstimator, TransformerMixin):  # type: ignore[misc]
    """A user's own transformer: skops cannot vouch for it."""

    def fit(self, X: np.ndarray, y: object = None) -> Shift:
        return self

    def transform(self, X: np.ndarray) -> np.ndarray:
        return np.asarray(X) + 1.0


def test_untrusted_skops_type_is_refused_and_leaves_nothing(
    registry: Registry, tmp_path: Path
) -> None:
    import skops.io

    X = np.random.default_rng(0).normal(size=(60, 3))
    y = (X[:, 0] > X[:, 1]).astype(int)
    model = make_pipeline(Shift(), LogisticRegression()).fit(X, y)
    path = tmp_path / "custom.skops"
    skops.io.dump(model, path)
    custom = f"{__name__}.Shift"
    with pytest.raises(UntrustedTypeError, match=rf"{custom}.*trusted_types=\['{custom}'\]"):
        registry.register_file(path, name="custom", data=X)
    with pytest.raises(ModelNotFoundError):
        registry.get_version("custom")
    assert blob_count(artifact_root(registry)) == 0
    v = registry.register_file(path, name="custom", data=X, trusted_types=[custom])
    with pytest.raises(UntrustedTypeError, match=custom):
        registry.load(v.ref)
    loaded = registry.load(v.ref, trusted_types=[custom])
    np.testing.assert_array_equal(loaded.predict(X), model.predict(X))


def test_unwritable_artifact_root_leaves_no_version(backend: str, tmp_path: Path, clf, cancer):
    from modelyard.errors import StorageError
    from tests.conftest import database_url

    blocker = tmp_path / "not-a-folder"
    blocker.write_text("a file where the artifact root should be")
    url = database_url(backend, tmp_path)
    broken = Registry(database_url=url, artifact_root=str(blocker / "artifacts"))
    X, _ = cancer
    with pytest.raises(StorageError, match="Cannot write to the artifact root"):
        broken.register(clf, name="churn", data=X[:50])
    with pytest.raises(ModelNotFoundError):
        broken.get_version("churn")
    broken.close()
