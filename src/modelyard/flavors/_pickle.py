"""Any Python object with ``predict``, pickled: the fallback, loaded only when trusted.

Unpickling runs whatever code the file names, so a pickle is saved and read only with
``trust_pickle`` and is marked ``untrusted`` in its metadata.
"""

from __future__ import annotations

import io
import pickle
from pathlib import Path
from typing import Any, ClassVar

from modelyard.errors import ModelLoadError, UnsupportedFormatError, UntrustedTypeError
from modelyard.flavors._base import Artifact, LoadOptions, Predictor
from modelyard.flavors._common import (
    EstimatorPredictor,
    artifact_file,
    estimator_meta,
    read_model_file,
)

_FILES = ("model.pkl", "model.joblib")


class PickleFlavor:
    """Any object with ``predict``, stored as ``model.pkl`` (cloudpickle when installed)."""

    name: ClassVar[str] = "pickle"
    suffixes: ClassVar[tuple[str, ...]] = (".pkl", ".pickle", ".joblib")

    def accepts(self, model: object) -> bool:
        return callable(getattr(model, "predict", None))

    def check_header(self, path: Path, head: bytes) -> None:
        # Pickles and joblib's compressed files share no magic number; read_file checks them.
        return None

    def dump(self, model: object) -> Artifact:
        try:
            import cloudpickle

            data: bytes = cloudpickle.dumps(model)
            serializer = "cloudpickle"
        except ImportError:
            data = pickle.dumps(model, protocol=pickle.HIGHEST_PROTOCOL)
            serializer = "pickle"
        meta = {**estimator_meta(model), "untrusted": True, "serializer": serializer}
        return Artifact(files={"model.pkl": data}, meta=meta)

    def read_file(self, path: Path, options: LoadOptions) -> Artifact:
        if not options.trust_pickle:
            raise untrusted_pickle_error(f"'{path}' is a pickle")
        data = read_model_file(path)
        name = "model.joblib" if path.suffix.lower() == ".joblib" else "model.pkl"
        model = _unpickle(data, f"'{path}'", UnsupportedFormatError)
        meta = {**estimator_meta(model), "untrusted": True}
        return Artifact(files={name: data}, meta=meta)

    def load(self, artifact: Artifact, options: LoadOptions) -> Predictor:
        name, data = artifact_file(artifact, self.name, _FILES)
        if not options.trust_pickle:
            raise untrusted_pickle_error(f"The model {name} was registered as a pickle")
        return EstimatorPredictor(_unpickle(data, name, ModelLoadError))


def untrusted_pickle_error(subject: str) -> UntrustedTypeError:
    return UntrustedTypeError(
        f"{subject}; loading it runs arbitrary code: pass trust_pickle=True / --trust-pickle "
        "if you trust its author."
    )


def _unpickle(
    data: bytes, source: str, error: type[ModelLoadError | UnsupportedFormatError]
) -> Any:
    """Unpickle with joblib when installed (it also reads the numpy arrays and compression that
    ``joblib.dump`` writes, whatever the file is called), else with pickle."""
    try:
        try:
            import joblib  # type: ignore[import-untyped]  # joblib ships no type hints
        except ImportError:
            return pickle.loads(data)  # only reached with trust_pickle
        return joblib.load(io.BytesIO(data))
    except Exception as exc:  # unpickling runs arbitrary code: it may raise anything
        raise error(
            f"The pickle {source} cannot be loaded ({type(exc).__name__}: {exc}); save it "
            "again in this environment."
        ) from exc
