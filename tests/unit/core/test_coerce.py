from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from modelyard.core.coercion import InputCoercer, coerce_input
from modelyard.core.signature import infer_signature
from modelyard.core.types import Signature, TensorSpec
from modelyard.errors import InvalidInputError, InvalidSpecError, SignatureMismatchError


def col(name: str, dtype: str, **kw: object) -> TensorSpec:
    return TensorSpec(name=name, dtype=dtype, **kw)


SIG = Signature(
    kind="columns",
    inputs=(
        col("age", "int64"),
        col("income", "float64", nullable=True),
        col("plan", "category", categories=("basic", "pro")),
        col("city", "string", nullable=True),
        col("active", "bool"),
        col("joined", "datetime64[ns]"),
    ),
)


def good_frame() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "age": [30, 40],
            "income": [1.5, np.nan],
            "plan": pd.Categorical(["pro", "basic"], categories=["basic", "pro"]),
            "city": ["Oslo", None],
            "active": [True, False],
            "joined": pd.to_datetime(["2024-01-01", "2024-02-01"]),
        }
    )


def assert_like_good(out: object) -> None:
    assert isinstance(out, pd.DataFrame)
    assert list(out.columns) == SIG.column_names
    assert out["age"].dtype == np.int64
    assert out["income"].dtype == np.float64
    assert out["plan"].dtype == pd.CategoricalDtype(["basic", "pro"])
    assert out["active"].dtype == np.bool_
    assert out["joined"].dtype.kind == "M"
    assert out["age"].tolist() == [30, 40]
    assert out["plan"].tolist() == ["pro", "basic"]
    assert out["joined"].tolist() == list(pd.to_datetime(["2024-01-01", "2024-02-01"]))


# --- columns: accepted shapes ------------------------------------------------------------------


def test_a_matching_frame_is_returned_without_a_copy() -> None:
    frame = good_frame()

    assert coerce_input(frame, SIG) is frame


def test_columns_are_reordered_and_the_callers_frame_is_untouched() -> None:
    frame = good_frame()[["joined", "active", "city", "plan", "income", "age"]]
    frame["age"] = frame["age"].astype(np.int32)
    before = frame.copy()

    out = coerce_input(frame, SIG)

    assert_like_good(out)
    pd.testing.assert_frame_equal(frame, before)


def test_records_are_accepted() -> None:
    records = [
        {
            "age": 30,
            "income": 1.5,
            "plan": "pro",
            "city": "Oslo",
            "active": True,
            "joined": "2024-01-01",
        },
        {"joined": "2024-02-01T00:00:00", "age": 40.0, "plan": "basic", "active": False},
    ]

    out = coerce_input(records, SIG)

    assert_like_good(out)
    assert out["income"].isna().tolist() == [False, True]
    assert out["city"].isna().tolist() == [False, True]


def test_a_dict_of_columns_and_a_single_record_are_accepted() -> None:
    columns = {
        "age": [30, 40],
        "income": [1.5, None],
        "plan": ["pro", "basic"],
        "city": ["Oslo", None],
        "active": [1, 0],
        "joined": ["2024-01-01", "2024-02-01"],
    }
    single = {k: v[0] for k, v in columns.items()}

    assert_like_good(coerce_input(columns, SIG))
    out = coerce_input(single, SIG)
    assert isinstance(out, pd.DataFrame)
    assert out["age"].tolist() == [30]


def test_rows_and_arrays_are_taken_positionally() -> None:
    rows = [
        [30, 1.5, "pro", "Oslo", True, "2024-01-01"],
        [40, None, "basic", None, False, "2024-02-01"],
    ]
    numeric = Signature(kind="columns", inputs=(col("a", "int64"), col("b", "float32")))

    assert_like_good(coerce_input(rows, SIG))
    out = coerce_input(np.array([[1.0, 2.0], [3.0, 4.5]]), numeric)
    assert isinstance(out, pd.DataFrame)
    assert out.dtypes.tolist() == [np.int64, np.float32]
    assert out["a"].tolist() == [1, 3]


def test_non_string_column_labels_match_by_their_text() -> None:
    sig = infer_signature(pd.DataFrame(np.zeros((2, 2))))

    out = coerce_input(pd.DataFrame(np.ones((1, 2))), sig)

    assert isinstance(out, pd.DataFrame)
    assert list(out.columns) == ["0", "1"]


def test_extra_columns_are_dropped_only_when_allowed() -> None:
    frame = good_frame().assign(zz=1, aa=2)

    with pytest.raises(
        SignatureMismatchError,
        match=r"^Input has extra column\(s\) \['zz', 'aa'\] not in the signature; drop them or "
        r"pass allow_extra=True\.$",
    ):
        coerce_input(frame, SIG)
    out = coerce_input(frame, SIG, allow_extra=True)
    assert_like_good(out)


# --- columns: casts ----------------------------------------------------------------------------


def test_unseen_categories_become_missing() -> None:
    frame = good_frame()
    frame["plan"] = ["enterprise", "pro"]

    out = coerce_input(frame, SIG)

    assert isinstance(out, pd.DataFrame)
    assert out["plan"].dtype == pd.CategoricalDtype(["basic", "pro"])
    assert out["plan"].isna().tolist() == [True, False]


def test_categoricals_with_other_levels_are_recoded() -> None:
    frame = good_frame()
    frame["plan"] = pd.Categorical(["pro", "free"], categories=["pro", "free"])

    out = coerce_input(frame, SIG)

    assert isinstance(out, pd.DataFrame)
    assert out["plan"].cat.codes.tolist() == [1, -1]


def test_strings_numbers_and_nullable_types() -> None:
    sig = Signature(
        kind="columns",
        inputs=(
            col("zip", "string"),
            col("n", "int64", nullable=True),
            col("ok", "bool", nullable=True),
            col("small", "int8"),
            col("x", "float32"),
        ),
    )
    data = {
        "zip": [1234, None],
        "n": [1.0, None],
        "ok": [True, None],
        "small": ["7", "-3"],
        "x": ["1.5", None],
    }

    out = coerce_input(data, sig)

    assert isinstance(out, pd.DataFrame)
    assert out["zip"].tolist()[0] == "1234"
    assert out["zip"].isna().tolist() == [False, True]
    assert out["n"].dtype == pd.Int64Dtype()
    assert out["n"].isna().tolist() == [False, True]
    assert out["ok"].dtype == pd.BooleanDtype()
    assert out["small"].dtype == np.int8
    assert out["small"].tolist() == [7, -3]
    assert out["x"].dtype == np.float32


def test_time_zones_are_converted_and_checked() -> None:
    sig = Signature(kind="columns", inputs=(col("t", "datetime64[ns, Europe/Oslo]"),))
    naive = Signature(kind="columns", inputs=(col("t", "datetime64[ns]"),))
    utc = pd.DataFrame({"t": pd.to_datetime(["2024-01-01T00:00:00Z"])})

    out = coerce_input({"t": ["2024-01-01T00:00:00+00:00"]}, sig)
    converted = coerce_input(utc, sig)

    assert isinstance(out, pd.DataFrame)
    assert isinstance(converted, pd.DataFrame)
    assert str(out["t"].dt.tz) == "Europe/Oslo"
    assert out["t"].iloc[0].hour == 1
    assert converted["t"].iloc[0] == out["t"].iloc[0]
    with pytest.raises(
        SignatureMismatchError,
        match=r"Column 't' expects datetime64\[ns\] but got datetime64\[.*, UTC\]; drop the zone",
    ):
        coerce_input(utc, naive)
    with pytest.raises(SignatureMismatchError, match=r"expects datetime64\[ns, Europe/Oslo\].*"):
        coerce_input(utc.assign(t=utc["t"].dt.tz_localize(None)), sig)


@pytest.mark.parametrize(
    ("column", "values", "message"),
    [
        ("age", [30, 1.5], r"Column 'age' expects int64 but value 1\.5 at row 1 cannot be cast"),
        ("age", ["30", "old"], r"Column 'age' expects int64 but value 'old' at row 1"),
        ("age", [30, np.inf], r"value inf at row 1"),
        ("age", [30, None], r"Column 'age' \(int64, not nullable\) has a missing value at row 1"),
        ("active", [1, 2], r"Column 'active' expects bool but value 2 at row 1 cannot be cast"),
        ("active", [True, None], r"'active' \(bool, not nullable\) has a missing value at row 1"),
        ("income", ["1.0", "lots"], r"Column 'income' expects float64 but value 'lots' at row 1"),
        ("joined", ["2024-01-01", "soon"], r"Column 'joined' expects datetime64\[ns\] .*'soon'"),
        ("joined", [1, 2], r"Column 'joined' expects datetime64\[ns\] but value 1 at row 0"),
        ("income", pd.to_timedelta([1, 2], unit="s"), r"Column 'income' expects float64"),
    ],
)
def test_values_that_cannot_be_cast_are_named(column: str, values: object, message: str) -> None:
    frame = good_frame()
    frame[column] = values

    with pytest.raises(SignatureMismatchError, match=message) as info:
        coerce_input(frame, SIG)
    assert str(info.value).endswith(".")
    assert "; " in str(info.value)  # one sentence: the problem, then the next step


def test_a_column_of_the_wrong_dtype_with_only_missing_values_is_named() -> None:
    frame = good_frame()
    frame["income"] = pd.to_datetime([None, None])

    with pytest.raises(
        SignatureMismatchError,
        match=r"^Column 'income' expects float64 but got datetime64\[\w+\]; send float64 values",
    ):
        coerce_input(frame, SIG)


def test_empty_categoricals_become_missing() -> None:
    frame = good_frame()
    frame["plan"] = pd.Categorical([None, None], categories=[])

    out = coerce_input(frame, SIG)

    assert isinstance(out, pd.DataFrame)
    assert out["plan"].isna().all()


def test_integers_out_of_range_are_named() -> None:
    sig = Signature(kind="columns", inputs=(col("b", "uint8"),))

    with pytest.raises(SignatureMismatchError, match=r"Column 'b' expects uint8 but value 300 "):
        coerce_input({"b": [1, 300]}, sig)
    with pytest.raises(SignatureMismatchError, match=r"value -1\.0 at row 0"):
        coerce_input({"b": [-1.0, 3.0]}, sig)


# --- columns: shape errors ---------------------------------------------------------------------


def test_missing_columns_are_listed_with_the_extra_ones() -> None:
    frame = good_frame().drop(columns=["age", "plan"]).assign(Age=1)

    with pytest.raises(SignatureMismatchError) as info:
        coerce_input(frame, SIG)

    assert str(info.value) == (
        "Input is missing column(s) ['age', 'plan'] and has extra column(s) ['Age']; send every "
        "signature column (['age', 'income', 'plan', 'city', 'active', 'joined']) or check the "
        "names."
    )


def test_long_column_lists_are_shortened() -> None:
    sig = Signature(kind="columns", inputs=tuple(col(f"c{i}", "float64") for i in range(30)))

    with pytest.raises(
        SignatureMismatchError,
        match=r"missing column\(s\) \['c0', .*'c9', and 20 more\] and has extra column\(s\) "
        r"\['x'\]",
    ):
        coerce_input({"x": [1.0]}, sig)


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (good_frame().iloc[:0], r"^Input has 0 rows; send at least one row\.$"),
        ([], r"^Input has 0 rows"),
        ([[1, 2, 3]], r"^Input has 3 features per row but the signature expects 6; send 6 values"),
        (np.zeros((1, 7)), r"has 7 features per row but the signature expects 6"),
        (
            np.zeros(6),
            r"^Input is 1-D with shape \(6,\) but the model takes a 2-D array of rows x "
            r"6 features; reshape it \(wrap a single row in a list",
        ),
        (np.zeros((1, 1, 6)), r"^Input is 3-D"),
        ([[1, 2], [1, 2, 3]], r"^Input rows have different lengths; send the same number"),
        ([{"age": 1}, [1, 2]], r"^Input row 1 is a list, not a record; send every row as a dict"),
        ({"age": [1, 2], "income": [1.0]}, r"^Input columns have different lengths \{'age': 2, "),
        (good_frame()[["age", "age"]], r"^Input has duplicate columns \['age'\]; send each"),
    ],
)
def test_shape_errors(data: object, message: str) -> None:
    with pytest.raises(SignatureMismatchError, match=message):
        coerce_input(data, SIG)


@pytest.mark.parametrize("data", ["age,income", 42, {1, 2}, None])
def test_unusable_inputs(data: object) -> None:
    with pytest.raises(InvalidInputError, match=r"^Cannot use a \w+ as model input; send a"):
        coerce_input(data, SIG)


def test_an_unknown_signature_dtype_is_a_spec_error() -> None:
    sig = Signature(kind="columns", inputs=(col("a", "complex128"),))

    with pytest.raises(InvalidSpecError, match=r"input 'a' has unknown dtype 'complex128'"):
        InputCoercer(sig)
    with pytest.raises(InvalidSpecError, match=r"unknown dtype 'float65'"):
        InputCoercer(Signature(kind="columns", inputs=(col("a", "float65"),)))


# --- tensors -----------------------------------------------------------------------------------

TENSOR = Signature(kind="tensor", inputs=(col("input", "float32", shape=(-1, 3)),))


def test_a_matching_tensor_is_returned_as_is() -> None:
    X = np.ones((4, 3), dtype=np.float32)

    assert coerce_input(X, TENSOR) is X


def test_tensors_are_cast_and_made_contiguous() -> None:
    fortran = np.asfortranarray(np.arange(6, dtype=np.float32).reshape(2, 3))

    out = coerce_input(fortran, TENSOR)
    from_rows = coerce_input([[1, 2, 3]], TENSOR)
    from_frame = coerce_input(
        pd.DataFrame({"a": [1], "b": [2.5], "c": pd.array([None], "Int64")}), TENSOR
    )

    assert isinstance(out, np.ndarray)
    assert out.flags.c_contiguous
    np.testing.assert_array_equal(out, fortran)
    assert isinstance(from_rows, np.ndarray)
    assert from_rows.dtype == np.float32
    assert from_rows.tolist() == [[1.0, 2.0, 3.0]]
    assert isinstance(from_frame, np.ndarray)
    assert from_frame.dtype == np.float32
    assert np.isnan(from_frame[0, 2])


def test_integer_tensors_accept_whole_floats_only() -> None:
    sig = Signature(kind="tensor", inputs=(col("input", "int32", shape=(-1, 2)),))

    out = coerce_input([[1.0, 2.0]], sig)

    assert isinstance(out, np.ndarray)
    assert out.dtype == np.int32
    with pytest.raises(
        SignatureMismatchError,
        match=r"^Input value 2\.5 at row 1, feature 0 cannot be cast to int32; send int32 values",
    ):
        coerce_input([[1.0, 2.0], [2.5, 1.0]], sig)
    with pytest.raises(SignatureMismatchError, match=r"value nan at row 0, feature 1"):
        coerce_input([[1.0, np.nan]], sig)
    with pytest.raises(SignatureMismatchError, match=r"value 3000000000 at row 0, feature 0"):
        coerce_input(np.array([[3_000_000_000, 1]]), sig)


def test_bool_tensors_accept_zero_and_one_only() -> None:
    sig = Signature(kind="tensor", inputs=(col("input", "bool", shape=(-1, 2)),))

    out = coerce_input([[1, 0]], sig)

    assert isinstance(out, np.ndarray)
    assert out.tolist() == [[True, False]]
    with pytest.raises(SignatureMismatchError, match=r"^Input value 2 at row 0, feature 1 cannot"):
        coerce_input(np.array([[1, 2]]), sig)


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ([[1, "x", 3]], r"^Input value 'x' at row 0, feature 1 cannot be cast to float32"),
        ([1, 2, 3], r"^Input is 1-D with shape \(3,\) but the model takes a 2-D array of rows x 3"),
        (np.zeros((2, 4)), r"^Input has 4 features per row but the signature expects 3"),
        (np.zeros((0, 3)), r"^Input has 0 rows"),
        ([], r"^Input has 0 rows"),
        ([{"a": 1}], r"^The model takes a 2-D array of 3 features, not named columns; send rows"),
        ({"a": [1]}, r"^The model takes a 2-D array of 3 features, not named columns"),
        ([[1, 2, 3], [1, 2]], r"^Input rows have different lengths"),
    ],
)
def test_tensor_errors(data: object, message: str) -> None:
    with pytest.raises(SignatureMismatchError, match=message):
        coerce_input(data, TENSOR)


def test_tensor_rejects_unusable_types() -> None:
    with pytest.raises(InvalidInputError, match=r"Cannot use a str as model input"):
        coerce_input("1,2,3", TENSOR)


# --- properties --------------------------------------------------------------------------------

N_ROWS = st.integers(min_value=1, max_value=20)


@st.composite
def frames(draw: st.DrawFn) -> pd.DataFrame:
    n = draw(N_ROWS)
    floats = st.floats(allow_nan=True, allow_infinity=False, width=64)
    ints = st.integers(min_value=-(2**62), max_value=2**62)
    words = st.text(alphabet="abcxyz", min_size=0, max_size=4)
    return pd.DataFrame(
        {
            "f": draw(st.lists(floats, min_size=n, max_size=n)),
            "i": np.array(draw(st.lists(ints, min_size=n, max_size=n)), dtype=np.int64),
            "s": pd.Series(draw(st.lists(words | st.none(), min_size=n, max_size=n)), dtype="str"),
            "b": draw(st.lists(st.booleans(), min_size=n, max_size=n)),
            "c": pd.Categorical(
                draw(st.lists(st.sampled_from(["lo", "hi"]), min_size=n, max_size=n)),
                categories=["lo", "hi", "mid"],
            ),
        }
    )


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(frames())
def test_coercion_round_trips_frames_records_and_columns(frame: pd.DataFrame) -> None:
    sig = infer_signature(frame)
    coercer = InputCoercer(sig)

    assert coercer(frame) is frame
    for data in (frame.to_dict("records"), frame.to_dict("list"), frame.iloc[:, ::-1]):
        out = coercer(data)
        assert isinstance(out, pd.DataFrame)
        pd.testing.assert_frame_equal(out, frame, check_dtype=True)


@settings(max_examples=40, deadline=None)
@given(hnp.arrays(np.float64, hnp.array_shapes(min_dims=2, max_dims=2, min_side=1, max_side=6)))
def test_tensor_coercion_round_trips(X: np.ndarray) -> None:
    sig = infer_signature(X)

    out = coerce_input(X.tolist(), sig)

    assert isinstance(out, np.ndarray)
    np.testing.assert_array_equal(out, X)
    assert coerce_input(X, sig) is X
