"""Batch scoring on real Parquet files and a real SQLite registry (local engine)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from modelyard.errors import (
    AlreadyExistsError,
    InvalidInputError,
    InvalidSpecError,
    PredictionError,
    SignatureMismatchError,
)
from modelyard.pipelines.batch import batch_score
from modelyard.registry import Registry
from modelyard.settings import Settings

FEATURES = [f"f{i}" for i in range(6)]


class ExplodingModel:
    """Answers the first column, and raises (not a validation error) past 1000."""

    def predict(self, X: object) -> np.ndarray:
        values = np.asarray(X, dtype=float)[:, 0]
        if (values > 1000).any():
            raise RuntimeError("the model fell over")
        return values


@dataclass
class Home:
    registry: Registry
    hgb: object  # the fitted HistGradientBoostingClassifier behind hgb/1
    mixed: object  # the fitted pipeline behind mixed/1


@pytest.fixture(scope="module")
def home(tmp_path_factory: pytest.TempPathFactory) -> Home:
    """One registry for the module (registering with an ONNX twin takes seconds): built as
    tests/conftest.py's sqlite_registry builds its own."""
    from sklearn.compose import make_column_transformer
    from sklearn.datasets import make_classification
    from sklearn.ensemble import HistGradientBoostingClassifier
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import OneHotEncoder, StandardScaler

    tmp = tmp_path_factory.mktemp("batch-home")
    registry = Registry(
        Settings(
            home=tmp / "home",
            database_url=f"sqlite:///{tmp / 'meta.db'}",
            artifact_root=str(tmp / "artifacts"),
            identity="tester",
        )
    )
    X, y = make_classification(n_samples=3000, n_features=len(FEATURES), random_state=0)
    frame = pd.DataFrame(X, columns=FEATURES)
    hgb = HistGradientBoostingClassifier(max_iter=20, random_state=0).fit(frame, y)
    registry.register(hgb, name="hgb", data=frame, convert="onnx")

    rng = np.random.default_rng(0)
    people = pd.DataFrame(
        {"age": rng.integers(18, 80, 400), "city": rng.choice(["paris", "rome", "oslo"], 400)}
    )
    mixed = make_pipeline(
        make_column_transformer(
            (OneHotEncoder(handle_unknown="ignore"), ["city"]), (StandardScaler(), ["age"])
        ),
        LogisticRegression(),
    ).fit(people, (people["city"] == "rome").astype(int))
    registry.register(mixed, name="mixed", data=people)

    cols = pd.DataFrame({"x": [1.0, 2.0], "y": [3.0, 4.0]})
    registry.register(ExplodingModel(), name="exploding", data=cols, trust_pickle=True)
    yield Home(registry, hgb, mixed)
    registry.close()


def rows(n: int, seed: int, start: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    frame = pd.DataFrame(rng.standard_normal((n, len(FEATURES))), columns=FEATURES)
    frame.insert(0, "id", np.arange(start, start + n))
    frame["region"] = rng.choice(["north", "south"], n)
    return frame


def write(frame: pd.DataFrame, path: Path, **kwargs: object) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.Table.from_pandas(frame, preserve_index=False), path, **kwargs)
    return path


def read_parts(folder: Path) -> pd.DataFrame:
    parts = sorted(folder.glob("part-*.parquet"))
    return pd.concat([pd.read_parquet(p) for p in parts], ignore_index=True)


def test_outputs_are_the_models_predictions_with_the_keys(home: Home, tmp_path: Path) -> None:
    a, b = rows(300, 1), rows(200, 2, start=300)
    write(a, tmp_path / "in" / "a.parquet", row_group_size=64)
    write(b, tmp_path / "in" / "b.parquet")
    seen: list[tuple[int, int]] = []
    summary = batch_score(
        home.registry, "hgb/1", str(tmp_path / "in" / "*.parquet"), tmp_path / "out",
        runtime="native", batch_size=50, progress=lambda done, total: seen.append((done, total)),
    )  # fmt: skip

    assert (summary.rows, summary.scored, summary.rejected) == (500, 500, 0)
    assert seen[0] == (50, 500) and seen[-1] == (500, 500) and len(seen) == 10
    assert summary.runtime == "native" and summary.ref == "hgb/1"
    assert [Path(p).name for p in summary.outputs] == ["part-00000.parquet", "part-00001.parquet"]
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == [
        "part-00000.parquet",
        "part-00001.parquet",
    ]
    assert summary.rejects_file is None and summary.rows_per_s > 0
    first = pd.read_parquet(tmp_path / "out" / "part-00000.parquet")
    assert list(first.columns) == ["id", "region", "predict", "proba_0", "proba_1"]
    group = pq.ParquetFile(tmp_path / "out" / "part-00000.parquet").metadata.row_group(0)
    dictionary = {
        group.column(i).path_in_schema: group.column(i).has_dictionary_page
        for i in range(group.num_columns)
    }  # labels and text are; probabilities and integer ids (all distinct) are not
    assert dictionary == {
        "id": False, "region": True, "predict": True, "proba_0": False, "proba_1": False
    }  # fmt: skip
    out = read_parts(tmp_path / "out")
    both = pd.concat([a, b], ignore_index=True)
    assert out["id"].tolist() == both["id"].tolist()
    assert out["region"].tolist() == both["region"].tolist()
    np.testing.assert_array_equal(out["predict"], home.hgb.predict(both[FEATURES]))  # type: ignore[attr-defined]
    proba = home.hgb.predict_proba(both[FEATURES])  # type: ignore[attr-defined]
    np.testing.assert_allclose(out[["proba_0", "proba_1"]].to_numpy(), proba, rtol=0, atol=1e-12)


def test_onnx_and_native_agree(home: Home, tmp_path: Path) -> None:
    write(rows(2000, 3), tmp_path / "in.parquet")
    onnx = batch_score(home.registry, "hgb/1", tmp_path / "in.parquet", tmp_path / "onnx")
    native = batch_score(
        home.registry, "hgb/1", tmp_path / "in.parquet", tmp_path / "native", runtime="native"
    )
    assert (onnx.runtime, native.runtime) == ("onnx", "native")  # auto picks the twin
    assert (onnx.kernel, native.kernel) == ("tree kernel", "native")  # settings: kernel for batch
    settings = home.registry.settings.model_copy(deep=True)
    settings.onnx.tree_kernel = "off"
    plain = Registry(settings)
    try:
        ort = batch_score(plain, "hgb/1", tmp_path / "in.parquet", tmp_path / "ort")
    finally:
        plain.close()
    assert (ort.runtime, ort.kernel) == ("onnx", "onnxruntime")
    a, b = read_parts(tmp_path / "onnx"), read_parts(tmp_path / "native")
    c = read_parts(tmp_path / "ort")
    assert a["id"].tolist() == b["id"].tolist() == c["id"].tolist()
    probas = ["proba_0", "proba_1"]
    np.testing.assert_allclose(a[probas], b[probas], atol=1e-4)
    np.testing.assert_allclose(a[probas], c[probas], atol=1e-6)  # float32 rounding apart
    clear = (b["proba_1"] - 0.5).abs() > 1e-4  # labels compared away from exact ties
    assert clear.sum() > 1900
    assert (a["predict"][clear] == b["predict"][clear]).all()
    assert (a["predict"][clear] == c["predict"][clear]).all()


def test_bad_rows_go_to_the_rejects_file_with_row_and_reason(home: Home, tmp_path: Path) -> None:
    frame = rows(500, 4)
    frame["f2"] = frame["f2"].astype(object)
    frame.loc[3, "f2"] = "abc"  # text in a numeric column
    frame.loc[[10, 11, 480], "f4"] = np.nan  # missing where training had none
    frame["f2"] = frame["f2"].astype(str).where(frame["f2"].notna())
    write(frame, tmp_path / "in.parquet")
    summary = batch_score(
        home.registry, "hgb/1", tmp_path / "in.parquet", tmp_path / "out", batch_size=128,
        runtime="native",
    )  # fmt: skip

    assert (summary.rows, summary.scored, summary.rejected) == (500, 496, 4)
    assert summary.rejects_file == str(tmp_path / "out" / "rejected.parquet")
    rejects = pd.read_parquet(summary.rejects_file)
    assert list(rejects.columns) == ["input_file", "input_row", "id", "region", "reason"]
    assert rejects["input_row"].tolist() == [3, 10, 11, 480]
    assert rejects["id"].tolist() == [3, 10, 11, 480]
    assert set(rejects["input_file"]) == {str(tmp_path / "in.parquet")}
    assert rejects["reason"][0] == "Input 'f2' takes float values, got object (e.g. 'abc')."
    assert all("'f4' has missing values" in r for r in rejects["reason"][1:])
    assert dict(summary.reasons)[rejects["reason"][1]] == 3
    out = read_parts(tmp_path / "out")
    good = frame.drop(index=[3, 10, 11, 480])
    assert out["id"].tolist() == good["id"].tolist()
    expected = home.hgb.predict_proba(good[FEATURES].astype(float))  # type: ignore[attr-defined]
    np.testing.assert_allclose(out[["proba_0", "proba_1"]], expected, atol=1e-12)


def test_a_bad_first_row_is_rejected_once_after_the_warm_up(home: Home, tmp_path: Path) -> None:
    frame = rows(300, 6)
    frame.loc[0, "f1"] = np.nan  # the row the scorer warms up on
    write(frame, tmp_path / "in.parquet")
    summary = batch_score(home.registry, "hgb/1", tmp_path / "in.parquet", tmp_path / "out")
    assert (summary.scored, summary.rejected) == (299, 1)
    rejects = pd.read_parquet(summary.rejects_file)  # type: ignore[arg-type]
    assert rejects["input_row"].tolist() == [0]
    assert read_parts(tmp_path / "out")["id"].tolist() == list(range(1, 300))


def test_a_column_of_nulls_is_rejected_row_by_row_quickly(home: Home, tmp_path: Path) -> None:
    frame = rows(20_000, 5)
    frame["f1"] = np.nan
    write(frame, tmp_path / "in.parquet")
    summary = batch_score(home.registry, "hgb/1", tmp_path / "in.parquet", tmp_path / "out")
    assert (summary.scored, summary.rejected) == (0, 20_000)
    assert summary.seconds < 10  # one check per null column, not one per row
    empty = pq.read_table(tmp_path / "out" / "part-00000.parquet")
    assert empty.num_rows == 0 and empty.column_names[:3] == ["id", "region", "predict"]


def test_coercion_rejects_like_the_server_for_a_native_model(home: Home, tmp_path: Path) -> None:
    people = pd.DataFrame(
        {"person": ["a", "b", "c", "d", "e"],
         "age": pd.array([30, None, 41, 52, 60], dtype="Int64"),
         "city": ["rome", "paris", "lima", "oslo", "lima"]}
    )  # fmt: skip
    write(people, tmp_path / "people.parquet")
    summary = batch_score(
        home.registry, "mixed/1", tmp_path / "people.parquet", tmp_path / "out", batch_size=2
    )
    rejects = pd.read_parquet(summary.rejects_file)
    # age is a whole-number column without nulls in training: the server's coercion refuses a
    # null; an unseen city ('lima') is accepted, as the server accepts it (with a warning).
    assert rejects["person"].tolist() == ["b"] and rejects["input_row"].tolist() == [1]
    assert "'age'" in rejects["reason"][0] and "missing value" in rejects["reason"][0]
    assert "row 0" not in rejects["reason"][0]
    out = read_parts(tmp_path / "out")
    assert out["person"].tolist() == ["a", "c", "d", "e"]
    good = people.drop(index=[1]).astype({"age": "int64"})[["age", "city"]]
    np.testing.assert_array_equal(out["predict"], home.mixed.predict(good))  # type: ignore[attr-defined]


def test_explicit_keys(home: Home, tmp_path: Path) -> None:
    write(rows(10, 6), tmp_path / "in.parquet")
    summary = batch_score(
        home.registry, "hgb/1", tmp_path / "in.parquet", tmp_path / "out", key_columns=["id"]
    )
    assert summary.scored == 10
    assert list(read_parts(tmp_path / "out").columns) == ["id", "predict", "proba_0", "proba_1"]
    with pytest.raises(InvalidInputError, match=r"has no key column\(s\) nope; check --key"):
        batch_score(
            home.registry, "hgb/1", tmp_path / "in.parquet", tmp_path / "out2", key_columns=["nope"]
        )
    assert not (tmp_path / "out2").exists()


def test_a_missing_column_fails_before_anything_is_written(home: Home, tmp_path: Path) -> None:
    write(rows(10, 7), tmp_path / "in" / "a.parquet")
    write(rows(10, 8).drop(columns=["f3", "f5"]), tmp_path / "in" / "b.parquet")
    with pytest.raises(SignatureMismatchError) as info:
        batch_score(home.registry, "hgb/1", str(tmp_path / "in"), tmp_path / "out")
    message = str(info.value)
    assert "b.parquet" in message and "f3, f5" in message and "hgb/1" in message
    assert "\n" not in message
    assert not (tmp_path / "out").exists()


def test_no_input_files(home: Home, tmp_path: Path) -> None:
    with pytest.raises(InvalidInputError, match=r"No input files match .*\*\.parquet"):
        batch_score(home.registry, "hgb/1", str(tmp_path / "*.parquet"), tmp_path / "out")
    with pytest.raises(InvalidInputError, match="does not exist"):
        batch_score(home.registry, "hgb/1", [tmp_path / "gone.parquet"], tmp_path / "out")
    (tmp_path / "notes.parquet").write_text("not parquet")
    with pytest.raises(InvalidInputError, match="not a readable Parquet file"):
        batch_score(home.registry, "hgb/1", tmp_path / "notes.parquet", tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_existing_results_need_overwrite(home: Home, tmp_path: Path) -> None:
    write(rows(10, 9), tmp_path / "in" / "a.parquet")
    write(rows(10, 10), tmp_path / "in" / "b.parquet")
    out = tmp_path / "out"
    batch_score(home.registry, "hgb/1", str(tmp_path / "in"), out)
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    (tmp_path / "in" / "b.parquet").unlink()
    with pytest.raises(AlreadyExistsError, match="--overwrite"):
        batch_score(home.registry, "hgb/1", str(tmp_path / "in"), out)
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before  # untouched
    summary = batch_score(home.registry, "hgb/1", str(tmp_path / "in"), out, overwrite=True)
    assert summary.rows == 10
    assert sorted(p.name for p in out.iterdir()) == ["part-00000.parquet"]  # old part-00001 gone


def test_a_failing_model_leaves_nothing_behind(home: Home, tmp_path: Path) -> None:
    frame = pd.DataFrame({"x": np.arange(3000.0), "y": 1.0})
    write(frame, tmp_path / "in.parquet", row_group_size=500)
    out = tmp_path / "out"
    with pytest.raises(PredictionError, match=r"exploding/1 failed on rows 1000-1499 .*fell over"):
        batch_score(
            home.registry, "exploding/1", tmp_path / "in.parquet", out, trust_pickle=True,
            batch_size=500,
        )  # fmt: skip
    assert not out.exists()
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    with pytest.raises(PredictionError):
        batch_score(
            home.registry, "exploding/1", tmp_path / "in.parquet", out, trust_pickle=True,
            batch_size=500,
        )  # fmt: skip
    assert [p.name for p in out.iterdir()] == ["notes.txt"]  # no staging folder, no parts


def test_a_tensor_model_takes_the_non_key_columns_in_order(
    sqlite_registry: Registry, tmp_path: Path
) -> None:
    from sklearn.linear_model import LinearRegression

    X = np.random.default_rng(0).standard_normal((50, 3))
    model = LinearRegression().fit(X, X @ np.array([1.0, 10.0, 100.0]))
    sqlite_registry.register(model, name="lin", data=X)
    frame = pd.DataFrame(X[:5], columns=["a", "b", "c"]).assign(id=range(5))
    write(frame, tmp_path / "in.parquet")
    summary = batch_score(
        sqlite_registry, "lin/1", tmp_path / "in.parquet", tmp_path / "out", key_columns=["id"]
    )
    out = read_parts(tmp_path / "out")
    assert summary.scored == 5 and list(out.columns) == ["id", "predict"]
    np.testing.assert_allclose(out["predict"], model.predict(X[:5]))
    with pytest.raises(SignatureMismatchError, match=r"takes 3 features.*has 4 non-key columns"):
        batch_score(sqlite_registry, "lin/1", tmp_path / "in.parquet", tmp_path / "out2")


def test_bad_arguments(home: Home, tmp_path: Path) -> None:
    write(rows(5, 11), tmp_path / "in.parquet")
    args = (home.registry, "hgb/1", tmp_path / "in.parquet", tmp_path / "out")
    with pytest.raises(InvalidSpecError, match="Unknown engine 'spark'"):
        batch_score(*args, engine="spark")  # type: ignore[arg-type]
    with pytest.raises(InvalidSpecError, match="needs engine='ray'"):
        batch_score(*args, address="ray://head:10001")
    with pytest.raises(InvalidInputError, match="batch_size must be at least 1"):
        batch_score(*args, batch_size=0)
    with pytest.raises(InvalidInputError, match="'predict' clashes with an output column"):
        batch_score(*args, key_columns=["id", "predict"])
    assert not (tmp_path / "out").exists()


def test_unseen_categories_are_scored_and_warned_once(
    sqlite_registry: Registry, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import OneHotEncoder

    train = pd.DataFrame({"city": pd.Categorical(["rome", "paris", "oslo"] * 10)})
    model = make_pipeline(OneHotEncoder(handle_unknown="ignore"), LogisticRegression())
    model.fit(train, [1, 0, 0] * 10)
    sqlite_registry.register(model, name="cities", data=train)
    write(pd.DataFrame({"city": ["rome", "lima", "lima", "oslo", "lima"]}), tmp_path / "in.parquet")
    summary = batch_score(
        sqlite_registry, "cities/1", tmp_path / "in.parquet", tmp_path / "out", batch_size=2
    )
    assert (summary.scored, summary.rejected) == (5, 0)  # the server accepts them too
    unseen = [r for r in caplog.records if "never seen in training: lima" in r.getMessage()]
    assert len(unseen) == 1  # once per job, not once per batch
