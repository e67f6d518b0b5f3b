"""The prediction log's way to an object store: Parquet parts on local disk first, uploaded by a
thread that retries with backoff while the store is down.

Layout under the spool folder, one folder per writing process::

    <spool>/<owner>/.lock                                  held (flock) while the owner lives
    <spool>/<owner>/parts/deployment=<d>/hour=<h>/<part>   written by the log, one per flush
    <spool>/<owner>/batches/<d>/<h>/<first part>/<part>... parts gathered for one upload
    <spool>/<owner>/.done-<...>                             a batch uploaded, being removed
    <spool>/<owner>/files/<path>                            other files (labels), uploaded as
                                                           they are to <remote>/<path>

Every ``upload_interval_s`` the parts of each ``(deployment, hour)`` move into a batch folder
named after its oldest part, and each batch is uploaded as one Parquet object of that name (an
object per second per process would cost more in requests than the rows are worth). A batch is
removed only after its upload succeeded, by renaming it to ``.done-*`` first, so a crash at any
point leaves either the whole batch, uploaded again under the same name (an idempotent
overwrite), or nothing: no row is lost and none is uploaded twice under two names.

A process that finds another owner's folder whose lock it can take (the owner died) adopts its
parts and batches; several workers may share one spool.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import shutil
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from modelyard.core.remote import url_to_fs
from modelyard.core.threads import run_in_background
from modelyard.errors import StorageError
from modelyard.monitoring._encoding import dictionary_columns

logger = logging.getLogger(__name__)

#: How often a running process looks for the spool of a process that died.
ADOPT_EVERY_S = 60.0


@dataclass(frozen=True)
class UploadOptions:
    """How the spool reaches the store (``[monitoring]`` settings)."""

    interval_s: float = 10.0
    backoff_s: float = 0.5
    backoff_max_s: float = 30.0
    drain_s: float = 10.0


class Spool:
    """One process's spool folder and the thread that uploads it to ``remote`` (an fsspec URL).

    ``part_folder(deployment, hour)`` is where the log writes its parts (under a hidden name,
    then renamed); ``added(rows)`` tells the spool a part of ``rows`` rows arrived.
    ``on_backlog(rows)`` hears the rows waiting after every change; ``on_failure()`` each failed
    upload.
    """

    def __init__(
        self,
        folder: str | Path,
        remote: str,
        *,
        options: UploadOptions = UploadOptions(),
        on_backlog: Callable[[int], None] | None = None,
        on_failure: Callable[[], None] | None = None,
    ) -> None:
        self.remote = remote.rstrip("/")
        self.options = options
        self.on_backlog = on_backlog
        self.on_failure = on_failure
        self._fs: Any
        self._fs, self._base = url_to_fs(self.remote)
        self._base = self._base.rstrip("/")
        self.root = Path(folder)
        # Made under a hidden name and locked before it is renamed into sight, so that no other
        # process ever sees this folder unlocked and takes it for a dead one.
        name = uuid.uuid4().hex
        hidden = self.root / f".new-{name}"
        (hidden / "parts").mkdir(parents=True)
        (hidden / "batches").mkdir()
        (hidden / "files").mkdir()
        self._lock = open(hidden / ".lock", "w")  # noqa: SIM115 (held for the process's life)
        fcntl.flock(self._lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        self.own = self.root / name
        os.replace(hidden, self.own)
        self._adopted_at = 0.0
        self._rows_lock = threading.Lock()
        self._rows = 0
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._adopt()
        self._report()
        self._thread = threading.Thread(target=self._run, name="prediction-log-upload", daemon=True)
        self._thread.start()

    # -- the writer's side -------------------------------------------------------------------

    def part_folder(self, deployment: str, hour: str) -> Path:
        return self.own / "parts" / f"deployment={deployment}" / f"hour={hour}"

    def added(self, rows: int) -> None:
        self._change(rows)

    @property
    def files(self) -> Path:
        """A folder whose files are uploaded to the same relative path under the remote root
        (and then removed here); write them under a hidden name and rename them in."""
        return self.own / "files"

    def file_added(self) -> None:
        self._wake.set()

    def logged(self, deployment: str) -> bool:
        """Whether the store (or this spool) holds any log of ``deployment``."""
        if any(self.own.glob(f"*/deployment={deployment}/*/*")):
            return True
        try:
            self._fs.invalidate_cache()
            return bool(self._fs.find(f"{self._base}/deployment={deployment}", maxdepth=2))
        except FileNotFoundError:
            return False
        except Exception as exc:  # the store's errors are not all OSError
            raise StorageError(
                f"Cannot tell whether {deployment!r} has logged predictions: the prediction log "
                f"at {self.remote} cannot be listed ({exc}); try again when it is back."
            ) from exc

    def close(self) -> None:
        """Upload what is spooled, for at most ``drain_s``; what is left stays on disk for the
        next start (logged with its row count)."""
        if self._stop.is_set():
            return
        self._stop.set()
        self._wake.set()
        self._thread.join(self.options.drain_s)
        if self._rows:
            logger.warning(
                "%d logged rows not uploaded to %s yet; they stay in %s for the next start",
                self._rows, self.remote, self.root,
            )  # fmt: skip

    # -- the upload thread -------------------------------------------------------------------

    def _run(self) -> None:
        run_in_background()
        try:
            self._loop()
        finally:
            self._lock.close()  # the spool may be adopted from now on

    def _loop(self) -> None:
        backoff = self.options.backoff_s
        deadline: float | None = None
        while True:
            stopping = self._stop.is_set()
            if stopping and deadline is None:
                deadline = time.monotonic() + self.options.drain_s
            if time.monotonic() - self._adopted_at > ADOPT_EVERY_S:
                self._adopt()
            self._gather()
            failed = self._upload_files() or self._upload_batches(deadline)
            if stopping and (not failed or (deadline is not None and time.monotonic() >= deadline)):
                return
            if failed:
                if self.on_failure is not None:
                    self.on_failure()
                if stopping:  # draining: retry within the deadline
                    time.sleep(min(backoff, 1.0))
                else:
                    self._stop.wait(backoff)
                backoff = min(backoff * 2, self.options.backoff_max_s)
                continue
            backoff = self.options.backoff_s
            self._wake.wait(self.options.interval_s)
            self._wake.clear()

    def _gather(self) -> None:
        """Move every part into a batch folder per ``(deployment, hour)``."""
        parts = self.own / "parts"
        for hour_dir in sorted(parts.glob("deployment=*/hour=*")):
            names = sorted(p.name for p in hour_dir.glob("*.parquet"))
            if not names:
                continue
            deployment, hour = hour_dir.parent.name, hour_dir.name
            batch = self.own / "batches" / deployment / hour / Path(names[0]).stem
            batch.mkdir(parents=True, exist_ok=True)
            for name in names:
                os.replace(hour_dir / name, batch / name)

    def _upload_batches(self, deadline: float | None) -> bool:
        """Upload every batch, oldest first; ``True`` when one failed (the rest wait)."""
        for batch in sorted(self.own.glob("batches/*/*/*"), key=lambda p: p.name):
            if deadline is not None and time.monotonic() >= deadline:
                return True
            try:
                rows = self._upload(batch)
            except Exception as exc:  # the store's errors are not all OSError
                logger.warning("cannot upload the prediction log to %s (%s)", self.remote, exc)
                return True
            done = self.own / f".done-{uuid.uuid4().hex}"
            os.replace(batch, done)
            shutil.rmtree(done, ignore_errors=True)
            self._change(-rows)
        return False

    def _upload_files(self) -> bool:
        """Upload every file under ``files``; ``True`` when one failed."""
        for path in sorted(p for p in self.files.rglob("*") if p.is_file()):
            if path.name.startswith("."):
                continue  # still being written
            relative = path.relative_to(self.files).as_posix()
            try:
                self._fs.put_file(str(path), f"{self._base}/{relative}")
            except Exception as exc:
                logger.warning("cannot upload %s to %s (%s)", relative, self.remote, exc)
                return True
            path.unlink()
        return False

    def _upload(self, batch: Path) -> int:
        import pyarrow as pa
        import pyarrow.parquet as pq

        files = sorted(batch.glob("*.parquet"))
        # Not combine_chunks(), and zstd: on 10 parts of 8,500 rows, rewriting one combined
        # chunk took 231 ms of CPU, the parts' chunks as they are 80 ms, with zstd 84 ms for a
        # 40% smaller object (snappy, the default, 5.0 MiB; zstd 2.9 MiB). That work lands on
        # the server's cores at every upload.
        table = pa.concat_tables([pq.read_table(f) for f in files], promote_options="permissive")
        deployment, hour = batch.parent.parent.name, batch.parent.name
        target = f"{self._base}/{deployment}/{hour}/{batch.name}.parquet"
        temporary = batch / f".upload-{uuid.uuid4().hex}"
        try:
            pq.write_table(
                table, temporary, compression="zstd",
                use_dictionary=dictionary_columns(table.schema),
            )  # fmt: skip
            self._fs.put_file(str(temporary), target)
        finally:
            temporary.unlink(missing_ok=True)
        return int(table.num_rows)

    # -- counting and adopting ---------------------------------------------------------------

    def _change(self, rows: int) -> None:
        with self._rows_lock:
            self._rows += rows
        self._report()

    def _report(self) -> None:
        if self.on_backlog is not None:
            self.on_backlog(self._rows)

    def _adopt(self) -> None:
        """Take over the spool of every owner that has died (its lock is free)."""
        self._adopted_at = time.monotonic()
        for other in self.root.iterdir():
            if other == self.own or other.name.startswith(".") or not other.is_dir():
                continue
            lock_path = other / ".lock"
            try:
                handle = open(lock_path, "a")  # noqa: SIM115
            except OSError:
                continue
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                handle.close()
                continue  # alive
            try:
                self._take(other)
            finally:
                handle.close()

    def _take(self, other: Path) -> None:
        logged = [*other.glob("parts/*/*/*.parquet"), *other.glob("batches/*/*/*")]
        files = [p for p in other.glob("files/**/*") if p.is_file() and p.name[0] != "."]
        rows = sum(_rows_in(item) for item in logged)
        for item in [*logged, *files]:
            target = self.own / item.relative_to(other)
            target.parent.mkdir(parents=True, exist_ok=True)
            os.replace(item, target)
        shutil.rmtree(other, ignore_errors=True)  # .done-* folders and half-written parts
        if rows:
            logger.info("adopted %d logged rows from %s, a spool no process holds", rows, other)
            self._change(rows)


def _rows_in(path: Path) -> int:
    """Rows in a part, or in every part of a batch folder."""
    import pyarrow.parquet as pq

    files = [path] if path.is_file() else list(path.glob("*.parquet"))
    total = 0
    for file in files:
        with contextlib.suppress(OSError, ValueError):
            total += pq.read_metadata(file).num_rows
    return total
