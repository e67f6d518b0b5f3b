"""Runs: a minimal record of a training run (params, metrics, start/end, status, tags) that
versions link to, so a training script can log to modelyard directly."""

from __future__ import annotations

import logging
import math
import uuid
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from types import TracebackType
from typing import TYPE_CHECKING, Any, Literal, Protocol, get_args

import sqlalchemy as sa

from modelyard.core.types import Run
from modelyard.errors import InvalidInputError, ModelyardError
from modelyard.registry._rows import fetch_run
from modelyard.store.schema import run_steps, runs

if TYPE_CHECKING:
    from modelyard.store.db import Database

logger = logging.getLogger(__name__)

RunKind = Literal["training", "pipeline"]
#: The tag that names modelyard's run on each mirrored run.
TAG_MODELYARD_RUN = "modelyard.run_id"
RUN_KINDS: tuple[str, ...] = get_args(RunKind)
MAX_NAME_FILTER_CHARS = 256


def clean_metrics(metrics: dict[str, Any] | None) -> dict[str, float]:
    out: dict[str, float] = {}
    for key, value in (metrics or {}).items():
        try:
            number = float(value)
        except (TypeError, ValueError):
            raise InvalidInputError(
                f"Metric {key!r} must be a number, got {value!r}; pass --metric {key}=0.93."
            ) from None
        if not math.isfinite(number):
            raise InvalidInputError(f"Metric {key!r} must be finite, got {value!r}.")
        out[str(key)] = number
    return out


def clean_strings(kind: str, values: dict[str, Any] | None) -> dict[str, str]:
    out: dict[str, str] = {}
    for key, value in (values or {}).items():
        if not isinstance(key, str) or not key or len(key) > 255:
            raise InvalidInputError(
                f"{kind.capitalize()} key {key!r} must be a non-empty string of at most 255 "
                "characters."
            )
        out[key] = str(value)
    return out


class RunMirror(Protocol):
    """Another tracker that receives what a run logs (``modelyard.integrations``: MLflow, W&B,
    Neptune): the values already cleaned, before modelyard records them. ``name`` names the
    tracker in messages and tags. A mirror raises a ``ModelyardError`` when its tracker fails."""

    name: str

    def log_params(self, params: dict[str, str]) -> None: ...

    def log_metrics(self, metrics: dict[str, float]) -> None: ...

    def set_tags(self, tags: dict[str, str]) -> None: ...

    def end(self, status: Literal["finished", "failed"]) -> None: ...


def mirror_error_tag(mirror: RunMirror) -> str:
    """The tag that records why ``mirror`` stopped receiving a run (``wandb.mirror_error``)."""
    return f"{mirror.name}.mirror_error"


class RunMirrors:
    """The mirrors of one run. A mirror that fails is detached, not fatal: the caller records the
    value all the same, one warning is logged, and ``send`` returns the ``NAME.mirror_error`` tag
    to record; that mirror receives nothing more (a training job does not die at epoch 90
    because a side tracker did; the run record says which mirror is incomplete)."""

    def __init__(self, run_id: str, mirrors: Sequence[RunMirror] = ()) -> None:
        self.run_id = run_id
        self.all = tuple(mirrors)
        self._detached: list[RunMirror] = []

    @property
    def detached(self) -> tuple[str, ...]:
        """The names of the mirrors that failed and receive nothing more."""
        return tuple(mirror.name for mirror in self._detached)

    def send(self, call: Callable[[RunMirror], None]) -> dict[str, str]:
        """``call`` on each mirror still attached; the error tags of those that failed now."""
        failed: dict[str, str] = {}
        for mirror in self.all:
            if any(mirror is gone for gone in self._detached):
                continue
            try:
                call(mirror)
            except ModelyardError as exc:
                self._detached.append(mirror)
                failed[mirror_error_tag(mirror)] = str(exc)[:1000]
                logger.warning(
                    "The %s mirror of run %s failed and receives nothing more; modelyard keeps "
                    "recording the run: %s",
                    mirror.name, self.run_id, exc,
                )  # fmt: skip
        return failed

    def start(self, *, params: dict[str, str], tags: dict[str, str]) -> dict[str, str]:
        """A new run's ``params`` and ``tags`` (with ``modelyard.run_id``) to every mirror."""
        failed = self.send(lambda mirror: mirror.log_params(params))
        tagged = {**tags, TAG_MODELYARD_RUN: self.run_id}
        failed.update(self.send(lambda mirror: mirror.set_tags(tagged)))
        return failed


class ActiveRun:
    """A run being recorded; a context manager that ends it as ``finished`` or ``failed``.
    ``mirrors`` receive every param, metric, tag and the end as well; one that fails is detached
    (``RunMirrors``) and the run goes on."""

    def __init__(self, db: Database, run_id: str, mirrors: Sequence[RunMirror] = ()) -> None:
        self._db = db
        self.id = run_id
        self._mirrors = RunMirrors(run_id, mirrors)
        self.mirrors = self._mirrors.all

    def log_params(self, params: dict[str, Any]) -> None:
        clean = clean_strings("param", params)
        failed = self._mirrors.send(lambda mirror: mirror.log_params(clean))
        self._merge("params", clean, failed)

    def log_metrics(self, metrics: dict[str, Any]) -> None:
        clean = clean_metrics(metrics)
        failed = self._mirrors.send(lambda mirror: mirror.log_metrics(clean))
        self._merge("metrics", clean, failed)

    def set_tags(self, tags: dict[str, Any]) -> None:
        clean = clean_strings("tag", tags)
        failed = self._mirrors.send(lambda mirror: mirror.set_tags(clean))
        self._merge("tags", {**clean, **failed})

    def end(self, status: Literal["finished", "failed"] = "finished") -> Run:
        failed = self._mirrors.send(lambda mirror: mirror.end(status))
        if failed:
            self._merge("tags", failed)
        with self._db.write() as conn:
            conn.execute(
                sa.update(runs)
                .where(runs.c.id == self.id)
                .values(status=status, end_time=datetime.now(UTC))
            )
            return fetch_run(conn, self.id)

    def send_to_mirrors(self, *, params: dict[str, str], tags: dict[str, str]) -> None:
        """A new run's ``params`` and ``tags`` to its mirrors only (``RunMirrors.start``)."""
        failed = self._mirrors.start(params=params, tags=tags)
        if failed:
            self._merge("tags", failed)

    @property
    def detached(self) -> tuple[str, ...]:
        """The names of the mirrors that failed and receive nothing more."""
        return self._mirrors.detached

    def info(self) -> Run:
        with self._db.read() as conn:
            return fetch_run(conn, self.id)

    def __enter__(self) -> ActiveRun:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.end("failed" if exc_type is not None else "finished")

    def _merge(
        self, column: str, values: dict[str, Any], tags: dict[str, str] | None = None
    ) -> None:
        """``values`` merged into ``column`` (and ``tags`` into the tags) in one write."""
        with self._db.write() as conn:
            current = fetch_run(conn, self.id)
            update: dict[str, Any] = {column: {**getattr(current, column), **values}}
            if tags:
                update["tags"] = {**current.tags, **tags}
            conn.execute(sa.update(runs).where(runs.c.id == self.id).values(update))


def start_run(
    db: Database,
    *,
    name: str | None,
    user: str,
    params: dict[str, Any] | None,
    tags: dict[str, Any] | None,
    mirrors: Sequence[RunMirror] = (),
) -> ActiveRun:
    run_id = uuid.uuid4().hex
    with db.write() as conn:
        conn.execute(
            sa.insert(runs).values(
                id=run_id,
                name=name,
                status="running",
                start_time=datetime.now(UTC),
                params=clean_strings("param", params),
                metrics={},
                tags=clean_strings("tag", tags),
                user=user,
            )
        )
    return ActiveRun(db, run_id, mirrors)


def runs_query(*, kind: str | None = None, name: str | None = None) -> sa.Select[Any]:
    """The runs of ``kind`` (a pipeline run is one with steps; a training run has none) whose
    name contains ``name`` (case-insensitive, ``%`` and ``_`` taken literally)."""
    query = sa.select(runs)
    if kind is not None:
        if kind not in RUN_KINDS:
            raise InvalidInputError(
                f"Run kind {kind[:40]!r} is unknown; use {' or '.join(RUN_KINDS)}."
            )
        has_steps = sa.exists().where(run_steps.c.run_id == runs.c.id)
        query = query.where(has_steps if kind == "pipeline" else ~has_steps)
    if name:
        if len(name) > MAX_NAME_FILTER_CHARS:
            raise InvalidInputError(
                f"The run name filter is longer than {MAX_NAME_FILTER_CHARS} characters."
            )
        query = query.where(runs.c.name.icontains(name, autoescape=True))
    return query
