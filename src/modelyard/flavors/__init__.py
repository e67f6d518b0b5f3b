"""Model formats: save a model as bytes, read a model file, load bytes into a predictor.

Importing this package imports no ML framework; each flavor imports its own when it is used.
"""

from modelyard.flavors._base import (
    Array,
    Artifact,
    ExampleFlavor,
    Flavor,
    LoadOptions,
    Predictor,
    TextPredictor,
    Tokens,
)
from modelyard.flavors._lightgbm import LightGBMFlavor
from modelyard.flavors._lookup import (
    FLAVOR_NAMES,
    FlavorName,
    flavor_for_file,
    flavor_for_object,
    get_flavor,
)
from modelyard.flavors._onnx import OnnxFlavor, choose_providers
from modelyard.flavors._pickle import PickleFlavor
from modelyard.flavors._sklearn import SKOPS_TRUSTED_TYPES, SklearnFlavor
from modelyard.flavors._torch import WEIGHTS_FILE, TorchFlavor, load_weights
from modelyard.flavors._xgboost import XGBoostFlavor
from modelyard.flavors.conversion import (
    LABEL_TIE_MARGIN,
    PROBA_ATOL,
    REGRESSION_ATOL,
    REGRESSION_RTOL,
    ConversionResult,
    convert_to_onnx,
)

__all__ = [
    "FLAVOR_NAMES",
    "LABEL_TIE_MARGIN",
    "PROBA_ATOL",
    "REGRESSION_ATOL",
    "REGRESSION_RTOL",
    "SKOPS_TRUSTED_TYPES",
    "WEIGHTS_FILE",
    "Array",
    "Artifact",
    "ConversionResult",
    "ExampleFlavor",
    "Flavor",
    "FlavorName",
    "LightGBMFlavor",
    "LoadOptions",
    "OnnxFlavor",
    "PickleFlavor",
    "Predictor",
    "SklearnFlavor",
    "TextPredictor",
    "TorchFlavor",
    "Tokens",
    "XGBoostFlavor",
    "choose_providers",
    "convert_to_onnx",
    "flavor_for_file",
    "flavor_for_object",
    "get_flavor",
    "load_weights",
]
