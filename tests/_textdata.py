"""Seeded synthetic texts for the text-monitoring tests: sentences drawn from a vocabulary of
random words, Zipf-like, optionally longer or with accented letters."""

from __future__ import annotations

import numpy as np
import pandas as pd

_LETTERS = np.array(list("abcdefghijklmnopqrstuvwxyz"))


def words(count: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return np.array(["".join(rng.choice(_LETTERS, rng.integers(3, 9))) for _ in range(count)])


ENGLISH = words(400, 100)
#: A second vocabulary, word for word as long as the first, at the same ranks (letters rotated).
OTHER = np.array(["".join(chr((ord(c) - 97 + 13) % 26 + 97) for c in w) for w in ENGLISH])


def texts(
    rows: int,
    seed: int,
    *,
    vocabulary: np.ndarray = ENGLISH,
    shortest: int = 4,
    longest: int = 16,
    accents: float = 0.0,
) -> pd.Series:
    """Sentences of Zipf-like draws from ``vocabulary``; a share ``accents`` of words get an
    accented letter."""
    rng = np.random.default_rng(seed)
    weights = 1.0 / np.arange(1, len(vocabulary) + 1)
    weights /= weights.sum()
    out = []
    for _ in range(rows):
        chosen = rng.choice(vocabulary, size=rng.integers(shortest, longest + 1), p=weights)
        sentence = [w.replace("e", "é") if rng.random() < accents else w for w in chosen]
        sentence[0] = sentence[0].capitalize()
        out.append(" ".join(sentence) + rng.choice([".", "!", "?"]))
    return pd.Series(out, dtype="string", name="text")
