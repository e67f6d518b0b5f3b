"""Fixed histogram buckets shared by every replica: latencies and model outputs.

Every server replica counts into the same buckets, so their counts add up in the metadata store
and the controller can merge them. Latency bucket ``i`` holds ``(edges[i-1], edges[i]]``
milliseconds (bucket 0 holds ``[0, 0.5]``); the last bucket holds everything above 5 s.
Outputs are counted by class label for classifiers and by quarter-decade bins for regressors.
"""

from __future__ import annotations

import bisect
import math
from collections.abc import Sequence
from datetime import UTC, datetime

LATENCY_EDGES_MS: tuple[float, ...] = (
    0.5, 1.0, 2.0, 5.0, 10.0, 20.0, 50.0, 100.0, 200.0, 500.0, 1000.0, 2000.0, 5000.0,
)  # fmt: skip
#: The length of every ``latency_counts`` list: one bucket per edge plus one above the last.
LATENCY_BUCKETS = len(LATENCY_EDGES_MS) + 1
#: The default length of a statistics window (servers flush their counters once per window).
WINDOW_S = 10

_BINS_PER_DECADE = 4
_SMALLEST = 1e-3  # |x| below this counts as zero
_LARGEST_EXPONENT = 9  # |x| from 1e9 up shares the top bin


def latency_bucket(latency_ms: float) -> int:
    """The index of the bucket a latency falls in (0 to ``LATENCY_BUCKETS - 1``)."""
    return bisect.bisect_left(LATENCY_EDGES_MS, latency_ms)


def empty_latency_counts() -> list[int]:
    return [0] * LATENCY_BUCKETS


def quantile_ms(counts: Sequence[int], q: float) -> float | None:
    """The ``q`` quantile (0-1) of a latency histogram, ``None`` when it is empty.

    The rank ``q * total`` is found in the cumulative counts and interpolated linearly inside its
    bucket (as Prometheus' ``histogram_quantile`` does); a rank in the overflow bucket reports the
    last edge, 5000 ms, since the histogram knows nothing above it.
    """
    total = sum(counts)
    if total <= 0:
        return None
    rank = q * total
    below = 0
    for index, count in enumerate(counts):
        if count > 0 and below + count >= rank:
            if index >= len(LATENCY_EDGES_MS):
                return LATENCY_EDGES_MS[-1]
            lower = LATENCY_EDGES_MS[index - 1] if index > 0 else 0.0
            upper = LATENCY_EDGES_MS[index]
            return lower + (upper - lower) * max(rank - below, 0.0) / count
        below += count
    return LATENCY_EDGES_MS[-1]


def class_key(label: object) -> str:
    """The output-histogram key of a classifier's predicted label."""
    return str(label)


def value_bin(value: float) -> str:
    """The output-histogram key of a regressor's prediction: quarter-decade bins.

    ``0`` holds ``|x| < 0.001``; otherwise the key is the sign and the bin's lower bound, four bins
    per decade (``+1``, ``+1.78``, ``+3.16``, ``+5.62``, ``+10``...), up to ``1e9``.
    """
    if math.isnan(value):
        return "nan"
    if math.isinf(value):
        return "+inf" if value > 0 else "-inf"
    size = abs(value)
    if size < _SMALLEST:
        return "0"
    exponent = math.floor(math.log10(size) * _BINS_PER_DECADE)
    exponent = min(exponent, _LARGEST_EXPONENT * _BINS_PER_DECADE)
    sign = "+" if value > 0 else "-"
    return f"{sign}{10 ** (exponent / _BINS_PER_DECADE):.3g}"


def window_start(at: datetime, *, window_s: int = WINDOW_S) -> datetime:
    """The start of the statistics window ``at`` falls in (windows align to the epoch)."""
    seconds = math.floor(at.timestamp() / window_s) * window_s
    return datetime.fromtimestamp(seconds, UTC)
