"""Performance estimated without labels: confidence-based performance estimation (CBPE), as
NannyML defines it, in numpy.

A classifier's scores, once calibrated on labelled reference data, are the probabilities that
each row's true class is each class. Summed over a chunk they give the expected confusion
matrix, hence the expected accuracy, precision, recall and F1; sorted by score they give the
expected ROC curve, hence the expected ROC AUC. No label is needed.

- Calibration: isotonic regression per class (one-vs-rest), the multiclass rows renormalised to
  sum to 1 (uniform where all are 0). ``calibration="auto"`` (the default) calibrates a class
  only where NannyML would: not when the reference scores rank the labels almost perfectly (ROC
  AUC above 0.999), and only when isotonic regression fitted on 90% of the reference lowers the
  expected calibration error (10 equal-count bins) of the held-out 10% over 10 stratified
  splits (``monitoring._calibration``). The rule is NannyML's so that the estimates stay equal
  to NannyML's; on scores that are already calibrated it is close to a coin flip (it chose to
  calibrate in 8 of 10 seeded checks), which costs little there (isotonic regression on 10,000
  such rows moved the estimates by at most 0.009). ``"always"`` and ``"never"`` force it.
- Binary models: the second class is the positive one. More classes: the macro average over the
  classes (ROC AUC one-vs-rest), accuracy the mean calibrated probability of the predicted class.
- Sampling error: NannyML's per-metric standard error, its spread measured once on the
  reference rows and divided by the square root of the chunk's (relevant) row count. The band is
  the estimate +- 3 sampling errors (clipped to [0, 1]).
- Thresholds: the realised metric over the reference chunks, mean +- 3 standard deviations
  (clipped to [0, 1]); ``alert`` when an estimate leaves them.
- Chunks are contiguous row ranges (``row_chunks``, ``time_chunks``); all chunks are computed in
  one vectorised pass (one sort per chunk and class, for calibration and ROC AUC).
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any, Literal

import msgspec
import numpy as np
import numpy.typing as npt

from modelyard.errors import InvalidInputError
from modelyard.monitoring import _calibration

if TYPE_CHECKING:
    from modelyard.core.types import Scalar

__all__ = [
    "CBPE",
    "METRICS",
    "ChunkEstimate",
    "MetricEstimate",
    "row_chunks",
    "time_chunks",
]

#: The metrics estimated, in the order they are reported.
METRICS: tuple[str, ...] = ("roc_auc", "f1", "precision", "recall", "accuracy")
#: The band is the estimate +- this many sampling errors; thresholds are the reference chunks'
#: mean +- this many standard deviations (NannyML's defaults).
BAND_WIDTH = 3.0
THRESHOLD_STDS = 3.0
Calibration = Literal["auto", "always", "never"]
Floats = npt.NDArray[np.float64]
Ints = npt.NDArray[np.int64]


class MetricEstimate(msgspec.Struct, frozen=True, kw_only=True):
    """One metric of one chunk. ``None`` where it cannot be computed (e.g. ROC AUC when the
    calibrated probabilities expect no positive row). ``realized`` and ``error`` (estimate minus
    realised) need the chunk's labels."""

    value: float | None
    sampling_error: float | None
    lower: float | None  # the band: value - 3 sampling errors, at least 0
    upper: float | None  # value + 3 sampling errors, at most 1
    lower_threshold: float | None
    upper_threshold: float | None
    alert: bool
    realized: float | None = None
    error: float | None = None


class ChunkEstimate(msgspec.Struct, frozen=True, kw_only=True):
    """One chunk: rows ``[first_row, first_row + rows)`` of the data (or the log window
    ``[start, end)``), ``labelled`` of them with labels, and each metric's estimate."""

    index: int
    first_row: int
    rows: int
    labelled: int
    metrics: dict[str, MetricEstimate]
    start: datetime | None = None
    end: datetime | None = None
    model: str | None = None
    version: str | None = None


# -- chunks ------------------------------------------------------------------------------------


def row_chunks(rows: int, size: int) -> Ints:
    """The first row of each chunk of ``size`` rows (the last one may be shorter)."""
    if size < 1:
        raise InvalidInputError(f"Invalid chunk size {size}; give at least 1 row per chunk.")
    return np.arange(0, rows, size, dtype=np.int64)


def time_chunks(
    times: npt.NDArray[np.datetime64], start: datetime, end: datetime, every: timedelta
) -> tuple[Ints, list[tuple[datetime, datetime]]]:
    """The first row of each period ``[start + i * every, start + (i + 1) * every)`` up to
    ``end`` in ``times`` (sorted, UTC ``datetime64``), and the periods. An empty period's first
    row equals the next one's."""
    if every <= timedelta(0):
        raise InvalidInputError(f"Invalid chunk period {every}; give a positive one, e.g. 1h.")
    count = max(1, int(np.ceil((end - start) / every)))
    edges = [start + i * every for i in range(count)]
    naive = [e.astimezone(UTC).replace(tzinfo=None) if e.tzinfo else e for e in edges]
    stamps = np.array([np.datetime64(e, "us") for e in naive])
    firsts = np.searchsorted(times.astype("datetime64[us]"), stamps, side="left")
    return firsts.astype(np.int64), [(e, min(e + every, end)) for e in edges]


# -- the estimator -----------------------------------------------------------------------------


class CBPE:
    """Confidence-based performance estimation for a binary or multiclass classifier.

    ``chunk_size``: the rows per reference chunk that the thresholds are measured on (the
    reference must hold at least two). ``calibration``: ``"auto"`` (as NannyML decides),
    ``"always"`` or ``"never"``.
    """

    def __init__(self, *, chunk_size: int, calibration: Calibration = "auto") -> None:
        self.chunk_size = chunk_size
        self.calibration = calibration

    def fit(
        self,
        y_true: Sequence[Any] | npt.ArrayLike,
        proba: npt.ArrayLike,
        y_pred: Sequence[Any] | npt.ArrayLike | None = None,
        *,
        classes: Sequence[Scalar],
    ) -> CBPE:
        """Learn from labelled reference rows: ``y_true`` the labels, ``proba`` the model's
        class probabilities (binary: the positive class's, or one column per class; more
        classes: one column per class, in ``classes``' order), ``y_pred`` the predicted labels
        (default: the most probable class)."""
        self.classes_ = tuple(classes)
        k = len(self.classes_)
        if k < 2 or len(set(self.classes_)) != k:
            raise InvalidInputError(
                f"Invalid classes {list(self.classes_)}; give the model's two or more distinct "
                "classes in its probability columns' order."
            )
        if self.calibration not in ("auto", "always", "never"):
            raise InvalidInputError(
                f"Invalid calibration {self.calibration!r}; use 'auto', 'always' or 'never'."
            )
        scores = self._scores(proba, "reference")
        n = len(scores)
        truth = self._codes(y_true, n, "reference labels", missing=False)
        predicted = self._predicted(y_pred, scores, "reference")
        if n < 2 * self.chunk_size:
            raise InvalidInputError(
                f"The reference has {n} rows, fewer than two chunks of {self.chunk_size}; give "
                "more labelled reference rows or a smaller chunk size."
            )
        present = np.bincount(truth, minlength=k)
        if (present > 0).sum() < 2:
            raise InvalidInputError(
                f"The reference labels hold one class only ({self.classes_[int(truth[0])]!r}); "
                "give reference rows with every class the model predicts."
            )
        if k > 2 and (present == 0).any():
            missing = [self.classes_[c] for c in np.flatnonzero(present == 0)]
            raise InvalidInputError(
                f"The reference labels lack the classes {missing}; give reference rows with "
                "every class the model predicts."
            )
        self.calibrators_ = [self._calibrator(truth == c, scores[:, c]) for c in self._columns()]
        self.components_ = _components(truth, predicted, scores, k)
        starts = row_chunks(n, self.chunk_size)
        realized = _realized(truth, predicted, scores, starts, k)
        self.thresholds_ = {m: _thresholds(realized[m]) for m in METRICS}
        self.reference_rows_ = n
        self.reference_chunks_ = self._report(scores, predicted, truth, starts, realized)
        return self

    @property
    def calibrated_(self) -> tuple[bool, ...]:
        """Whether each class's scores (binary: the positive class's) are calibrated."""
        return tuple(c is not None for c in self.calibrators_)

    def estimate(
        self,
        proba: npt.ArrayLike,
        y_pred: Sequence[Any] | npt.ArrayLike | None = None,
        *,
        starts: Sequence[int] | npt.NDArray[np.int64] | None = None,
        y_true: Sequence[Any] | npt.ArrayLike | None = None,
    ) -> list[ChunkEstimate]:
        """The estimates of each chunk of ``proba`` (rows ``starts[i]`` to ``starts[i + 1]``;
        one chunk when ``starts`` is ``None``). ``y_true``, where given, holds the labels that
        arrived (``None`` or NaN for the rest, labels outside ``classes`` count as missing):
        each chunk then reports the realised value and the estimate's error. A chunk without
        rows has no metrics."""
        if not hasattr(self, "components_"):
            raise InvalidInputError("This CBPE is not fitted; call fit() with reference rows.")
        scores = self._scores(proba, "chunk")
        n = len(scores)
        predicted = self._predicted(y_pred, scores, "chunk")
        truth = None if y_true is None else self._codes(y_true, n, "chunk labels", missing=True)
        firsts = np.asarray([0] if starts is None else starts, dtype=np.int64)
        if len(firsts) == 0 or firsts[0] != 0 or (np.diff(firsts) < 0).any() or firsts[-1] > n:
            raise InvalidInputError(
                f"Invalid chunk starts {firsts[:5].tolist()}...; give increasing row numbers "
                f"from 0 up to {n} (see row_chunks and time_chunks)."
            )
        return self._report(scores, predicted, truth, firsts)

    # -- inputs ----------------------------------------------------------------------------------

    def _scores(self, proba: npt.ArrayLike, what: str) -> Floats:
        """``proba`` as a rows x classes matrix (a binary model's one column becomes two)."""
        k = len(self.classes_)
        try:
            matrix = np.asarray(proba, dtype=np.float64)
        except (TypeError, ValueError):
            raise InvalidInputError(
                f"The {what} probabilities are not numbers; give a rows x {k} array."
            ) from None
        if matrix.size == 0:
            raise InvalidInputError(f"The {what} has no rows; give at least one prediction.")
        if not np.isfinite(matrix).all():
            bad = ~np.isfinite(matrix) if matrix.ndim == 1 else ~np.isfinite(matrix).all(axis=-1)
            row = int(np.flatnonzero(bad)[0]) if bad.ndim == 1 else 0
            raise InvalidInputError(
                f"The {what} probabilities hold NaN or infinity (row {row}); drop those rows."
            )
        if matrix.min() < 0 or matrix.max() > 1:
            raise InvalidInputError(
                f"The {what} probabilities run from {matrix.min():g} to {matrix.max():g}, "
                "outside [0, 1]; give probabilities (predict_proba), not raw scores."
            )
        if matrix.ndim == 1 and k == 2:
            matrix = np.column_stack([1.0 - matrix, matrix])
        if matrix.ndim != 2 or matrix.shape[1] != k:
            raise InvalidInputError(
                f"The {what} probabilities have shape {matrix.shape}, not rows x {k} (one column "
                f"per class of {list(self.classes_)}); give the model's predict_proba output."
            )
        return matrix

    def _codes(self, values: Any, n: int, what: str, *, missing: bool) -> Ints:
        """Class indexes of labels; -1 for a missing (or, when ``missing``, unknown) one."""
        import pandas as pd

        array = np.asarray(values)
        if array.ndim != 1 or len(array) != n:
            raise InvalidInputError(
                f"The {what} have shape {array.shape} and the probabilities {n} rows; give one "
                "label per row."
            )
        found, uniques = pd.factorize(array, use_na_sentinel=True)  # -1 for None and NaN
        index = _class_index(self.classes_)
        lookup = np.array([index.get(_key(u), -1) for u in uniques] + [-1], dtype=np.int64)
        codes: Ints = lookup[found]
        if not missing and (codes < 0).any():
            row = int(np.flatnonzero(codes < 0)[0])
            value = array[row].item() if isinstance(array[row], np.generic) else array[row]
            problem = "missing" if _absent(value) else f"{value!r}, not one of the classes"
            raise InvalidInputError(
                f"Reference label {row} is {problem} {list(self.classes_)}; give labelled "
                "reference rows only, with the model's classes."
            )
        return codes

    def _predicted(self, y_pred: Any, scores: Floats, what: str) -> Ints:
        if y_pred is None:
            chosen: Ints = np.argmax(scores, axis=1).astype(np.int64)
            return chosen
        codes = self._codes(y_pred, len(scores), f"{what} predictions", missing=True)
        if (codes < 0).any():
            row = int(np.flatnonzero(codes < 0)[0])
            raise InvalidInputError(
                f"The {what} prediction in row {row} is not one of the classes "
                f"{list(self.classes_)}; give the model's predicted labels."
            )
        return codes

    def _columns(self) -> range:
        return range(1, 2) if len(self.classes_) == 2 else range(len(self.classes_))

    # -- calibration -----------------------------------------------------------------------------

    def _calibrator(
        self, positive: npt.NDArray[np.bool_], score: Floats
    ) -> tuple[Floats, Floats] | None:
        """The isotonic map of one class's scores as (x, y) knots, or ``None`` to leave them."""
        ranked = np.argsort(score, kind="stable")
        wanted = self.calibration == "always" or (
            self.calibration == "auto" and _calibration.needs_calibration(positive, score, ranked)
        )
        if not wanted:
            return None
        return _calibration.isotonic(score, positive, ranked)

    def _calibrate(self, scores: Floats, orders: dict[int, Ints]) -> Floats:
        """Calibrated probabilities; ``orders[c]``: the rows by ascending score of class c."""
        out = scores.copy()
        for c, knots in zip(self._columns(), self.calibrators_, strict=True):
            if knots is not None:  # isotonic predict (clipped), on sorted scores
                out[orders[c], c] = np.interp(scores[orders[c], c], *knots)
        if len(self.classes_) == 2:
            out[:, 0] = 1.0 - out[:, 1]
        else:  # NannyML renormalises multiclass rows whether or not it calibrated
            totals = out.sum(axis=1, keepdims=True)
            zero = totals[:, 0] == 0
            out = np.divide(
                out, totals, out=np.full_like(out, 1.0 / out.shape[1]), where=~zero[:, None]
            )
        return out

    # -- reporting -------------------------------------------------------------------------------

    def _report(
        self,
        scores: Floats,
        predicted: Ints,
        truth: Ints | None,
        firsts: Ints,
        known: dict[str, Floats] | None = None,
    ) -> list[ChunkEstimate]:
        """Each chunk's estimates; ``known``: the realised metrics when already computed."""
        n, k = len(scores), len(self.classes_)
        bounds = np.append(firsts, n)
        sizes = np.diff(bounds)
        full = np.flatnonzero(sizes > 0)
        starts = firsts[full]
        orders = {c: _chunk_order(scores[:, c], starts) for c in self._columns()}
        estimates = _estimated(self._calibrate(scores, orders), orders, predicted, starts, k)
        errors = _sampling_errors(self.components_, sizes[full].astype(np.float64), k)
        realized: dict[str, Floats] = {}
        labelled = np.zeros(len(firsts), dtype=np.int64)
        if truth is not None:
            chunk = np.repeat(np.arange(len(firsts)), sizes)
            labelled = np.bincount(chunk[truth >= 0], minlength=len(firsts)).astype(np.int64)
            realized = known or _realized_partial(truth, predicted, scores, bounds, full, k=k)
        out = []
        position = {int(c): j for j, c in enumerate(full)}
        for i in range(len(firsts)):
            metrics: dict[str, MetricEstimate] = {}
            j = position.get(i)
            if j is not None:
                for m in METRICS:
                    real = realized[m][j] if realized else np.nan
                    metrics[m] = _metric(estimates[m][j], errors[m][j], self.thresholds_[m], real)
            out.append(
                ChunkEstimate(
                    index=i,
                    first_row=int(bounds[i]),
                    rows=int(sizes[i]),
                    labelled=int(labelled[i]),
                    metrics=metrics,
                )
            )
        return out


# -- estimates ---------------------------------------------------------------------------------


def _confusion(p: Floats, hit: npt.NDArray[np.bool_], starts: Ints) -> tuple[Floats, ...]:
    """Expected TP, FP, FN, TN per chunk from calibrated ``p`` and predicted-positive ``hit``."""
    pos = np.where(hit, p, 0.0)
    tp = np.add.reduceat(pos, starts)
    fp = np.add.reduceat(hit.astype(np.float64), starts) - tp
    fn = np.add.reduceat(p, starts) - tp
    size = np.diff(np.append(starts, len(p))).astype(np.float64)
    return tp, fp, fn, size - tp - fp - fn


def _ratio(top: Floats, bottom: Floats) -> Floats:
    return np.divide(top, bottom, out=np.zeros_like(top), where=bottom != 0)


def _chunk_order(score: Floats, starts: Ints) -> Ints:
    """The rows chunk by chunk, each chunk's by ascending score (one sort per chunk is cheaper
    than one lexsort of all rows, and ``np.interp`` runs ten times faster on sorted scores)."""
    order = np.empty(len(score), dtype=np.int64)
    for a, b in itertools.pairwise([*starts.tolist(), len(score)]):
        order[a:b] = a + np.argsort(score[a:b])
    return order


def _expected_auc(p: Floats, order: Ints, starts: Ints) -> Floats:
    """The area under the expected ROC curve of each chunk: rows by descending score, each
    adding ``p`` expected positives and ``1 - p`` negatives (``order``: by ascending score)."""
    sizes = np.diff(np.append(starts, len(p)))
    q = p[order]
    running = np.cumsum(q)
    positives = np.add.reduceat(q, starts)
    upto = running - np.repeat(running[starts] - q[starts], sizes)  # this row and those below
    above = np.repeat(positives, sizes) - upto  # expected positives ranked above the row
    area = np.add.reduceat((1.0 - q) * (above + q / 2.0), starts)
    negatives = sizes - positives
    with np.errstate(divide="ignore", invalid="ignore"):
        auc = area / (positives * negatives)
    return np.where((positives > 0) & (negatives > 0), auc, np.nan)


def _estimated(
    calibrated: Floats, orders: dict[int, Ints], predicted: Ints, starts: Ints, k: int
) -> dict[str, Floats]:
    if k == 2:
        tp, fp, fn, tn = _confusion(calibrated[:, 1], predicted == 1, starts)
        size = tp + fp + fn + tn
        return {
            "roc_auc": _expected_auc(calibrated[:, 1], orders[1], starts),
            "f1": _ratio(tp, tp + 0.5 * (fp + fn)),
            "precision": _ratio(tp, tp + fp),
            "recall": _ratio(tp, tp + fn),
            "accuracy": (tp + tn) / size,
        }
    f1, precision, recall, auc = [], [], [], []
    for c in range(k):
        tp, fp, fn, _ = _confusion(calibrated[:, c], predicted == c, starts)
        f1.append(_ratio(tp, tp + 0.5 * (fp + fn)))
        precision.append(_ratio(tp, tp + fp))
        recall.append(_ratio(tp, tp + fn))
        auc.append(_expected_auc(calibrated[:, c], orders[c], starts))
    chosen = calibrated[np.arange(len(predicted)), predicted]
    sizes = np.diff(np.append(starts, len(predicted)))
    return {
        "roc_auc": np.mean(auc, axis=0),
        "f1": np.mean(f1, axis=0),
        "precision": np.mean(precision, axis=0),
        "recall": np.mean(recall, axis=0),
        "accuracy": np.add.reduceat(chosen, starts) / sizes,
    }


# -- sampling error (NannyML's formulas) -------------------------------------------------------


def _class_components(
    y: npt.NDArray[np.bool_], q: npt.NDArray[np.bool_], score: Floats, multi: bool
) -> dict[str, tuple[float, float]]:
    """Per metric, the spread of a row's contribution on the reference and the share of rows
    that contribute (binary: standard deviation; multiclass: variance, as NannyML keeps them)."""
    n = len(y)
    tp, fp, fn = int((y & q).sum()), int((~y & q).sum()), int((y & ~q).sum())

    def spread(ones: int, zeros: int, scale: float = 1.0) -> float:
        total = ones + zeros
        if total == 0:
            return float("nan")
        share = ones / total
        var = share * (1 - share) * scale * scale
        return var if multi else float(np.sqrt(var))

    f1_scale = 1.0 if multi else (tp + fp + fn) / (tp + 0.5 * (fp + fn)) if tp + fp + fn else 1.0
    out = {
        "precision": (spread(tp, fp), (tp + fp) / n),
        "recall": (spread(tp, fn), (tp + fn) / n),
        "f1": (spread(tp, fp + fn, f1_scale), (tp + fp + fn) / n),
    }
    # ROC AUC: per positive row, the share of negative rows ranked below it (NannyML's form)
    if y.mean() > 0.5:
        y, score = ~y, 1.0 - score
    ranks = np.flatnonzero(y[np.argsort(score)])
    ranks = ranks[ranks > 0]
    negatives = n - int(y.sum())
    below = (ranks - np.arange(len(ranks))) / negatives if negatives else np.array([np.nan])
    out["roc_auc"] = (float(np.var(below) if multi else np.std(below)), float(y.sum()) / n)
    return out


def _components(truth: Ints, predicted: Ints, scores: Floats, k: int) -> dict[str, Any]:
    correct = (truth == predicted).astype(np.float64)
    out: dict[str, Any] = {"accuracy": float(np.std(correct))}
    if k == 2:
        parts = _class_components(truth == 1, predicted == 1, scores[:, 1], multi=False)
        out.update({m: [parts[m]] for m in ("roc_auc", "f1", "precision", "recall")})
        return out
    per_class = [
        _class_components(truth == c, predicted == c, scores[:, c], True) for c in range(k)
    ]
    out.update({m: [p[m] for p in per_class] for m in ("roc_auc", "f1", "precision", "recall")})
    return out


def _sampling_errors(components: dict[str, Any], sizes: Floats, k: int) -> dict[str, Floats]:
    out = {"accuracy": components["accuracy"] / np.sqrt(sizes)}
    for m in ("roc_auc", "f1", "precision", "recall"):
        parts = components[m]
        with np.errstate(divide="ignore", invalid="ignore"):
            if k == 2:
                spread, share = parts[0]
                out[m] = spread / np.sqrt(sizes * share)
            else:
                variance = sum(v / (sizes * s) for v, s in parts)
                out[m] = np.sqrt(variance) / k * (1.2 if m == "roc_auc" else 1.0)
    return out


# -- realised metrics and thresholds -----------------------------------------------------------


def _realized(
    truth: Ints, predicted: Ints, scores: Floats, starts: Ints, k: int
) -> dict[str, Floats]:
    """The realised metrics of fully labelled chunks, NaN where NannyML gives none (one class
    in the labels or the predictions; multiclass ROC AUC without every class)."""
    bounds = np.append(starts, len(truth))
    out: dict[str, list[float]] = {m: [] for m in METRICS}
    for a, b in itertools.pairwise(bounds):
        y, q, s = truth[a:b], predicted[a:b], scores[a:b]
        labels = np.flatnonzero(np.bincount(y, minlength=k))
        picks = np.flatnonzero(np.bincount(q, minlength=k))
        out["accuracy"].append(float((y == q).mean()) if b > a else np.nan)
        if len(labels) < 2 or len(picks) < 2:
            for m in ("f1", "precision", "recall"):
                out[m].append(np.nan)
        else:
            classes = [1] if k == 2 else range(k)
            f1, precision, recall = [], [], []
            for c in classes:
                tp = float(((y == c) & (q == c)).sum())
                fp, fn = float(((y != c) & (q == c)).sum()), float(((y == c) & (q != c)).sum())
                f1.append(tp / (tp + 0.5 * (fp + fn)) if tp + fp + fn else 0.0)
                precision.append(tp / (tp + fp) if tp + fp else 0.0)
                recall.append(tp / (tp + fn) if tp + fn else 0.0)
            out["f1"].append(float(np.mean(f1)))
            out["precision"].append(float(np.mean(precision)))
            out["recall"].append(float(np.mean(recall)))
        if len(labels) < (2 if k == 2 else k):
            out["roc_auc"].append(np.nan)
        elif k == 2:
            out["roc_auc"].append(_calibration.auc(y == 1, s[:, 1]))
        else:
            aucs = [_calibration.auc(y == c, s[:, c]) for c in range(k)]
            out["roc_auc"].append(float(np.mean(aucs)))
    return {m: np.asarray(v, dtype=np.float64) for m, v in out.items()}


def _realized_partial(
    truth: Ints, predicted: Ints, scores: Floats, bounds: Ints, full: Ints, *, k: int
) -> dict[str, Floats]:
    """The realised metrics of each non-empty chunk over its labelled rows."""
    out: dict[str, list[float]] = {m: [] for m in METRICS}
    for i in full:
        a, b = bounds[i], bounds[i + 1]
        known = truth[a:b] >= 0
        if not known.any():
            for m in METRICS:
                out[m].append(np.nan)
            continue
        one = _realized(
            truth[a:b][known], predicted[a:b][known], scores[a:b][known], np.array([0]), k
        )
        for m in METRICS:
            out[m].append(float(one[m][0]))
    return {m: np.asarray(v, dtype=np.float64) for m, v in out.items()}


def _thresholds(values: Floats) -> tuple[float | None, float | None]:
    """Mean +- 3 standard deviations of the reference chunks' values, clipped to [0, 1]."""
    finite = values[np.isfinite(values)]
    if len(finite) == 0:
        return None, None
    mean, std = float(finite.mean()), float(finite.std())
    return max(0.0, mean - THRESHOLD_STDS * std), min(1.0, mean + THRESHOLD_STDS * std)


def _metric(
    value: float, error: float, thresholds: tuple[float | None, float | None], real: float
) -> MetricEstimate:
    lower, upper = thresholds
    if not np.isfinite(value):
        return MetricEstimate(
            value=None, sampling_error=None, lower=None, upper=None, lower_threshold=lower,
            upper_threshold=upper, alert=False, realized=_number(real),
        )  # fmt: skip
    alert = (lower is not None and value < lower) or (upper is not None and value > upper)
    spread = BAND_WIDTH * error if np.isfinite(error) else None
    return MetricEstimate(
        value=float(value),
        sampling_error=_number(error),
        lower=None if spread is None else max(0.0, float(value - spread)),
        upper=None if spread is None else min(1.0, float(value + spread)),
        lower_threshold=lower,
        upper_threshold=upper,
        alert=bool(alert),
        realized=_number(real),
        error=float(value - real) if np.isfinite(real) else None,
    )


def _number(value: float) -> float | None:
    return float(value) if np.isfinite(value) else None


# -- labels ------------------------------------------------------------------------------------


def _key(value: Any) -> Any:
    """A label as a dictionary key: numbers by value (1, 1.0, True and "1" meet), text as text."""
    if isinstance(value, bool | np.bool_):
        return float(value)
    if isinstance(value, int | float | np.integer | np.floating):
        return float(value) if np.isfinite(value) else None
    if isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            return value
    return None if value is None else str(value)


def _absent(value: Any) -> bool:
    return _key(value) is None


def _class_index(classes: tuple[Any, ...]) -> dict[Any, int]:
    return {_key(c): i for i, c in enumerate(classes)}
