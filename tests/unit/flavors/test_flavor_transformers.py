"""The transformers flavor on tiny randomly initialised BERT models: ONNX export with pooling or
softmax inside, the tokenizer run by ``tokenizers``, padding per batch, truncation, bad input,
and the int8 twin's parity check."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from tests._text_models import (
    LABELS,
    save_pair,
    tiny_classifier,
    tiny_encoder,
    tiny_sentence_transformer,
)

from modelyard.errors import InvalidInputError, UnsupportedFormatError
from modelyard.flavors import (
    REFERENCE_TEXTS,
    Artifact,
    FusedText,
    LoadOptions,
    TextOnnxPredictor,
    TextPredictor,
    Tokens,
    TransformersFlavor,
    check_text_parity,
    cosines,
    eager_outputs,
    flavor_for_file,
    flavor_for_object,
    fuse_text_model,
    quantize_text_model,
)
from modelyard.flavors._transformers import describe_text_model

TEXTS = [*REFERENCE_TEXTS, "the dog", "a good film with a great story and a bad ending"]


@pytest.fixture(scope="module")
def encoder() -> tuple[Any, Any]:
    return tiny_encoder()


@pytest.fixture(scope="module")
def encoder_artifact(encoder: tuple[Any, Any]) -> Artifact:
    return TransformersFlavor().dump(encoder)


@pytest.fixture(scope="module")
def classifier() -> tuple[Any, Any]:
    return tiny_classifier()


@pytest.fixture(scope="module")
def classifier_artifact(classifier: tuple[Any, Any]) -> Artifact:
    return TransformersFlavor().dump(classifier)


def _load(artifact: Artifact, **meta: Any) -> TextOnnxPredictor:
    predictor = TransformersFlavor().load(
        Artifact(files=artifact.files, meta={**artifact.meta, **meta}), LoadOptions()
    )
    assert isinstance(predictor, TextOnnxPredictor)
    return predictor


def test_encoder_exports_with_mean_pooling_and_matches_the_eager_model(
    encoder: tuple[Any, Any], encoder_artifact: Artifact
) -> None:
    assert set(encoder_artifact.files) == {"model.onnx", "tokenizer.json"}
    meta = encoder_artifact.meta
    assert (meta["task"], meta["pooling"], meta["normalize"]) == ("embedding", "mean", False)
    assert meta["max_length"] == 96  # the tokenizer's 96 < the config's 128 positions
    assert meta["inputs"] == ["input_ids", "attention_mask", "token_type_ids"]
    assert meta["text_input"] == "text"  # monitoring describes this input as text
    predictor = _load(encoder_artifact)
    assert isinstance(predictor, TextPredictor)
    assert predictor.provider == "CPUExecutionProvider"  # the setting's choice, as ONNX models
    got = predictor.predict(TEXTS)
    assert got.dtype == np.float32 and got.shape == (len(TEXTS), 32)
    np.testing.assert_allclose(got, eager_outputs(encoder, TEXTS), atol=1e-5)
    numbers = check_text_parity(encoder, predictor, TEXTS)
    assert numbers["rows"] == len(TEXTS) and numbers["min_cosine"] > 0.9999


def test_tokens_are_unpadded_and_a_batch_pads_only_to_its_longest_row(
    encoder_artifact: Artifact,
) -> None:
    predictor = _load(encoder_artifact)
    tokens = predictor.tokenize(["the dog", "a good film with a great story"])
    assert [len(row) for row in tokens.ids] == [4, 9]  # [CLS] ... [SEP]
    assert tokens.ids[0].dtype == np.int64 and tokens.ids[0][0] == 2
    assert tokens.type_ids is not None and not any(row.any() for row in tokens.type_ids)
    alone = predictor.predict_tokens(Tokens([tokens.ids[0]], [tokens.type_ids[0]]), ("predict",))
    together = predictor.predict_tokens(tokens, ("predict",))
    # the short row padded to 9 tokens (attention mask 0) gives its unpadded embedding
    np.testing.assert_allclose(together["predict"][0], alone["predict"][0], atol=1e-5)


def test_predict_sorts_by_length_and_keeps_the_row_order(encoder_artifact: Artifact) -> None:
    predictor = _load(encoder_artifact)
    texts = ["the quick brown fox " * 4, "ok", "the dog", "how do i reset my password"] * 30
    together = predictor.predict(texts)
    one_by_one = np.vstack([predictor.predict([t]) for t in texts[:4]])
    np.testing.assert_allclose(together[:4], one_by_one, atol=1e-5)
    np.testing.assert_allclose(together[4:8], one_by_one, atol=1e-5)


def test_classifier_gives_label_strings_and_softmax_scores(
    classifier: tuple[Any, Any], classifier_artifact: Artifact
) -> None:
    predictor = _load(classifier_artifact)
    assert predictor.classes == LABELS and predictor.has_proba
    proba = predictor.predict_proba(TEXTS)
    assert proba.shape == (len(TEXTS), 3)
    np.testing.assert_allclose(proba.sum(axis=1), 1.0, atol=1e-5)
    np.testing.assert_allclose(proba, eager_outputs(classifier, TEXTS), atol=1e-5)
    labels = predictor.predict(TEXTS)
    assert list(labels) == [LABELS[i] for i in np.argmax(proba, axis=1)]
    both_labels, both_proba = predictor.predict_with_proba(TEXTS)
    assert list(both_labels) == list(labels)
    np.testing.assert_array_equal(both_proba, proba)
    numbers = check_text_parity(classifier, predictor, TEXTS)
    assert numbers["label_agreement"] == 1.0


def test_a_saved_classifier_folder_reads_back_as_the_same_classifier(
    classifier: tuple[Any, Any], classifier_artifact: Artifact, tmp_path: Path
) -> None:
    folder = save_pair(classifier, tmp_path / "clf")
    assert isinstance(flavor_for_file(folder, trust_pickle=False), TransformersFlavor)
    artifact = TransformersFlavor().read_file(folder, LoadOptions())
    assert artifact.meta["task"] == "classification" and artifact.meta["labels"] == LABELS
    np.testing.assert_allclose(
        _load(artifact).predict_proba(TEXTS),
        _load(classifier_artifact).predict_proba(TEXTS),
        atol=1e-6,
    )


def test_a_folder_that_is_not_a_model_is_refused_by_name(tmp_path: Path) -> None:
    (tmp_path / "config.json").write_text("{}")
    (tmp_path / "tokenizer.json").write_text("{}")
    with pytest.raises(InvalidInputError, match=r"^The model folder '.*' does not load \("):
        TransformersFlavor().read_file(tmp_path, LoadOptions())


def test_too_long_text_is_refused_naming_the_input_unless_truncation_is_on(
    encoder_artifact: Artifact,
) -> None:
    long_text = "the dog " * 60  # 122 tokens with [CLS] and [SEP]
    strict = _load(encoder_artifact)
    with pytest.raises(InvalidInputError, match=r"^Input 'text' row 1 is 122 tokens long, over "
                       r"the model's maximum of 96; .*truncate=True"):  # fmt: skip
        strict.predict(["ok", long_text])
    cutting = _load(encoder_artifact, truncate=True)
    tokens = cutting.tokenize(["ok", long_text])
    assert [len(row) for row in tokens.ids] == [3, 96]
    assert tokens.ids[1][-1] == 3  # still ends with [SEP]
    assert cutting.predict(["ok", long_text]).shape == (2, 32)


@pytest.mark.parametrize(
    ("value", "shown"), [(None, "null"), (3, "an int (3)"), (float("nan"), "missing (NaN)")]
)
def test_a_value_that_is_not_text_is_refused_naming_the_input(
    encoder_artifact: Artifact, value: object, shown: str
) -> None:
    predictor = _load(encoder_artifact)
    expected = re.escape(f"Input 'text' row 1 is {shown}, not text; send one string per row.")
    with pytest.raises(InvalidInputError, match=f"^{expected}$"):
        predictor.predict(["fine", value])


def test_an_empty_batch_is_refused(encoder_artifact: Artifact) -> None:
    predictor = _load(encoder_artifact)
    with pytest.raises(InvalidInputError, match=r"^Input 'text' has no rows"):
        predictor.predict([])
    with pytest.raises(InvalidInputError, match=r"^Input 'text' has no rows"):
        predictor.predict_tokens(Tokens([]), ("predict",))


def test_sentence_transformer_keeps_its_pooling_normalisation_and_length(tmp_path: Path) -> None:
    model = tiny_sentence_transformer(tmp_path, max_seq_length=40)
    artifact = TransformersFlavor().dump(model)
    assert artifact.meta["source"] == "sentence-transformers"
    assert (artifact.meta["pooling"], artifact.meta["normalize"]) == ("mean", True)
    assert artifact.meta["max_length"] == 40
    predictor = _load(artifact)
    got = predictor.predict(TEXTS[:6])
    np.testing.assert_allclose(np.linalg.norm(got, axis=1), 1.0, atol=1e-5)
    expected = model.encode(TEXTS[:6], convert_to_numpy=True)
    assert cosines(got, expected).min() > 0.99999
    # the folder is found by its files and reads back as the same model
    assert isinstance(flavor_for_file(tmp_path / "st", trust_pickle=False), TransformersFlavor)
    again = TransformersFlavor().read_file(tmp_path / "st", LoadOptions())
    np.testing.assert_allclose(_load(again).predict(TEXTS[:6]), got, atol=1e-6)


def test_sentence_transformer_with_a_dense_module_is_refused_by_name(tmp_path: Path) -> None:
    from sentence_transformers import SentenceTransformer
    from sentence_transformers.sentence_transformer import modules as models

    encoder = save_pair(tiny_encoder(), tmp_path / "encoder")
    model = SentenceTransformer(
        modules=[models.Transformer(str(encoder)), models.Pooling(32, "mean"), models.Dense(32, 8)],
        device="cpu",
    )
    with pytest.raises(UnsupportedFormatError, match=r"\['Transformer', 'Pooling', 'Dense'\]"):
        TransformersFlavor().dump(model)


def test_a_model_that_is_neither_classifier_nor_encoder_is_refused() -> None:
    from transformers import BertForMaskedLM

    model, tokenizer = tiny_encoder()
    masked = BertForMaskedLM(model.config)
    with pytest.raises(UnsupportedFormatError, match="BertForMaskedLM is neither"):
        TransformersFlavor().dump((masked, tokenizer))


def test_detection_picks_the_flavor_for_a_pair(encoder: tuple[Any, Any]) -> None:
    assert isinstance(flavor_for_object(encoder, trust_pickle=False), TransformersFlavor)


def test_int8_twin_is_kept_with_its_numbers(encoder_artifact: Artifact) -> None:
    twin = quantize_text_model(encoder_artifact, TEXTS)
    assert twin.reason is None and twin.files is not None
    assert set(twin.files) == {"model.onnx"}
    meta = twin.meta
    assert meta["mean_cosine"] >= 0.99 and meta["min_cosine"] >= 0.95
    assert meta["rows"] == len(TEXTS)
    assert (
        meta["size_bytes_int8"]
        < meta["size_bytes_fp32"]
        == len(encoder_artifact.files["model.onnx"])
    )
    quantized = _load(Artifact(files={**encoder_artifact.files, **twin.files}, meta={}), **{
        **encoder_artifact.meta
    })  # fmt: skip
    assert cosines(quantized.predict(TEXTS), _load(encoder_artifact).predict(TEXTS)).min() > 0.95


def test_int8_twin_is_refused_when_it_misses_the_bar(
    encoder_artifact: Artifact, classifier_artifact: Artifact
) -> None:
    # a cosine cannot exceed 1: no twin can pass this bar, and the reason says why
    twin = quantize_text_model(encoder_artifact, TEXTS, min_cosine=1.01)
    assert twin.files is None
    assert twin.reason is not None and "(needs 1.01)" in twin.reason
    assert twin.meta["min_cosine"] < 1.01
    labels = quantize_text_model(classifier_artifact, TEXTS, min_agreement=1.01)
    assert labels.files is None and labels.reason is not None
    assert labels.reason.startswith("label agreement with float32 100.00% is below 101.00%")


def test_detection_and_serving_import_no_torch(encoder_artifact: Artifact, tmp_path: Path) -> None:
    """Picking a flavor for an object never imports a framework, and a text model predicts
    with tokenizers and onnxruntime alone."""
    for name, data in encoder_artifact.files.items():
        (tmp_path / name).write_bytes(data)
    (tmp_path / "meta.json").write_text(__import__("json").dumps(encoder_artifact.meta))
    script = f"""
import json, sys
from pathlib import Path
from modelyard.flavors import Artifact, LoadOptions, flavor_for_object, get_flavor
try:
    flavor_for_object(object(), trust_pickle=False)
except Exception:
    pass
folder = Path({str(tmp_path)!r})
files = {{n: (folder / n).read_bytes() for n in ("model.onnx", "tokenizer.json")}}
meta = json.loads((folder / "meta.json").read_text())
predictor = get_flavor("transformers").load(Artifact(files=files, meta=meta), LoadOptions())
print(predictor.predict(["the dog"]).shape)
heavy = sorted(m for m in ("torch", "transformers", "sentence_transformers") if m in sys.modules)
print("heavy:", heavy)
"""
    proc = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=120, check=False
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines() == ["(1, 32)", "heavy: []"]


def test_int8_twin_keeps_weights_int8_but_the_projections_after_gelu_float32(
    encoder_artifact: Artifact,
) -> None:
    import onnx

    from modelyard.flavors._text_checks import _after_gelu

    graph = encoder_artifact.files["model.onnx"]
    after_gelu = _after_gelu(graph)
    assert len(after_gelu) == 2  # one feed-forward down projection per layer
    twin = quantize_text_model(encoder_artifact, TEXTS)
    assert twin.files is not None
    ops = {
        node.name: node.op_type
        for node in onnx.load_from_string(twin.files["model.onnx"]).graph.node
    }
    made_int8 = twin.meta["int8_after_gelu"]  # those that cost little cosine, last layer first
    assert set(made_int8) <= set(after_gelu)
    kept_float = [name for name in after_gelu if name not in made_int8]
    assert all(ops.get(name) == "MatMul" for name in kept_float)  # left as they were
    assert not any(name in ops for name in made_int8)  # replaced by int8 nodes
    assert "DynamicQuantizeLinear" in ops.values() or "MatMulInteger" in ops.values()
    float_matmuls = [n for n, op in ops.items() if op == "MatMul"]
    # attention's two activation products per layer and the projections kept float32
    assert len(float_matmuls) == 2 * 2 + len(kept_float)
    assert twin.meta["mean_cosine"] >= 0.99 and twin.meta["min_cosine"] >= 0.95


def test_down_projections_go_int8_only_while_they_cost_little_cosine(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import modelyard.flavors._text_checks as checks

    names = ["layer0", "layer1", "layer2"]
    losses = {"layer0": 0.0008, "layer1": 0.0004, "layer2": 0.0001}  # invented per projection
    base = np.array([0.995, 0.993])
    # a "graph" here names its int8 projections; its cosines lose what each one costs
    monkeypatch.setattr(checks, "_after_gelu", lambda _: names)
    monkeypatch.setattr(
        checks,
        "_quantize",
        lambda _, keep_float=None: ",".join(n for n in names if n not in keep_float).encode(),
    )

    def cosine_of(graph: bytes) -> Any:
        return base - sum(losses[n] for n in graph.decode().split(",") if n)

    graph, cos, chosen = checks._more_int8(
        b"", b"", base, cosine_of, mean_bound=0.99, min_bound=0.95
    )
    # last layer first: layer2 (0.0001), layer1 (0.0005 in all), not layer0 (0.0013 > 0.001)
    assert checks.AFTER_GELU_MAX_COSINE_LOSS == 0.001
    assert chosen == ["layer2", "layer1"] and graph == b"layer1,layer2"
    np.testing.assert_allclose(cos, base - 0.0005)


def test_a_text_model_runs_where_the_execution_provider_setting_says(
    encoder_artifact: Artifact,
) -> None:
    from modelyard.errors import ConfigError

    with pytest.raises(ConfigError, match="cuda"):  # no CUDA on this machine: refused by name
        TransformersFlavor().load(encoder_artifact, LoadOptions(onnx_execution_provider="cuda"))
    auto = TransformersFlavor().load(encoder_artifact, LoadOptions(onnx_execution_provider="auto"))
    assert getattr(auto, "provider", None) == "CPUExecutionProvider"


# -- onnxruntime's transformer fusions ----------------------------------------------------------


@pytest.fixture(scope="module")
def fused_encoder(encoder: tuple[Any, Any], encoder_artifact: Artifact) -> FusedText:
    return fuse_text_model(encoder, encoder_artifact, TEXTS)


def test_fusion_makes_one_attention_node_per_layer_and_keeps_parity(
    encoder: tuple[Any, Any], encoder_artifact: Artifact, fused_encoder: FusedText
) -> None:
    import onnx

    meta = fused_encoder.meta
    assert meta["kept"] is True, meta.get("reason")
    assert meta["fused"]["Attention"] == 2 and meta["fused"]["SkipLayerNormalization"] == 4
    assert meta["parity"]["rows"] == len(TEXTS) and meta["parity"]["min_cosine"] > 0.9999
    assert fused_encoder.artifact is not None and fused_encoder.predictor is not None
    graph = fused_encoder.artifact.files["model.onnx"]
    assert graph != encoder_artifact.files["model.onnx"]
    ops = {node.op_type for node in onnx.load_from_string(graph).graph.node}
    assert {"Attention", "SkipLayerNormalization", "BiasGelu"} <= ops and "Softmax" not in ops
    assert (
        fused_encoder.artifact.files["tokenizer.json"] == encoder_artifact.files["tokenizer.json"]
    )
    np.testing.assert_allclose(
        fused_encoder.predictor.predict(TEXTS), eager_outputs(encoder, TEXTS), atol=1e-5
    )
    # the export switched the user's model to eager attention only while it ran
    assert encoder[0].config._attn_implementation == "sdpa"


def test_fused_classifier_keeps_its_labels(
    classifier: tuple[Any, Any], classifier_artifact: Artifact
) -> None:
    fused = fuse_text_model(classifier, classifier_artifact, TEXTS)
    assert fused.meta["kept"] is True and fused.meta["fused"]["Attention"] == 2
    assert fused.meta["parity"]["label_agreement"] == 1.0
    assert fused.predictor is not None
    assert set(fused.predictor.predict(TEXTS)) <= set(LABELS)


def test_a_graph_that_does_not_fuse_or_disagrees_is_not_kept_and_says_why(
    encoder: tuple[Any, Any], encoder_artifact: Artifact
) -> None:
    from modelyard.flavors._text_fusion import FusedGraph, fuse_text_graph

    unfused = fuse_text_model(
        encoder, encoder_artifact, TEXTS, fuse=lambda _: FusedGraph(None, reason="no attention")
    )
    assert (unfused.artifact, unfused.meta["kept"], unfused.meta["reason"]) == (
        None, False, "no attention"
    )  # fmt: skip
    other = fuse_text_graph(describe_text_model(tiny_encoder(seed=1)))  # other weights
    wrong = fuse_text_model(encoder, encoder_artifact, TEXTS, fuse=lambda _: other)
    assert wrong.artifact is None and wrong.meta["kept"] is False
    assert wrong.meta["reason"].startswith("the fused graph disagrees with the model (min cosine")
    broken = fuse_text_model(
        encoder, encoder_artifact, TEXTS, fuse=lambda _: FusedGraph(b"not onnx", {"Attention": 2})
    )
    assert broken.meta["reason"].startswith("the fused graph does not run (onnxruntime cannot")


def test_int8_twin_of_the_fused_graph_quantizes_attention(
    fused_encoder: FusedText,
) -> None:
    import onnx

    from modelyard.flavors._text_checks import _after_gelu

    assert fused_encoder.artifact is not None
    after_gelu = _after_gelu(fused_encoder.artifact.files["model.onnx"])
    assert len(after_gelu) == 2  # the down projections take BiasGelu's output
    twin = quantize_text_model(fused_encoder.artifact, TEXTS)
    assert twin.files is not None, twin.reason
    ops = {
        node.name: node.op_type
        for node in onnx.load_from_string(twin.files["model.onnx"]).graph.node
    }
    assert list(ops.values()).count("QAttention") == 2
    kept_float = [name for name in after_gelu if name not in twin.meta["int8_after_gelu"]]
    assert all(ops.get(name) == "MatMul" for name in kept_float)
