"""Online features joined in the batcher: requests carry entity keys, the features come from a
feature store, once per batch.

A model version that declares a feature store's feature service is served with a
``FeatureSource`` (the server factory gets one per version from a ``FeatureSourceFactory``; the
Feast bridge in ``modelyard.integrations.feast`` makes them, and serving never imports it). The
request validator then checks the entity keys only (``EntityValidator``); in the model's thread,
``FeatureJoin.prepare`` merges the batch's entity rows, fetches their features with one call,
and validates each request's features against the version's signature like any input. An entity
the store does not know fails its own request (``EntityNotFoundError``, naming the key and
value), never the batch.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np
import numpy.typing as npt

from modelyard.core.types import Signature, TensorSpec
from modelyard.errors import ModelyardError, NotFoundError, ValidationError
from modelyard.serving.validation import RequestValidator

if TYPE_CHECKING:
    from modelyard.core.types import ModelVersion
    from modelyard.serving.validation import Rows

Array = npt.NDArray[Any]


class EntityNotFoundError(NotFoundError):
    """An entity key the online store holds no features for."""


@dataclass(frozen=True, slots=True)
class EntityKey:
    """An entity's join key as requests send it: its name and numpy dtype (``int64``, ``str``)."""

    name: str
    dtype: str


@dataclass(frozen=True, slots=True)
class FetchedFeatures:
    """One batch's online features: a column per feature (``None`` where missing) and, per
    row, whether the store knew the entity at all."""

    columns: dict[str, list[Any]]
    found: list[bool]


class FeatureSource(Protocol):
    """Where a served version's features come from (one per served version)."""

    #: What the store calls the feature set, for messages (``feature service 'churn'``).
    label: str
    entity_keys: tuple[EntityKey, ...]

    def fetch(self, entities: dict[str, list[Any]]) -> FetchedFeatures:
        """The features of these entity rows, in their order; blocking (the model's thread)."""
        ...

    def close(self) -> None: ...


#: The server factory's hook: the source of a version's features, or ``None`` when the version
#: takes its features from the request.
FeatureSourceFactory = Callable[["ModelVersion"], "FeatureSource | None"]


def entity_signature(keys: Sequence[EntityKey]) -> Signature:
    """The signature requests are validated against: the entity keys, one column each."""
    inputs = tuple(TensorSpec(name=k.name, dtype=k.dtype, shape=(-1,)) for k in keys)
    return Signature(kind="columns", inputs=inputs, outputs=())


class EntityValidator(RequestValidator):
    """Checks requests' entity keys: one column each, kept in its own dtype (an all-numeric
    signature would give a float64 matrix, which rounds int64 ids above 2**53)."""

    def __init__(self, keys: Sequence[EntityKey], *, model: str | None = None) -> None:
        super().__init__(entity_signature(keys), model=model)
        self.numeric = False


class FeatureJoin:
    """Turns a batch of entity rows into feature rows for one served version."""

    def __init__(
        self,
        source: FeatureSource,
        features: RequestValidator,
        *,
        on_fetch: Callable[[float], None] | None = None,
    ) -> None:
        """``on_fetch`` hears the seconds of each batch's fetch."""
        self.source = source
        self.validator = features
        self._keys = [k.name for k in source.entity_keys]
        self._on_fetch = on_fetch

    def prepare(self, parts: Sequence[Rows]) -> list[Rows | ModelyardError]:
        """Each request's feature rows, or the error that fails that request only; one
        ``fetch`` for the whole batch."""
        entities: dict[str, list[Any]] = {key: [] for key in self._keys}
        for rows in parts:
            for i, key in enumerate(self._keys):
                entities[key].extend(_column(rows, i).tolist())
        started = time.perf_counter()
        fetched = self.source.fetch(entities)
        if self._on_fetch is not None:
            self._on_fetch(time.perf_counter() - started)
        out: list[Rows | ModelyardError] = []
        offset = 0
        for rows in parts:
            end = offset + rows.n
            out.append(self._request(fetched, entities, offset, end))
            offset = end
        return out

    def _request(
        self, fetched: FetchedFeatures, entities: dict[str, list[Any]], start: int, end: int
    ) -> Rows | ModelyardError:
        for row in range(start, end):
            if not fetched.found[row]:
                shown = ", ".join(f"{key}={entities[key][row]!r}" for key in self._keys)
                return EntityNotFoundError(
                    f"The online store has no features for {shown} ({self.source.label}); check "
                    "the key, or materialize its features ('feast materialize-incremental')."
                )
        pairs = [
            (name, np.asarray(values[start:end], dtype=object))
            for name, values in fetched.columns.items()
            if name not in entities
        ]
        try:
            return self.validator.from_tensors(pairs)
        except ValidationError as exc:
            return type(exc)(f"The features from {self.source.label} do not fit the model: {exc}")


def _column(rows: Rows, i: int) -> Array:
    if rows.matrix is not None:
        column = rows.matrix[:, i]
        return column.astype(np.int64) if np.all(column == np.round(column)) else column
    assert rows.columns is not None
    return rows.columns[i]
