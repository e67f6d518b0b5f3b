"""Text-monitoring cost: the descriptors of 1M texts (``monitoring.text``), against the reference's
vocabulary and leave-one-out, and one MMD test of two 1,000-row samples of 384-dim embeddings
(``monitoring.embeddings``, all-MiniLM-L6-v2's width). Seeded synthetic sentences of 3-30 words
(Zipf over 22,000 words, some capitalised, accented, with digits and punctuation). Writes JSON to
benchmarks/results/text_descriptors.json.

    .venv/bin/python benchmarks/text_descriptors.py [--rows 1000000] [--repeat 3]

Times are the median of ``--repeat`` runs in this process, on whatever cores it has (Arrow's
kernels used here run on one thread); pin it with ``taskset -c 0`` for a one-core figure.
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
from _harness import git_commit, machine, write_report

from modelyard.monitoring.embeddings import EmbeddingDetector
from modelyard.monitoring.text import describe, vocabulary_of

RESULT = Path(__file__).resolve().parent / "results" / "text_descriptors.json"


def sentences(rows: int, seed: int) -> pa.Array:
    rng = np.random.default_rng(seed)
    letters = np.array(list("abcdefghijklmnopqrstuvwxyz"))
    base = ["".join(rng.choice(letters, rng.integers(2, 10))) for _ in range(20_000)]
    extra = ["Été", "naïve", "Ñu", "42", "2026", "Hello,", "world!", "(yes)", "U.S.", "don't"]
    vocabulary = np.array(base + [w.capitalize() for w in base[:2_000]] + extra * 100)
    weights = 1.0 / np.arange(1, len(vocabulary) + 1)
    lengths = rng.integers(3, 31, rows)
    flat = rng.choice(vocabulary, size=int(lengths.sum()), p=weights / weights.sum())
    ends = np.cumsum(lengths)
    return pa.array([" ".join(flat[e - n : e]) for e, n in zip(ends, lengths, strict=True)])


def timed(function: Callable[[], Any], repeat: int) -> float:
    runs = []
    for _ in range(repeat):
        start = time.perf_counter()
        function()
        runs.append(time.perf_counter() - start)
    return statistics.median(runs)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()

    reference = pd.Series(sentences(10_000, 1).to_pylist(), dtype="string")
    current = sentences(args.rows, 2)
    vocabulary = vocabulary_of(reference)
    results: dict[str, Any] = {
        "rows": args.rows,
        "text_mb": round(current.nbytes / 1e6, 1),
        "vocabulary": len(vocabulary),
    }
    results["describe_current_s"] = timed(lambda: describe(current, vocabulary), args.repeat)
    results["describe_leave_one_out_s"] = timed(lambda: describe(current), args.repeat)
    results["texts_per_s"] = round(args.rows / results["describe_current_s"])
    rng = np.random.default_rng(3)
    ref_vectors, cur_vectors = rng.normal(size=(5_000, 384)), rng.normal(size=(5_000, 384))
    results["mmd_1000x1000_384d_s"] = timed(
        lambda: EmbeddingDetector().fit(ref_vectors).compare(cur_vectors), args.repeat
    )
    for key, value in results.items():
        print(f"{key:28} {value:.3f}" if isinstance(value, float) else f"{key:28} {value}")
    write_report(RESULT, {"machine": machine(), **git_commit(), "results": results})


if __name__ == "__main__":
    main()
