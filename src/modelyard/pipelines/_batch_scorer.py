"""Scoring record batches like the server, and locating the rows it rejects.

``BatchScorer`` wraps the server's own ``ServedModel`` (its ``RequestValidator`` and
``run_batch``). A whole batch is validated and scored in one vectorised call; only when that fails
are its bad rows located:

1. each model column is checked alone (the server's validator, and its coercion where the server
   coerces, on a one-column signature); when a column fails, its nulls are tried once and rejected
   together if a null alone fails, and the rest of the column is bisected;
2. the other rows are scored together; if that still fails (a model that rejects some rows), they
   are bisected and the halves that pass are scored.

k bad rows cost O(k log n) checks and a column of nulls O(1). A rejected row's reason is the
server's message for that row alone.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, cast

import numpy as np
import numpy.typing as npt
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from modelyard.core.types import Signature, TensorSpec
from modelyard.errors import ModelyardError, PredictionError, ValidationError
from modelyard.serving.models import ServedModel
from modelyard.serving.validation import RequestValidator, Rows

if TYPE_CHECKING:
    from modelyard.pipelines.batch import InputFile, JobPlan
    from modelyard.registry.loaded import LoadedModel
    from modelyard.settings import ServingSettings

Array = npt.NDArray[Any]
_ROW_0 = re.compile(r" at row 0(?=[ ;,.])")


@dataclass(frozen=True, slots=True)
class Scored:
    """One scored batch (or Ray chunk): the scored rows' table and the rejected rows' table."""

    table: pa.Table | None
    rejects: pa.Table | None
    rows: int


class BatchScorer:
    """Scores record batches with the server's ``ServedModel`` and locates rejected rows."""

    def __init__(self, loaded: LoadedModel, plan: JobPlan, settings: ServingSettings) -> None:
        self.served = ServedModel(loaded, settings)
        self.plan = plan
        signature = self.served.signature
        self._tensor = signature.kind == "tensor"
        self._coerces = not self.served.matrix_direct  # as the server does
        self._checks: dict[int, _ColumnCheck] = {}
        self._classes = list(signature.classes or loaded.classes or [])
        self._warm_up()

    def _warm_up(self) -> None:
        """Score the first input row once and drop the result, so that start-up ends warm: the
        first batch imported pandas through pyarrow's to_numpy (0.3 s, measured per process) and
        ran every code path for the first time. Whatever goes wrong here happens again, and is
        reported, when that row is scored for real."""
        for file in self.plan.files:
            group = next((i for i, rows in enumerate(file.row_groups) if rows), None)
            if group is None:
                continue
            try:
                parquet = pq.ParquetFile(file.location)
                first = next(
                    parquet.iter_batches(
                        batch_size=1, row_groups=[group], columns=self.plan.columns,
                        use_threads=False,
                    )
                )  # fmt: skip
                with validation_warnings(lambda record: False):  # the job warns, not this
                    self.score_batch(first, file, 0)
            except Exception:  # a warm-up changes nothing but timing
                pass
            return

    @property
    def runtime(self) -> str:
        return self.served.loaded.runtime

    @property
    def kernel(self) -> str:
        return self.served.loaded.kernel

    def score_file(
        self, file: InputFile, row_groups: Sequence[int] | None = None, *, first_row: int = 0
    ) -> Iterator[Scored]:
        """Scored batches of ``file`` (of its ``row_groups``, whose first row is ``first_row``)."""
        parquet = pq.ParquetFile(file.location)
        row = first_row
        batches = parquet.iter_batches(
            batch_size=self.plan.batch_size,
            row_groups=row_groups,
            columns=self.plan.columns,
            use_threads=False,  # measured: faster than pyarrow's threads, even on 2 CPUs
        )
        for batch in batches:
            yield self.score_batch(batch, file, row)
            row += batch.num_rows

    def score_batch(self, batch: pa.RecordBatch, file: InputFile, first_row: int) -> Scored:
        values = [_values(batch.column(name)) for name in self.plan.features]
        try:
            try:
                outputs = self._run(values)
            except ValidationError:
                return self._located(batch, values, file, first_row)
        except ModelyardError:
            raise
        except Exception as exc:  # the model's own failure: the job stops, naming where
            raise PredictionError(
                f"Model {self.plan.ref} failed on rows {first_row}-{first_row + batch.num_rows - 1}"
                f" of {file.path!r}: {type(exc).__name__}: {str(exc)[:200]}"
            ) from exc
        return Scored(self._table(batch, None, outputs), None, batch.num_rows)

    def _run(self, values: Sequence[Array]) -> dict[str, Array]:
        validator = self.served.validator
        if self._tensor:
            rows = validator.from_tensors([(validator.names[0], np.column_stack(values))])
        else:
            rows = validator.from_tensors(list(zip(self.plan.features, values, strict=True)))
        return self.served.run_batch(rows, self.served.outputs)

    def _located(
        self, batch: pa.RecordBatch, values: list[Array], file: InputFile, first_row: int
    ) -> Scored:
        bad: dict[int, str] = {}
        if not self._tensor:
            for i, name in enumerate(self.plan.features):
                self._column_rejects(i, batch.column(name), values[i], bad)
        keep = np.ones(batch.num_rows, dtype=bool)
        keep[list(bad)] = False
        pieces: list[tuple[Array, dict[str, Array]]] = []
        if keep.any():
            self._bisect(values, np.flatnonzero(keep), pieces, bad)
        table = None
        if pieces:
            index = np.concatenate([p[0] for p in pieces])
            outputs = {k: np.concatenate([p[1][k] for p in pieces]) for k in pieces[0][1]}
            table = self._table(batch, index, outputs)
        return Scored(table, self._rejects(batch, bad, file, first_row), batch.num_rows)

    def _column_rejects(self, i: int, array: pa.Array, column: Array, bad: dict[int, str]) -> None:
        check = self._checks.get(i)
        if check is None:
            spec = self.served.signature.inputs[i]
            check = self._checks[i] = _ColumnCheck(spec, coerce=self._coerces)
        if check.reason(column) is None:
            return
        rows = np.arange(len(column))
        nulls = np.asarray(pc.is_null(array, nan_is_null=True).to_numpy(zero_copy_only=False))
        if nulls.any():
            where = np.flatnonzero(nulls)
            reason = check.reason(column[where[:1]])
            if reason is not None:  # a null alone fails: every null of the column does
                for row in where.tolist():
                    bad.setdefault(row, reason)
                rows = np.flatnonzero(~nulls)
        _bisect_column(check, column, rows, bad)

    def _bisect(
        self,
        values: list[Array],
        index: Array,
        pieces: list[tuple[Array, dict[str, Array]]],
        bad: dict[int, str],
    ) -> None:
        try:
            outputs = self._run([v[index] for v in values])
        except ValidationError as exc:
            if len(index) == 1:
                bad[int(index[0])] = _reason(exc)
                return
            half = len(index) // 2
            self._bisect(values, index[:half], pieces, bad)
            self._bisect(values, index[half:], pieces, bad)
            return
        pieces.append((index, outputs))

    def _table(
        self, batch: pa.RecordBatch, index: Array | None, outputs: dict[str, Array]
    ) -> pa.Table:
        taken = None if index is None else pa.array(index, pa.int64())
        arrays: list[pa.Array] = []
        names: list[str] = []
        for key in self.plan.keys:
            column = batch.column(key)
            arrays.append(column if taken is None else column.take(taken))
            names.append(key)
        predict = outputs["predict"]
        n = len(predict)
        if predict.ndim == 2:
            for j in range(predict.shape[1]):
                arrays.append(pa.array(predict[:, j]))
                names.append(f"predict_{j}")
        else:
            arrays.append(pa.array(predict))
            names.append("predict")
        proba = outputs.get("predict_proba")
        if proba is not None:
            classes = self._classes if len(self._classes) == proba.shape[1] else None
            for j in range(proba.shape[1]):
                arrays.append(pa.array(proba[:, j]))
                names.append(f"proba_{classes[j] if classes else j}")
        if any(len(a) != n for a in arrays):
            raise PredictionError(
                f"Model {self.plan.ref} gave {n} predictions for {len(arrays[0])} rows."
            )
        return pa.Table.from_arrays(arrays, names=names)

    def _rejects(
        self, batch: pa.RecordBatch, bad: dict[int, str], file: InputFile, first_row: int
    ) -> pa.Table | None:
        if not bad:
            return None
        where = np.array(sorted(bad), dtype=np.int64)
        taken = pa.array(where)
        columns: dict[str, pa.Array] = {
            "input_file": pa.array([file.path] * len(where), pa.string()),
            "input_row": pa.array(where + first_row),
        }
        for key in self.plan.keys:
            columns[key] = batch.column(key).take(taken)
        columns["reason"] = pa.array([bad[i] for i in where.tolist()], pa.string())
        return pa.table(columns)


class _ColumnCheck:
    """The server's checks of one column alone: its validator on a one-column signature, then
    the coercion the server applies before a native model (``LoadedModel.prepare``)."""

    def __init__(self, spec: TensorSpec, *, coerce: bool) -> None:
        signature = Signature(kind="columns", inputs=(spec,))
        self._name = spec.name
        self._validator = RequestValidator(signature)
        self._coercer: Callable[[Any], Any] | None = None
        if coerce:
            from modelyard.core.coercion import InputCoercer

            self._coercer = InputCoercer(signature)

    def reason(self, values: Array) -> str | None:
        """Why the server rejects these values (``None``: it accepts them)."""
        try:
            rows = self._validator.from_tensors([(self._name, values)])
            if self._coercer is not None:
                self._coercer(_frame(rows, [self._name]))
        except ValidationError as exc:
            return _reason(exc)
        return None


def _bisect_column(check: _ColumnCheck, column: Array, rows: Array, bad: dict[int, str]) -> None:
    if len(rows) == 0:
        return
    reason = check.reason(column[rows])
    if reason is None:
        return
    if len(rows) == 1:
        bad.setdefault(int(rows[0]), reason)
        return
    half = len(rows) // 2
    _bisect_column(check, column, rows[:half], bad)
    _bisect_column(check, column, rows[half:], bad)


def _frame(rows: Rows, names: list[str]) -> Any:
    import pandas as pd

    if rows.matrix is not None:
        return pd.DataFrame(rows.matrix, columns=names, copy=False)
    assert rows.columns is not None
    return pd.DataFrame(dict(zip(names, rows.columns, strict=True)), copy=False)


def _values(array: pa.Array) -> Array:
    """A column as the server would see it: numbers (nulls as NaN), text as objects."""
    if pa.types.is_dictionary(array.type):
        array = array.dictionary_decode()
    if pa.types.is_boolean(array.type) and array.null_count:
        array = pc.cast(array, pa.float64())  # JSON's [true, null] for a nullable bool
    return cast(Array, array.to_numpy(zero_copy_only=False))


def _reason(exc: BaseException) -> str:
    # Coercion messages say "at row N" of what they were given: one row here, so drop it (the
    # rejects file gives the input row).
    return _ROW_0.sub("", str(exc))


@contextmanager
def validation_warnings(
    keep: logging.Filter | Callable[[logging.LogRecord], bool],
) -> Iterator[None]:
    """The server validator's log records pass through ``keep`` while inside (any thread's)."""
    validation_logger = logging.getLogger("modelyard.serving.validation")
    validation_logger.addFilter(keep)
    try:
        yield
    finally:
        validation_logger.removeFilter(keep)
