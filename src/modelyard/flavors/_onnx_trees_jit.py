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
