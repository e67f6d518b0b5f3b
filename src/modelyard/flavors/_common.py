"""Pieces every flavor needs: reading model files, optional imports, JSON-safe class labels, and a
predictor over any object with scikit-learn's ``predict``/``predict_proba``/``classes_``."""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import Any

import numpy as np

from modelyard.core.types import Scalar
from modelyard.errors import InvalidInputError, ModelLoadError, first_line
from modelyard.flavors._base import Array, Artifact, as_array


def require_extra(module: str, extra: str) -> None:
    """Import ``module`` or raise ``ImportError`` naming the extra that installs it."""
    try:
        importlib.import_module(module)
    except ImportError as exc:
        raise ImportError(
            f"The {module} package is needed for this model; install it with "
            f"pip install 'modelyard[{extra}]'."
        ) from exc


def read_model_file(path: Path, *, limit: int | None = None) -> bytes:
    """The bytes of a model file (the first ``limit`` of them), or ``InvalidInputError``."""
    if not path.exists():
        raise InvalidInputError(f"Model file '{path}' does not exist; check the path.")
    if path.is_dir():
        raise InvalidInputError(
            f"'{path}' is a directory, not a model file; pass the model file inside it."
        )
    try:
        with path.open("rb") as f:
            return f.read() if limit is None else f.read(limit)
    except OSError as exc:
        raise InvalidInputError(
            f"Model file '{path}' cannot be read ({exc.strerror}); check its permissions."
        ) from exc


def artifact_file(artifact: Artifact, flavor: str, names: tuple[str, ...]) -> tuple[str, bytes]:
    """The first of ``names`` present in ``artifact.files``, or ``ModelLoadError``."""
    for name in names:
        if name in artifact.files:
            return name, artifact.files[name]
    have = ", ".join(sorted(artifact.files)) or "no files"
    raise ModelLoadError(
        f"The {flavor} artifact has no {' or '.join(names)} (it has {have}); "
        "register the model again."
    )


def is_frame(X: object) -> bool:
    """Whether ``X`` is a pandas DataFrame, without importing pandas or touching its module:
    another thread may be importing it right now (a half-imported module has no DataFrame)."""
    return any(
        cls.__name__ == "DataFrame" and cls.__module__.partition(".")[0] == "pandas"
        for cls in type(X).__mro__
    )


def qualified_name(obj: object) -> str:
    cls = type(obj)
    return f"{cls.__module__}.{cls.__qualname__}"


def json_scalar(value: object) -> Scalar:
    """A class label as a JSON-safe Python scalar (numpy scalars unwrapped, others as text)."""
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, str | int | float | bool):
        return value
    return str(value)


def json_classes(values: Any) -> list[Scalar]:
    return [json_scalar(v) for v in np.asarray(values).ravel()]


def binary_proba(p: Array) -> Array:
    """``[1 - p, p]`` columns from the positive-class probability ``p``."""
    p = np.asarray(p)
    return np.column_stack([1 - p, p])


def labels_from_proba(proba: Array, classes: Array) -> Array:
    """The label of the most probable class of each row (the first one on ties)."""
    result: Array = classes[np.argmax(proba, axis=1)]
    return result


def rejected_input(what: str, exc: BaseException, X: Any = None) -> InvalidInputError:
    """The model's own refusal of ``X``, naming the columns that hold values models commonly
    refuse (infinities, or numbers past float32's range, which scikit-learn's trees cast to)."""
    where = _out_of_range_columns(X)
    return InvalidInputError(
        f"The {what} model rejected the input ({first_line(exc)})"
        + (f"; {where}" if where else "")
        + "; check it against the model's signature."
    )


def _out_of_range_columns(X: Any) -> str:
    """``infinite or beyond float32 in: age, income`` for the columns of ``X`` (a DataFrame or
    a 2-D array) that hold such values; empty when none do (or ``X`` is something else)."""
    import pandas as pd

    limit = float(np.finfo(np.float32).max)
    if isinstance(X, pd.DataFrame):
        columns = [(str(name), X[name].to_numpy()) for name in X.columns]
    elif isinstance(X, np.ndarray) and X.ndim == 2:
        columns = [(f"column {i}", X[:, i]) for i in range(X.shape[1])]
    else:
        return ""
    found = []
    for name, values in columns:
        if values.dtype.kind != "f":
            continue
        with np.errstate(invalid="ignore"):
            if bool((np.abs(values[~np.isnan(values)]) > limit).any()):
                found.append(name)
    return f"infinite or beyond float32 in: {', '.join(found[:10])}" if found else ""


def no_proba_error(what: str) -> InvalidInputError:
    return InvalidInputError(
        f"This {what} model has no predict_proba (it is not a probabilistic classifier); "
        "call predict instead."
    )


class EstimatorPredictor:
    """A predictor over an object with ``predict`` (and maybe ``predict_proba``/``classes_``)."""

    def __init__(self, model: Any) -> None:
        if not callable(getattr(model, "predict", None)):
            raise ModelLoadError(
                f"The loaded {qualified_name(model)} has no predict method; register an "
                "estimator that has one."
            )
        self._model = model
        self._has_proba = callable(getattr(model, "predict_proba", None))
        classes = getattr(model, "classes_", None)
        self._classes = None if classes is None else json_classes(classes)

    @property
    def model(self) -> Any:
        return self._model

    @property
    def classes(self) -> list[Any] | None:
        return None if self._classes is None else list(self._classes)

    @property
    def has_proba(self) -> bool:
        return self._has_proba

    def predict(self, X: Any) -> Array:
        try:
            return as_array(self._model.predict(X))
        except ValueError as exc:
            raise rejected_input(type(self._model).__name__, exc, X) from exc

    def predict_proba(self, X: Any) -> Array:
        if not self._has_proba:
            raise no_proba_error(qualified_name(self._model))
        try:
            return np.asarray(self._model.predict_proba(X))
        except ValueError as exc:
            raise rejected_input(type(self._model).__name__, exc, X) from exc


def estimator_meta(model: object) -> dict[str, Any]:
    """``model_class``, ``classes`` (when the model has ``classes_``) and ``has_proba``."""
    meta: dict[str, Any] = {"model_class": qualified_name(model)}
    classes = getattr(model, "classes_", None)
    if classes is not None:
        meta["classes"] = json_classes(classes)
    meta["has_proba"] = callable(getattr(model, "predict_proba", None))
    return meta


class BoosterPredictor:
    """What the XGBoost and LightGBM predictors share: labels are the most probable class of
    ``predict_proba`` for classifiers, and the raw ``_values`` for everything else."""

    def __init__(self, booster: Any, classes: list[Any] | None) -> None:
        self._booster = booster
        self._classes = classes
        self._class_array = np.asarray(classes)

    @property
    def model(self) -> Any:
        """The booster (what ONNX conversion starts from)."""
        return self._booster

    @property
    def classes(self) -> list[Any] | None:
        return None if self._classes is None else list(self._classes)

    @property
    def has_proba(self) -> bool:
        return self._classes is not None

    def predict(self, X: Any) -> Array:
        if self._classes is None:
            return as_array(self._values(X))
        return labels_from_proba(self.predict_proba(X), self._class_array)

    def predict_proba(self, X: Any) -> Array:
        raise NotImplementedError

    def _values(self, X: Any) -> Array:
        raise NotImplementedError
