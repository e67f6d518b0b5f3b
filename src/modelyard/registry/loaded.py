"""A loaded model version: ``predict`` (and ``predict_proba`` for classifiers) on a DataFrame, a
2-D array or records, validated and coerced against the version's signature first."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Literal

from modelyard.core.types import ModelVersion, Signature
from modelyard.flavors import Predictor
from modelyard.flavors._base import Array

Runtime = Literal["auto", "native", "onnx", "quantized"]


class LoadedModel:
    """A model version ready to predict. Inputs are checked against the signature."""

    def __init__(self, version: ModelVersion, predictor: Predictor, runtime: str) -> None:
        self.version = version
        self.runtime = runtime
        self.predictor = predictor
        self._coerce: Callable[[Any], Any] | None = None

    @property
    def signature(self) -> Signature | None:
        return self.version.signature

    @property
    def kernel(self) -> str:
        """What runs the model: ``tree kernel`` or ``onnxruntime`` (ONNX), else ``native``."""
        return str(getattr(self.predictor, "engine", self.runtime))

    @property
    def provider(self) -> str | None:
        """The onnxruntime execution provider running an ONNX model (``CPUExecutionProvider``,
        ``CUDAExecutionProvider``); ``None`` for a native one."""
        provider = getattr(self.predictor, "provider", None)
        return None if provider is None else str(provider)

    @property
    def classes(self) -> list[Any] | None:
        return self.predictor.classes

    def prepare(self, X: Any) -> Any:
        """``X`` coerced to the signature (the form the model was trained on). A text model's
        texts are not coerced (a number is refused by the model, not turned into text): it takes
        a DataFrame with its text column, a dict of that column, or a plain list of texts."""
        text_input = getattr(self.predictor, "text_input", None)
        if text_input is not None:
            return _text_input(X, text_input)
        if self._coerce is None:
            signature = self.version.signature
            if signature is None:
                return X
            # imported here: pandas costs a second at start-up, and a server feeding an ONNX
            # model its float matrix never needs it
            from modelyard.core.coercion import InputCoercer

            self._coerce = InputCoercer(signature)
        return self._coerce(X)

    def predict(self, X: Any) -> Array:
        return self.predictor.predict(self.prepare(X))

    def __repr__(self) -> str:
        return f"<LoadedModel {self.version.ref} flavor={self.version.flavor} {self.runtime}>"


class LoadedClassifier(LoadedModel):
    """A loaded classifier: ``predict_proba`` gives one column per class, in ``classes`` order."""

    def predict_proba(self, X: Any) -> Array:
        return self.predictor.predict_proba(self.prepare(X))


def _text_input(X: Any, column: str) -> Any:
    if isinstance(X, list | tuple) and not any(isinstance(v, list | tuple | dict) for v in X):
        return {column: list(X)}
    return X


def loaded_model(version: ModelVersion, predictor: Predictor, runtime: str) -> LoadedModel:
    cls = LoadedClassifier if predictor.has_proba else LoadedModel
    return cls(version, predictor, runtime)
