"""ONNX conversion of scikit-learn, XGBoost and LightGBM models, kept only when it agrees.

``convert_to_onnx`` converts with skl2onnx (scikit-learn) or onnxmltools (XGBoost, LightGBM), runs
the ONNX model with the onnx flavor on ``X_check`` (the input example and the reference sample)
and compares it with the original model:

- classifiers: every probability within ``PROBA_ATOL`` (1e-4) of the original's, and the same
  label on every row whose top-two probability margin exceeds ``LABEL_TIE_MARGIN`` (1e-3); rows
  closer to a tie may flip label between float32 and float64 arithmetic;
- regressors (and classifiers without probabilities): ``|onnx - original| <= REGRESSION_ATOL +
  REGRESSION_RTOL * |original|`` with both tolerances 1e-4; non-numeric labels must be equal.

ONNX runs in float32; the differences measured here are 1e-7 to 4e-7 (FIELD-NOTES), so the
tolerances leave two orders of magnitude of headroom while catching a wrong conversion. A
conversion that fails, or disagrees, gives ``artifact=None`` and a ``reason``; it never raises.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

import numpy as np

from modelyard.errors import ModelyardError, first_line
from modelyard.flavors._base import Array, Artifact, LoadOptions, Predictor
from modelyard.flavors._common import EstimatorPredictor, is_frame, json_classes
from modelyard.flavors._lookup import get_flavor
from modelyard.flavors._onnx import OnnxFlavor

if TYPE_CHECKING:
    import onnx
    from pandas import DataFrame

#: Largest absolute difference allowed between ONNX and original class probabilities.
PROBA_ATOL = 1e-4
#: Labels are compared only on rows whose top-two probabilities differ by more than this.
LABEL_TIE_MARGIN = 1e-3
#: Absolute and relative tolerance on regression outputs.
REGRESSION_ATOL = 1e-4
REGRESSION_RTOL = 1e-4

# The converters build nodes with booleans where protobuf wants ints and call deprecated
# helpers; protobuf 6 only warns (FIELD-NOTES), so these warnings are not the user's concern.
_CONVERTER_MODULES = r"(onnx|skl2onnx|onnxmltools|onnxconverter_common|google\.protobuf)(\.|$)"


@dataclass(frozen=True, slots=True)
class ConversionResult:
    """The ONNX artifact when conversion and the parity check succeeded, else the ``reason``.

    ``max_abs_diff`` is the largest difference the parity check found (probabilities for
    classifiers, predictions for regressors), when it ran.
    """

    artifact: Artifact | None
    reason: str | None = None
    max_abs_diff: float | None = None


class _LayoutError(Exception):
    """An ONNX model that does not run on ``X_check``: the next input layout may."""


# An input layout for the converters: (name, "float" | "string", width) per ONNX input.
_InputSpec = list[tuple[str, str, int]]
_Converter = Callable[[object, _InputSpec], "onnx.ModelProto"]


def convert_to_onnx(
    model: object,
    flavor_name: str,
    X_check: DataFrame | Array,
    *,
    options: LoadOptions | None = None,
) -> ConversionResult:
    """Convert ``model`` (of the flavor ``flavor_name``) to ONNX and keep it only when it agrees
    with ``model`` on ``X_check``; see the module docstring for the tolerances. Never raises."""
    options = options or LoadOptions()
    if len(np.shape(X_check)) != 2:
        return ConversionResult(
            None, f"X_check must be 2-D (rows by features), got shape {np.shape(X_check)}."
        )
    converters: dict[str, _Converter] = {
        "sklearn": _convert_sklearn,
        "xgboost": _convert_xgboost,
        "lightgbm": _convert_lightgbm,
    }
    convert = converters.get(flavor_name)
    if convert is None:
        return ConversionResult(
            None, f"ONNX conversion covers sklearn, xgboost and lightgbm, not {flavor_name!r}."
        )
    try:
        reference = _reference_predictor(model, flavor_name, options)
    except ModelyardError as exc:
        return ConversionResult(None, f"The original model cannot predict: {exc}")
    layouts = _layouts(X_check, columns_allowed=flavor_name == "sklearn")
    if not layouts:
        return ConversionResult(
            None, f"{flavor_name} models are converted with numeric inputs only; X has strings."
        )
    reasons: list[str] = []
    for layout, spec in layouts:
        try:
            with warnings.catch_warnings():
                warnings.filterwarnings(
                    "ignore", category=DeprecationWarning, module=_CONVERTER_MODULES
                )
                proto = convert(model, spec)
        except ImportError as exc:
            return ConversionResult(None, str(exc))
        except Exception as exc:  # converters raise anything; reported, never raised
            reasons.append(f"{layout} inputs: {type(exc).__name__}: {first_line(exc)}")
            continue
        try:
            return _check_parity(proto, reference, X_check, options)
        except _LayoutError as exc:
            reasons.append(f"{layout} inputs: {exc}")
    return ConversionResult(None, "ONNX conversion failed (" + "; ".join(reasons) + ").")


def _layouts(X_check: Any, *, columns_allowed: bool) -> list[tuple[str, _InputSpec]]:
    """Input layouts to try: one float tensor when every column is numeric, then (for a
    DataFrame into a scikit-learn model) one input per column."""
    columns = _frame_columns(X_check)
    layouts: list[tuple[str, _InputSpec]] = []
    if columns is None or all(kind == "float" for _, kind in columns):
        layouts.append(("tensor", [("X", "float", int(np.shape(X_check)[1]))]))
    if columns is not None and columns_allowed:
        layouts.append(("columns", [(name, kind, 1) for name, kind in columns]))
    return layouts


def _frame_columns(X: Any) -> list[tuple[str, str]] | None:
    """``(name, "float" | "string")`` per column of a DataFrame, else ``None``."""
    if not is_frame(X):
        return None
    import pandas as pd

    return [
        (str(name), "float" if pd.api.types.is_numeric_dtype(dtype) else "string")
        for name, dtype in X.dtypes.items()
    ]


def _types(spec: _InputSpec, float_type: Any, string_type: Any) -> list[tuple[str, Any]]:
    return [
        (name, (float_type if kind == "float" else string_type)([None, width]))
        for name, kind, width in spec
    ]


def _convert_sklearn(model: object, spec: _InputSpec) -> onnx.ModelProto:
    from skl2onnx import convert_sklearn
    from skl2onnx.common.data_types import FloatTensorType, StringTensorType
    from sklearn.base import is_classifier

    options = {"zipmap": False} if is_classifier(model) else None
    types = _types(spec, FloatTensorType, StringTensorType)
    proto: onnx.ModelProto = convert_sklearn(model, initial_types=types, options=options)
    return proto


def _convert_xgboost(model: object, spec: _InputSpec) -> onnx.ModelProto:
    onnxmltools = _import_onnxmltools("xgboost")
    import xgboost as xgb
    from onnxmltools.convert.common.data_types import FloatTensorType, StringTensorType

    # The converter reads feature indexes from names of the form f0, f1...: convert a copy of
    # the booster without the real names (the ONNX input is positional anyway).
    booster = model.get_booster() if isinstance(model, xgb.XGBModel) else model
    if not isinstance(booster, xgb.Booster):
        raise TypeError(f"expected an XGBoost model, got {type(model).__name__}")
    unnamed = booster.copy()
    unnamed.feature_names = None
    unnamed.feature_types = None
    types = _types(spec, FloatTensorType, StringTensorType)
    proto: onnx.ModelProto = onnxmltools.convert_xgboost(unnamed, initial_types=types)
    return proto


def _convert_lightgbm(model: object, spec: _InputSpec) -> onnx.ModelProto:
    onnxmltools = _import_onnxmltools("lightgbm")
    from onnxmltools.convert.common.data_types import FloatTensorType, StringTensorType

    types = _types(spec, FloatTensorType, StringTensorType)
    proto: onnx.ModelProto = onnxmltools.convert_lightgbm(model, initial_types=types, zipmap=False)
    return proto


def _import_onnxmltools(extra: str) -> Any:
    try:
        import onnxmltools
    except ImportError as exc:
        raise ImportError(
            f"ONNX conversion skipped: onnxmltools is not installed (pip install "
            f"'modelyard[{extra}]')."
        ) from exc
    return onnxmltools


def _reference_predictor(model: object, flavor_name: str, options: LoadOptions) -> Predictor:
    """The original model as a predictor: estimators (sklearn API) directly, raw boosters
    through their flavor, which gives them the wrappers' ``predict_proba``."""
    if hasattr(model, "get_params"):
        return EstimatorPredictor(model)
    flavor = get_flavor(flavor_name)
    return flavor.load(flavor.dump(model), options)


def _check_parity(
    proto: onnx.ModelProto, reference: Predictor, X_check: Any, options: LoadOptions
) -> ConversionResult:
    """The ONNX artifact (with the original's classes) if it agrees with ``reference``; raises
    ``_LayoutError`` when the ONNX model does not run on ``X_check``."""
    flavor = OnnxFlavor()
    artifact = flavor.dump(proto)
    meta = {**artifact.meta, "has_proba": reference.has_proba}
    if reference.classes is not None:
        meta["classes"] = json_classes(reference.classes)
    artifact = replace(artifact, meta=meta)
    try:
        candidate = flavor.load(artifact, options)
        compare = _compare_classifier if reference.has_proba else _compare_predictions
        ok, diff, detail = compare(reference, candidate, X_check)
    except ModelyardError as exc:
        raise _LayoutError(str(exc)) from exc
    except Exception as exc:  # the check reports, never raises
        raise _LayoutError(f"{type(exc).__name__}: {first_line(exc)}") from exc
    if not ok:
        return ConversionResult(None, f"ONNX parity check failed: {detail}.", diff)
    return ConversionResult(artifact, None, diff)


def _compare_classifier(
    reference: Predictor, candidate: Predictor, X: Any
) -> tuple[bool, float, str]:
    expected = np.asarray(reference.predict_proba(X), dtype=np.float64)
    got = np.asarray(candidate.predict_proba(X), dtype=np.float64)
    if expected.shape != got.shape:
        return False, float("inf"), f"probabilities of shape {got.shape}, expected {expected.shape}"
    diff = float(np.max(np.abs(expected - got), initial=0.0))
    if diff > PROBA_ATOL:
        return False, diff, f"max probability difference {diff:.3g} > {PROBA_ATOL:g}"
    top_two = np.sort(expected, axis=1)[:, -2:] if expected.shape[1] > 1 else expected
    clear = (top_two[:, -1] - top_two[:, 0]) > LABEL_TIE_MARGIN
    labels_a = np.asarray(reference.predict(X), dtype=object)[clear]
    labels_b = np.asarray(candidate.predict(X), dtype=object)[clear]
    differ = int(np.sum(labels_a != labels_b))
    if differ:
        detail = f"{differ} labels differ away from ties (max probability diff {diff:.3g})"
        return False, diff, detail
    return True, diff, ""


def _compare_predictions(
    reference: Predictor, candidate: Predictor, X: Any
) -> tuple[bool, float, str]:
    expected = np.asarray(reference.predict(X))
    got = np.asarray(candidate.predict(X))
    if expected.shape != got.shape:
        return False, float("inf"), f"predictions of shape {got.shape}, expected {expected.shape}"
    if not np.issubdtype(expected.dtype, np.number):
        differ = int(np.sum(expected.astype(object) != got.astype(object)))
        return differ == 0, 0.0, f"{differ} predictions differ"
    expected = expected.astype(np.float64)
    got = got.astype(np.float64)
    error = np.abs(expected - got)
    diff = float(np.max(error, initial=0.0))
    ok = bool(np.all(error <= REGRESSION_ATOL + REGRESSION_RTOL * np.abs(expected)))
    bound = f"{REGRESSION_ATOL:g} + {REGRESSION_RTOL:g} * |prediction|"
    return ok, diff, f"max prediction difference {diff:.3g} beyond {bound}"
