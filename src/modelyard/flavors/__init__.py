"""Model formats: save a model as bytes, read a model file, load bytes into a predictor.

Importing this package imports no ML framework; each flavor imports its own when it is used.
"""

from modelyard.flavors._base import (
    CALL_COST_TOKENS,
    Array,
    Artifact,
    ExampleFlavor,
    Flavor,
    LoadOptions,
    Predictor,
    TextPredictor,
    Tokens,
    predict_in_groups,
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
from modelyard.flavors._skops_io import skops_io
from modelyard.flavors._text import MODEL_FILE as TEXT_MODEL_FILE
from modelyard.flavors._text import TEXT_COLUMN, TextOnnxPredictor, cosines, texts_of
from modelyard.flavors._text_checks import (
    EMBEDDING_ATOL,
    EMBEDDING_MIN_COSINE,
    QUANTIZED_MIN_AGREEMENT,
    QUANTIZED_MIN_COSINE,
    QUANTIZED_MIN_MEAN_COSINE,
    TEXT_PROBA_ATOL,
    FusedText,
    QuantizedTwin,
    check_text_parity,
    eager_outputs,
    fuse_text_model,
    quantize_text_model,
)
from modelyard.flavors._torch import WEIGHTS_FILE, TorchFlavor, load_weights
from modelyard.flavors._transformers import (
    REFERENCE_TEXTS,
    TransformersFlavor,
    is_text_model_folder,
    load_text_model,
)
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
    "CALL_COST_TOKENS",
    "EMBEDDING_ATOL",
    "EMBEDDING_MIN_COSINE",
    "FLAVOR_NAMES",
    "FusedText",
    "LABEL_TIE_MARGIN",
    "PROBA_ATOL",
    "QUANTIZED_MIN_AGREEMENT",
    "QUANTIZED_MIN_COSINE",
    "QUANTIZED_MIN_MEAN_COSINE",
    "REGRESSION_ATOL",
    "REGRESSION_RTOL",
    "REFERENCE_TEXTS",
    "SKOPS_TRUSTED_TYPES",
    "TEXT_COLUMN",
    "TEXT_MODEL_FILE",
    "TEXT_PROBA_ATOL",
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
    "QuantizedTwin",
    "SklearnFlavor",
    "TextOnnxPredictor",
    "TextPredictor",
    "TorchFlavor",
    "Tokens",
    "TransformersFlavor",
    "XGBoostFlavor",
    "check_text_parity",
    "choose_providers",
    "convert_to_onnx",
    "cosines",
    "eager_outputs",
    "flavor_for_file",
    "fuse_text_model",
    "flavor_for_object",
    "get_flavor",
    "is_text_model_folder",
    "load_text_model",
    "quantize_text_model",
    "texts_of",
    "load_weights",
    "predict_in_groups",
    "skops_io",
]
