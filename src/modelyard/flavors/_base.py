"""What every flavor provides. A flavor turns a model into bytes and bytes back into a predictor.

Flavors work on bytes, not paths: the registry reads each artifact file, checks its sha256, and
hands the very bytes it verified to ``load``; nothing is read twice, so nothing can change between
the check and the load.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Protocol, runtime_checkable

import numpy as np
import numpy.typing as npt

Array = npt.NDArray[Any]


@dataclass(frozen=True, slots=True)
class Artifact:
    """A model as bytes: ``files`` by name (``model.skops``, ``model.json``...) and ``meta``.

    ``meta`` is JSON-safe flavor metadata stored with the version (for example the model class,
    the class labels, the skops types that need trust, the ONNX input layout).
    """

    files: dict[str, bytes]
    meta: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class LoadOptions:
    """What the caller trusts and how runtimes are tuned."""

    trusted_types: tuple[str, ...] = ()
    trust_pickle: bool = False
    onnx_intra_op_threads: int = 1
    onnx_inter_op_threads: int = 1
    #: Run ONNX tree ensembles with modelyard's compiled kernel when it applies (``_onnx_trees``).
    onnx_tree_kernel: bool = False


@runtime_checkable
class Predictor(Protocol):
    """A loaded model. ``X`` is already coerced to what the model was trained on: a DataFrame with
    the signature's columns in order (``columns`` signatures) or a 2-D ndarray (``tensor``)."""

    @property
    def classes(self) -> list[Any] | None: ...

    @property
    def has_proba(self) -> bool: ...

    def predict(self, X: Any) -> Array: ...

    def predict_proba(self, X: Any) -> Array: ...


class Flavor(Protocol):
    """A model format."""

    name: ClassVar[str]
    #: File suffixes this flavor reads (``.skops``); used to pick a flavor for a file.
    suffixes: ClassVar[tuple[str, ...]]

    def accepts(self, model: object) -> bool:
        """Whether this flavor saves ``model`` (an in-memory object)."""
        ...

    def check_header(self, path: Path, head: bytes) -> None:
        """Raise ``UnsupportedFormatError`` when ``head`` (the first bytes of the file at ``path``)
        is not this flavor's format; cheap, without importing the framework."""
        ...

    def dump(self, model: object) -> Artifact:
        """Serialize an in-memory model."""
        ...

    def read_file(self, path: Path, options: LoadOptions) -> Artifact:
        """Read a saved model file as it is (its bytes are kept unchanged)."""
        ...

    def load(self, artifact: Artifact, options: LoadOptions) -> Predictor:
        """Build a predictor from verified bytes."""
        ...


def as_array(values: Any) -> Array:
    """``np.asarray`` that also flattens a one-column 2-D result to 1-D."""
    out = np.asarray(values)
    if out.ndim == 2 and out.shape[1] == 1:
        return out[:, 0]
    return out
