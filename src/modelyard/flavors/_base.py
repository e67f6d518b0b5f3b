"""What every flavor provides. A flavor turns a model into bytes and bytes back into a predictor.

Flavors work on bytes, not paths: the registry reads each artifact file, checks its sha256, and
hands the very bytes it verified to ``load``; nothing is read twice, so nothing can change between
the check and the load.
"""

from __future__ import annotations

from collections.abc import Sequence
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
    #: Where onnxruntime runs models: ``cpu``, ``cuda`` or ``auto`` (``choose_providers``).
    onnx_execution_provider: str = "cpu"


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


@runtime_checkable
class ExampleFlavor(Protocol):
    """A flavor that saves a model by running it on an example (PyTorch's traced export): the
    registry calls ``dump_with_example`` instead of ``Flavor.dump``."""

    def dump_with_example(
        self, model: object, example: Any, *, name: str
    ) -> tuple[Artifact, Array]:
        """The artifact of ``model`` (of the version ``name``) made and checked on ``example``
        (``None`` when the user gave none), and the example as the array the model takes."""
        ...


@dataclass(frozen=True, slots=True)
class Tokens:
    """Tokenized texts, unpadded: row ``i`` is ``ids[i]`` (int64 token ids, special tokens
    included) and ``type_ids[i]`` when the model takes token type ids. A batch pads to its own
    longest row (``lengths.max()``), never to the model's maximum."""

    ids: list[Array]
    type_ids: list[Array] | None = None

    @property
    def n(self) -> int:
        return len(self.ids)

    @property
    def lengths(self) -> Array:
        return np.fromiter((len(row) for row in self.ids), dtype=np.int64, count=len(self.ids))

    def take(self, rows: slice | Sequence[int] | Array) -> Tokens:
        """These rows (a slice, or row numbers in the order wanted)."""
        if isinstance(rows, slice):
            type_ids = None if self.type_ids is None else self.type_ids[rows]
            return Tokens(self.ids[rows], type_ids)
        index = [int(i) for i in rows]
        type_ids = None if self.type_ids is None else [self.type_ids[i] for i in index]
        return Tokens([self.ids[i] for i in index], type_ids)

    @staticmethod
    def concat(parts: list[Tokens]) -> Tokens:
        ids = [row for part in parts for row in part.ids]
        if any(part.type_ids is None for part in parts):
            return Tokens(ids)
        return Tokens(ids, [row for part in parts for row in part.type_ids or ()])


@runtime_checkable
class TextPredictor(Predictor, Protocol):
    """A model over text (issue 14): its signature has one input, ``text_input``, of dtype
    ``string``. The server tokenizes off the event loop (``tokenize``, in a thread of its own,
    timed), batches requests by rows and by tokens, and runs ``predict_tokens`` on each batch;
    ``predict``/``predict_proba`` on a DataFrame with the text column do both steps (batch
    scoring, parity checks)."""

    #: The name of the one text input (a column of the signature).
    text_input: str
    #: The longest token sequence the model takes (special tokens included).
    max_length: int

    def tokenize(self, texts: list[str]) -> Tokens:
        """Token ids for each text. ``InvalidInputError`` naming ``text_input`` for a text
        longer than ``max_length`` tokens when the version does not allow truncation, or a
        value that is not a string. Thread-safe; does not touch the model."""
        ...

    def predict_tokens(self, tokens: Tokens, wanted: tuple[str, ...]) -> dict[str, Array]:
        """The outputs named in ``wanted`` (``predict``, and ``predict_proba`` for classifiers)
        for each row, padding to the longest row of ``tokens``."""
        ...


#: What one more model call costs, in padded tokens: rows of a text batch are split into groups
#: of similar length (each padded to its own longest row) only where that saves more padding
#: than this per extra call. Measured on all-MiniLM-L6-v2 on one core: onnxruntime runs about
#: 4,300 tokens/s whatever the batch size (1 to 64 rows), and a call costs about 1.4 ms more,
#: some 6 tokens; at 128 a batch of 32 sentences of 4 to 40 words was never split and ran 1.73x
#: its tokens padded (135 sentences/s), at 16 it runs 1.14x in 5 calls (216/s).
CALL_COST_TOKENS = 16


def predict_in_groups(
    predictor: TextPredictor, tokens: Tokens, groups: Sequence[Array], wanted: tuple[str, ...]
) -> dict[str, Array]:
    """``predict_tokens`` on each group of rows of ``tokens`` (row numbers, every row in one
    group), with the answers put back in the rows' order."""
    parts = [predictor.predict_tokens(tokens.take(group), wanted) for group in groups]
    order = np.concatenate(groups)
    out: dict[str, Array] = {}
    for name in parts[0]:
        stacked = np.concatenate([np.asarray(part[name]) for part in parts])
        restored = np.empty_like(stacked)
        restored[order] = stacked
        out[name] = restored
    return out


def as_array(values: Any) -> Array:
    """``np.asarray`` that also flattens a one-column 2-D result to 1-D."""
    out = np.asarray(values)
    if out.ndim == 2 and out.shape[1] == 1:
        return out[:, 0]
    return out
