"""Two versions compared (``registry.compare``): metrics, params, signature, lineage and the
training-data profile per column, with bin shares only where the bins match."""

from __future__ import annotations

from datetime import UTC, datetime

import numpy as np
import pandas as pd
import pytest

from modelyard.core.profile import compute_profile
from modelyard.core.types import DatasetFingerprint, Lineage, ModelVersion, Signature, TensorSpec
from modelyard.registry.compare import bin_labels, bin_shares, compare_versions


def version(number: int, **fields: object) -> ModelVersion:
    base: dict[str, object] = {
        "name": "churn", "version": number, "flavor": "sklearn", "files": (), "signature": None,
        "input_example": None, "flavor_meta": {}, "metrics": {}, "params": {}, "tags": {},
        "description": None, "lineage": Lineage(), "run_id": None, "created_by": "t",
        "created_at": datetime(2026, 1, 1, tzinfo=UTC),
    }  # fmt: skip
    return ModelVersion(**{**base, **fields})  # type: ignore[arg-type]  # test fields by name


def test_metrics_and_params_side_by_side_with_changes_marked() -> None:
    a = version(1, metrics={"auc": 0.8, "f1": 0.5}, params={"C": "1"})
    b = version(2, metrics={"auc": 0.85, "f1": 0.5, "loss": 0.2}, params={"C": "1"})
    result = compare_versions(a, b)
    rows = {r.name: (r.a, r.b, r.changed) for r in result.metrics}
    assert rows == {"auc": (0.8, 0.85, True), "f1": (0.5, 0.5, False), "loss": (None, 0.2, True)}
    assert [(r.name, r.changed) for r in result.params] == [("C", False)]


def test_signature_and_lineage_differences() -> None:
    sig_a = Signature(kind="columns", inputs=(TensorSpec(name="x", dtype="float64"),
                                              TensorSpec(name="y", dtype="int64")))  # fmt: skip
    sig_b = Signature(kind="columns", inputs=(TensorSpec(name="x", dtype="float32"),
                                              TensorSpec(name="z", dtype="string", nullable=True)),
                      classes=(0, 1))  # fmt: skip
    data_a = DatasetFingerprint(sha256="a" * 64, rows=10, schema={})
    data_b = DatasetFingerprint(sha256="b" * 64, rows=10, schema={})
    a = version(1, signature=sig_a, lineage=Lineage(dataset=data_a, git_commit="abc"))
    b = version(2, signature=sig_b, lineage=Lineage(dataset=data_b, git_commit="abc"),
                run_id="r1")  # fmt: skip
    result = compare_versions(a, b)
    sig = {r.name: (r.a, r.b) for r in result.signature}
    assert sig["input x"] == ("float64", "float32")
    assert sig["input y"] == ("int64", None)
    assert sig["input z"] == (None, "string nullable")
    assert sig["classes"] == (None, "0, 1")
    lineage = {r.name: r for r in result.lineage}
    assert lineage["dataset sha256"].changed and not lineage["git commit"].changed
    assert lineage["dataset rows"].a == 10 and lineage["run"].b == "r1"


def test_profile_columns_share_bins_only_where_they_match() -> None:
    rng = np.random.default_rng(0)
    frame = pd.DataFrame({"x": rng.normal(size=500), "city": rng.choice(["a", "b"], 500)})
    profile_a, _ = compute_profile(frame)
    profile_b, _ = compute_profile(frame.assign(x=frame["x"] * 2, extra=1.0))
    result = compare_versions(version(1), version(2), profile_a, profile_b)
    columns = {c.name: c for c in result.columns}
    assert list(columns) == ["x", "city", "extra"]
    assert columns["x"].shares is None and "differently" in (columns["x"].note or "")
    city = columns["city"].shares
    assert city is not None and city.labels == ("a", "b")
    assert sum(city.a) == 1.0 and city.a == city.b
    assert columns["extra"].shares is None and columns["extra"].note is not None
    stats = {r.name: r for r in columns["x"].stats}
    assert stats["count"].a == stats["count"].b == 500
    assert stats["std"].b == pytest.approx(2 * float(stats["std"].a or 0))


def test_bin_labels_and_shares_of_a_profile() -> None:
    profile, _ = compute_profile(pd.DataFrame({"x": np.arange(100.0), "k": ["a"] * 100}))
    x, k = profile.columns
    labels = bin_labels(x)
    assert labels[0].startswith("[0,") and labels[-1].endswith("99]")
    assert abs(sum(bin_shares(x)) - 1) < 1e-9 and len(bin_shares(x)) == len(labels)
    assert bin_labels(k) == ("a",) and bin_shares(k) == (1.0,)
