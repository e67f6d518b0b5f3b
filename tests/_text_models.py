"""Tiny randomly initialised BERT models and a WordPiece tokenizer made in code, for fast tests
of text models (no download: the vocabulary is a word list, the weights are seeded)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")

WORDS = (
    "the",
    "a",
    "an",
    "is",
    "was",
    "and",
    "or",
    "of",
    "to",
    "in",
    "on",
    "for",
    "with",
    "this",
    "that",
    "it",
    "i",
    "you",
    "we",
    "they",
    "my",
    "your",
    "good",
    "bad",
    "great",
    "terrible",
    "film",
    "movie",
    "service",
    "food",
    "quick",
    "brown",
    "fox",
    "dog",
    "jumps",
    "over",
    "lazy",
    "man",
    "playing",
    "guitar",
    "stock",
    "markets",
    "fell",
    "password",
    "reset",
    "how",
    "do",
    "loved",
    "acting",
    "story",
    "ok",
    "le",
    "café",
    "est",
    "très",
    "bon",
)
SPECIAL = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
LETTERS = "abcdefghijklmnopqrstuvwxyz"
LABELS = ["negative", "neutral", "positive"]


def tiny_tokenizer(max_length: int = 96) -> Any:
    """A transformers fast tokenizer over a WordPiece vocabulary of the words above and single
    letters (unknown words split into letters), BERT's normalisation and [CLS] ... [SEP]."""
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast

    entries = [*SPECIAL, *WORDS, *LETTERS, *".,?!'", *(f"##{c}" for c in LETTERS)]
    vocab = {word: i for i, word in enumerate(dict.fromkeys(entries))}
    backend = Tokenizer(models.WordPiece(vocab, unk_token="[UNK]"))
    backend.normalizer = normalizers.BertNormalizer(lowercase=True)
    backend.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    backend.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]",
        pair="[CLS] $A [SEP] $B:1 [SEP]:1",
        special_tokens=[("[CLS]", vocab["[CLS]"]), ("[SEP]", vocab["[SEP]"])],
    )
    return PreTrainedTokenizerFast(
        tokenizer_object=backend,
        unk_token="[UNK]",
        pad_token="[PAD]",
        cls_token="[CLS]",
        sep_token="[SEP]",
        mask_token="[MASK]",
        model_max_length=max_length,
        model_input_names=["input_ids", "token_type_ids", "attention_mask"],
    )


def _config(vocab_size: int, **extra: Any) -> Any:
    from transformers import BertConfig

    return BertConfig(
        vocab_size=vocab_size, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
        intermediate_size=37, max_position_embeddings=128, **extra,
    )  # fmt: skip


def tiny_encoder(seed: int = 0) -> tuple[Any, Any]:
    """``(BertModel, tokenizer)``: a bare encoder (mean-pooled embeddings of width 32)."""
    import torch
    from transformers import BertModel

    tokenizer = tiny_tokenizer()
    torch.manual_seed(seed)
    return BertModel(_config(len(tokenizer))).eval(), tokenizer


def tiny_classifier(seed: int = 0) -> tuple[Any, Any]:
    """``(BertForSequenceClassification, tokenizer)`` with three named labels."""
    import torch
    from transformers import BertForSequenceClassification

    tokenizer = tiny_tokenizer()
    torch.manual_seed(seed)
    config = _config(
        len(tokenizer),
        num_labels=len(LABELS),
        id2label=dict(enumerate(LABELS)),
        label2id={label: i for i, label in enumerate(LABELS)},
    )
    return BertForSequenceClassification(config).eval(), tokenizer


def save_pair(pair: tuple[Any, Any], folder: Path) -> Path:
    model, tokenizer = pair
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


def tiny_sentence_transformer(folder: Path, *, max_seq_length: int = 64) -> Any:
    """A SentenceTransformer (tiny encoder, mean pooling, Normalize), saved to ``folder``."""
    from sentence_transformers import SentenceTransformer
    from sentence_transformers.sentence_transformer import modules as models

    encoder = save_pair(tiny_encoder(), folder / "encoder")
    model = SentenceTransformer(
        modules=[
            models.Transformer(str(encoder), max_seq_length=max_seq_length),
            models.Pooling(32, "mean"),
            models.Normalize(),
        ],
        device="cpu",
    )
    model.save(str(folder / "st"))
    return model
