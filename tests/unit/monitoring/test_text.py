"""Text descriptors: their values, the leave-one-out vocabulary, and drift on them that is found
where texts changed and only there."""

from __future__ import annotations

import math

import msgspec
import numpy as np
import pandas as pd
import pyarrow as pa
import pytest

from modelyard.core.profile import Profile
from modelyard.errors import InvalidInputError
from modelyard.monitoring.drift import DriftDetector
from modelyard.monitoring.text import (
    DESCRIPTORS,
    TextDescriptors,
    describe,
    descriptor_names,
    looks_like_text,
    profile_descriptors,
    vocabulary_of,
)
from tests._textdata import OTHER, texts, words


def drifted_descriptors(reference: pd.Series, current: pd.Series, *, stored: bool) -> list[str]:
    text = TextDescriptors(["text"]).fit(reference.to_frame())
    described = text.reference_frame(reference.to_frame())
    if stored:
        columns = profile_descriptors(described)
        fitted: pd.DataFrame | Profile = Profile(
            rows=len(described), columns=columns, sample_rows=0, seed=0, bins=20, top_k=20
        )
    else:
        fitted = described
    detector = DriftDetector().fit(fitted, salt=text.fingerprint_)
    result = detector.compare(text.transform(current.to_frame()))
    assert [c.name for c in result.columns] == descriptor_names("text")
    return [c.name.removeprefix("text.") for c in result.columns if c.drifted]


def test_descriptors_of_known_texts() -> None:
    values = pd.Series(["Don't stop, 2026!", "Été à Paris", "", None, "a\tb\nc"], dtype="string")
    d = describe(values, vocabulary=pa.array(["stop", "paris", "a"]))
    assert list(d) == list(DESCRIPTORS)
    np.testing.assert_array_equal(d["length_chars"], [17, 11, 0, np.nan, 5])
    np.testing.assert_array_equal(d["length_tokens"], [4, 3, 0, np.nan, 3])  # don, t, stop, 2026
    np.testing.assert_allclose(d["oov_share"], [3 / 4, 2 / 3, np.nan, np.nan, 2 / 3])
    np.testing.assert_allclose(d["non_ascii_share"], [0, 3 / 11, np.nan, np.nan, 0])
    np.testing.assert_allclose(d["digit_share"], [4 / 17, 0, np.nan, np.nan, 0])
    np.testing.assert_allclose(d["punct_share"], [3 / 17, 0, np.nan, np.nan, 0])  # ' , !
    np.testing.assert_allclose(d["upper_share"], [1 / 17, 2 / 11, np.nan, np.nan, 0])
    np.testing.assert_allclose(d["space_share"], [2 / 17, 2 / 11, np.nan, np.nan, 2 / 5])


def test_reference_unknown_words_are_counted_leave_one_out() -> None:
    values = pd.Series(["red fox", "red hen", "blue blue sky"])
    # "fox", "hen" and "sky" appear in one row only, "blue" twice but in one row only
    np.testing.assert_allclose(describe(values)["oov_share"], [1 / 2, 1 / 2, 1.0])
    assert vocabulary_of(values).to_pylist() == ["blue", "fox", "hen", "red", "sky"]


def test_unchanged_texts_do_not_drift_on_any_descriptor() -> None:
    reference, current = texts(8_000, 1), texts(4_000, 2)
    assert drifted_descriptors(reference, current, stored=False) == []
    assert drifted_descriptors(reference, current, stored=True) == []
    # small windows use tests with p-values
    assert drifted_descriptors(reference, texts(500, 3), stored=True) == []


def test_new_words_drift_the_unknown_share() -> None:
    reference = texts(8_000, 1)
    mixed = pd.concat([texts(2_000, 2), texts(2_000, 3, vocabulary=OTHER)], ignore_index=True)
    drifted = drifted_descriptors(reference, mixed, stored=True)
    assert "oov_share" in drifted
    assert "length_chars" not in drifted and "non_ascii_share" not in drifted


def test_longer_texts_drift_the_lengths_only() -> None:
    reference = texts(8_000, 1)
    longer = texts(4_000, 2, shortest=12, longest=30)
    drifted = drifted_descriptors(reference, longer, stored=True)
    assert {"length_chars", "length_tokens"} <= set(drifted)
    assert "oov_share" not in drifted and "non_ascii_share" not in drifted
    assert drifted_descriptors(reference, longer, stored=False)[:2] == [
        "length_chars",
        "length_tokens",
    ]


def test_accented_texts_drift_the_non_ascii_share() -> None:
    reference = texts(8_000, 1)
    accented = texts(4_000, 2, accents=0.3)
    drifted = drifted_descriptors(reference, accented, stored=True)
    assert "non_ascii_share" in drifted
    assert "length_chars" not in drifted and "length_tokens" not in drifted
    # and the other way round: accented reference, plain traffic
    assert "non_ascii_share" in drifted_descriptors(
        texts(8_000, 1, accents=0.3), texts(4_000, 2), stored=True
    )


def test_a_descriptor_constant_in_the_reference_scores_a_finite_number() -> None:
    """ASCII-only reference texts (non_ascii_share 0 in every row, std 0); 10 of 1,200 current
    texts hold an accent and an emoji. The score is finite and goes to JSON as a number."""
    reference = pd.Series([f"order {i} arrived late, thanks." for i in range(1_500)], name="text")
    current = pd.Series(
        [f"parcel {i} is lovely, thanks." for i in range(1_190)] + ["Café 😀"] * 10, name="text"
    )
    text = TextDescriptors(["text"]).fit(reference.to_frame())
    detector = DriftDetector().fit(text.reference_frame(reference.to_frame()))
    result = detector.compare(text.transform(current.to_frame()))
    column = {c.name: c for c in result.columns}["text.non_ascii_share"]
    assert column.method == "wasserstein" and math.isfinite(column.score)
    # 10/1,200 of the rows stray by 2/6 on average, over the floor of 0.001 on the scale
    assert column.score == pytest.approx(10 / 1_200 * (2 / 6) / 0.001)
    encoded = msgspec.json.decode(msgspec.json.encode(result))
    assert all(isinstance(c["score"], float) for c in encoded["columns"])


def test_which_string_columns_look_like_text() -> None:
    assert looks_like_text(texts(200, 1))
    colours = pd.Series(np.random.default_rng(0).choice(["red", "dark green"], 200))
    assert not looks_like_text(colours)  # repeats
    ids = pd.Series([f"user-{i}" for i in range(200)])
    assert not looks_like_text(pd.Series([f"u{i}" for i in range(200)]))  # one token each
    assert looks_like_text(ids) is True  # "user" and a number: two tokens, all distinct
    assert not looks_like_text(pd.Series([1.5, 2.5]))
    assert not looks_like_text(pd.Series([None, None], dtype="string"))


def test_columns_are_replaced_in_place_and_others_kept() -> None:
    frame = pd.DataFrame({"age": [30, 40], "text": ["a b", "c"], "city": ["x", "y"]})
    text = TextDescriptors(["text"]).fit(frame)
    assert text.names(["age", "text", "city"]) == ["age", *descriptor_names("text"), "city"]
    out = text.transform(pd.DataFrame({"age": [1], "text": ["a zzz"], "city": ["q"]}))
    assert list(out.columns) == ["age", *descriptor_names("text"), "city"]
    assert out["text.oov_share"].tolist() == [0.5]
    other = TextDescriptors(["text"]).fit(frame.assign(text=["a b", "d"]))
    assert other.fingerprint_ != text.fingerprint_


def test_a_missing_text_column_or_non_text_values_are_named() -> None:
    with pytest.raises(InvalidInputError, match=r"no text column 'body'.*'age', 'text'"):
        TextDescriptors(["body"]).fit(pd.DataFrame({"age": [1], "text": ["a"]}))
    with pytest.raises(InvalidInputError, match=r"need strings, not int64"):
        describe(pa.array([1, 2]))
    # numbers in an object column are read as their text
    mixed = describe(pd.Series(["ab", 12], dtype=object))
    np.testing.assert_array_equal(mixed["length_chars"], [2, 2])


def test_leave_one_out_matches_fresh_texts_against_the_vocabulary() -> None:
    # a long tail of rare words: about one token in ten is new to any other text
    vocabulary = words(30_000, 7)
    reference, current = (
        texts(8_000, 1, vocabulary=vocabulary),
        texts(4_000, 2, vocabulary=vocabulary),
    )
    text = TextDescriptors(["text"]).fit(reference.to_frame())
    expected = float(np.mean(text.reference_frame(reference.to_frame())["text.oov_share"]))
    seen = float(np.mean(text.transform(current.to_frame())["text.oov_share"]))
    assert 0.05 < expected < 0.2
    assert seen == pytest.approx(expected, rel=0.1)
    assert "oov_share" not in drifted_descriptors(reference, current, stored=True)
    assert "oov_share" not in drifted_descriptors(reference, current, stored=False)
    # against its own full vocabulary the reference would know every word: that would drift
    own = describe(reference, vocabulary_of(reference))["oov_share"]
    assert np.nanmax(own) == 0.0


def test_point_masses_get_bins_of_their_own_and_no_empty_ones() -> None:
    rng = np.random.default_rng(0)
    described = pd.DataFrame(
        {
            "zeros": np.where(rng.random(1_000) < 0.9, 0.0, rng.random(1_000)),  # 90% zero
            "constant": np.zeros(1_000),
            "counts": rng.integers(3, 9, 1_000).astype(float),  # 6 values, ~17% each
        }
    )
    zeros, constant, counts = profile_descriptors(described)
    assert zeros.bin_edges is not None and zeros.bin_counts is not None
    assert zeros.bin_edges[:2] == (0.0, 1e-9)
    assert zeros.bin_counts[0] == int(np.count_nonzero(described["zeros"] == 0))
    assert sum(zeros.bin_counts) == 1_000
    assert constant.bin_edges == (0.0, 1e-9, 2e-9) and constant.bin_counts == (1_000, 0)
    assert counts.bin_counts is not None and 0 not in counts.bin_counts
    # a window that gains a few digits per text now moves counts out of the zero bin
    detector = DriftDetector().fit(
        Profile(rows=1_000, columns=(zeros,), sample_rows=0, seed=0, bins=20, top_k=20)
    )
    gained = pd.DataFrame({"zeros": np.where(rng.random(2_000) < 0.6, 0.0, 0.01)})
    assert detector.compare(gained).columns[0].drifted
