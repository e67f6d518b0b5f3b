"""The numba-compiled loop of ``_onnx_trees`` (imported only when numba is installed)."""

from __future__ import annotations

from typing import Any

import numba
import numpy as np

# 2 is a primitive root modulo 67, so the powers 2**0 .. 2**63 have distinct residues: a lone bit's
# residue names its position (the lowest set bit without a count-trailing-zeros instruction).
_BIT_OF_RESIDUE = np.zeros(67, dtype=np.int64)
for _bit in range(64):
    _BIT_OF_RESIDUE[(1 << _bit) % 67] = _bit


@numba.njit(nogil=True, cache=True)
def score_blocks(  # noqa: PLR0917  # numba passes arguments by position
    X: Any,
    feature: Any,
    threshold: Any,
    test: Any,
    tree: Any,
    mask: Any,
    leaves: Any,
    out: Any,
    block: int,
    full: Any,
) -> None:
    """Add each tree's exit-leaf values to ``out`` for the rows of ``X``, ``block`` rows at a time
    (see ``_onnx_trees`` for the tables and the test codes)."""
    n, n_features = X.shape
    n_trees, _, n_columns = leaves.shape
    reach = np.empty((n_trees, block), dtype=mask.dtype)
    cols = np.empty((n_features, block), dtype=np.float32)
    for start in range(0, n, block):
        m = min(n, start + block) - start
        for f in range(n_features):
            for i in range(m):
                cols[f, i] = X[start + i, f]
        reach[:, :m] = full
        for k in range(feature.shape[0]):
            row = reach[tree[k]]
            col = cols[feature[k]]
            t = threshold[k]
            mk = mask[k]
            code = test[k]
            if code == 0:
                for i in range(m):
                    row[i] &= mk if col[i] > t else full
            elif code == 1:
                for i in range(m):
                    row[i] &= full if col[i] <= t else mk
            elif code == 2:
                for i in range(m):
                    row[i] &= mk if col[i] >= t else full
            elif code == 3:
                for i in range(m):
                    row[i] &= full if col[i] < t else mk
            elif code == 4:
                for i in range(m):
                    row[i] &= mk if col[i] < t else full
            elif code == 5:
                for i in range(m):
                    row[i] &= full if col[i] >= t else mk
            elif code == 6:
                for i in range(m):
                    row[i] &= mk if col[i] <= t else full
            elif code == 7:
                for i in range(m):
                    row[i] &= full if col[i] > t else mk
            elif code == 8:
                for i in range(m):
                    row[i] &= mk if (col[i] < t or col[i] > t) else full
            elif code == 9:
                for i in range(m):
                    row[i] &= full if col[i] == t else mk
            else:
                for i in range(m):
                    row[i] &= mk if col[i] == t else full
        for tr in range(n_trees):
            row = reach[tr]
            for i in range(m):
                v = np.uint64(row[i])
                leaf = _BIT_OF_RESIDUE[(v & (~v + np.uint64(1))) % np.uint64(67)]
                for c in range(n_columns):
                    out[start + i, c] += leaves[tr, leaf, c]


@numba.njit(nogil=True, cache=True, inline="always")
def _goes_false(code: Any, x: Any, t: Any) -> Any:
    """Whether a row with value ``x`` leaves a node of test ``code`` and threshold ``t`` by its
    false branch: the same expressions as ``score_blocks``' loops, so NaN goes the same way.
    ``score_blocks`` keeps a loop per code instead of calling this: with this call in one loop
    (the code tested per row) it took 15x as long on 256 and on 20,000 rows (no SIMD)."""
    if code == 0:
        return x > t
    if code == 1:
        return not x <= t
    if code == 2:
        return x >= t
    if code == 3:
        return not x < t
    if code == 4:
        return x < t
    if code == 5:
        return not x >= t
    if code == 6:
        return x <= t
    if code == 7:
        return not x > t
    if code == 8:
        return x < t or x > t
    if code == 9:
        return x != t  # NaN too, as not (x == t)
    return x == t


@numba.njit(nogil=True, cache=True)
def walk_rows(  # noqa: PLR0917  # numba passes arguments by position
    X: Any,
    feature: Any,
    threshold: Any,
    test: Any,
    follow: Any,
    roots: Any,
    leaves: Any,
    out: Any,
) -> None:
    """Add each tree's exit-leaf values to ``out`` for the rows of ``X`` by walking every tree
    from its root, row by row: for a few rows, where ``score_blocks`` would test every node of
    the ensemble. ``follow[k]`` holds node ``k``'s true and false children, a leaf as
    ``-1 - its number``; ``roots[tree]`` likewise. The sums run in the same order (tree by tree)
    as ``score_blocks``', so both give the same floats."""
    n = X.shape[0]
    n_trees, _, n_columns = leaves.shape
    for i in range(n):
        for tr in range(n_trees):
            k = roots[tr]
            while k >= 0:
                false = _goes_false(test[k], X[i, feature[k]], threshold[k])
                k = follow[k, 1] if false else follow[k, 0]
            leaf = -1 - k
            for c in range(n_columns):
                out[i, c] += leaves[tr, leaf, c]


@numba.njit(nogil=True, cache=True)
def classify(scores: Any, binary: bool, post: int) -> Any:
    """A classifier's probabilities (float32) and each row's top column from its summed
    ``scores``, as the ONNX node's post transform gives them: ``post`` 0 NONE, 1 LOGISTIC,
    2 SOFTMAX; a ``binary`` node's one column ``s`` is the pair (1 - s, s) under NONE, else
    (-s, s). One compiled pass: numpy took 11 us for these few steps on a one-row batch."""
    n, columns = scores.shape
    width = 2 if binary else columns
    proba = np.empty((n, width), dtype=np.float32)
    top = np.empty(n, dtype=np.int64)
    one = np.float32(1.0)
    for i in range(n):
        if binary:
            s = scores[i, 0]
            proba[i, 0] = one - s if post == 0 else -s
            proba[i, 1] = s
        else:
            for c in range(columns):
                proba[i, c] = scores[i, c]
        if post == 1:
            for c in range(width):
                proba[i, c] = one / (one + np.exp(-proba[i, c]))
        elif post == 2:
            peak = proba[i, 0]
            for c in range(1, width):
                peak = max(peak, proba[i, c])
            total = np.float32(0.0)
            for c in range(width):
                proba[i, c] = np.exp(proba[i, c] - peak)
                total += proba[i, c]
            for c in range(width):
                proba[i, c] = proba[i, c] / total
        best = 0
        for c in range(1, width):
            if proba[i, c] > proba[i, best]:
                best = c
        top[i] = best
    return proba, top
