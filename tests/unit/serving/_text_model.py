"""A small real text model for the server's tests: a ``tokenizers`` WordLevel tokenizer built in
code and a tiny ONNX graph (an embedding lookup and masked mean pooling over ``input_ids`` and
``attention_mask``, dynamic batch and sequence axes) run by onnxruntime, behind the
``TextPredictor`` protocol, as the transformers flavor's predictor is."""

from __future__ import annotations

import threading
import time
from datetime import UTC, datetime
from typing import Any

import numpy as np

from modelyard.core.types import Lineage, ModelVersion, Signature, TensorSpec
from modelyard.errors import InvalidInputError
from modelyard.flavors import Tokens
from modelyard.registry.loaded import LoadedModel

WORDS = (
    "the", "a", "cat", "dog", "sat", "on", "mat", "ran", "far", "away", "quick", "brown", "fox",
    "jumps", "over", "lazy", "hello", "world", "model", "serves", "text", "fast", "short", "long",
)  # fmt: skip
SPECIAL = ("[PAD]", "[UNK]", "[CLS]", "[SEP]")
DIM = 8


def _tokenizer() -> Any:
    from tokenizers import Tokenizer
    from tokenizers.models import WordLevel
    from tokenizers.pre_tokenizers import Whitespace
    from tokenizers.processors import TemplateProcessing

    vocab = {word: i for i, word in enumerate((*SPECIAL, *WORDS))}
    tokenizer = Tokenizer(WordLevel(vocab, unk_token="[UNK]"))
    tokenizer.pre_tokenizer = Whitespace()
    tokenizer.post_processor = TemplateProcessing(
        single="[CLS] $A [SEP]", special_tokens=[("[CLS]", 2), ("[SEP]", 3)]
    )
    return tokenizer


def _onnx_model() -> bytes:
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(7)
    table = rng.normal(size=(len(SPECIAL) + len(WORDS), DIM)).astype(np.float32)
    nodes = [
        helper.make_node("Gather", ["table", "input_ids"], ["embedded"]),
        helper.make_node("Cast", ["attention_mask"], ["maskf"], to=TensorProto.FLOAT),
        helper.make_node("Unsqueeze", ["maskf", "axis2"], ["mask3"]),
        helper.make_node("Mul", ["embedded", "mask3"], ["masked"]),
        helper.make_node("ReduceSum", ["masked", "axis1"], ["summed"], keepdims=0),
        helper.make_node("ReduceSum", ["maskf", "axis1"], ["count"], keepdims=1),
        helper.make_node("Div", ["summed", "count"], ["embedding"]),
    ]
    graph = helper.make_graph(
        nodes,
        "tiny_text",
        [
            helper.make_tensor_value_info("input_ids", TensorProto.INT64, ["batch", "sequence"]),
            helper.make_tensor_value_info(
                "attention_mask", TensorProto.INT64, ["batch", "sequence"]
            ),
        ],
        [helper.make_tensor_value_info("embedding", TensorProto.FLOAT, ["batch", DIM])],
        initializer=[
            numpy_helper.from_array(table, "table"),
            numpy_helper.from_array(np.array([2], dtype=np.int64), "axis2"),
            numpy_helper.from_array(np.array([1], dtype=np.int64), "axis1"),
        ],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 9
    data: bytes = model.SerializeToString()
    return data


class TinyTextPredictor:
    """A sentence embedder over ``text`` (``TextPredictor``); ``calls`` records the shape
    (rows, padded length) of each model call and ``tokenize_threads`` the threads that
    tokenized."""

    text_input = "text"
    classes = None
    has_proba = False

    def __init__(self, *, max_length: int = 16) -> None:
        import onnxruntime as ort

        self.max_length = max_length
        self._tokenizer = _tokenizer()
        options = ort.SessionOptions()
        options.intra_op_num_threads = 1
        options.inter_op_num_threads = 1
        self._session = ort.InferenceSession(
            _onnx_model(), options, providers=["CPUExecutionProvider"]
        )
        self.calls: list[tuple[int, int]] = []
        #: The number of texts of each ``tokenize`` call, and a pause each call takes.
        self.tokenize_calls: list[int] = []
        self.tokenize_delay_s = 0.0
        self.tokenize_threads: set[str] = set()
        self.predict_threads: set[str] = set()

    def tokenize(self, texts: list[str]) -> Tokens:
        self.tokenize_threads.add(threading.current_thread().name)
        self.tokenize_calls.append(len(texts))
        if self.tokenize_delay_s:
            time.sleep(self.tokenize_delay_s)
        bad = next((i for i, t in enumerate(texts) if not isinstance(t, str)), None)
        if bad is not None:
            raise InvalidInputError(f"Input 'text' row {bad} is not text; send strings.")
        encoded = self._tokenizer.encode_batch(texts)
        for i, item in enumerate(encoded):
            if len(item.ids) > self.max_length:
                raise InvalidInputError(
                    f"Input 'text' row {i} has {len(item.ids)} tokens but the model takes at "
                    f"most {self.max_length}; send shorter texts or register with truncation."
                )
        return Tokens([np.asarray(item.ids, dtype=np.int64) for item in encoded])

    def predict_tokens(self, tokens: Tokens, wanted: tuple[str, ...]) -> dict[str, np.ndarray]:
        self.predict_threads.add(threading.current_thread().name)
        lengths = tokens.lengths
        width = int(lengths.max())
        ids = np.zeros((tokens.n, width), dtype=np.int64)
        mask = np.zeros((tokens.n, width), dtype=np.int64)
        for i, row in enumerate(tokens.ids):
            ids[i, : len(row)] = row
            mask[i, : len(row)] = 1
        self.calls.append((tokens.n, width))
        (embedding,) = self._session.run(None, {"input_ids": ids, "attention_mask": mask})
        return {"predict": embedding}

    def predict(self, X: Any) -> np.ndarray:
        texts = list(X[self.text_input])
        return self.predict_tokens(self.tokenize(texts), ("predict",))["predict"]

    def predict_proba(self, X: Any) -> np.ndarray:
        raise NotImplementedError("an embedder has no probabilities")

    def embed_one(self, text: str) -> np.ndarray:
        """One text alone (no padding): what every batched answer must equal."""
        return self.predict_tokens(self.tokenize([text]), ("predict",))["predict"][0]


def text_version(name: str = "embedder", *, example: bool = True) -> ModelVersion:
    signature = Signature(
        kind="columns",
        inputs=(TensorSpec(name="text", dtype="string"),),
        outputs=(TensorSpec(name="predict", dtype="float32", shape=(-1, DIM)),),
    )
    return ModelVersion(
        name=name, version=1, flavor="transformers", files=(), signature=signature,
        input_example={"columns": ["text"], "data": [["hello world"]]} if example else None,
        flavor_meta={}, metrics={}, params={}, tags={}, description=None, lineage=Lineage(),
        run_id=None, created_by="test", created_at=datetime.now(UTC),
    )  # fmt: skip


def text_loaded(predictor: TinyTextPredictor, name: str = "embedder") -> LoadedModel:
    return LoadedModel(text_version(name), predictor, "onnx")  # type: ignore[arg-type]
