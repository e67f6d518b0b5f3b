"""The ``tune`` step's search space and estimator: parsed and checked before any trial runs.

A search space maps an estimator parameter to a dimension::

    {"max_iter": {"kind": "int", "low": 10, "high": 200, "log": true},
     "learning_rate": {"kind": "float", "low": 0.01, "high": 0.3, "log": true},
     "max_depth": {"kind": "categorical", "choices": [3, 5, null]}}

``int`` and ``float`` take ``low`` <= ``high``, and ``log`` or ``step``; ``categorical`` takes a
non-empty list of JSON values.
"""

from __future__ import annotations

import importlib
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

from modelyard.errors import InvalidInputError

if TYPE_CHECKING:
    import optuna

__all__ = ["KINDS", "Dimension", "parse_space", "resolve_estimator"]

KINDS = ("int", "float", "categorical")
_KEYS = {"int": {"low", "high", "log", "step"}, "float": {"low", "high", "log", "step"}}
_KEYS["categorical"] = {"choices"}


@dataclass(frozen=True, slots=True)
class Dimension:
    """One searched parameter: ``kind`` with its bounds or choices."""

    name: str
    kind: Literal["int", "float", "categorical"]
    low: float = 0.0
    high: float = 0.0
    log: bool = False
    step: float | None = None
    choices: tuple[Any, ...] = ()

    def suggest(self, trial: optuna.Trial) -> Any:
        if self.kind == "int":
            return trial.suggest_int(
                self.name, int(self.low), int(self.high), step=int(self.step or 1), log=self.log
            )
        if self.kind == "float":
            return trial.suggest_float(self.name, self.low, self.high, step=self.step, log=self.log)
        return trial.suggest_categorical(self.name, list(self.choices))


def parse_space(space: Mapping[str, Any]) -> tuple[Dimension, ...]:
    """The dimensions of ``space``; ``InvalidInputError`` naming the first bad entry."""
    if not isinstance(space, Mapping) or not space:
        raise InvalidInputError(
            "The search space is empty or not a mapping; give {'param': {'kind': 'int', "
            "'low': 1, 'high': 10}, ...}."
        )
    return tuple(_dimension(str(name), spec) for name, spec in space.items())


def _dimension(name: str, spec: Any) -> Dimension:
    if not isinstance(spec, Mapping):
        raise InvalidInputError(
            f"Search space entry {name!r} is {type(spec).__name__}, not a mapping; give "
            "{'kind': 'int' | 'float' | 'categorical', ...}."
        )
    kind = spec.get("kind")
    if kind not in KINDS:
        raise InvalidInputError(
            f"Search space entry {name!r} has kind {kind!r}; use 'int', 'float' or 'categorical'."
        )
    unknown = sorted(set(spec) - {"kind"} - _KEYS[kind])
    if unknown:
        raise InvalidInputError(
            f"Search space entry {name!r} ({kind}) has unknown keys {unknown}; it takes "
            f"{sorted(_KEYS[kind])}."
        )
    if kind == "categorical":
        choices = spec.get("choices")
        if not isinstance(choices, list | tuple) or not choices:
            raise InvalidInputError(
                f"Search space entry {name!r} needs a non-empty list of 'choices'."
            )
        return Dimension(name, "categorical", choices=tuple(choices))
    low, high = spec.get("low"), spec.get("high")
    numbers = (int, float) if kind == "float" else (int,)
    if not all(isinstance(v, numbers) and not isinstance(v, bool) for v in (low, high)):
        raise InvalidInputError(
            f"Search space entry {name!r} ({kind}) needs numbers 'low' and 'high', got "
            f"{low!r} and {high!r}."
        )
    assert low is not None and high is not None
    if low > high:
        raise InvalidInputError(
            f"Search space entry {name!r} has low {low} above high {high}; swap them."
        )
    log, step = bool(spec.get("log", False)), spec.get("step")
    if log and (low <= 0 or step is not None):
        raise InvalidInputError(
            f"Search space entry {name!r} has log=true, which needs low > 0 and no 'step'."
        )
    return Dimension(name, kind, low=float(low), high=float(high), log=log, step=step)


def resolve_estimator(
    estimator: Any, fixed: Mapping[str, Any], space: tuple[Dimension, ...]
) -> Any:
    """An unfitted estimator: ``estimator`` itself, or the class ``"module.Class"`` names, with
    ``fixed`` parameters set; every searched parameter must be one of its parameters."""
    if isinstance(estimator, str):
        module_name, _, attr = estimator.rpartition(".")
        try:
            cls = getattr(importlib.import_module(module_name), attr)
        except (ImportError, AttributeError, ValueError) as exc:
            raise InvalidInputError(
                f"Estimator {estimator!r} cannot be imported ({type(exc).__name__}); give "
                "'module.Class' of a scikit-learn style estimator."
            ) from None
        estimator = cls()
    if not all(hasattr(estimator, m) for m in ("get_params", "set_params", "fit")):
        raise InvalidInputError(
            f"{type(estimator).__qualname__} is not a scikit-learn style estimator (get_params, "
            "set_params, fit); tune takes one, or its 'module.Class' name."
        )
    known = estimator.get_params(deep=True)
    unknown = [n for n in (*fixed, *(d.name for d in space)) if n not in known]
    if unknown:
        raise InvalidInputError(
            f"{type(estimator).__qualname__} has no parameter(s) {unknown}; its parameters are: "
            f"{', '.join(sorted(known))}."
        )
    return estimator.set_params(**fixed)
