"""Hugging Face transformers and sentence-transformers models, registered as ONNX plus their
tokenizer (``_text`` serves them without PyTorch).

What is accepted (``modelyard.register(model, ...)``):

- a ``sentence_transformers.SentenceTransformer`` made of a Transformer, a Pooling module (mean,
  cls or max) and optionally a Normalize module: a sentence-embedding model;
- a ``(model, tokenizer)`` pair: a transformers ``...ForSequenceClassification`` model (a text
  classifier: labels from ``config.id2label``, probabilities by softmax) or a bare encoder such
  as ``BertModel`` (sentence embeddings by mean pooling, not normalised), with its fast
  tokenizer (one that has a ``tokenizer.json``);
- a local folder (``Registry.register_file``, ``yard models register``): a sentence-transformers
  folder (``modules.json``) or a transformers folder (``config.json`` and ``tokenizer.json``).

The network is exported with PyTorch's dynamo exporter (dynamic batch and sequence axes) inside
a wrapper that pools and normalises, or applies the softmax, so the graph's one output is final:
``predict`` (``[n, dim]`` float32 embeddings) or ``predict_proba`` (``[n, labels]``).
"""

from __future__ import annotations

import inspect
import logging
import sys
import tempfile
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

from modelyard.errors import InvalidInputError, UnsupportedFormatError, first_line
from modelyard.flavors._base import Artifact, LoadOptions, Predictor
from modelyard.flavors._common import qualified_name, require_extra
from modelyard.flavors._text import (
    MODEL_FILE,
    TEXT_COLUMN,
    TOKENIZER_FILE,
    load_text_predictor,
)

#: Texts the export is checked on when the registration gives none (varied lengths, accents).
REFERENCE_TEXTS: tuple[str, ...] = (
    "The quick brown fox jumps over the lazy dog.",
    "A man is playing a guitar.",
    "Stock markets fell sharply after the announcement.",
    "How do I reset my password?",
    "I loved this film, the acting was wonderful and the story moving.",
    "Terrible service, I will not come back.",
    "Le café est très bon.",
    "ok",
)
_POOLINGS = ("mean", "cls", "max")
_UNBOUNDED_LENGTH = 100_000  # transformers' "no limit" model_max_length is 1e30


@dataclass(frozen=True, slots=True)
class TextModel:
    """What the export needs to know about a model, read without running it."""

    source: str  # "sentence-transformers" or "transformers"
    task: str  # "embedding" or "classification"
    encoder: Any  # the torch module that takes input_ids, attention_mask (, token_type_ids)
    tokenizer: Any  # the transformers fast tokenizer
    pooling: str | None
    normalize: bool
    max_length: int
    labels: list[str] | None
    takes_type_ids: bool
    model_class: str


class TransformersFlavor:
    """sentence-transformers and transformers text models; see the module docstring."""

    name: ClassVar[str] = "transformers"
    suffixes: ClassVar[tuple[str, ...]] = ()  # a folder, found by ``is_text_model_folder``

    def accepts(self, model: object) -> bool:
        st = sys.modules.get("sentence_transformers")
        if st is not None and isinstance(model, st.SentenceTransformer):
            return True
        transformers = sys.modules.get("transformers")
        return (
            transformers is not None
            and isinstance(model, tuple)
            and len(model) == 2
            and isinstance(model[0], transformers.PreTrainedModel)
        )

    def check_header(self, path: Path, head: bytes) -> None:
        return None

    def dump(self, model: object) -> Artifact:
        described = describe_text_model(model)
        graph = export_onnx(described)
        tokenizer_json = described.tokenizer.backend_tokenizer.to_str()
        meta: dict[str, Any] = {
            "model_class": described.model_class,
            "source": described.source,
            "task": described.task,
            # the one text input: monitoring describes it as text (monitoring/service.py)
            "text_input": TEXT_COLUMN,
            "pooling": described.pooling,
            "normalize": described.normalize,
            "max_length": described.max_length,
            "truncate": False,
            "pad_id": int(described.tokenizer.pad_token_id or 0),
            "inputs": input_names(described),
        }
        if described.labels is not None:
            meta["labels"] = described.labels
        return Artifact(
            files={MODEL_FILE: graph, TOKENIZER_FILE: tokenizer_json.encode("utf-8")}, meta=meta
        )

    def read_file(self, path: Path, options: LoadOptions) -> Artifact:
        return self.dump(load_text_model(path))

    def load(self, artifact: Artifact, options: LoadOptions) -> Predictor:
        return load_text_predictor(artifact, options)


def is_text_model_folder(path: Path) -> bool:
    """Whether ``path`` is a sentence-transformers or transformers model folder (by its files;
    imports nothing)."""
    if not path.is_dir():
        return False
    if (path / "modules.json").is_file():
        return True
    return (path / "config.json").is_file() and (path / TOKENIZER_FILE).is_file()


def load_text_model(path: Path) -> object:
    """The model in a local folder, as ``register`` takes it: a ``SentenceTransformer`` for a
    folder with ``modules.json``, else a ``(model, tokenizer)`` pair (a sequence classifier when
    its config names one, else the bare encoder). Never downloads."""
    if not is_text_model_folder(path):
        raise InvalidInputError(
            f"'{path}' is not a transformers model folder (no modules.json, or no config.json "
            f"with {TOKENIZER_FILE}); save the model with save_pretrained or "
            "SentenceTransformer.save."
        )
    require_extra("transformers", "transformers")
    try:
        if (path / "modules.json").is_file():
            require_extra("sentence_transformers", "transformers")
            from sentence_transformers import SentenceTransformer

            return SentenceTransformer(str(path), device="cpu", local_files_only=True)
        from transformers import (
            AutoConfig,
            AutoModel,
            AutoModelForSequenceClassification,
            AutoTokenizer,
        )

        config = AutoConfig.from_pretrained(path, local_files_only=True)
        architectures = getattr(config, "architectures", None) or []
        classifier = any(a.endswith("ForSequenceClassification") for a in architectures)
        auto = AutoModelForSequenceClassification if classifier else AutoModel
        model = auto.from_pretrained(path, local_files_only=True)
        tokenizer = AutoTokenizer.from_pretrained(path, local_files_only=True)
    except (OSError, ValueError, KeyError) as exc:
        raise InvalidInputError(
            f"The model folder '{path}' does not load ({first_line(exc)}); check that it was "
            "saved completely."
        ) from exc
    return (model, tokenizer)


def describe_text_model(model: object) -> TextModel:
    """Task, pooling, maximum length and inputs of a model ``register`` accepts; an
    ``UnsupportedFormatError`` naming what does not fit."""
    st = sys.modules.get("sentence_transformers")
    if st is not None and isinstance(model, st.SentenceTransformer):
        return _describe_sentence_transformer(model)
    if isinstance(model, tuple) and len(model) == 2:
        return _describe_pair(model[0], model[1])
    raise UnsupportedFormatError(
        f"The transformers flavor takes a SentenceTransformer or a (model, tokenizer) pair, not "
        f"a {qualified_name(model)}."
    )


def _describe_sentence_transformer(model: Any) -> TextModel:
    modules = list(model)
    kinds = [type(m).__name__ for m in modules]
    if not kinds or kinds[0] != "Transformer" or not hasattr(modules[0], "auto_model"):
        raise UnsupportedFormatError(
            f"The SentenceTransformer's modules are {kinds}; modelyard exports a Transformer "
            "followed by Pooling (and optionally Normalize)."
        )
    if kinds[1:] not in (["Pooling"], ["Pooling", "Normalize"]):
        raise UnsupportedFormatError(
            f"The SentenceTransformer's modules are {kinds}; modelyard exports Transformer, "
            "Pooling and an optional Normalize (not Dense or other modules)."
        )
    pooling = _pooling_mode(modules[1])
    encoder = modules[0].auto_model
    tokenizer = _fast_tokenizer(model.tokenizer)
    limits = [model.max_seq_length, *_limits(encoder, tokenizer)]
    return TextModel(
        source="sentence-transformers",
        task="embedding",
        encoder=encoder,
        tokenizer=tokenizer,
        pooling=pooling,
        normalize=len(kinds) == 3,
        max_length=min(int(n) for n in limits if n),
        labels=None,
        takes_type_ids=_takes_type_ids(encoder, tokenizer),
        model_class=qualified_name(model),
    )


def _pooling_mode(pooling: Any) -> str:
    mode = getattr(pooling, "pooling_mode", None)
    if mode is None:
        config = pooling.get_config_dict()
        flags = {"cls": "pooling_mode_cls_token", "max": "pooling_mode_max_tokens"}
        flags["mean"] = "pooling_mode_mean_tokens"
        chosen = [name for name, key in flags.items() if config.get(key)]
        mode = chosen[0] if len(chosen) == 1 else "+".join(chosen) or "none"
    if mode not in _POOLINGS:
        raise UnsupportedFormatError(
            f"The SentenceTransformer pools by {mode!r}; modelyard exports "
            f"{', '.join(_POOLINGS)} pooling."
        )
    return str(mode)


def _describe_pair(model: Any, tokenizer: Any) -> TextModel:
    transformers = sys.modules.get("transformers")
    if transformers is None or not isinstance(model, transformers.PreTrainedModel):
        raise UnsupportedFormatError(
            f"The first item of the pair is a {qualified_name(model)}, not a transformers model; "
            "pass (model, tokenizer)."
        )
    tokenizer = _fast_tokenizer(tokenizer)
    name = type(model).__name__
    config = model.config
    if name.endswith("ForSequenceClassification"):
        n = int(config.num_labels)
        id2label = getattr(config, "id2label", None) or {}
        labels = [str(id2label.get(i, id2label.get(str(i), f"LABEL_{i}"))) for i in range(n)]
        task, pooling = "classification", None
    elif model.base_model is model:
        task, pooling, labels = "embedding", "mean", None
    else:
        raise UnsupportedFormatError(
            f"A {name} is neither a sequence classifier nor a bare encoder; register a "
            "...ForSequenceClassification model or the base model (AutoModel) for embeddings."
        )
    return TextModel(
        source="transformers",
        task=task,
        encoder=model,
        tokenizer=tokenizer,
        pooling=pooling,
        normalize=False,
        max_length=min(_limits(model, tokenizer)),
        labels=labels,
        takes_type_ids=_takes_type_ids(model, tokenizer),
        model_class=qualified_name(model),
    )


def _fast_tokenizer(tokenizer: Any) -> Any:
    if getattr(tokenizer, "backend_tokenizer", None) is None:
        raise UnsupportedFormatError(
            f"The tokenizer is a {qualified_name(tokenizer)} without a tokenizer.json (a slow "
            "tokenizer); load the model's fast tokenizer (AutoTokenizer, use_fast=True)."
        )
    return tokenizer


def _limits(encoder: Any, tokenizer: Any) -> list[int]:
    """The model's length limits: the tokenizer's ``model_max_length`` (when set) and the
    config's ``max_position_embeddings``; at least one must exist."""
    limits = []
    tokenizer_max = getattr(tokenizer, "model_max_length", None)
    if isinstance(tokenizer_max, int | float) and 0 < tokenizer_max < _UNBOUNDED_LENGTH:
        limits.append(int(tokenizer_max))
    positions = getattr(encoder.config, "max_position_embeddings", None)
    if isinstance(positions, int) and positions > 0:
        limits.append(positions)
    if not limits:
        raise UnsupportedFormatError(
            "The model states no maximum length (no tokenizer model_max_length, no "
            "max_position_embeddings); set tokenizer.model_max_length before registering."
        )
    return limits


def _takes_type_ids(encoder: Any, tokenizer: Any) -> bool:
    parameters = inspect.signature(encoder.forward).parameters
    names = getattr(tokenizer, "model_input_names", ())
    return "token_type_ids" in parameters and "token_type_ids" in names


def input_names(model: TextModel) -> list[str]:
    names = ["input_ids", "attention_mask"]
    return [*names, "token_type_ids"] if model.takes_type_ids else names


def output_name(model: TextModel) -> str:
    return "predict_proba" if model.task == "classification" else "predict"


def wrapped_module(model: TextModel) -> Any:
    """A torch module over ``model.encoder`` whose output is final: pooled (and normalised)
    embeddings, or class probabilities."""
    import torch

    class Wrapped(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.encoder = model.encoder

        def forward(
            self,
            input_ids: torch.Tensor,
            attention_mask: torch.Tensor,
            token_type_ids: torch.Tensor | None = None,
        ) -> torch.Tensor:
            kwargs = {"input_ids": input_ids, "attention_mask": attention_mask}
            if token_type_ids is not None:
                kwargs["token_type_ids"] = token_type_ids
            out = self.encoder(**kwargs)
            if model.task == "classification":
                return torch.softmax(out.logits, dim=-1)
            hidden = out.last_hidden_state if hasattr(out, "last_hidden_state") else out[0]
            pooled: torch.Tensor = _pool(torch, hidden, attention_mask, model.pooling or "mean")
            if model.normalize:
                pooled = torch.nn.functional.normalize(pooled, p=2.0, dim=1)
            return pooled

    return Wrapped().eval()


def _pool(torch: Any, hidden: Any, attention_mask: Any, pooling: str) -> Any:
    if pooling == "cls":
        return hidden[:, 0]
    mask = attention_mask.unsqueeze(-1).to(hidden.dtype)
    if pooling == "max":
        return hidden.masked_fill(mask == 0, torch.finfo(hidden.dtype).min).max(dim=1).values
    return (hidden * mask).sum(dim=1) / mask.sum(dim=1).clamp(min=1e-9)


def encode_batch(model: TextModel, texts: list[str]) -> dict[str, Any]:
    """The transformers tokenizer's padded tensors for ``texts`` (truncated at ``max_length``)."""
    encoded = model.tokenizer(
        texts, padding=True, truncation=True, max_length=model.max_length, return_tensors="pt"
    )
    return {name: encoded[name] for name in input_names(model)}


def export_onnx(model: TextModel) -> bytes:
    """The wrapped model as ONNX bytes (dynamo exporter; batch and sequence axes dynamic)."""
    require_extra("torch", "torch")
    import torch

    module = wrapped_module(model)
    # two rows of different lengths: neither axis may be specialised to 1
    example = encode_batch(model, ["a short text", "a somewhat longer text than the first one"])
    batch = torch.export.Dim("batch")
    sequence = torch.export.Dim("sequence", max=model.max_length)
    names = input_names(model)
    dynamic = {name: {0: batch, 1: sequence} for name in names}
    training = model.encoder.training
    model.encoder.eval()
    onnx_logger = logging.getLogger("torch.onnx")
    level = onnx_logger.level
    onnx_logger.setLevel(logging.ERROR)  # "torchvision is not installed" and friends
    try:
        with warnings.catch_warnings(), torch.no_grad():
            warnings.simplefilter("ignore")
            program = torch.onnx.export(
                module,
                tuple(example[name] for name in names),
                dynamo=True,
                input_names=names,
                output_names=[output_name(model)],
                dynamic_shapes=dynamic,
                external_data=False,
                verbose=False,
            )
            if program is None:  # only a TorchScript export to a file returns nothing
                raise RuntimeError("the exporter returned no program")
            with tempfile.TemporaryDirectory() as tmp:
                path = Path(tmp) / MODEL_FILE
                program.save(str(path), external_data=False)
                return path.read_bytes()
    except Exception as exc:  # the exporter raises many types; one line for the user
        raise UnsupportedFormatError(
            f"The {model.model_class} does not export to ONNX ({type(exc).__name__}: "
            f"{first_line(exc)}); modelyard serves text models through ONNX only."
        ) from exc
    finally:
        onnx_logger.setLevel(level)
        model.encoder.train(training)
