"""Checks a text model's ONNX graph passes before a version keeps it, and its int8 twin.

Export parity (``check_text_parity``), against the eager model on the reference texts
(sentence-transformers' ``encode``, or the transformers model's forward with its tokenizer):

- embeddings: every row's cosine to the eager embedding at least ``EMBEDDING_MIN_COSINE``
  (0.999) and every value within ``EMBEDDING_ATOL`` (1e-3) times the largest eager magnitude
  (at least 1); float32 exports differ by about 1e-7;
- classifiers: probabilities within ``TEXT_PROBA_ATOL`` (1e-4), and the same label on every row
  whose top two probabilities are more than ``TEXT_LABEL_TIE_MARGIN`` (1e-3) apart.

The int8 twin (``quantize_text_model``: onnxruntime's dynamic quantization, int8 weights per
output channel) is compared with the float32 graph on the same texts and kept only when:

- embeddings: mean cosine at least ``QUANTIZED_MIN_MEAN_COSINE`` (0.99, the issue's bar) and no
  row below ``QUANTIZED_MIN_COSINE`` (0.95): a twin that is good on average but turns one text's
  embedding 18 degrees away would return the wrong neighbours for that text;
- classifiers: label agreement at least ``QUANTIZED_MIN_AGREEMENT`` (99%).

Per channel, because one scale per weight tensor is too coarse for a transformer: on
all-MiniLM-L6-v2 and 11 sentences, per-tensor int8 gave a mean cosine to float32 of 0.955 (min
0.852), per-channel 0.991 (min 0.971), at the same size (23 MB against 90 MB). Only weights are
quantized (a MatMul of two activations, attention's, stays float32), and so are not the
feed-forward down projections that take a GELU's output (``_after_gelu``): on the 8
``REFERENCE_TEXTS`` ("ok" among them) all MatMuls per channel gave mean 0.986 (min 0.942, refused),
without those six 0.993 (min 0.980); on 200 sentences of 4 to 40 words 0.996 (min 0.993), 34 MB,
1.9x the float32 graph's speed at batch 32 (all weights int8: 2.7x, but refused).

Once that twin passes, the down projections are tried int8 one at a time from the last layer to
the first (``_more_int8``), each kept while the twin's mean cosine stays within
``AFTER_GELU_MAX_COSINE_LOSS`` (0.001) of the twin that keeps them all float32 and above the
bounds; ``meta["int8_after_gelu"]`` names them. On all-MiniLM-L6-v2's fused graph and the 8
``REFERENCE_TEXTS``, one at a time they cost 0.0001 (layers 1, 5), 0.0004 (4), 0.0011 (3),
0.0017 (2) and 0.0032 (0) of mean cosine; layers 5, 4 and 1 go int8, and on 128 benchmark
sentences (one shared core, best of 4 CPU-time runs) the twin ran 100 -> 111 sentences per
CPU-second at batch 1 and 116 -> 126 at batch 32, mean cosine to float32 0.9940 -> 0.9930.
"""

from __future__ import annotations

import logging
import tempfile
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from modelyard.errors import ModelyardError, UnsupportedFormatError, first_line
from modelyard.flavors._base import Array, Artifact, LoadOptions
from modelyard.flavors._text import MODEL_FILE, TextOnnxPredictor, cosines, load_text_predictor
from modelyard.flavors._text_fusion import FusedGraph, fuse_text_graph
from modelyard.flavors._transformers import (
    TextModel,
    describe_text_model,
    encode_batch,
    wrapped_module,
)

logger = logging.getLogger(__name__)

EMBEDDING_MIN_COSINE = 0.999
EMBEDDING_ATOL = 1e-3
TEXT_PROBA_ATOL = 1e-4
TEXT_LABEL_TIE_MARGIN = 1e-3
QUANTIZED_MIN_MEAN_COSINE = 0.99
QUANTIZED_MIN_COSINE = 0.95
QUANTIZED_MIN_AGREEMENT = 0.99
#: How much mean cosine to float32 the embedding twin may give up for int8 down projections.
AFTER_GELU_MAX_COSINE_LOSS = 0.001
_EAGER_BATCH = 32


@dataclass(frozen=True, slots=True)
class QuantizedTwin:
    """The int8 graph when it passed (``files``), else ``reason``; ``meta`` has the numbers
    (cosines or label agreement, sizes) either way."""

    files: dict[str, bytes] | None
    meta: dict[str, Any] = field(default_factory=dict)
    reason: str | None = None


def eager_outputs(model: object, texts: list[str]) -> Array:
    """The eager model's final outputs on ``texts``: embeddings (``encode`` for a
    SentenceTransformer) or class probabilities, as float64."""
    described = describe_text_model(model)
    if described.source == "sentence-transformers":
        encode = model.encode  # type: ignore[attr-defined]  # a SentenceTransformer
        values = encode(
            texts, batch_size=_EAGER_BATCH, convert_to_numpy=True, show_progress_bar=False
        )
        return np.asarray(values, dtype=np.float64)
    return _wrapped_outputs(described, texts)


def _wrapped_outputs(model: TextModel, texts: list[str]) -> Array:
    import torch

    module = wrapped_module(model)
    parts = []
    with torch.no_grad():
        for start in range(0, len(texts), _EAGER_BATCH):
            batch = encode_batch(model, texts[start : start + _EAGER_BATCH])
            parts.append(module(**batch).numpy())
    return np.concatenate(parts).astype(np.float64)


def check_text_parity(
    model: object, predictor: TextOnnxPredictor, texts: list[str]
) -> dict[str, Any]:
    """The export's agreement with the eager ``model`` on ``texts`` (numbers for the version's
    meta), or ``UnsupportedFormatError`` in one line when it disagrees (see the module
    docstring for the bounds)."""
    numbers, disagreement = text_parity(model, predictor, texts)
    if disagreement is not None:
        raise UnsupportedFormatError(
            f"The ONNX export disagrees with the model on the {len(texts)} reference texts "
            f"({disagreement}); nothing was registered."
        )
    return numbers


def text_parity(
    model: object, predictor: TextOnnxPredictor, texts: list[str]
) -> tuple[dict[str, Any], str | None]:
    """The parity numbers of ``predictor``'s graph against the eager ``model`` on ``texts``,
    and what is out of bounds (``None`` when it agrees)."""
    wanted = ("predict_proba",) if predictor.has_proba else ("predict",)
    got = np.asarray(predictor.predict_outputs(texts, wanted)[wanted[0]], dtype=np.float64)
    expected = eager_outputs(model, texts)
    if got.shape != expected.shape:
        raise UnsupportedFormatError(
            f"The ONNX export gives outputs of shape {got.shape}, the model {expected.shape}; "
            "the model cannot be registered as ONNX."
        )
    diff = float(np.max(np.abs(got - expected), initial=0.0))
    numbers: dict[str, Any] = {"rows": len(texts), "max_abs_diff": diff}
    if predictor.task == "classification":
        top_two = np.sort(expected, axis=1)[:, -2:]
        clear = (top_two[:, -1] - top_two[:, 0]) > TEXT_LABEL_TIE_MARGIN
        differ = int(np.sum(np.argmax(got, axis=1)[clear] != np.argmax(expected, axis=1)[clear]))
        numbers["label_agreement"] = _agreement(got, expected)
        if diff > TEXT_PROBA_ATOL or differ:
            return numbers, (
                f"max probability difference {diff:.3g}, bound {TEXT_PROBA_ATOL:g}; {differ} "
                "labels differ away from ties"
            )
        return numbers, None
    cos = cosines(got, expected)
    numbers["min_cosine"] = float(cos.min())
    numbers["mean_cosine"] = float(cos.mean())
    bound = EMBEDDING_ATOL * max(1.0, float(np.max(np.abs(expected), initial=0.0)))
    if numbers["min_cosine"] < EMBEDDING_MIN_COSINE or diff > bound:
        return numbers, (
            f"min cosine {numbers['min_cosine']:.6f}, bound {EMBEDDING_MIN_COSINE}; max "
            f"difference {diff:.3g}, bound {bound:.3g}"
        )
    return numbers, None


@dataclass(frozen=True, slots=True)
class FusedText:
    """The artifact with the fused ``model.onnx`` and its loaded predictor when the fused graph
    passed parity, else ``None`` for both; ``meta`` says what was fused, or why not."""

    artifact: Artifact | None
    predictor: TextOnnxPredictor | None
    meta: dict[str, Any]


def fuse_text_model(
    model: object,
    artifact: Artifact,
    texts: list[str],
    *,
    options: LoadOptions | None = None,
    fuse: Callable[[TextModel], FusedGraph] = fuse_text_graph,
) -> FusedText:
    """``artifact`` with its graph replaced by onnxruntime's fused one (``_text_fusion``) when
    that passes the export's parity check against the eager ``model`` on ``texts``. Never
    raises for a graph that does not fuse or disagrees: ``meta["reason"]`` says why."""
    options = options or LoadOptions()
    result = fuse(describe_text_model(model))
    meta: dict[str, Any] = {"kept": False, "optimizer": "onnxruntime.transformers (bert)"}
    if result.fused:
        meta["fused"] = result.fused
    if result.graph is None:
        meta["reason"] = result.reason
        return FusedText(None, None, meta)
    fused = Artifact(files={**artifact.files, MODEL_FILE: result.graph}, meta=artifact.meta)
    try:
        predictor = load_text_predictor(fused, options)
        meta["parity"], disagreement = text_parity(model, predictor, texts)
    except ModelyardError as exc:
        meta["reason"] = f"the fused graph does not run ({exc})"
        return FusedText(None, None, meta)
    if disagreement is not None:
        meta["reason"] = f"the fused graph disagrees with the model ({disagreement})"
        return FusedText(None, None, meta)
    meta["kept"] = True
    return FusedText(fused, predictor, meta)


def quantize_text_model(
    artifact: Artifact,
    texts: list[str],
    *,
    options: LoadOptions | None = None,
    fp32: TextOnnxPredictor | None = None,
    min_mean_cosine: float | None = None,
    min_cosine: float | None = None,
    min_agreement: float | None = None,
) -> QuantizedTwin:
    """An int8 twin of a text model's graph (dynamic quantization, int8 weights), kept only
    when it agrees with the float32 graph on ``texts`` (module docstring; the bounds default to
    the module's constants). ``fp32``: the float32 graph already loaded (the registry's), else
    it is loaded from ``artifact``. Never raises for a twin that fails: ``reason`` says why."""
    options = options or LoadOptions()
    graph = artifact.files[MODEL_FILE]
    meta: dict[str, Any] = {"size_bytes_fp32": len(graph)}
    try:
        int8 = _quantize(graph)
        twin = load_text_predictor(
            Artifact(files={**artifact.files, MODEL_FILE: int8}, meta=artifact.meta), options
        )
        fp32 = fp32 or load_text_predictor(artifact, options)
        wanted = ("predict_proba",) if fp32.has_proba else ("predict",)
        reference = fp32.predict_outputs(texts, wanted)[wanted[0]]
        quantized = twin.predict_outputs(texts, wanted)[wanted[0]]
    except ModelyardError as exc:
        return QuantizedTwin(None, meta, f"the int8 twin does not run ({exc})")
    except Exception as exc:  # the quantizer raises anything; reported, never raised
        return QuantizedTwin(None, meta, f"quantization failed ({first_line(exc)})")
    meta["size_bytes_int8"] = len(int8)
    meta["rows"] = len(texts)
    if fp32.has_proba:
        agreement = _agreement(quantized, reference)
        bound = QUANTIZED_MIN_AGREEMENT if min_agreement is None else min_agreement
        meta.update(label_agreement=agreement, min_label_agreement=bound)
        if agreement < bound:
            reason = f"label agreement with float32 {agreement:.2%} is below {bound:.2%}"
            return QuantizedTwin(None, meta, reason)
        return QuantizedTwin({MODEL_FILE: int8}, meta)
    cos = cosines(quantized, reference)
    mean_bound = QUANTIZED_MIN_MEAN_COSINE if min_mean_cosine is None else min_mean_cosine
    min_bound = QUANTIZED_MIN_COSINE if min_cosine is None else min_cosine
    meta.update(
        mean_cosine=float(cos.mean()),
        min_cosine=float(cos.min()),
        min_mean_cosine=mean_bound,
        min_row_cosine=min_bound,
    )
    if meta["mean_cosine"] < mean_bound or meta["min_cosine"] < min_bound:
        reason = (
            f"cosine to float32: mean {meta['mean_cosine']:.4f} (needs {mean_bound}), min "
            f"{meta['min_cosine']:.4f} (needs {min_bound})"
        )
        return QuantizedTwin(None, meta, reason)

    def cosine_of(graph_int8: bytes) -> Array:
        candidate = load_text_predictor(
            Artifact(files={**artifact.files, MODEL_FILE: graph_int8}, meta=artifact.meta), options
        )
        return cosines(candidate.predict_outputs(texts, wanted)[wanted[0]], reference)

    try:
        int8, cos, meta["int8_after_gelu"] = _more_int8(
            graph, int8, cos, cosine_of, mean_bound=mean_bound, min_bound=min_bound
        )
    except Exception as exc:  # the first twin passed: keep it; the search is a bonus
        logger.warning("the int8 twin keeps its projections after GELU float32: %s", exc)
    meta.update(
        size_bytes_int8=len(int8), mean_cosine=float(cos.mean()), min_cosine=float(cos.min())
    )
    return QuantizedTwin({MODEL_FILE: int8}, meta)


def _more_int8(
    graph: bytes,
    int8: bytes,
    cos: Array,
    cosine_of: Callable[[bytes], Array],
    *,
    mean_bound: float,
    min_bound: float,
) -> tuple[bytes, Array, list[str]]:
    """The twin with as many feed-forward down projections int8 as cost together at most
    ``AFTER_GELU_MAX_COSINE_LOSS`` of mean cosine to float32 (on top of the twin that keeps them
    all float32, whose cosines are ``cos``) and keep the twin's bounds: tried one at a time
    from the last layer (whose GELU outliers matter least) to the first. Returns the graph, its
    cosines and the projections made int8."""
    after_gelu = _after_gelu(graph)
    floor = max(float(cos.mean()) - AFTER_GELU_MAX_COSINE_LOSS, mean_bound)
    chosen: list[str] = []
    for name in reversed(after_gelu):
        trial = [*chosen, name]
        candidate = _quantize(graph, keep_float=[n for n in after_gelu if n not in trial])
        trial_cos = cosine_of(candidate)
        if float(trial_cos.mean()) >= floor and float(trial_cos.min()) >= min_bound:
            chosen, int8, cos = trial, candidate, trial_cos
    return int8, cos, chosen


def _agreement(got: Array, expected: Array) -> float:
    return float(np.mean(np.argmax(got, axis=1) == np.argmax(expected, axis=1)))


class _NoAdvice(logging.Filter):
    """onnxruntime's quantizer logs pre-processing advice on the root logger at WARNING."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "pre-processing before quantization" not in record.getMessage()


def _after_gelu(graph: bytes) -> list[str]:
    """The MatMul/Gemm nodes that take a GELU's output (a transformer's feed-forward down
    projections), which stay float32: GELU activations have outliers that one int8 scale per
    row cannot hold. A ``Gelu`` node (opset 20, the dynamo exporter's) or the ``x * 0.5 *
    (1 + erf(x / sqrt 2))`` pattern older exporters write."""
    import onnx

    model = onnx.load_from_string(graph)
    producer = {out: node for node in model.graph.node for out in node.output}

    def is_gelu(name: str) -> bool:
        node = producer.get(name)
        if node is None:
            return False
        if node.op_type in ("Gelu", "FastGelu", "BiasGelu"):
            return True
        if node.op_type != "Mul":
            return False
        parents = [producer.get(i) for i in node.input]
        grand = [producer.get(i) for p in parents if p is not None for i in p.input]
        return any(g is not None and g.op_type == "Erf" for g in (*parents, *grand))

    return [
        node.name
        for node in model.graph.node
        if node.op_type in ("MatMul", "Gemm") and node.input and is_gelu(node.input[0])
    ]


def _quantize(graph: bytes, keep_float: list[str] | None = None) -> bytes:
    """Dynamic int8 quantization of ``graph``'s weights, per channel, but not of the nodes
    named in ``keep_float`` (by default the projections after a GELU, ``_after_gelu``)."""
    import onnx
    from onnxruntime.quantization import QuantType, quantize_dynamic

    advice = _NoAdvice()
    root = logging.getLogger()
    root.addFilter(advice)
    try:
        with tempfile.TemporaryDirectory() as tmp, warnings.catch_warnings():
            warnings.simplefilter("ignore")
            source, target = Path(tmp) / "fp32.onnx", Path(tmp) / "int8.onnx"
            source.write_bytes(graph)
            quantize_dynamic(
                source, target, weight_type=QuantType.QInt8, per_channel=True,
                nodes_to_exclude=_after_gelu(graph) if keep_float is None else keep_float,
                # a fused graph's contrib ops (Attention, SkipLayerNormalization) have no
                # types in ONNX's shape inference: their weights are float32
                extra_options={
                    "MatMulConstBOnly": True, "DefaultTensorType": onnx.TensorProto.FLOAT,
                },
            )  # fmt: skip
            return target.read_bytes()
    finally:
        root.removeFilter(advice)
