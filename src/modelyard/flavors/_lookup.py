"""Which flavor handles a name, an in-memory model or a file.

Picking a flavor for an object never imports a framework: a model of a framework exists only once
that framework is in ``sys.modules``, so each flavor looks there first.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from modelyard.errors import InvalidSpecError, UnsupportedFormatError
from modelyard.flavors._base import Flavor
from modelyard.flavors._common import read_model_file
from modelyard.flavors._lightgbm import LightGBMFlavor
from modelyard.flavors._onnx import OnnxFlavor
from modelyard.flavors._pickle import PickleFlavor, untrusted_pickle_error
from modelyard.flavors._sklearn import SklearnFlavor
from modelyard.flavors._torch import TorchFlavor
from modelyard.flavors._transformers import TransformersFlavor, is_text_model_folder
from modelyard.flavors._xgboost import XGBoostFlavor

FlavorName = Literal["sklearn", "xgboost", "lightgbm", "onnx", "torch", "transformers", "pickle"]
FLAVOR_NAMES: tuple[FlavorName, ...] = (
    "sklearn", "xgboost", "lightgbm", "onnx", "torch", "transformers", "pickle",
)  # fmt: skip

_FLAVORS: dict[str, type[Flavor]] = {
    "sklearn": SklearnFlavor,
    "xgboost": XGBoostFlavor,
    "lightgbm": LightGBMFlavor,
    "onnx": OnnxFlavor,
    "torch": TorchFlavor,
    "transformers": TransformersFlavor,
    "pickle": PickleFlavor,
}
# Order matters: XGBoost and LightGBM wrappers are scikit-learn estimators too, and a
# transformers or sentence-transformers model is a torch.nn.Module too.
_DETECTION_ORDER: tuple[FlavorName, ...] = (
    "transformers",
    "xgboost",
    "lightgbm",
    "onnx",
    "torch",
    "sklearn",
)
_HEAD_BYTES = 256
_TORCH_SUFFIXES = (".pt", ".pth")
_SUPPORTED_FILES = (
    ".skops (scikit-learn), .onnx, .json or .ubj (XGBoost), .txt or .lgb (LightGBM), "
    ".pkl, .pickle or .joblib (pickle, with --trust-pickle), a transformers or "
    "sentence-transformers model folder"
)


def get_flavor(name: str) -> Flavor:
    """The flavor called ``name``, or ``InvalidSpecError`` listing the valid names."""
    cls = _FLAVORS.get(name)
    if cls is None:
        raise InvalidSpecError(f"Unknown flavor {name!r}; use one of: {', '.join(FLAVOR_NAMES)}.")
    return cls()


def flavor_for_object(model: object, *, trust_pickle: bool) -> Flavor:
    """The flavor that saves ``model``: XGBoost, LightGBM, ONNX, scikit-learn, else pickle when
    ``trust_pickle``; ``UnsupportedFormatError`` otherwise."""
    for name in _DETECTION_ORDER:
        flavor = get_flavor(name)
        if flavor.accepts(model):
            return flavor
    pickle_flavor = PickleFlavor()
    if not pickle_flavor.accepts(model):
        raise UnsupportedFormatError(
            f"A {type(model).__module__}.{type(model).__qualname__} has no predict method and "
            "no flavor saves it; register a fitted model (scikit-learn, XGBoost, LightGBM, ONNX, "
            "PyTorch)."
        )
    if not trust_pickle:
        raise UnsupportedFormatError(
            f"No safe format saves a {type(model).__module__}.{type(model).__qualname__}; pass "
            "trust_pickle=True / --trust-pickle to register it as a pickle."
        )
    return pickle_flavor


def flavor_for_file(path: str | Path, *, trust_pickle: bool) -> Flavor:
    """The flavor that reads the model file at ``path``, by suffix, checked against its content.

    ``InvalidInputError`` when the path is missing, a directory or unreadable;
    ``UnsupportedFormatError`` for other suffixes or content; ``UntrustedTypeError`` for a pickle
    without ``trust_pickle``.
    """
    path = Path(path)
    if is_text_model_folder(path):
        return TransformersFlavor()
    head = read_model_file(path, limit=_HEAD_BYTES)
    suffix = path.suffix.lower()
    for cls in _FLAVORS.values():
        if suffix in cls.suffixes:
            flavor = cls()
            if isinstance(flavor, PickleFlavor) and not trust_pickle:
                raise untrusted_pickle_error(f"'{path}' is a pickle")
            flavor.check_header(path, head)
            return flavor
    if suffix in _TORCH_SUFFIXES:
        raise UnsupportedFormatError(
            f"'{path}' is a PyTorch file, which torch saves as a pickle and modelyard does not "
            "load; register the module from Python: modelyard.register(module, name=..., "
            "input_example=...)."
        )
    raise UnsupportedFormatError(
        f"'{path}' is not a model file modelyard reads (suffix {suffix or 'none'!r}); "
        f"save it as one of: {_SUPPORTED_FILES}."
    )
