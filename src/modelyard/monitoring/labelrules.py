"""What labels of a deployment's model must be for its performance to score them.

A regressor's labels are compared as numbers (``label_num``), and so are the labels of a
classifier whose classes are numbers: a label that is no number there is dropped or counted
wrong, and as the latest label of a key wins, it would replace a good one. Ingest refuses such a
label (``LabelRule.refusal``) before anything is written. A classifier with text classes takes
any label, and a number that is no class of a numeric classifier is taken too: it is a real
outcome (the model was wrong). A model that predicts text without recording classes is a
classifier too (``task_of``, which performance scores by): its labels are compared as text.

The rule comes from the model's signature: the served version's (the server), or the registry's
entry of the version that logged the newest prediction (``logged_rule``); no signature, no rule.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, NamedTuple

import numpy as np

from modelyard.errors import NotFoundError
from modelyard.monitoring import _deltalog
from modelyard.monitoring.labels import sql_literal

if TYPE_CHECKING:
    from modelyard.core.types import Signature
    from modelyard.registry import Registry

logger = logging.getLogger(__name__)

_SHOWN = 5  # classes named in a message
_NUMERIC_KINDS = ("int", "uint", "float")


class LabelRule(NamedTuple):
    """``model`` (``NAME/VERSION``) is a regressor (``classes is None``) or a classifier with
    these numeric ``classes``."""

    model: str
    classes: tuple[int | float, ...] | None

    def refusal(self, value: Any, number: float | None) -> str | None:
        """Why label ``value`` (``number``: its finite value as a number, if any) cannot be
        scored, as the end of a sentence naming the label; ``None`` when it can."""
        if self.classes is None:
            if number is None or isinstance(value, bool | np.bool_):
                return (
                    f"is not a number, and model {self.model} is a regressor (its predictions "
                    "are numbers); send the observed value as a number."
                )
            return None
        if number is None:
            shown = ", ".join(str(c) for c in self.classes[:_SHOWN])
            more = ", ..." if len(self.classes) > _SHOWN else ""
            return (
                f"cannot be a class of model {self.model}, whose classes are numbers ({shown}"
                f"{more}); send the observed class as a number."
            )
        return None


def task_of(signature: Signature | None) -> Literal["classification", "regression"] | None:
    """What a model with ``signature`` does, as its labels are scored: a classifier when it
    records classes or predicts text or booleans (whose labels are compared as text), a
    regressor when it predicts numbers without classes; ``None`` when it records no prediction
    (the log then says)."""
    if signature is None:
        return None
    if signature.classes is not None:
        return "classification"
    predict = next((o for o in signature.outputs if o.name == "predict"), None)
    if predict is None:
        return None
    return "regression" if predict.dtype.startswith(_NUMERIC_KINDS) else "classification"


def rule_of(signature: Signature | None, model: str) -> LabelRule | None:
    """The rule for the labels of ``model`` (``NAME/VERSION``) with ``signature``."""
    if signature is None:
        return None
    classes = signature.classes
    if classes is not None:
        if all(isinstance(c, int | float) and not isinstance(c, bool) for c in classes):
            return LabelRule(model, tuple(c for c in classes if isinstance(c, int | float)))
        return None  # text (or boolean) classes: any label can be one
    # a regressor's labels are numbers; text predictions without classes take any label
    return LabelRule(model, None) if task_of(signature) == "regression" else None


def logged_rule(root: str | Path, name: str, registry: Registry) -> LabelRule | None:
    """The rule of the version that logged ``name``'s newest prediction, from its registry
    entry (reads the newest hour of the log only); ``None`` when nothing says."""
    latest = _newest_logged(root, name)
    if latest is None:
        return None
    model = f"{latest[0]}/{latest[1]}"
    try:
        signature = registry.get_version(model).signature
    except NotFoundError:
        logger.warning("%s is not in the registry; its labels are not checked", model)
        return None
    return rule_of(signature, model)


def _newest_logged(root: str | Path, name: str) -> tuple[str, str] | None:
    import duckdb

    folder = Path(root) / f"deployment={name}"
    active = _deltalog.active_names(folder)
    for hour in sorted(folder.glob("hour=*"), reverse=True):
        files = [f for f in sorted(hour.glob("*.parquet")) if active is None or f.name in active]
        if not files:
            continue
        listed = "[" + ", ".join(sql_literal(str(f)) for f in files) + "]"
        with duckdb.connect() as con:
            source = f"read_parquet({listed}, union_by_name = true, hive_partitioning = false)"
            described = con.execute(f"DESCRIBE SELECT * FROM {source}").fetchall()
            if not {"model", "version", "time"} <= {str(r[0]) for r in described}:
                return None
            found = con.execute(
                f"SELECT model, version FROM {source} ORDER BY time DESC LIMIT 1"
            ).fetchone()
        return (str(found[0]), str(found[1])) if found else None
    return None
