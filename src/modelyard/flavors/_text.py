"""Text models served from ONNX: a Hugging Face ``tokenizer.json`` run by the ``tokenizers``
library, and an ONNX graph whose output is final (pooled and normalised sentence embeddings, or
class probabilities). Serving imports neither PyTorch nor transformers; registering does
(``_transformers``).

The artifact holds ``model.onnx`` and ``tokenizer.json``; its meta says the task
(``embedding`` or ``classification``), ``max_length`` (special tokens included), whether the
version ``truncate``s longer texts (otherwise they are refused, naming the input), the class
``labels`` of a classifier and the token id that pads a batch.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from modelyard.errors import InvalidInputError, ModelLoadError, first_line
from modelyard.flavors._base import (
    CALL_COST_TOKENS,
    Array,
    Artifact,
    LoadOptions,
    Tokens,
    predict_in_groups,
)
from modelyard.flavors._common import artifact_file, is_frame, no_proba_error
from modelyard.flavors._onnx import new_session

if TYPE_CHECKING:
    import onnxruntime
    import tokenizers

#: The name of a text model's one input (a signature column of dtype ``string``).
TEXT_COLUMN = "text"
MODEL_FILE = "model.onnx"
TOKENIZER_FILE = "tokenizer.json"
#: ``predict`` and ``predict_proba`` on a table run in chunks of texts of similar length (sorted
#: by tokens), each at most this many rows and this many padded tokens (rows x longest row).
CHUNK_ROWS = 64
CHUNK_TOKENS = 8_192
#: ... and a chunk ends where the next row would add more padding than a model call costs. The
#: server splits its batches with ``serving.batching.length_groups`` (the cheapest split, O(n^2)
#: in the rows: bounded there by the batch's row cap); a table here may have many thousands of
#: rows, so one pass over them sorted by length cuts where a row costs more than a call.
CHUNK_PADDING_TOKENS = CALL_COST_TOKENS


class TextOnnxPredictor:
    """A text model: tokenize with ``tokenizers``, pad each batch to its own longest row, run
    onnxruntime. Implements ``TextPredictor``."""

    text_input: str = TEXT_COLUMN

    def __init__(
        self,
        session: onnxruntime.InferenceSession,
        tokenizer: tokenizers.Tokenizer,
        meta: dict[str, Any],
    ) -> None:
        self._session = session
        self._tokenizer = tokenizer
        self.max_length: int = int(meta["max_length"])
        self.truncate = bool(meta.get("truncate", False))
        self.task: str = str(meta["task"])
        self._pad_id = int(meta.get("pad_id", 0))
        labels = meta.get("labels")
        self._labels: list[Any] | None = list(labels) if labels is not None else None
        self._label_array = np.asarray(self._labels, dtype=object) if labels is not None else None
        self._input_names = {arg.name for arg in session.get_inputs()}
        self.takes_type_ids = "token_type_ids" in self._input_names
        self._output = session.get_outputs()[0].name
        # The stored tokenizer.json may pad to a fixed width or truncate at its own length; the
        # predictor pads per batch and truncates only when the version allows it.
        tokenizer.no_padding()
        if self.truncate:
            tokenizer.enable_truncation(self.max_length)
        else:
            tokenizer.no_truncation()

    @property
    def classes(self) -> list[Any] | None:
        return None if self._labels is None else list(self._labels)

    @property
    def has_proba(self) -> bool:
        return self._labels is not None

    @property
    def engine(self) -> str:
        return "onnxruntime"

    @property
    def provider(self) -> str:
        """The onnxruntime execution provider that runs the model (``CPUExecutionProvider``)."""
        return str(self._session.get_providers()[0])

    # -- TextPredictor ----------------------------------------------------------------------

    def tokenize(self, texts: list[str]) -> Tokens:
        if not texts:
            raise InvalidInputError(
                f"Input '{self.text_input}' has no rows; send at least one text."
            )
        for i, text in enumerate(texts):
            if not isinstance(text, str):
                raise InvalidInputError(
                    f"Input '{self.text_input}' row {i} is {_described(text)}, not text; send "
                    "one string per row."
                )
        encodings = self._tokenizer.encode_batch(texts, add_special_tokens=True)
        ids = [np.asarray(e.ids, dtype=np.int64) for e in encodings]
        if not self.truncate:
            for i, row in enumerate(ids):
                if len(row) > self.max_length:
                    raise InvalidInputError(
                        f"Input '{self.text_input}' row {i} is {len(row)} tokens long, over "
                        f"the model's maximum of {self.max_length}; shorten it, or register "
                        "the model with truncate=True (--truncate) to cut long texts."
                    )
        if not self.takes_type_ids:
            return Tokens(ids)
        return Tokens(ids, [np.asarray(e.type_ids, dtype=np.int64) for e in encodings])

    def predict_tokens(self, tokens: Tokens, wanted: tuple[str, ...]) -> dict[str, Array]:
        if tokens.n == 0:
            raise InvalidInputError(
                f"Input '{self.text_input}' has no rows; send at least one text."
            )
        scores = self._run(tokens)
        if self._label_array is None:
            return {"predict": scores}
        out: dict[str, Array] = {}
        if "predict_proba" in wanted:
            out["predict_proba"] = scores
        if "predict" in wanted:
            out["predict"] = self._label_array[np.argmax(scores, axis=1)]
        return out

    # -- Predictor --------------------------------------------------------------------------

    def predict(self, X: Any) -> Array:
        return self.predict_outputs(X, ("predict",))["predict"]

    def predict_proba(self, X: Any) -> Array:
        if self._labels is None:
            raise no_proba_error("text embedding")
        return self.predict_outputs(X, ("predict_proba",))["predict_proba"]

    def predict_with_proba(self, X: Any) -> tuple[Array, Array]:
        """Labels and probabilities from one run (a classifier computes both)."""
        if self._labels is None:
            raise no_proba_error("text embedding")
        out = self.predict_outputs(X, ("predict", "predict_proba"))
        return out["predict"], out["predict_proba"]

    def predict_outputs(self, X: Any, wanted: tuple[str, ...]) -> dict[str, Array]:
        """Tokenize, then run chunks of texts sorted by length (a long text does not make short
        ones pad to it), and put the rows back in their order."""
        tokens = self.tokenize(texts_of(X, self.text_input))
        order = np.argsort(tokens.lengths, kind="stable")
        groups = [order[chunk] for chunk in _chunks(tokens.lengths[order])]
        return predict_in_groups(self, tokens, groups, wanted)

    def _run(self, tokens: Tokens) -> Array:
        lengths = tokens.lengths
        width = max(int(lengths.max()), 1)
        ids = np.full((tokens.n, width), self._pad_id, dtype=np.int64)
        mask = np.zeros((tokens.n, width), dtype=np.int64)
        for i, row in enumerate(tokens.ids):
            ids[i, : len(row)] = row
            mask[i, : len(row)] = 1
        feed = {"input_ids": ids, "attention_mask": mask}
        if self.takes_type_ids:
            type_ids = np.zeros((tokens.n, width), dtype=np.int64)
            for i, row in enumerate(tokens.type_ids or ()):
                type_ids[i, : len(row)] = row
            feed["token_type_ids"] = type_ids
        try:
            result: Array = self._session.run([self._output], feed)[0]
        except Exception as exc:  # onnxruntime's errors have no common base
            raise InvalidInputError(
                f"The text model failed on a batch of {tokens.n} texts ({first_line(exc)}); "
                "check the input texts."
            ) from exc
        return result.astype(np.float32, copy=False)


def load_text_predictor(artifact: Artifact, options: LoadOptions) -> TextOnnxPredictor:
    """The predictor of a text model's artifact (``model.onnx`` and ``tokenizer.json``)."""

    try:
        from tokenizers import Tokenizer
    except ImportError as exc:
        raise ImportError(
            "The tokenizers package is needed to serve a text model; install it with "
            "pip install 'modelyard[text]'."
        ) from exc
    _, graph = artifact_file(artifact, "transformers", (MODEL_FILE,))
    _, tokenizer_json = artifact_file(artifact, "transformers", (TOKENIZER_FILE,))
    try:
        tokenizer = Tokenizer.from_str(tokenizer_json.decode("utf-8"))
    except Exception as exc:  # tokenizers raises plain Exception subclasses
        raise ModelLoadError(
            f"The text model's {TOKENIZER_FILE} does not load ({first_line(exc)}); register "
            "the model again."
        ) from exc
    session = new_session(
        graph, options, name=f"the text model's {MODEL_FILE}", hint="register the model again"
    )
    for key in ("task", "max_length"):
        if key not in artifact.meta:
            raise ModelLoadError(
                f"The text model's metadata has no {key!r}; register the model again."
            )
    return TextOnnxPredictor(session, tokenizer, artifact.meta)


def texts_of(X: Any, column: str = TEXT_COLUMN) -> list[Any]:
    """The texts of ``X``: the ``column`` of a DataFrame or dict (or its only column), a Series,
    a list of strings or a 1-D array (or one column of a 2-D one). Values are not checked
    here."""
    if is_frame(X):
        if column in X.columns:
            return list(X[column].tolist())
        if X.shape[1] == 1:
            return list(X.iloc[:, 0].tolist())
        raise InvalidInputError(
            f"The text model takes one column '{column}'; the table has "
            f"{[str(c) for c in X.columns][:10]}."
        )
    if isinstance(X, dict):
        if column not in X and len(X) != 1:
            raise InvalidInputError(
                f"The text model takes one column '{column}'; the data has {sorted(X)[:10]}."
            )
        X = X[column] if column in X else next(iter(X.values()))
        if isinstance(X, str):
            X = [X]
    if hasattr(X, "tolist") and not isinstance(X, np.ndarray):  # a pandas Series
        return list(X.tolist())
    if isinstance(X, str):
        raise InvalidInputError(
            f"Input '{column}' must be a list of texts, not one string; wrap it in a list."
        )
    array = np.asarray(X, dtype=object)
    if array.ndim == 2 and array.shape[1] == 1:
        array = array[:, 0]
    if array.ndim != 1:
        raise InvalidInputError(
            f"Input '{column}' takes one text per row, got data of shape {array.shape}."
        )
    return list(array.tolist())


def cosines(a: Array, b: Array) -> Array:
    """Row-wise cosine similarity of two ``[n, d]`` arrays (1 where both rows are zero)."""
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    norms = np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1)
    dots = np.sum(a * b, axis=1)
    safe = np.where(norms > 0, norms, 1.0)
    result: Array = np.where(norms > 0, dots / safe, 1.0)
    return result


def _chunks(sorted_lengths: Array) -> list[slice]:
    """Slices of rows sorted by length: at most ``CHUNK_ROWS`` rows and ``CHUNK_TOKENS`` padded
    tokens each (a row longer than that alone is its own chunk), and a new chunk where the next
    row would pad the chunk's rows by more than ``CHUNK_PADDING_TOKENS`` in all."""
    chunks: list[slice] = []
    start = 0
    n = len(sorted_lengths)
    for stop in range(1, n + 1):
        rows = stop - start
        longest = int(sorted_lengths[stop - 1])
        padded = rows * longest
        grows = (rows - 1) * (longest - int(sorted_lengths[stop - 2])) if rows > 1 else 0
        if rows > CHUNK_ROWS or (
            rows > 1 and (padded > CHUNK_TOKENS or grows > CHUNK_PADDING_TOKENS)
        ):
            chunks.append(slice(start, stop - 1))
            start = stop - 1
    chunks.append(slice(start, n))
    return chunks


def _described(value: object) -> str:
    if value is None:
        return "null"
    if isinstance(value, float) and np.isnan(value):
        return "missing (NaN)"
    text = repr(value)
    text = text if len(text) <= 40 else text[:37] + "..."
    kind = type(value).__name__
    return f"{'an' if kind[0] in 'aeiou' else 'a'} {kind} ({text})"
