"""scikit-learn models saved with skops, whose loader only rebuilds the types it is told to trust.

skops trusts plain data, numpy and most scikit-learn estimators by itself; the types below are the
ones it flags for common estimators that are nevertheless only data holders (tree structures,
neighbour indexes, optimizer state). They were found by saving a battery of estimators with
scikit-learn 1.9 and skops 0.16: trees and forests, gradient boosting (classic and histogram),
nearest neighbours (kd-tree and ball-tree, four metrics), MLPs (adam and sgd), calibrated
classifiers, stacking and voting ensembles, imputers, encoders, spline features and the
univariate feature-selection scores. Names are exact:
nothing is trusted by prefix, and no function that runs code (``builtins.eval``, ``os.*``,
``subprocess.*``) or generic wrapper (``functools.partial``) is listed. Anything else needs
``LoadOptions(trusted_types=...)`` (CLI ``--trust-type``).
"""

from __future__ import annotations

import json
import sys
import zipfile
from pathlib import Path
from typing import Any, ClassVar

from modelyard.errors import (
    InvalidInputError,
    ModelLoadError,
    UnsupportedFormatError,
    UntrustedTypeError,
)
from modelyard.flavors._base import Artifact, LoadOptions, Predictor
from modelyard.flavors._common import (
    EstimatorPredictor,
    artifact_file,
    estimator_meta,
    read_model_file,
)
from modelyard.flavors._skops_io import skops_io

SKOPS_TRUSTED_TYPES: frozenset[str] = frozenset(
    {
        "numpy.dtype",
        "scipy._lib.array_api_compat.numpy._aliases.asarray",
        "scipy.interpolate._bsplines.BSpline",
        "sklearn.calibration._CalibratedClassifier",
        "sklearn.calibration._SigmoidCalibration",
        "sklearn.ensemble._hist_gradient_boosting.predictor.TreePredictor",
        "sklearn.feature_selection._mutual_info.mutual_info_classif",
        "sklearn.feature_selection._mutual_info.mutual_info_regression",
        "sklearn.feature_selection._univariate_selection.chi2",
        "sklearn.feature_selection._univariate_selection.f_classif",
        "sklearn.feature_selection._univariate_selection.f_regression",
        "sklearn.metrics._dist_metrics.ChebyshevDistance64",
        "sklearn.metrics._dist_metrics.EuclideanDistance64",
        "sklearn.metrics._dist_metrics.ManhattanDistance64",
        "sklearn.metrics._dist_metrics.MinkowskiDistance64",
        "sklearn.neighbors._ball_tree.BallTree",
        "sklearn.neighbors._kd_tree.KDTree",
        "sklearn.neural_network._stochastic_optimizers.AdamOptimizer",
        "sklearn.neural_network._stochastic_optimizers.SGDOptimizer",
        "sklearn.tree._tree.Tree",
        "sklearn.utils._bunch.Bunch",
    }
)

_FILE = "model.skops"
# What skops raises on bytes that are not one of its archives.
_PARSE_ERRORS = (zipfile.BadZipFile, KeyError, ValueError, TypeError, json.JSONDecodeError)
# ... and, once parsed, on types this environment cannot import.
_LOAD_ERRORS = (*_PARSE_ERRORS, ImportError, AttributeError)


class SklearnFlavor:
    """scikit-learn estimators and pipelines, stored as ``model.skops``."""

    name: ClassVar[str] = "sklearn"
    suffixes: ClassVar[tuple[str, ...]] = (".skops",)

    def accepts(self, model: object) -> bool:
        base = sys.modules.get("sklearn.base")
        return base is not None and isinstance(model, base.BaseEstimator)

    def check_header(self, path: Path, head: bytes) -> None:
        if not head.startswith(b"PK\x03\x04"):
            raise UnsupportedFormatError(
                f"'{path}' is not a skops file (it is not a zip archive); "
                "save the model with skops.io.dump."
            )

    def dump(self, model: object) -> Artifact:
        sio = skops_io()
        from sklearn.exceptions import NotFittedError
        from sklearn.utils.validation import check_is_fitted

        try:
            check_is_fitted(model)
        except NotFittedError as exc:
            raise InvalidInputError(
                f"The {type(model).__name__} is not fitted; fit it before saving it."
            ) from exc
        try:
            data = sio.dumps(model)
        except (TypeError, ValueError, AttributeError) as exc:
            raise UnsupportedFormatError(
                f"skops cannot save this {type(model).__name__} ({exc}); "
                "register it as a pickle with trust_pickle=True if you must."
            ) from exc
        untrusted = _untrusted_types(data, "the saved model", UnsupportedFormatError)
        return Artifact(files={_FILE: data}, meta=_meta(model, untrusted))

    def read_file(self, path: Path, options: LoadOptions) -> Artifact:
        data = read_model_file(path)
        model, untrusted = _load(data, options, f"'{path}'", UnsupportedFormatError)
        return Artifact(files={_FILE: data}, meta=_meta(model, untrusted))

    def load(self, artifact: Artifact, options: LoadOptions) -> Predictor:
        name, data = artifact_file(artifact, self.name, (_FILE,))
        model, _ = _load(data, options, name, ModelLoadError)
        return EstimatorPredictor(model)


def _meta(model: object, untrusted: list[str]) -> dict[str, Any]:
    return {**estimator_meta(model), "untrusted_types": untrusted}


def _untrusted_types(
    data: bytes, source: str, error: type[ModelLoadError | UnsupportedFormatError]
) -> list[str]:
    sio = skops_io()

    try:
        return sorted(sio.get_untrusted_types(data=data))
    except _PARSE_ERRORS as exc:
        raise error(
            f"The skops file {source} cannot be read ({exc}); save the model again with "
            "skops.io.dump."
        ) from exc


def _load(
    data: bytes,
    options: LoadOptions,
    source: str,
    error: type[ModelLoadError | UnsupportedFormatError],
) -> tuple[object, list[str]]:
    """The estimator in ``data`` and the types it needed trusted, refusing any not trusted."""
    sio = skops_io()

    untrusted = _untrusted_types(data, source, error)
    refused = [
        t for t in untrusted if t not in SKOPS_TRUSTED_TYPES and t not in options.trusted_types
    ]
    if refused:
        listed = ", ".join(refused)
        as_args = ", ".join(repr(t) for t in refused)
        raise UntrustedTypeError(
            f"The skops file {source} contains types modelyard does not trust ({listed}); "
            f"if you trust its author, pass trusted_types=[{as_args}] (CLI: --trust-type "
            "for each)."
        )
    try:
        model: object = sio.loads(data, trusted=untrusted)
    except _LOAD_ERRORS as exc:
        raise error(
            f"The skops file {source} cannot be loaded ({exc}); save the model again with "
            "skops.io.dump."
        ) from exc
    return model, untrusted
