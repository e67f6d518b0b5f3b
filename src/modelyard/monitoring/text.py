"""Free-text columns as numbers that drift can compare: one row of descriptors per text.

A text column is replaced, for drift, by these descriptors (named ``<column>.<descriptor>``, e.g.
``text.length_chars``), each a numeric column compared with the usual methods, in the same
windows, alert rules (``drift:text.oov_share``) and report as the tabular columns:

=================  ==============================================================================
``length_chars``   characters (Unicode code points)
``length_tokens``  tokens: maximal runs of Unicode letters and digits (``[\\p{L}\\p{N}]+``), so
                   ``"Don't stop, 2026!"`` has 4 (``don``, ``t``, ``stop``, ``2026``). Language-
                   free, and free of the model: a model's own tokenizer is not needed to profile
                   its traffic. Scripts written without spaces (Chinese, Thai) count each run of
                   letters as one token; ``length_chars`` still measures them.
``oov_share``      share of tokens (lower-cased) that the reference never used (out of
                   vocabulary); null for a text without tokens
``non_ascii_share``  share of characters outside ASCII
``digit_share``    share of decimal digits (``\\p{Nd}``, any script)
``punct_share``    share of punctuation and symbols (``\\p{P}``, ``\\p{S}``)
``upper_share``    share of upper-case letters (``\\p{Lu}``, any script)
``space_share``    share of white space (space, tab, newlines)
=================  ==============================================================================

Shares are of ``length_chars`` and null for an empty text; every descriptor is null for a null
text.

The vocabulary is every token of the reference's texts. Measured against its own vocabulary the
reference would have no unknown tokens at all, so the reference's ``oov_share`` is measured
leave-one-out: a token is unknown to its row when no *other* reference row uses it. That is what a
fresh text from the reference's distribution shows against the vocabulary, so ``oov_share`` does
not drift on traffic like the reference (checked by the tests) and does when new words come in.

False alarms: a stored version's descriptors are profiled from its reference *sample*, and
``chi2`` (windows of at most 1,000 rows) takes the reference's shares as exact, so a small sample
raises its false-alarm rate above 5%. Measured on 60 unchanged windows of 300 texts: with a
2,000-row reference, 15 windows had some descriptor drift (space_share alone 8); with 10,000 rows
(the default sample), 7 (space_share 4, length_tokens 4, no other). The dataset-level verdict
(half of the columns) fired in none. Name ``chi2_contingency`` for a descriptor to allow for
the sample.

Which string columns are text: the caller says (a model's version meta names its text input, or
the drift options list them); ``looks_like_text`` is the fallback for tabular data.

Everything runs in Arrow compute kernels over whole columns (no Python loop per text). Measured
by ``benchmarks/text_descriptors.py`` (1M sentences of 3-30 words, 116 MB, pinned to one core of
the 2-core development machine while other work kept its load at 4-6): 10.3 s against a
vocabulary (97,000 texts/s), 9.0 s leave-one-out; half of it is the token split
(``split_pattern_regex``). On a quiet core the kernels summed to about 4.6 s.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

import msgspec
import numpy as np
import numpy.typing as npt
import pandas as pd

from modelyard.core.profile import ColumnProfile
from modelyard.errors import InvalidInputError

if TYPE_CHECKING:
    import pyarrow as pa

__all__ = [
    "DESCRIPTORS",
    "TextDescriptors",
    "describe",
    "descriptor_names",
    "looks_like_text",
    "profile_descriptors",
    "vocabulary_of",
]

DESCRIPTORS = (
    "length_chars", "length_tokens", "oov_share", "non_ascii_share", "digit_share",
    "punct_share", "upper_share", "space_share",
)  # fmt: skip
_TOKEN_SEPARATOR = r"[^\p{L}\p{N}]+"
#: Character classes counted by regular expression (RE2, Unicode-aware), by descriptor.
_CLASSES = {
    "non_ascii_share": r"[^\x00-\x7f]",
    "digit_share": r"\p{Nd}",
    "punct_share": r"[\p{P}\p{S}]",
    "upper_share": r"\p{Lu}",
}
#: White space is dense (about one character in six), where RE2 counting is slow (1.5 s per 1M
#: texts against 0.3 s for a plain substring count): spaces are counted as a substring and the
#: rarer tabs and line breaks by expression.
_OTHER_SPACE = r"[\t\n\v\f\r]"
_Floats = npt.NDArray[np.float64]

#: ``looks_like_text``: at least this share of the non-null values are distinct...
TEXT_DISTINCT_SHARE = 0.5
#: ... and at least this share of them have two tokens or more.
TEXT_MULTIWORD_SHARE = 0.5
_LOOK_ROWS = 10_000


def descriptor_names(column: str) -> list[str]:
    """The drift columns that stand for text column ``column``."""
    return [f"{column}.{name}" for name in DESCRIPTORS]


def describe(values: Any, vocabulary: pa.Array | None = None) -> dict[str, _Floats]:
    """The descriptors of each text in ``values`` (a pandas Series or an Arrow string array),
    by descriptor name; ``oov_share`` against ``vocabulary`` (lower-cased tokens), or leave-one-
    out within ``values`` when it is ``None`` (the reference side)."""
    import pyarrow as pa
    import pyarrow.compute as pc

    texts = _arrow_strings(values)
    valid = np.asarray(pc.is_valid(texts), dtype=bool)
    chars = _floats(pc.utf8_length(texts))
    tokens = _tokens(texts)
    rows = np.asarray(pc.list_parent_indices(tokens))
    flat = pc.list_flatten(tokens)
    kept = np.asarray(pc.not_equal(flat, ""), dtype=bool)  # the split leaves "" at the ends
    rows, flat = rows[kept], flat.filter(pa.array(kept))
    n_tokens = np.bincount(rows, minlength=len(texts)).astype(np.float64)
    if vocabulary is None:
        unknown = _unique_to_their_row(flat, rows)
    else:
        unknown = ~np.asarray(pc.is_in(flat, value_set=vocabulary), dtype=bool)
    n_unknown = np.bincount(rows[unknown], minlength=len(texts)).astype(np.float64)
    spaces = _floats(pc.count_substring(texts, " ")) + _floats(
        pc.count_substring_regex(texts, _OTHER_SPACE)
    )
    with np.errstate(divide="ignore", invalid="ignore"):
        shares = {
            name: _floats(pc.count_substring_regex(texts, pattern)) / chars
            for name, pattern in _CLASSES.items()
        }
        result = {
            "length_chars": chars,
            "length_tokens": np.where(valid, n_tokens, np.nan),
            "oov_share": np.where(n_tokens > 0, n_unknown / n_tokens, np.nan),
            **shares,
            "space_share": spaces / chars,
        }
    for name in DESCRIPTORS:
        if name.endswith("_share"):
            result[name][chars == 0] = np.nan
    return {name: result[name] for name in DESCRIPTORS}


def profile_descriptors(described: pd.DataFrame, *, bins: int = 20) -> tuple[ColumnProfile, ...]:
    """Profiles of descriptor columns (``TextDescriptors.reference_frame``) for a stored
    reference, with each point mass of at least ``1 / bins`` of the rows below the maximum in a
    bin of its own (``[v, v + 1e-9 * max(|v|, 1))``).

    Descriptors pile up on single values (most texts have no digits: ``digit_share`` is 0 for
    90% of them), and the reference's quantile bins then put 0 and the small shares above it in
    one bin, where a window that gains a few digits per text, or unknown words, changes no count.
    A column that is constant in the reference gets two bins, its value and everything above."""
    from modelyard.core.profile import compute_profile

    profile, _ = compute_profile(described, sample_rows=0, bins=bins)
    out = []
    for column in profile.columns:
        values = described[column.name].to_numpy(dtype=np.float64)
        finite = np.sort(values[np.isfinite(values)])
        if column.bin_edges is None or finite.size == 0:
            out.append(column)
            continue
        distinct, counts = np.unique(finite, return_counts=True)
        masses = distinct[(counts * bins >= finite.size) & (distinct < finite[-1])]
        # a mass whose bin holds nothing else (integer lengths) needs no edge of its own
        known = np.asarray(column.bin_edges)
        above = np.searchsorted(known, masses, side="right")
        last = above >= len(known) - 1  # the last bin is closed: it holds its upper edge too
        upper = known[np.minimum(above, len(known) - 1)]
        ends = np.where(
            last,
            np.searchsorted(distinct, upper, side="right"),
            np.searchsorted(distinct, upper, side="left"),
        )
        masses = masses[ends - np.searchsorted(distinct, masses, side="left") > 1]
        steps = 1e-9 * np.maximum(np.abs(masses), 1.0)
        edges = np.unique(np.concatenate([column.bin_edges, masses, masses + steps]))
        if finite[0] == finite[-1]:  # its value, and everything above it
            step = 1e-9 * max(abs(float(finite[0])), 1.0)
            edges = np.array([finite[0], finite[0] + step, finite[0] + 2 * step])
        starts = np.searchsorted(finite, edges[1:-1], side="left")
        counts_in = np.diff(np.append(starts, finite.size), prepend=0)
        out.append(
            msgspec.structs.replace(
                column,
                bin_edges=tuple(float(e) for e in edges),
                bin_counts=tuple(int(c) for c in counts_in),
            )
        )
    return tuple(out)


def vocabulary_of(values: Any) -> pa.Array:
    """The distinct lower-cased tokens of ``values``, sorted."""
    import pyarrow.compute as pc

    flat = pc.list_flatten(_tokens(_arrow_strings(values)))
    distinct = pc.unique(flat.filter(pc.not_equal(flat, "")))
    return distinct.take(pc.sort_indices(distinct))


def looks_like_text(values: pd.Series) -> bool:
    """Whether a string column reads as free text rather than categories: most of its non-null
    values are distinct (``TEXT_DISTINCT_SHARE``) and have two tokens or more
    (``TEXT_MULTIWORD_SHARE``). IDs are distinct but one token; city names have several tokens
    but repeat."""
    present = values.dropna()
    if len(present) > _LOOK_ROWS:  # a seeded sample decides for a big reference file
        present = present.sample(_LOOK_ROWS, random_state=0)
    if present.empty or not all(isinstance(v, str) for v in present.head(100)):
        return False
    if present.nunique() < TEXT_DISTINCT_SHARE * len(present):
        return False
    counts = describe(present)["length_tokens"]
    return bool(np.mean(counts >= 2) >= TEXT_MULTIWORD_SHARE)


class TextDescriptors:
    """Replaces text ``columns`` of a frame by their descriptors; ``fit`` learns each column's
    vocabulary from the reference (scikit-learn's contract: learned state ends in ``_``)."""

    def __init__(self, columns: Sequence[str]) -> None:
        self.columns = list(columns)

    def fit(self, reference: pd.DataFrame) -> TextDescriptors:
        missing = [c for c in self.columns if c not in reference.columns]
        if missing:
            raise InvalidInputError(
                f"The reference has no text column {', '.join(map(repr, missing))}; name columns "
                f"it has ({', '.join(map(repr, map(str, reference.columns)))})."
            )
        self.vocabulary_ = {c: vocabulary_of(reference[c]) for c in self.columns}
        digest = hashlib.sha256()
        for column in self.columns:
            digest.update(column.encode() + b"\0")
            for word in self.vocabulary_[column].to_pylist():
                digest.update(str(word).encode() + b"\0")
        self.fingerprint_ = digest.hexdigest()[:16]
        return self

    def names(self, columns: Iterable[str]) -> list[str]:
        """``columns`` with each text column replaced by its descriptor names."""
        out: list[str] = []
        for column in columns:
            out.extend(descriptor_names(column) if column in self.columns else [column])
        return out

    def reference_frame(self, reference: pd.DataFrame) -> pd.DataFrame:
        """``reference`` (the frame ``fit`` saw) with descriptors for its text columns, unknown
        tokens counted leave-one-out."""
        return self._replaced(reference, {c: None for c in self.columns})

    def transform(self, frame: pd.DataFrame) -> pd.DataFrame:
        """``frame`` with descriptors for its text columns, unknown tokens against the
        reference's vocabulary."""
        return self._replaced(frame, self.vocabulary_)

    def _replaced(
        self, frame: pd.DataFrame, vocabularies: Mapping[str, pa.Array | None]
    ) -> pd.DataFrame:
        parts: dict[str, Any] = {}
        for column in frame.columns:
            name = str(column)
            if name not in self.columns:
                parts[name] = frame[column]
                continue
            described = describe(frame[column], vocabularies[name])
            for descriptor, values in described.items():
                parts[f"{name}.{descriptor}"] = values
        return pd.DataFrame(parts, index=frame.index)


# --- helpers -----------------------------------------------------------------------------------


def _arrow_strings(values: Any) -> pa.Array:
    import pyarrow as pa

    if isinstance(values, pa.ChunkedArray):
        values = values.combine_chunks()
    if isinstance(values, pa.Array):
        array = values
    else:
        try:
            array = pa.array(values, type=pa.string(), from_pandas=True)
        except (pa.ArrowInvalid, pa.ArrowTypeError):  # numbers in an object column, say
            series = pd.Series(values)
            array = pa.array(series.astype("string"), type=pa.string(), from_pandas=True)
    if pa.types.is_large_string(array.type) or pa.types.is_string_view(array.type):
        array = array.cast(pa.string())
    if not pa.types.is_string(array.type):
        raise InvalidInputError(
            f"Text descriptors need strings, not {array.type}; mark only text columns as text."
        )
    return array


def _tokens(texts: pa.Array) -> pa.Array:
    import pyarrow.compute as pc

    return pc.split_pattern_regex(pc.utf8_lower(texts), _TOKEN_SEPARATOR)


def _floats(array: Any) -> _Floats:
    return np.asarray(array.to_numpy(zero_copy_only=False), dtype=np.float64)


def _unique_to_their_row(tokens: pa.Array, rows: npt.NDArray[np.int64]) -> npt.NDArray[np.bool_]:
    """For each token, whether no other row uses it (its document frequency is one)."""
    import pyarrow as pa
    import pyarrow.compute as pc

    if len(tokens) == 0:
        return np.zeros(0, dtype=bool)
    # one row uses a token when its first and last rows are the same (min/max aggregate 6x
    # faster than count_distinct on 16M tokens, measured)
    pairs = pa.table({"token": tokens, "row": pa.array(rows)})
    spans = pairs.group_by("token").aggregate([("row", "min"), ("row", "max")])
    index = np.asarray(pc.index_in(tokens, value_set=spans["token"]))
    alone = np.asarray(spans["row_min"]) == np.asarray(spans["row_max"])
    return np.asarray(alone[index], dtype=bool)
