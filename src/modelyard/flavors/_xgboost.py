"""XGBoost models in XGBoost's own JSON (or UBJSON) format: no pickle, no Python code on load.

The sklearn wrappers (``XGBClassifier``...) are saved as their booster; what the wrapper adds
(class labels, ``missing``) goes into the metadata, and the predictor rebuilds the wrapper's
``predict``/``predict_proba`` from the booster's objective.
"""

from __future__ import annotations

import json
import math
import re
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np

from modelyard.errors import (
    InvalidInputError,
    ModelLoadError,
    UnsupportedFormatError,
    first_line,
)
from modelyard.flavors._base import Array, Artifact, LoadOptions, Predictor
from modelyard.flavors._common import (
    BoosterPredictor,
    artifact_file,
    binary_proba,
    json_classes,
    no_proba_error,
    qualified_name,
    read_model_file,
    rejected_input,
    require_extra,
)

if TYPE_CHECKING:
    import xgboost

_FILES = ("model.json", "model.ubj")
_JSON_HEAD = re.compile(rb'\A\s*\{\s*"learner"\s*:')
#: Objectives whose output is a probability: the model is a classifier with ``predict_proba``.
PROBA_OBJECTIVES = frozenset({"binary:logistic", "multi:softprob", "multi:softmax"})


class XGBoostFlavor:
    """``XGBModel`` wrappers and raw ``Booster`` objects, stored as ``model.json``."""

    name: ClassVar[str] = "xgboost"
    suffixes: ClassVar[tuple[str, ...]] = (".json", ".ubj")

    def accepts(self, model: object) -> bool:
        xgb = sys.modules.get("xgboost")
        return xgb is not None and isinstance(model, xgb.XGBModel | xgb.Booster)

    def check_header(self, path: Path, head: bytes) -> None:
        if path.suffix.lower() == ".ubj":
            ok = head.startswith(b"{") and b"learner" in head[:32]
        else:
            ok = _JSON_HEAD.match(head) is not None
        if not ok:
            raise UnsupportedFormatError(
                f"'{path}' is not an XGBoost model (no 'learner' object at its start); "
                "save the model with Booster.save_model."
            )

    def dump(self, model: object) -> Artifact:
        require_extra("xgboost", "xgboost")
        import xgboost as xgb

        if isinstance(model, xgb.XGBModel):
            if not model.__sklearn_is_fitted__():
                raise InvalidInputError(
                    f"The {type(model).__name__} is not fitted; fit it before saving it."
                )
            booster = model.get_booster()
        elif isinstance(model, xgb.Booster):
            booster = model
        else:
            raise UnsupportedFormatError(
                f"The xgboost flavor saves XGBModel and Booster objects, not "
                f"{qualified_name(model)}; use flavor_for_object to pick a flavor."
            )
        data = bytes(booster.save_raw("json"))
        return Artifact(files={"model.json": data}, meta=_meta(booster, model, "json"))

    def read_file(self, path: Path, options: LoadOptions) -> Artifact:
        data = read_model_file(path)
        fmt = "ubj" if path.suffix.lower() == ".ubj" else "json"
        booster = _booster(data, f"'{path}'", UnsupportedFormatError)
        return Artifact(files={f"model.{fmt}": data}, meta=_meta(booster, booster, fmt))

    def load(self, artifact: Artifact, options: LoadOptions) -> Predictor:
        name, data = artifact_file(artifact, self.name, _FILES)
        return XGBoostPredictor(_booster(data, name, ModelLoadError), artifact.meta)


class XGBoostPredictor(BoosterPredictor):
    """``predict``/``predict_proba`` of an XGBoost booster, the way the sklearn wrappers do it."""

    def __init__(self, booster: xgboost.Booster, meta: dict[str, Any]) -> None:
        config = json.loads(booster.save_config())["learner"]
        self._objective: str = config["objective"]["name"]
        self._inplace = config["gradient_booster"]["name"] != "gblinear"
        best = booster.attr("best_iteration")
        self._iterations = (0, int(best) + 1) if best is not None else (0, 0)
        missing = meta.get("missing")
        self._missing = math.nan if missing is None else float(missing)
        classes: list[Any] | None = None
        if self._objective in PROBA_OBJECTIVES:
            n_class = int(config["learner_model_param"]["num_class"])
            classes = meta.get("classes") or list(range(max(n_class, 2)))
        super().__init__(booster, classes)

    def _values(self, X: Any) -> Array:
        return self._run(X, "value")

    def predict_proba(self, X: Any) -> Array:
        if self._objective == "multi:softmax":
            margin = self._run(X, "margin")
            exp = np.exp(margin - margin.max(axis=1, keepdims=True))
            proba: Array = exp / exp.sum(axis=1, keepdims=True)
            return proba
        if self._objective == "multi:softprob":
            return self._run(X, "value")
        if self._objective == "binary:logistic":
            return binary_proba(self._run(X, "value"))
        raise no_proba_error(f"XGBoost ({self._objective})")

    def _run(self, X: Any, kind: str) -> Array:
        import xgboost as xgb

        try:
            if self._inplace:
                out = self._booster.inplace_predict(
                    X, iteration_range=self._iterations, predict_type=kind, missing=self._missing
                )
            else:
                matrix = xgb.DMatrix(X, missing=self._missing)
                out = self._booster.predict(
                    matrix, iteration_range=self._iterations, output_margin=kind == "margin"
                )
        except (ValueError, TypeError) as exc:  # XGBoostError is a ValueError
            raise rejected_input("XGBoost", exc) from exc
        return np.asarray(out)


def _booster(
    data: bytes, source: str, error: type[ModelLoadError | UnsupportedFormatError]
) -> xgboost.Booster:
    require_extra("xgboost", "xgboost")
    import xgboost as xgb

    booster = xgb.Booster()
    try:
        booster.load_model(bytearray(data))
    except xgb.core.XGBoostError as exc:
        raise error(
            f"{source} is not a readable XGBoost model ({first_line(exc)}); save it again with "
            "Booster.save_model."
        ) from exc
    return booster


def _meta(booster: xgboost.Booster, model: object, fmt: str) -> dict[str, Any]:
    learner = json.loads(booster.save_config())["learner"]
    objective: str = learner["objective"]["name"]
    num_class = int(learner["learner_model_param"]["num_class"])
    meta: dict[str, Any] = {
        "model_class": qualified_name(model),
        "format": fmt,
        "objective": objective,
        "num_class": num_class,
        "n_features": booster.num_features(),
        "feature_names": booster.feature_names,
    }
    missing = getattr(model, "missing", math.nan)
    meta["missing"] = None if missing is None or math.isnan(missing) else float(missing)
    if objective in PROBA_OBJECTIVES:
        classes = getattr(model, "classes_", None)
        meta["classes"] = (
            json_classes(classes) if classes is not None else list(range(max(num_class, 2)))
        )
    meta["has_proba"] = objective in PROBA_OBJECTIVES
    return meta
