"""The durable prediction log: a bounded queue the server fills without blocking, and a writer
thread that turns it into Parquet files partitioned by deployment and hour.

Layout: ``<root>/deployment=<name>/hour=<YYYY-MM-DDTHH>/<timestamp>-<uuid>.parquet``. Each file is
written under a hidden temporary name in its folder and renamed, so readers never see half a file.

With ``log_format="delta"`` each deployment's folder is a Delta Lake table instead, partitioned
by ``hour`` into the same folders, and each flush is one append (one table version) per deployment
(``_deltalog``).

A root on an object store (``s3://bucket/prefix``, any fsspec URL) is written through a local
spool (``_spool.Spool``): parts land on local disk first and a thread uploads them, retrying while
the store is down, so a prediction the server answered is on disk within ``flush_interval_s``
whatever the store does.
"""

from __future__ import annotations

import hashlib
import logging
import os
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable, Iterable, Sequence
from datetime import UTC, datetime
from itertools import repeat
from operator import is_, itemgetter
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, Protocol

import numpy as np

from modelyard.core.threads import run_in_background
from modelyard.errors import ConfigError
from modelyard.monitoring import _deltalog
from modelyard.monitoring._encoding import dictionary_columns
from modelyard.monitoring._logblock import Block, block_key, kind_key
from modelyard.monitoring._spool import Spool, UploadOptions

__all__ = [
    "ParquetSink",
    "UploadOptions",
    "is_remote",
    "open_sink",
    "records_table",
    "root_slug",
    "write_parquet",
]

if TYPE_CHECKING:
    import pyarrow as pa

logger = logging.getLogger(__name__)


class PredictionRecord(Protocol):
    """What the log reads of ``modelyard.serving.sink.PredictionRecord`` (serving sits above
    monitoring, so the shape is restated here rather than imported)."""

    @property
    def request_id(self) -> str: ...
    @property
    def time(self) -> float: ...
    @property
    def model(self) -> str: ...
    @property
    def deployment(self) -> str | None: ...
    @property
    def version(self) -> str: ...
    @property
    def route(self) -> str: ...
    @property
    def inputs(self) -> Any: ...
    @property
    def outputs(self) -> dict[str, Any]: ...
    @property
    def latency_s(self) -> float: ...
    @property
    def input_names(self) -> tuple[str, ...]: ...
    @property
    def status(self) -> int: ...
    @property
    def cpu_s(self) -> float: ...
    @property
    def memory_bytes(self) -> int: ...


_US_PER_HOUR = 3_600_000_000

#: Columns every log row has, before the inputs (``in_*``) and outputs (``out_*``).
BASE_COLUMNS = (
    "request_id", "row", "time", "deployment", "route", "model", "version", "latency_ms",
    "status", "cpu_ms", "memory_bytes",
)  # fmt: skip


class ParquetSink:
    """A ``PredictionSink`` writing Parquet files under ``root``; ``dropped`` counts records
    lost to a full queue (or to a failed write), and ``on_drop`` hears about each loss."""

    def __init__(
        self,
        root: str | Path,
        *,
        queue_size: int = 100_000,
        flush_interval_s: float = 1.0,
        drop_columns: Iterable[str] = (),
        hash_columns: Iterable[str] = (),
        on_drop: Callable[[int], None] | None = None,
        spool: Spool | None = None,
        log_format: Literal["parquet", "delta"] = "parquet",
    ) -> None:
        """``spool``: where parts go on their way to an object store (``open_sink`` makes it
        for a remote root); without one they are written under ``root`` directly.
        ``log_format="delta"``: one Delta table per deployment (local roots only)."""
        if log_format == "delta":
            _deltalog.import_deltalake()  # before serving, and refused at start when missing
        self.log_format = log_format
        self.root = Path(root)
        self.spool = spool
        self.queue_size = queue_size
        self.flush_interval_s = flush_interval_s
        self.drop_columns = frozenset(drop_columns)
        self.hash_columns = frozenset(hash_columns)
        self.on_drop = on_drop
        self.dropped = 0
        self.written = 0
        # Import what the writer thread uses here, before serving: pyarrow imports pandas on
        # first use, and a model thread that meets a half-imported pandas fails its batch
        # (measured: 537 answers of 500 in a benchmark run before this).
        import pandas  # noqa: F401
        import pyarrow.parquet  # noqa: F401

        self._queue: deque[Pending] = deque()
        self._shapes: dict[Any, tuple[Any, Shape]] = {}
        # the usual answers, column by column (``_logblock``): the open block of each shape,
        # the full ones, and how many answers they hold; the writer takes them under the lock
        self._lock = threading.Lock()
        self._blocks: dict[tuple[Any, ...], Block] = {}
        self._lanes: dict[tuple[Any, ...], Lane] = {}
        self._full: list[Block] = []
        self._block_rows = 0
        self._stop = threading.Event()
        self._closed = False
        self._thread = threading.Thread(target=self._run, name="prediction-log", daemon=True)
        self._thread.start()

    # -- the event loop's side ---------------------------------------------------------------

    def submit(self, record: PredictionRecord) -> None:
        """Queue ``record``; a full queue (or a closed sink) drops it and counts it."""
        if self._closed or len(self._queue) + self._block_rows >= self.queue_size:
            self._lost(1)
            return
        key = block_key(record)
        if key is not None:
            lane = self._lanes.get(key) or self.lane(
                model=record.model, version=record.version, route=record.route,
                deployment=record.deployment, input_names=record.input_names,
                output_names=tuple(record.outputs),
            )  # fmt: skip
            if lane.add(
                record.request_id, record.time, record.latency_s, record.cpu_s,
                record.memory_bytes, record.inputs.matrix, record.outputs,
            ):  # fmt: skip
                return
        self._queue.append(pending(record, self._shapes))

    def lane(
        self,
        *,
        model: str,
        version: str,
        route: str,
        deployment: str | None,
        input_names: tuple[str, ...],
        output_names: tuple[str, ...],
    ) -> Lane:
        """Where one-row answers of this kind go without a record (``Lane.add``): the server
        keeps one per kind of answer it gives."""
        key = kind_key(
            model=model, version=version, route=route, deployment=deployment,
            input_names=input_names, output_names=output_names,
        )  # fmt: skip
        lane = self._lanes.get(key)
        if lane is None:
            if len(self._lanes) >= _LANES_KEPT:
                self._lanes.clear()
            lane = self._lanes[key] = Lane(
                self, key, model=model, version=version, route=route,
                deployment=deployment or model, input_names=input_names,
            )  # fmt: skip
        return lane

    def close(self) -> None:
        """Write everything queued and stop the writer thread."""
        if self._closed:
            return
        self._closed = True
        self._stop.set()
        self._thread.join()
        if self.spool is not None:
            self.spool.close()

    # -- the writer thread -------------------------------------------------------------------

    def _lost(self, count: int) -> None:
        self.dropped += count
        if self.on_drop is not None:
            self.on_drop(count)

    def _run(self) -> None:
        run_in_background()
        while not self._stop.wait(self.flush_interval_s):
            self.flush()
        self.flush()

    def flush(self) -> None:
        """Write what is queued now (the writer thread calls this; tests may too)."""
        with self._lock:
            blocks = [block for block in (*self._full, *self._blocks.values()) if block.n]
            self._full, self._blocks, self._block_rows = [], {}, 0
        taken = [self._queue.popleft() for _ in range(len(self._queue))]
        if not taken and not blocks:
            return
        hour_groups = _hour_groups(taken) if taken else {}
        groups = {key: _Part(records) for key, records in hour_groups.items()}
        for block in blocks:
            for key, rows in _block_hours(block):
                groups.setdefault(key, _Part([])).blocks.append((block, rows))
        try:
            if self.log_format == "delta":
                self._flush_delta(groups)
            else:
                self._flush_parquet(groups)
        finally:
            for part in groups.values():
                _release(part.records)
            _release(taken)

    def _flush_parquet(self, groups: dict[tuple[str, int], _Part]) -> None:
        for (deployment, hours), part in groups.items():
            hour = datetime.fromtimestamp(hours * 3600, UTC).strftime("%Y-%m-%dT%H")
            try:
                table = self._table(part)
                self._write(table, deployment, hour)
                self.written += part.count
            except Exception:
                logger.exception("could not write %d predictions of %s", part.count, deployment)
                self._lost(part.count)

    def _flush_delta(self, groups: dict[tuple[str, int], _Part]) -> None:
        """One Delta append per deployment: its hours' tables with an ``hour`` column."""
        import pyarrow as pa

        by_deployment: dict[str, list[tuple[int, _Part]]] = {}
        for (deployment, hours), part in groups.items():
            by_deployment.setdefault(deployment, []).append((hours, part))
        for deployment, parts in by_deployment.items():
            count = sum(part.count for _, part in parts)
            try:
                tables = []
                for hours, part in parts:
                    table = self._table(part)
                    hour = datetime.fromtimestamp(hours * 3600, UTC).strftime("%Y-%m-%dT%H")
                    column = _repeated(hour, table.num_rows)
                    tables.append(table.append_column(_deltalog.HOUR_COLUMN, column))
                whole = (
                    tables[0]
                    if len(tables) == 1
                    else pa.concat_tables(tables, promote_options="permissive")
                )
                _deltalog.append(whole, self.root / f"deployment={deployment}")
                self.written += count
            except Exception:
                logger.exception("could not append %d predictions of %s", count, deployment)
                self._lost(count)

    def _table(self, part: _Part) -> pa.Table:
        """One table of a part's blocks and queued records, in the order they were answered.

        Queued records are converted a slice of ``_SLICE`` at a time with a pause after each:
        the conversion holds the GIL, which passes to the event loop only when the loop has
        waited a switch interval for it; with the pauses, the loop waits at most one slice."""
        import pyarrow as pa

        drop, hashed = self.drop_columns, self.hash_columns
        tables = [block_table(block, rows, drop=drop, hashed=hashed) for block, rows in part.blocks]
        records = part.records
        for start in range(0, len(records), _SLICE):
            tables.append(pending_table(records[start : start + _SLICE], drop=drop, hashed=hashed))
            if start + _SLICE < len(records):
                time.sleep(_PAUSE_S)
        if len(tables) == 1:
            return tables[0]
        whole = pa.concat_tables(tables, promote_options="permissive")
        if part.blocks and not _in_order(whole):
            whole = whole.sort_by("time")  # blocks and records side by side: answer order
        return whole

    def _write(self, table: pa.Table, deployment: str, hour: str) -> None:
        if self.spool is None:
            write_parquet(table, self.root / f"deployment={deployment}" / f"hour={hour}")
            return
        write_parquet(table, self.spool.part_folder(deployment, hour))
        self.spool.added(table.num_rows)


class Lane:
    """One kind of one-row answer (model version, route, deployment, input and output names)
    and the block it goes to. ``ModelServer`` keeps one per kind and logs an answer through
    ``add`` with its fields, without building a ``PredictionRecord`` and its block key for the
    sink to take apart again. Measured on ``ModelServer.finish`` of one 1-row answer of the
    serving benchmark's model (best of 15 runs of 20,000 calls, one core), the log's share of it
    went from 3.7 us to 2.2 us: 0.95 us was the record and its key, 0.6 us copying the arrays
    (``Block``).
    """

    __slots__ = ("deployment", "input_names", "key", "model", "route", "sink", "version")

    def __init__(
        self,
        sink: ParquetSink,
        key: tuple[Any, ...],
        *,
        model: str,
        version: str,
        route: str,
        deployment: str,
        input_names: tuple[str, ...],
    ) -> None:
        self.sink, self.key = sink, key
        self.model, self.version, self.route, self.deployment = model, version, route, deployment
        self.input_names = input_names  # kept: ``key`` holds its id

    def add(  # noqa: PLR0917  # by position: the event loop calls it for every answer
        self,
        request_id: str,
        time: float,
        latency_s: float,
        cpu_s: float,
        memory_bytes: int,
        matrix: np.ndarray,
        outputs: dict[str, Any],
    ) -> bool:
        """Log one answer (one row of ``matrix``, ``outputs`` with the lane's names); ``False``
        when it fits no block and nothing was taken: submit its record instead. A full queue
        (or a closed sink) drops it and counts it."""
        sink, key = self.sink, self.key
        if sink._closed or len(sink._queue) + sink._block_rows >= sink.queue_size:
            sink._lost(1)
            return True
        with sink._lock:
            block = sink._blocks.get(key)
            if block is None:
                if not Block.takes(matrix, outputs):
                    return False
                block = sink._blocks[key] = Block(
                    model=self.model, version=self.version, route=self.route,
                    deployment=self.deployment, input_names=self.input_names, matrix=matrix,
                    outputs=outputs,
                )  # fmt: skip
            full = block.add(request_id, time, latency_s, cpu_s, memory_bytes, matrix, outputs)
            if full is None:
                return False
            sink._block_rows += 1
            if full:
                sink._full.append(block)
                del sink._blocks[key]
        return True


#: How many lanes a sink remembers before it starts again (versions come and go).
_LANES_KEPT = 1024


def is_remote(root: str | Path) -> bool:
    """Whether ``root`` is an fsspec URL of a store other than the local disk."""
    text = str(root)
    return "://" in text and not text.startswith("file://")


def open_sink(
    root: str,
    *,
    spool_dir: str | Path,
    upload: UploadOptions,
    on_backlog: Callable[[int], None] | None = None,
    on_failure: Callable[[], None] | None = None,
    **options: Any,
) -> ParquetSink:
    """A ``ParquetSink`` for ``root``: through a spool under ``spool_dir`` when ``root`` is on an
    object store; ``options`` are ``ParquetSink``'s."""
    if not is_remote(root):
        return ParquetSink(root, **options)
    if options.get("log_format") == "delta":
        raise ConfigError(
            f"monitoring.log_format = 'delta' writes to a local folder, not {root}; set "
            "log_root to a folder or log_format = 'parquet'."
        )
    spool = Spool(
        Path(spool_dir) / root_slug(root), root, options=upload, on_backlog=on_backlog,
        on_failure=on_failure,
    )  # fmt: skip
    return ParquetSink(root, spool=spool, **options)


def root_slug(root: str) -> str:
    """A folder name for one remote root (a spool never mixes two destinations)."""
    return hashlib.sha256(root.rstrip("/").encode()).hexdigest()[:16]


def write_parquet(table: pa.Table, folder: Path) -> Path:
    """Write ``table`` as a new ``<timestamp>-<uuid>.parquet`` in ``folder``: under a hidden
    temporary name first, then renamed, so readers never see half a file."""
    import pyarrow.parquet as pq

    folder.mkdir(parents=True, exist_ok=True)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S%f")
    path = folder / f"{stamp}-{uuid.uuid4().hex}.parquet"
    temporary = folder / f".{path.name}.tmp"
    try:
        pq.write_table(table, temporary, use_dictionary=dictionary_columns(table.schema))
        os.replace(temporary, path)
    finally:
        temporary.unlink(missing_ok=True)
    return path


#: A queued record: its fields in one tuple of strings, numbers, ``None``, arrays and tuples
#: of those, which the collector stops tracking at its first pass (``pending``), its outputs'
#: values last, from ``_OUTPUTS`` on.
Pending = tuple[Any, ...]
#: A record's input names and output names, one tuple of each per shape (``pending``).
Shape = tuple[tuple[str, ...], tuple[str, ...]]

#: How many shapes ``pending`` remembers before it starts again.
_SHAPES_KEPT = 1024

(_ID, _TIME, _MODEL, _VERSION, _ROUTE, _DEPLOYMENT, _STATUS, _LATENCY, _CPU, _MEMORY, _SHAPE,
 _N, _MATRIX, _COLUMNS, _OUTPUTS) = range(15)  # fmt: skip


def pending(record: PredictionRecord, shapes: dict[Any, tuple[Any, Shape]]) -> Pending:
    """``record`` as the queue keeps it until the next flush: one new tuple. A record object
    (with its rows and outputs dict) stays tracked by the garbage collector for that second:
    with a flush's 18,700 one-row records alive, 56,100 records made 220 gen0 and 20 gen1
    collections that walked them (14 to 39 ms for the gen1 ones) and a full one (3 to 29 ms,
    the GIL held); as these tuples, 69 and 6 (2 to 6 ms) and none. The collector lets go of
    such a tuple at its first pass, once its shape's names have (two passes, once a shape).

    ``shapes`` holds one (input names, output names) copy per shape, keyed by the id of the
    served model's names tuple and the output names (the entry keeps that tuple alive, so no
    other takes its id meanwhile): the served model's own was frozen with the server's heap
    (``gc.freeze``) and stays tracked, which would keep every tuple holding it tracked too;
    so would a dict, even one the collector no longer tracks."""
    inputs, outputs, given = record.inputs, record.outputs, record.input_names
    key = (id(given), *outputs)
    entry = shapes.get(key)
    if entry is None or entry[0] is not given:
        if len(shapes) >= _SHAPES_KEPT:  # models swapped in and out many times
            shapes.clear()
        entry = shapes[key] = (given, (tuple(list(given)), tuple(outputs)))
    if inputs is None:
        n, matrix, columns = None, None, None
    else:
        n, matrix = inputs.n, inputs.matrix
        columns = None if inputs.columns is None else tuple(inputs.columns)
    return (
        record.request_id, record.time, record.model, record.version, record.route,
        record.deployment or record.model, record.status, record.latency_s, record.cpu_s,
        record.memory_bytes, entry[1], n, matrix, columns, *outputs.values(),
    )  # fmt: skip


def records_table(
    records: Sequence[PredictionRecord],
    *,
    drop: frozenset[str] = frozenset(),
    hashed: frozenset[str] = frozenset(),
) -> pa.Table:
    """One Arrow table for ``records``: one row per request row, records with different inputs or
    outputs side by side (missing values are null)."""
    shapes: dict[Any, tuple[Any, Shape]] = {}
    return pending_table([pending(r, shapes) for r in records], drop=drop, hashed=hashed)


def pending_table(
    records: list[Pending],
    *,
    drop: frozenset[str] = frozenset(),
    hashed: frozenset[str] = frozenset(),
) -> pa.Table:
    """``records_table`` of queued records."""
    import pyarrow as pa

    shapes = list(map(itemgetter(_SHAPE), records))
    counts = list(map(itemgetter(_N), records))
    # The usual flush: every record of one model, answered, with its rows as a matrix and the
    # same outputs. One concatenation takes the inputs; widths that differ make it fail (the
    # general path then).
    if _uniform(shapes) and not _any_none(counts):
        stacked = _stacked(list(map(itemgetter(_MATRIX), records)))
        if stacked is not None:
            width = int(stacked.shape[1])
            names, outputs = shapes[0]
            columns = {name: stacked[:, j] for j, name in enumerate(_input_names(names, width))}
            return _group_table(records, columns, outputs, drop=drop, hashed=hashed)
    groups: dict[tuple[Shape, int], list[Pending]] = {}
    for record, key in zip(records, zip(shapes, map(_width, records), strict=True), strict=True):
        group = groups.get(key)
        if group is None:
            groups[key] = group = []
        group.append(record)
    tables = []
    for ((names_of, outputs_of), width), group in groups.items():
        named = _input_names(names_of, width)
        columns = dict(zip(named, _input_columns(group, width), strict=True))
        tables.append(_group_table(group, columns, outputs_of, drop=drop, hashed=hashed))
    if len(tables) == 1:
        return tables[0]
    return pa.concat_tables(tables, promote_options="permissive")


def _any_none(values: list[Any]) -> bool:
    """Whether an item is ``None`` (by identity, in C: ``None in values`` would call each
    item's ``__eq__``, and a generator runs a Python frame per item)."""
    return any(map(is_, values, repeat(None)))


def _uniform(values: list[Any]) -> bool:
    """Whether every item equals the first (one C loop; equal objects are usually one object)."""
    return values.count(values[0]) == len(values)


def _hour_groups(records: list[Pending]) -> dict[tuple[str, int], list[Pending]]:
    """``records`` by deployment and hour (as a number: the ``time`` column's microseconds over
    an hour's, as ``_group_table`` computes them); named once per group by the caller."""
    deployments = list(map(itemgetter(_DEPLOYMENT), records))
    hours = _hours(np.fromiter(map(itemgetter(_TIME), records), np.float64, len(records)))
    if _uniform(deployments) and hours.min() == hours.max():
        return {(deployments[0], int(hours[0])): records}
    groups: dict[tuple[str, int], list[Pending]] = {}
    for record, key in zip(records, zip(deployments, hours.tolist(), strict=True), strict=True):
        group = groups.get(key)
        if group is None:
            groups[key] = group = []
        group.append(record)
    return groups


def _hours(times: np.ndarray) -> np.ndarray:
    """The hour of each time (``time.time()``), as the ``time`` column's microseconds over an
    hour's."""
    return (times * 1e6).astype(np.int64) // _US_PER_HOUR


def _input_names(names: tuple[str, ...], width: int) -> tuple[str, ...]:
    if len(names) == width:
        return names
    prefix = names[0] if len(names) == 1 else "input"
    return tuple(f"{prefix}_{i}" for i in range(width))


def _width(record: Pending) -> int:
    if record[_N] is None:  # a failed request: no data
        return 0
    if record[_MATRIX] is not None:
        return int(record[_MATRIX].shape[1])
    return len(record[_COLUMNS])


def _input_columns(records: list[Pending], width: int) -> list[np.ndarray]:
    """Each input column over all records: one concatenation per column, or one for all of
    them when every record holds a matrix (a flush can hold tens of thousands of records)."""
    if width == 0:
        return []
    stacked = _stacked([r[_MATRIX] for r in records])
    if stacked is not None:
        return [stacked[:, j] for j in range(width)]
    per_record = [list(r[_COLUMNS] if r[_MATRIX] is None else r[_MATRIX].T) for r in records]
    return [_concatenate([cols[j] for cols in per_record]) for j in range(width)]


def _stacked(matrices: list[np.ndarray | None]) -> np.ndarray | None:
    """The matrices one under the other; ``None`` when one is missing or the widths differ."""
    if _any_none(matrices):
        return None
    try:
        return _concatenate(matrices)
    except ValueError:
        return None


class _Part:
    """What one flush writes for one deployment and hour: queued records and block rows."""

    __slots__ = ("blocks", "records")

    def __init__(self, records: list[Pending]) -> None:
        self.records = records
        #: blocks, each with the rows of this hour (``None``: all of its rows)
        self.blocks: list[tuple[Block, np.ndarray | None]] = []

    @property
    def count(self) -> int:
        rows = (block.n if mask is None else int(mask.sum()) for block, mask in self.blocks)
        return len(self.records) + sum(rows)


def _in_order(table: pa.Table) -> bool:
    """Whether the table's rows are in the order of their ``time`` (a flush's blocks of one
    shape are, one after the other; sorting them anyway was most of a flush's time)."""
    times = table.column("time").cast("int64").to_numpy()
    return bool((times[1:] >= times[:-1]).all())


def _block_hours(block: Block) -> list[tuple[tuple[str, int], np.ndarray | None]]:
    """A block's rows by hour: ``((deployment, hour), rows)``, ``rows`` ``None`` for all."""
    hours = _hours(block.times())
    first = int(hours[0])
    if hours.min() == hours.max():
        return [((block.deployment, first), None)]
    return [((block.deployment, int(h)), hours == h) for h in np.unique(hours)]


def block_table(
    block: Block, rows: np.ndarray | None, *, drop: frozenset[str], hashed: frozenset[str]
) -> pa.Table:
    """The log's table of a block's answers (of ``rows`` of them, a mask, when given): the
    columns ``records_table`` gives the same answers, from the block's columns at once."""
    import pyarrow as pa

    columns = block.columns(join=_concatenate)
    n = block.n
    data = _base_columns(
        request_id=pa.array(columns.ids, pa.string()),
        rows=np.zeros(n, np.int64),
        times=columns.times,
        deployment=_repeated(block.deployment, n),
        route=_repeated(block.route, n),
        model=_repeated(block.model, n),
        version=_repeated(block.version, n),
        latency_s=columns.latency_s,
        status=np.full(n, 200, np.int16),
        cpu_ms=columns.cpu_s * 1000,
        memory_bytes=columns.memory_bytes,
    )
    inputs = columns.inputs
    names = _input_names(tuple(block.input_names), inputs.shape[1])
    _add_inputs(data, {name: inputs[:, j] for j, name in enumerate(names)}, drop, hashed)
    for name, values in zip(block.output_names, columns.outputs, strict=True):
        data[f"out_{name}"] = _output_column(values)
    table = pa.table(data)
    return table if rows is None else table.filter(pa.array(rows))


#: How many records ``_release`` frees at a time.
_FREE_CHUNK = 512
#: How many records a flush turns into Arrow at a time, and the writer's pause after each slice
#: and each freed piece (``ParquetSink._table``, ``_release``).
_SLICE = 256
_PAUSE_S = 0.001


def _release(records: list[Pending]) -> None:
    """Empty ``records`` a piece at a time. Dropping a flush's 14,000 one-row records (their
    tuples and arrays) in one go held the GIL 4.3 to 4.7 ms, as a thread waking every 0.1 ms saw
    it, at the end of every flush; in pieces of ``_FREE_CHUNK`` the longest wait was 1 to 1.6 ms."""
    while records:
        del records[-_FREE_CHUNK:]
        if records:
            time.sleep(_PAUSE_S)


#: The most arrays one ``np.concatenate`` call joins here. The call holds the GIL throughout,
#: and the writer shares it with the event loop: over a flush's 14,000 one-row records, a thread
#: that wakes every 0.1 ms saw it held 3.5 to 5 ms at a time for the inputs and 2 to 3.5 ms for
#: each output; in pieces of this many, 1 to 2 ms for the whole flush's slowest step.
_CONCAT_CHUNK = 512


def _concatenate(arrays: list[Any]) -> np.ndarray:
    """``np.concatenate(arrays)``, letting other threads run between pieces of it (a pause
    gives the GIL up; without one the event loop waits a switch interval for it)."""
    if len(arrays) <= _CONCAT_CHUNK:
        return np.concatenate(arrays)
    step = _CONCAT_CHUNK
    pieces: list[np.ndarray] = []
    for i in range(0, len(arrays), step):
        if pieces:
            time.sleep(_PAUSE_S)
        pieces.append(np.concatenate(arrays[i : i + step]))
    return np.concatenate(pieces)


def _group_table(
    records: list[Pending],
    columns: dict[str, np.ndarray],
    outputs: tuple[str, ...],
    *,
    drop: frozenset[str],
    hashed: frozenset[str],
) -> pa.Table:
    """The table of records of one shape: ``columns`` is each input's column over all of them,
    ``outputs`` their outputs' names.

    Each field is read with one ``map`` over the records and converted with one ``np.fromiter``
    or ``pa.array``: the writer shares the GIL (and in the benchmark one CPU) with the event
    loop. Per-record list comprehensions, generators and ``np.array`` calls on lists cost
    ``records_table`` 24,900 instructions a record (callgrind, 18,700 one-row records of 20
    inputs), these 12,500."""
    import pyarrow as pa

    n = len(records)
    counts = np.array([1 if c is None else c for c in map(itemgetter(_N), records)], np.int64)
    single = bool((counts == 1).all())  # the usual case: one row per request
    if single:
        rows = np.zeros(n, dtype=np.int64)
    else:
        rows = np.concatenate([np.arange(c, dtype=np.int64) for c in counts])

    def each(array: np.ndarray) -> np.ndarray:
        return array if single else np.repeat(array, counts)

    def numbers(field: int, dtype: Any) -> np.ndarray:
        return np.fromiter(map(itemgetter(field), records), dtype, n)

    def text(field: int) -> pa.Array:
        # from the list itself (no object ndarray), and a value repeated when all are one
        values = list(map(itemgetter(field), records))
        if _uniform(values):
            return _repeated(values[0], int(counts.sum()))
        return pa.array(values if single else each(np.array(values, object)), pa.string())

    data = _base_columns(
        request_id=text(_ID),
        rows=rows,
        times=each(numbers(_TIME, np.float64)),
        deployment=text(_DEPLOYMENT),
        route=text(_ROUTE),
        model=text(_MODEL),
        version=text(_VERSION),
        latency_s=each(numbers(_LATENCY, np.float64)),
        status=each(numbers(_STATUS, np.int16)),
        # a request's CPU time shared by its rows, so that a sum over rows is the total
        cpu_ms=each(numbers(_CPU, np.float64) * 1000 / np.maximum(counts, 1)),
        memory_bytes=each(numbers(_MEMORY, np.int64)),
    )
    _add_inputs(data, columns, drop, hashed)
    for i, output in enumerate(outputs, _OUTPUTS):
        data[f"out_{output}"] = _output_array(list(map(itemgetter(i), records)), counts)
    return pa.table(data)


def _base_columns(
    *,
    request_id: pa.Array,
    rows: np.ndarray,
    times: np.ndarray,
    deployment: pa.Array,
    route: pa.Array,
    model: pa.Array,
    version: pa.Array,
    latency_s: np.ndarray,
    status: np.ndarray,
    cpu_ms: np.ndarray,
    memory_bytes: np.ndarray,
) -> dict[str, pa.Array]:
    """The ``BASE_COLUMNS`` of the log's rows, each field given over the rows (``times`` in
    seconds since the epoch, ``latency_s`` in seconds): one schema for queued records and
    blocks alike."""
    import pyarrow as pa

    return {
        "request_id": request_id,
        "row": pa.array(rows),
        "time": pa.array((times * 1e6).astype(np.int64), pa.timestamp("us", tz="UTC")),
        "deployment": deployment,
        "route": route,
        "model": model,
        "version": version,
        "latency_ms": pa.array(latency_s * 1000),
        "status": pa.array(status),
        "cpu_ms": pa.array(cpu_ms),
        "memory_bytes": pa.array(memory_bytes),
    }


def _repeated(value: str, n: int) -> pa.Array:
    """A string column of ``n`` times ``value``."""
    import pyarrow as pa

    return pa.array([value], pa.string()).take(np.zeros(n, np.int32))


def _add_inputs(
    data: dict[str, pa.Array],
    columns: dict[str, np.ndarray],
    drop: frozenset[str],
    hashed: frozenset[str],
) -> None:
    """The ``in_*`` columns, less the dropped ones, the hashed ones as sha256 hex."""
    import pyarrow as pa

    for name, column in columns.items():
        if name in drop:
            continue
        if name in hashed:
            data[f"in_{name}"] = pa.array(_sha256(column), pa.string())
        else:
            data[f"in_{name}"] = pa.array(column)


def _output_column(values: np.ndarray) -> pa.Array:
    """One output over the rows (the first axis): a plain column for one value per row, a
    ``list<double>`` column of each row's values, flattened, for several."""
    import pyarrow as pa

    if values.ndim == 1:
        return pa.array(values)
    flat = values.reshape(values.shape[0], -1).astype(np.float64, copy=False)  # rows x width
    offsets = np.arange(flat.shape[0] + 1, dtype=np.int32) * flat.shape[1]
    return pa.ListArray.from_arrays(pa.array(offsets), pa.array(flat.ravel()))


def _sha256(values: np.ndarray) -> list[str]:
    return [hashlib.sha256(str(v).encode()).hexdigest() for v in values.tolist()]


def _output_array(arrays: list[Any], counts: np.ndarray) -> pa.Array:
    """A plain column for one value per row; a ``list<double>`` column for several (such as
    class probabilities)."""
    import pyarrow as pa

    # One concatenation when every value has the same number of dimensions (and, past one, the
    # same widths: numpy refuses anything else, and the rest takes the general path below).
    try:
        whole = _concatenate(arrays)
    except (ValueError, TypeError):
        whole = None
    if whole is not None and whole.ndim in (1, 2):
        return _output_column(whole)
    values = [np.asarray(a) for a in arrays]
    shaped = [v.reshape(int(n), -1) for v, n in zip(values, counts, strict=True)]
    widths = np.concatenate([np.full(f.shape[0], f.shape[1], dtype=np.int32) for f in shaped])
    offsets = np.concatenate([[0], np.cumsum(widths)]).astype(np.int32)
    items = np.concatenate([f.ravel().astype(np.float64) for f in shaped])
    return pa.ListArray.from_arrays(pa.array(offsets), pa.array(items))
