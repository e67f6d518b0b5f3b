from __future__ import annotations

import hashlib

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from modelyard.core import fingerprint
from modelyard.core.fingerprint import fingerprint_dataset
from modelyard.errors import InvalidInputError


def frame() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "x": [1.5, np.nan, -0.0, 4.0],
            "n": np.array([1, 2, 3, 4], dtype=np.int64),
            "s": ["a", None, "", "héllo"],
            "k": pd.Categorical(["lo", "hi", None, "lo"]),
            "b": [True, False, True, True],
            "t": pd.to_datetime(["2024-01-01", None, "2024-01-03", "2024-01-04"]),
        }
    )


def sha(data: pd.DataFrame | np.ndarray, y: object = None) -> str:
    return fingerprint_dataset(data, y).sha256


def test_the_encoding_is_the_documented_one() -> None:
    data = pd.DataFrame({"a": [1, 2], "s": ["x", None]})
    u64 = lambda v: v.to_bytes(8, "little")  # noqa: E731

    expected = hashlib.sha256(
        b"modelyard-dataset-v1\0"
        + b"frame\0"
        + u64(2)
        + u64(2)
        + u64(1)
        + b"a"
        + u64(3)
        + b"int"
        + b"\x00"
        + np.array([1, 2], dtype="<i8").tobytes()
        + u64(1)
        + b"s"
        + u64(6)
        + b"string"
        + np.array([1, -1], dtype="<i8").tobytes()
        + b"x"
    ).hexdigest()

    assert sha(data) == expected


def test_rows_and_schema_are_recorded() -> None:
    fp = fingerprint_dataset(frame(), y=pd.Series([0, 1, 0, 1]))

    assert fp.rows == 4
    assert fp.schema == {
        "x": "float64",
        "n": "int64",
        "s": "string",
        "k": "category",
        "b": "bool",
        "t": "datetime64[ns]",
        "__target__": "int64",
    }
    assert len(fp.sha256) == 64


def test_the_same_values_built_differently_hash_the_same() -> None:
    base = frame()
    other = pd.DataFrame(
        {
            "x": np.array([1.5, float("nan"), 0.0, 4.0], dtype=np.float32),
            "n": pd.array([1, 2, 3, 4], dtype="Int32"),
            "s": np.array(["a", np.nan, "", "héllo"], dtype=object),
            "k": pd.Categorical(["lo", "hi", None, "lo"], categories=["zz", "lo", "hi"]),
            "b": pd.array([True, False, True, True], dtype="boolean"),
            "t": pd.to_datetime(["2024-01-01", None, "2024-01-03", "2024-01-04"]).as_unit("s"),
        },
        index=[9, 8, 7, 6],
    )
    nan_bits = np.array([0x7FF8_0000_0000_0001], dtype=np.uint64).view(np.float64)[0]
    other_nan = base.assign(x=[1.5, nan_bits, -0.0, 4.0])

    assert sha(base) == sha(other)
    assert sha(base) == sha(other_nan)
    assert sha(base, [0, 1, 0, 1]) == sha(other, pd.Series([0, 1, 0, 1], index=[5, 5, 5, 5]))


def test_one_changed_value_name_order_or_target_changes_the_hash() -> None:
    base = sha(frame())
    changes = [
        frame().assign(x=[1.5, np.nan, 0.0, 4.000001]),
        frame().assign(s=["a", "", "", "héllo"]),  # a missing value is not an empty string
        frame().assign(s=["a", None, "", "hello"]),
        frame().assign(k=pd.Categorical(["lo", "hi", "lo", "lo"])),
        frame().assign(b=[True, False, True, False]),
        frame().assign(t=pd.to_datetime(["2024-01-01", None, "2024-01-03", "2024-01-05"])),
        frame().assign(n=[1, 2, 3, 5]),
        frame().assign(n=[1.0, 2.0, 3.0, 4.0]),  # same numbers, another type
        frame().rename(columns={"x": "X"}),
        frame()[["n", "x", "s", "k", "b", "t"]],
        frame().iloc[[1, 0, 2, 3]],
        frame().iloc[:3],
    ]
    hashes = [sha(c) for c in changes] + [sha(frame(), [0, 0, 0, 0])]

    assert base not in hashes
    assert len(set(hashes)) == len(hashes)


def test_missing_integers_and_bools_are_not_zero() -> None:
    zeros = pd.DataFrame({"n": pd.array([0, 1], dtype="Int64"), "b": [False, True]})
    nulls = pd.DataFrame({"n": pd.array([None, 1], dtype="Int64"), "b": [False, True]})
    null_bool = zeros.assign(b=pd.array([None, True], dtype="boolean"))

    assert len({sha(zeros), sha(nulls), sha(null_bool)}) == 3


def test_arrays_hash_their_layout_independently() -> None:
    X = np.arange(12, dtype=np.float64).reshape(4, 3)

    assert sha(X) == sha(np.asfortranarray(X)) == sha(X.astype(np.float32))
    assert sha(X) != sha(X.reshape(3, 4))
    assert sha(X) != sha(pd.DataFrame(X, columns=["input_0", "input_1", "input_2"]))
    assert fingerprint_dataset(X).schema == {f"input_{i}": "float64" for i in range(3)}


def test_a_2d_target_is_hashed_column_by_column() -> None:
    fp = fingerprint_dataset(np.zeros((2, 1)), np.array([[1, 2], [3, 4]]))

    assert list(fp.schema) == ["input_0", "__target__0", "__target__1"]


def test_chunks_do_not_change_the_hash(monkeypatch: pytest.MonkeyPatch) -> None:
    data = pd.DataFrame(
        {
            "x": np.arange(10, dtype=np.float64),
            "s": [str(i) * (i % 3) for i in range(10)],
            "k": pd.Categorical(list("abcabcabca")),
        }
    )
    whole = sha(data)

    monkeypatch.setattr(fingerprint, "CHUNK_ROWS", 3)
    chunked = sha(data)

    assert whole != chunked  # per-chunk string lengths move, by design of the format
    assert chunked == sha(data.copy())
    assert sha(data.iloc[[0, 1, 2, 3, 4, 5, 6, 7, 9, 8]]) != chunked


def test_strings_from_arrow_slices_hash_like_plain_strings(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(fingerprint, "CHUNK_ROWS", 2)
    words = ["ab", None, "c", "", "def", None, "g"]
    arrow = pd.DataFrame({"s": pd.Series(words, dtype="str")})
    python = pd.DataFrame({"s": pd.Series(words, dtype=object)})

    assert sha(arrow) == sha(python)


def test_mixed_objects_hash_by_their_text() -> None:
    data = pd.DataFrame({"o": pd.Series([1, "a", None], dtype=object)})

    fp = fingerprint_dataset(data)

    assert fp.schema == {"o": "object"}
    assert fp.sha256 != sha(data.assign(o=pd.Series([2, "a", None], dtype=object)))


@pytest.mark.parametrize(
    ("X", "y", "message"),
    [
        (np.zeros(3), None, r"Cannot fingerprint a 1-D array of shape \(3,\); pass a 2-D array"),
        ([[1, 2]], None, r"Cannot fingerprint a list; pass a pandas DataFrame or a 2-D numpy"),
        (np.zeros((3, 1)), [1, 2], r"The target has 2 rows but X has 3; pass one target per row"),
        (np.zeros((2, 1)), np.zeros((2, 1, 1)), r"The target has shape \(2, 1, 1\); pass a 1-D"),
        (
            pd.DataFrame({"__target__": [1]}),
            [1],
            r"Column '__target__' appears twice in the dataset; rename one of them",
        ),
        (
            pd.DataFrame({"d": pd.to_timedelta([1], unit="s")}),
            None,
            r"Column 'd' has dtype timedelta64\[.*\], which cannot be fingerprinted; convert it",
        ),
        (pd.DataFrame([[1, 2]], columns=["a", "a"]), None, r"duplicate column names \['a'\]"),
    ],
)
def test_unusable_datasets(X: object, y: object, message: str) -> None:
    with pytest.raises(InvalidInputError, match=message):
        fingerprint_dataset(X, y)


@settings(max_examples=60, deadline=None)
@given(
    X=hnp.arrays(
        np.float64,
        hnp.array_shapes(min_dims=2, max_dims=2, min_side=1, max_side=8),
        elements=st.floats(allow_nan=True, allow_infinity=True),
    ),
    data=st.data(),
)
def test_array_and_frame_fingerprints_are_invariant(X: np.ndarray, data: st.DataObject) -> None:
    names = [f"c{i}" for i in range(X.shape[1])]
    frame_a = pd.DataFrame(X, columns=names)
    frame_b = pd.DataFrame({n: X[:, i].copy() for i, n in enumerate(names)}, index=X[:, 0])

    assert sha(X) == sha(np.asfortranarray(X)) == sha(X.copy())
    assert sha(frame_a) == sha(frame_b)

    row = data.draw(st.integers(0, X.shape[0] - 1))
    column = data.draw(st.integers(0, X.shape[1] - 1))
    changed = X.copy()
    old = changed[row, column]
    changed[row, column] = 1.0 if np.isnan(old) or old != 1.0 else 2.0
    assert sha(changed) != sha(X)
