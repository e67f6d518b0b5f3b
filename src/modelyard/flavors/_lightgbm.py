"""LightGBM models in LightGBM's text format: no pickle, no Python code on load.

The sklearn wrappers (``LGBMClassifier``...) are saved as their booster (up to the best iteration
when training stopped early); their class labels, which may be strings, go into the metadata.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np

from modelyard.errors import InvalidInputError, ModelLoadError, UnsupportedFormatError, first_line
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
    import lightgbm

_FILE = "model.txt"
#: Objectives whose output is a class probability: the model is a classifier.
PROBA_OBJECTIVES = frozenset({"binary", "multiclass", "multiclassova"})


class LightGBMFlavor:
    """``LGBMModel`` wrappers and raw ``Booster`` objects, stored as ``model.txt``."""

    name: ClassVar[str] = "lightgbm"
    suffixes: ClassVar[tuple[str, ...]] = (".txt", ".lgb")

    def accepts(self, model: object) -> bool:
        lgb = sys.modules.get("lightgbm")
        return lgb is not None and isinstance(model, lgb.LGBMModel | lgb.Booster)

    def check_header(self, path: Path, head: bytes) -> None:
        lines = head.splitlines()[:2]
        if len(lines) < 2 or lines[0].strip() != b"tree" or not lines[1].startswith(b"version="):
            raise UnsupportedFormatError(
                f"'{path}' is not a LightGBM model (it does not start with 'tree' and "
                "'version='); save the model with Booster.save_model."
            )

    def dump(self, model: object) -> Artifact:
        require_extra("lightgbm", "lightgbm")
        import lightgbm as lgb

        if isinstance(model, lgb.LGBMModel):
            if not model.__sklearn_is_fitted__():
                raise InvalidInputError(
                    f"The {type(model).__name__} is not fitted; fit it before saving it."
                )
            booster = model.booster_
        elif isinstance(model, lgb.Booster):
            booster = model
        else:
            raise UnsupportedFormatError(
                f"The lightgbm flavor saves LGBMModel and Booster objects, not "
                f"{qualified_name(model)}; use flavor_for_object to pick a flavor."
            )
        text = booster.model_to_string()
        classes = getattr(model, "classes_", None)
        meta = _meta(text, booster, model, None if classes is None else json_classes(classes))
        return Artifact(files={_FILE: text.encode()}, meta=meta)

    def read_file(self, path: Path, options: LoadOptions) -> Artifact:
        data = read_model_file(path)
        booster = _booster(data, f"'{path}'", UnsupportedFormatError)
        return Artifact(files={_FILE: data}, meta=_meta(data.decode(), booster, booster, None))

    def load(self, artifact: Artifact, options: LoadOptions) -> Predictor:
        name, data = artifact_file(artifact, self.name, (_FILE,))
        booster = _booster(data, name, ModelLoadError)
        header = _header(data.decode())
        classes = artifact.meta.get("classes") or _default_classes(header)
        return LightGBMPredictor(booster, header.get("objective", ""), classes)


class LightGBMPredictor(BoosterPredictor):
    """``predict``/``predict_proba`` of a LightGBM booster, the way ``LGBMClassifier`` does it."""

    def __init__(
        self, booster: lightgbm.Booster, objective: str, classes: list[Any] | None
    ) -> None:
        super().__init__(booster, classes if objective in PROBA_OBJECTIVES else None)
        self._objective = objective

    def _values(self, X: Any) -> Array:
        return self._run(X)

    def predict_proba(self, X: Any) -> Array:
        if self._classes is None:
            raise no_proba_error(f"LightGBM ({self._objective or 'custom objective'})")
        out = self._run(X)
        return binary_proba(out) if self._objective == "binary" else out

    def _run(self, X: Any) -> Array:
        import lightgbm as lgb

        try:
            return np.asarray(self._booster.predict(X))
        except (lgb.basic.LightGBMError, ValueError, TypeError) as exc:
            raise rejected_input("LightGBM", exc) from exc


def _booster(
    data: bytes, source: str, error: type[ModelLoadError | UnsupportedFormatError]
) -> lightgbm.Booster:
    require_extra("lightgbm", "lightgbm")
    import lightgbm as lgb

    try:
        return lgb.Booster(model_str=data.decode())
    except (lgb.basic.LightGBMError, UnicodeDecodeError) as exc:
        raise error(
            f"{source} is not a readable LightGBM model ({first_line(exc)}); save it again with "
            "Booster.save_model."
        ) from exc


def _header(text: str) -> dict[str, str]:
    """``objective`` (its first word) and ``num_class`` from the header of a model text."""
    header: dict[str, str] = {}
    for line in text.splitlines():
        if line.startswith("Tree="):
            break
        key, sep, value = line.partition("=")
        if sep and key in ("objective", "num_class"):
            header[key] = value.split(" ", 1)[0]
    return header


def _default_classes(header: dict[str, str]) -> list[Any]:
    return list(range(max(int(header.get("num_class", "1")), 2)))


def _meta(
    text: str, booster: lightgbm.Booster, model: object, classes: list[Any] | None
) -> dict[str, Any]:
    header = _header(text)
    objective = header.get("objective", "")
    meta: dict[str, Any] = {
        "model_class": qualified_name(model),
        "objective": objective,
        "num_class": int(header.get("num_class", "1")),
        "n_features": booster.num_feature(),
        "feature_names": booster.feature_name(),
        "has_proba": objective in PROBA_OBJECTIVES,
    }
    if objective in PROBA_OBJECTIVES:
        meta["classes"] = classes or _default_classes(header)
    return meta
