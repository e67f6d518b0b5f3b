"""A text model's graph with onnxruntime's transformer fusions: multi-head attention as one
``Attention`` node (the Q, K and V projections in one GEMM, no Reshape/Transpose chain),
``SkipLayerNormalization``, ``BiasGelu`` and ``EmbedLayerNormalization`` (contrib ops of
onnxruntime's CPU provider).

onnxruntime's optimizer (``onnxruntime.transformers.optimizer``, model type ``bert``) finds these
patterns in a TorchScript export of the model with eager attention; in the dynamo export it
fuses only the GELUs and layer norms (scaled-dot-product attention is written there with a NaN
guard and a split scale that it does not recognise), which onnxruntime's own session
optimizations already fuse at load. So the fused graph is a second export (TorchScript, eager
attention, the same wrapper that pools and normalises), and a version keeps it only when it
passes the same parity check as the dynamo export (``check_text_parity``) and at least one
attention was fused; otherwise the dynamo graph stays, with the reason recorded. Never raises.

Measured on all-MiniLM-L6-v2 (6 layers, 12 heads, 384 wide) on one shared AVX2 core, in
process, 128 of the benchmark's seeded sentences, best of 5 CPU-time runs: MatMul kernels are
three quarters of the float32 graph's time at batch 1 (onnxruntime's profiler), so fusing what is
around them saves little: float32 85 -> 91 sentences per CPU-second at batch 1, 103 -> 104 at
batch 32; the int8 twin made from the fused graph (``QAttention``) 115 -> 131 and 137 -> 144.
Cosine to PyTorch unchanged (1.000000 float32; int8 mean 0.9940, min 0.987).
"""

from __future__ import annotations

import logging
import tempfile
import warnings
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from modelyard.errors import first_line
from modelyard.flavors._transformers import TextModel, encode_batch, input_names, output_name

#: The contrib ops the optimizer's statistics count that a kept graph reports.
FUSED_OPS = ("Attention", "SkipLayerNormalization", "BiasGelu", "EmbedLayerNormalization")
_OPSET = 17


@dataclass(frozen=True, slots=True)
class FusedGraph:
    """The fused graph (``graph``) with what was fused (``fused``: op -> count), or the
    ``reason`` there is none."""

    graph: bytes | None
    fused: dict[str, int] = field(default_factory=dict)
    reason: str | None = None


def fuse_text_graph(model: TextModel) -> FusedGraph:
    """``model`` exported with TorchScript and eager attention, then fused by onnxruntime's
    optimizer; a ``reason`` instead when something does not work or no attention was fused."""
    config = getattr(model.encoder, "config", None)
    heads = getattr(config, "num_attention_heads", None)
    hidden = getattr(config, "hidden_size", None)
    if not isinstance(heads, int) or not isinstance(hidden, int):
        return FusedGraph(None, reason="the model config names no num_attention_heads/hidden_size")
    # the optimizer's modules log under their bare names (fusion_embedlayer, onnx_model...)
    disabled = logging.root.manager.disable
    logging.disable(logging.WARNING)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            graph = _torchscript_export(model)
            return _optimized(graph, heads, hidden)
    except Exception as exc:  # the exporter and the optimizer raise anything; reported
        return FusedGraph(None, reason=f"fusion failed ({type(exc).__name__}: {first_line(exc)})")
    finally:
        logging.disable(disabled)


def _torchscript_export(model: TextModel) -> bytes:
    import torch

    from modelyard.flavors._transformers import wrapped_module

    encoder = model.encoder
    attention = getattr(encoder.config, "_attn_implementation", None)
    switch = hasattr(encoder, "set_attn_implementation") and attention != "eager"
    training = encoder.training
    encoder.eval()
    if switch:
        encoder.set_attn_implementation("eager")
    try:
        module = wrapped_module(model)
        example = encode_batch(model, ["a short text", "a somewhat longer text than the first one"])
        names = input_names(model)
        with tempfile.TemporaryDirectory() as tmp, torch.no_grad():
            path = Path(tmp) / "model.onnx"
            torch.onnx.export(
                module,
                tuple(example[name] for name in names),
                str(path),
                dynamo=False,
                input_names=names,
                output_names=[output_name(model)],
                dynamic_axes={name: {0: "batch", 1: "sequence"} for name in names},
                opset_version=_OPSET,
            )
            return path.read_bytes()
    finally:
        if switch:
            encoder.set_attn_implementation(attention)
        encoder.train(training)


def _optimized(graph: bytes, heads: int, hidden: int) -> FusedGraph:
    import onnx
    from onnxruntime.transformers.optimizer import optimize_model

    optimized: Any = optimize_model(
        onnx.load_from_string(graph),
        model_type="bert",
        num_heads=heads,
        hidden_size=hidden,
        opt_level=0,  # the optimizer's fusions only: onnxruntime's own run at every load
        use_gpu=False,
    )
    statistics = optimized.get_fused_operator_statistics()
    fused = {op: int(statistics.get(op, 0)) for op in FUSED_OPS if statistics.get(op)}
    if not fused.get("Attention"):
        ops = Counter(node.op_type for node in optimized.model.graph.node)
        found = ", ".join(f"{op} {n}" for op, n in fused.items()) or "nothing"
        return FusedGraph(
            None,
            fused,
            f"onnxruntime's optimizer fused no attention (fused: {found}; "
            f"{ops.get('Softmax', 0)} Softmax left)",
        )
    model = optimized.model
    if not any(entry.domain == "com.microsoft" for entry in model.opset_import):
        # the contrib ops' domain, which onnx's shape inference (the quantizer's) looks up
        model.opset_import.append(onnx.helper.make_opsetid("com.microsoft", 1))
    return FusedGraph(model.SerializeToString(), fused)
