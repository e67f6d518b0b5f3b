"""The metrics a gate can check: their task and direction, and how each is computed from one
model's outputs on a subset of the rows (a slice), with scikit-learn (imported lazily).

A metric that cannot be computed on a subset (a single class for ``roc_auc``, fewer than two rows
or a constant target for ``r2``, a zero target for ``mape``) gives ``None`` and the reason, never
a warning or an exception.

Classification rows are class indexes into the model's ``classes`` (the column order of
``predict_proba``); a label the model does not know is ``-1``: a wrong answer for the label
metrics, left out of the probability metrics. Binary models score the second class as positive;
more classes use the macro average over the classes present in the target or the predictions
(``roc_auc``: one-vs-rest over the classes present in the target).

``check_bounds`` checks a candidate's value (and its change from the baseline's) against the
bounds of a ``MetricThreshold``; ``gate``'s docstring has the rules.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import msgspec
import numpy as np
import numpy.typing as npt

Task = Literal["classification", "regression"]
CheckKind = Literal["threshold", "min_absolute_change", "min_relative_change"]
Floats = npt.NDArray[np.float64]
Ints = npt.NDArray[np.int64]
Mask = npt.NDArray[np.bool_]


@dataclass(frozen=True, slots=True)
class MetricSpec:
    name: str
    task: Task
    greater_is_better: bool
    needs_proba: bool = False
    binary_only: bool = False


METRICS: dict[str, MetricSpec] = {
    spec.name: spec
    for spec in (
        MetricSpec("accuracy", "classification", True),
        MetricSpec("precision", "classification", True),
        MetricSpec("recall", "classification", True),
        MetricSpec("f1", "classification", True),
        MetricSpec("roc_auc", "classification", True, needs_proba=True),
        MetricSpec("log_loss", "classification", False, needs_proba=True),
        MetricSpec("brier", "classification", False, needs_proba=True, binary_only=True),
        MetricSpec("mae", "regression", False),
        MetricSpec("mse", "regression", False),
        MetricSpec("rmse", "regression", False),
        MetricSpec("r2", "regression", True),
        MetricSpec("mape", "regression", False),
    )
}


def supported(task: Task) -> list[str]:
    return [name for name, spec in METRICS.items() if spec.task == task]


@dataclass(frozen=True, slots=True)
class Outputs:
    """One model's outputs on every row of the data, and the target in the model's terms."""

    task: Task
    truth: Ints | Floats  # class indexes (-1: unknown label) or numbers
    predicted: Ints | Floats  # class indexes or numbers
    proba: Floats | None = None  # rows normalised to sum to 1
    n_classes: int = 0


Score = tuple[float | None, str | None]


def score(metric: str, outputs: Outputs, rows: Mask) -> Score:
    """``(value, None)``, or ``(None, reason)`` when the metric is undefined on these rows."""
    return _SCORERS[metric](outputs, rows)


def classification_outputs(
    truth: Sequence[Any],
    predicted: Sequence[Any] | np.ndarray,
    proba: np.ndarray | None,
    classes: Sequence[Any],
) -> Outputs:
    """The target and a classifier's answers as indexes into ``classes``."""
    index = _class_index(classes)
    y = np.array([_lookup(index, v) for v in truth], dtype=np.int64)
    p = np.array([_lookup(index, v) for v in np.asarray(predicted).ravel()], dtype=np.int64)
    normalised: Floats | None = None
    if proba is not None:
        matrix = np.asarray(proba, dtype=np.float64).reshape(len(y), -1)
        totals = matrix.sum(axis=1, keepdims=True)
        normalised = np.divide(matrix, totals, out=np.zeros_like(matrix), where=totals > 0)
    return Outputs("classification", y, p, normalised, n_classes=len(classes))


def regression_outputs(truth: np.ndarray, predicted: np.ndarray) -> Outputs:
    return Outputs(
        "regression",
        np.asarray(truth, dtype=np.float64),
        np.asarray(predicted, dtype=np.float64).reshape(len(truth)),
    )


def _class_index(classes: Sequence[Any]) -> dict[Any, int]:
    index: dict[Any, int] = {}
    for i, c in enumerate(classes):
        value = c.item() if isinstance(c, np.generic) else c
        index.setdefault(value, i)
        index.setdefault(("text", str(value)), i)
    return index


def _lookup(index: dict[Any, int], value: Any) -> int:
    """A label's class index: the same value, else the same text (``1`` in a CSV read as text
    against a model trained on integers); ``-1`` when the model does not know it."""
    if isinstance(value, np.generic):
        value = value.item()
    try:
        return index[value]
    except (KeyError, TypeError):
        return index.get(("text", str(value)), -1)


# -- classification ----------------------------------------------------------------------------


def _labels(outputs: Outputs, rows: Mask) -> tuple[Ints, Ints] | str:
    if not rows.any():
        return "no rows"
    return outputs.truth[rows].astype(np.int64), outputs.predicted[rows].astype(np.int64)


def _accuracy(outputs: Outputs, rows: Mask) -> Score:
    pair = _labels(outputs, rows)
    if isinstance(pair, str):
        return None, pair
    y, p = pair
    return float(np.mean(y == p)), None


def _averaged(name: Literal["precision", "recall", "f1"]) -> Callable[[Outputs, Mask], Score]:
    def compute(outputs: Outputs, rows: Mask) -> Score:
        from sklearn.metrics import f1_score, precision_score, recall_score

        pair = _labels(outputs, rows)
        if isinstance(pair, str):
            return None, pair
        y, p = pair
        fn = {"precision": precision_score, "recall": recall_score, "f1": f1_score}[name]
        if outputs.n_classes == 2:
            return float(fn(y == 1, p == 1, zero_division=0)), None
        present = sorted({int(v) for v in np.concatenate([y, p]) if v >= 0})
        return float(fn(y, p, labels=present, average="macro", zero_division=0)), None

    return compute


def _known(outputs: Outputs, rows: Mask) -> tuple[Ints, Floats] | str:
    """The rows whose label the model knows, with their probabilities."""
    assert outputs.proba is not None
    keep = rows & (outputs.truth >= 0)
    if not keep.any():
        return "no rows with a label the model knows" if rows.any() else "no rows"
    return outputs.truth[keep].astype(np.int64), outputs.proba[keep]


def _roc_auc(outputs: Outputs, rows: Mask) -> Score:
    from sklearn.metrics import roc_auc_score

    known = _known(outputs, rows)
    if isinstance(known, str):
        return None, known
    y, scores = known
    present = np.unique(y)
    if len(present) < 2:
        return None, "only one class in the target"
    if outputs.n_classes == 2:
        return float(roc_auc_score(y == 1, scores[:, 1])), None
    aucs = [roc_auc_score(y == c, scores[:, c]) for c in present]
    return float(np.mean(aucs)), None


def _log_loss(outputs: Outputs, rows: Mask) -> Score:
    from sklearn.metrics import log_loss

    known = _known(outputs, rows)
    if isinstance(known, str):
        return None, known
    y, scores = known
    return float(log_loss(y, scores, labels=list(range(outputs.n_classes)))), None


def _brier(outputs: Outputs, rows: Mask) -> Score:
    from sklearn.metrics import brier_score_loss

    known = _known(outputs, rows)
    if isinstance(known, str):
        return None, known
    y, scores = known
    return float(brier_score_loss(y == 1, scores[:, 1])), None


# -- regression --------------------------------------------------------------------------------


def _numbers(outputs: Outputs, rows: Mask, *, at_least: int = 1) -> tuple[Floats, Floats] | str:
    n = int(rows.sum())
    if n < at_least:
        return "no rows" if n == 0 else f"{n} row{'s' if n > 1 else ''} (needs {at_least})"
    return outputs.truth[rows].astype(np.float64), outputs.predicted[rows].astype(np.float64)


def _regression(fn: Callable[[Floats, Floats], float]) -> Callable[[Outputs, Mask], Score]:
    def compute(outputs: Outputs, rows: Mask) -> Score:
        pair = _numbers(outputs, rows)
        if isinstance(pair, str):
            return None, pair
        return float(fn(*pair)), None

    return compute


def _mae(y: Floats, p: Floats) -> float:
    return float(np.mean(np.abs(y - p)))


def _mse(y: Floats, p: Floats) -> float:
    return float(np.mean((y - p) ** 2))


def _rmse(y: Floats, p: Floats) -> float:
    return float(np.sqrt(_mse(y, p)))


def _r2(outputs: Outputs, rows: Mask) -> Score:
    from sklearn.metrics import r2_score

    pair = _numbers(outputs, rows, at_least=2)
    if isinstance(pair, str):
        return None, pair
    y, p = pair
    if np.ptp(y) == 0:
        return None, "the target is constant"
    return float(r2_score(y, p)), None


def _mape(outputs: Outputs, rows: Mask) -> Score:
    pair = _numbers(outputs, rows)
    if isinstance(pair, str):
        return None, pair
    y, p = pair
    if (y == 0).any():
        return None, "the target has zeros"
    return float(np.mean(np.abs((y - p) / y))), None


_SCORERS: dict[str, Callable[[Outputs, Mask], Score]] = {
    "accuracy": _accuracy,
    "precision": _averaged("precision"),
    "recall": _averaged("recall"),
    "f1": _averaged("f1"),
    "roc_auc": _roc_auc,
    "log_loss": _log_loss,
    "brier": _brier,
    "mae": _regression(_mae),
    "mse": _regression(_mse),
    "rmse": _regression(_rmse),
    "r2": _r2,
    "mape": _mape,
}


# -- bounds ------------------------------------------------------------------------------------


class Check(msgspec.Struct, frozen=True, kw_only=True):
    """One bound on one metric and slice. ``actual`` is what was compared: the candidate's value,
    ``Δ`` or ``Δ / |baseline|`` (``None`` when it cannot be computed)."""

    kind: CheckKind
    required: float
    actual: float | None
    passed: bool
    reason: str


def check_bounds(
    better: bool,
    candidate: Score,
    baseline: Score,
    *,
    threshold: float | None,
    min_absolute_change: float | None,
    min_relative_change: float | None,
) -> list[Check]:
    """The checks of the bounds given, for scores ``(value, reason it is missing)``."""
    (value, why), (base, base_why) = candidate, baseline
    sign = 1.0 if better else -1.0
    bounds: list[tuple[CheckKind, float | None]] = [
        ("threshold", threshold),
        ("min_absolute_change", min_absolute_change),
        ("min_relative_change", min_relative_change),
    ]
    out = []
    for kind, required in bounds:
        if required is None:
            continue
        if value is None or (kind != "threshold" and base is None):
            who, cause = ("candidate", why) if value is None else ("baseline", base_why)
            out.append(Check(kind=kind, required=required, actual=None, passed=False,
                             reason=f"{who} n/a: {cause}"))  # fmt: skip
        elif kind == "threshold":
            out.append(_check(kind, required, value, sign, required=sign * required))
        elif kind == "min_relative_change" and base == 0:
            out.append(_zero_baseline(required, sign * value))
        else:
            assert base is not None
            delta = value - base
            actual = delta if kind == "min_absolute_change" else delta / abs(base)
            out.append(_check(kind, required, actual, sign, required=required))
    return out


def _check(kind: CheckKind, bound: float, actual: float, sign: float, *, required: float) -> Check:
    """``sign * actual >= required``, within a relative 1e-9."""
    gain = sign * actual
    ok = gain >= required or math.isclose(gain, required, rel_tol=1e-9, abs_tol=1e-12)
    op = ("≥" if sign > 0 else "≤") if ok else ("<" if sign > 0 else ">")
    shown = {"threshold": fmt_value, "min_absolute_change": fmt_delta}.get(kind, fmt_percent)
    word = {"threshold": "", "min_absolute_change": "Δ "}.get(kind, "relative Δ ")
    shown_bound = bound if kind == "threshold" else sign * bound
    reason = f"{word}{shown(actual)} {op} {_bound_text(kind, shown_bound)}"
    return Check(kind=kind, required=bound, actual=actual, passed=ok, reason=reason)


def _zero_baseline(required: float, gain: float) -> Check:
    """A zero baseline: the relative change counts as +inf, 0 or -inf (MLflow's fallback)."""
    ok = gain > 0 or (gain == 0 and required <= 0)
    state = "better" if gain > 0 else "worse" if gain < 0 else "equal"
    return Check(kind="min_relative_change", required=required, actual=None, passed=ok,
                 reason=f"the baseline is 0 and the candidate is {state}")  # fmt: skip


def describe_bound(kind: CheckKind, required: float, better: bool) -> str:
    """``≥ 0.8``, ``Δ ≤ -0.01``, ``relative Δ ≥ +1%``: the bound as the user gave it."""
    word = {"threshold": "", "min_absolute_change": "Δ "}.get(kind, "relative Δ ")
    bound = required if better or kind == "threshold" else -required
    return f"{word}{'≥' if better else '≤'} {_bound_text(kind, bound)}"


def _bound_text(kind: CheckKind, bound: float) -> str:
    if kind == "threshold":
        return f"{bound:g}"
    if kind == "min_absolute_change":
        return f"{bound:+g}"
    return f"{bound * 100:+g}%"


def fmt_value(value: float | None) -> str:
    if value is None:
        return "n/a"
    if value == 0 or 1e-3 <= abs(value) < 1e5:
        return f"{value:.4f}"
    return f"{value:.4g}"


def fmt_delta(value: float | None) -> str:
    return "n/a" if value is None else ("+" if value >= 0 else "-") + fmt_value(abs(value))


def fmt_percent(value: float | None) -> str:
    return "n/a" if value is None else f"{value:+.2%}"
