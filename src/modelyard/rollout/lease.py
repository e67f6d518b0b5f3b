"""The controller lease: at most one controller acts on a deployment at a time, across threads,
processes and machines that share the metadata store.

- PostgreSQL: a session advisory lock (``pg_try_advisory_lock``) keyed by a hash of the
  deployment's name, held on a connection of its own; it goes away with that connection, so a
  controller that dies frees it at once.
- SQLite: a row in ``rollout_leases`` with an expiry; the holder renews it on every
  ``acquire``, anyone may take it over once it has expired.
"""

from __future__ import annotations

import hashlib
import logging
import os
import socket
import uuid
from datetime import UTC, datetime, timedelta
from types import TracebackType
from typing import TYPE_CHECKING

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from modelyard.errors import StorageError
from modelyard.store.schema import rollout_leases

if TYPE_CHECKING:
    from modelyard.store.db import Database

logger = logging.getLogger(__name__)

#: The first key of modelyard's rollout advisory locks ("roll"); the second is the name's hash.
PG_LOCK_NAMESPACE = 0x726F6C6C
DEFAULT_TTL_S = 30.0


def pg_lock_key(deployment: str) -> int:
    """A stable signed 32-bit hash of the deployment's name (the advisory lock's second key)."""
    digest = hashlib.blake2b(deployment.encode(), digest_size=4).digest()
    return int.from_bytes(digest, "big", signed=True)


def new_holder_id() -> str:
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


class Lease:
    """The right to act on one deployment. ``acquire`` is non-blocking and renews a held lease;
    use it as a context manager (or call ``release``) to give it back."""

    def __init__(
        self,
        db: Database,
        deployment: str,
        *,
        holder: str | None = None,
        ttl_s: float = DEFAULT_TTL_S,
    ) -> None:
        self.db = db
        self.deployment = deployment
        self.holder = holder or new_holder_id()
        self.ttl_s = ttl_s
        self._conn: Connection | None = None
        self._held = False

    @property
    def held(self) -> bool:
        return self._held

    def acquire(self, now: datetime | None = None) -> bool:
        """Take or renew the lease; ``False`` when another holder has it."""
        try:
            if self.db.dialect == "postgresql":
                self._held = self._acquire_advisory()
            else:
                self._held = self._acquire_row(now or datetime.now(UTC))
        except sa.exc.DBAPIError as exc:
            self._held = False
            raise StorageError(
                f"Cannot take the controller lease of deployment {self.deployment!r} in "
                f"{self.db.display_url} ({type(exc.orig).__name__}); check the database."
            ) from exc
        return self._held

    def release(self) -> None:
        """Give the lease back (a no-op when not held)."""
        if self.db.dialect == "postgresql":
            self._release_advisory()
        elif self._held:
            with self.db.write() as conn:
                conn.execute(
                    sa.delete(rollout_leases).where(
                        rollout_leases.c.deployment == self.deployment,
                        rollout_leases.c.holder == self.holder,
                    )
                )
        self._held = False

    def __enter__(self) -> Lease:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.release()

    # -- PostgreSQL --------------------------------------------------------------------------

    def _acquire_advisory(self) -> bool:
        if self._conn is not None:
            try:
                self._conn.execute(sa.text("SELECT 1"))
                self._conn.commit()
                return True
            except sa.exc.DBAPIError:
                logger.warning("lost the lease connection of deployment %s", self.deployment)
                self._discard_connection()
        conn = self.db.engine.connect()
        try:
            got = conn.execute(
                sa.text("SELECT pg_try_advisory_lock(:namespace, :key)"),
                {"namespace": PG_LOCK_NAMESPACE, "key": pg_lock_key(self.deployment)},
            ).scalar()
            conn.commit()
        except BaseException:
            conn.invalidate()
            conn.close()
            raise
        if got:
            self._conn = conn
            return True
        conn.close()
        return False

    def _release_advisory(self) -> None:
        if self._conn is None:
            return
        try:
            self._conn.execute(
                sa.text("SELECT pg_advisory_unlock(:namespace, :key)"),
                {"namespace": PG_LOCK_NAMESPACE, "key": pg_lock_key(self.deployment)},
            )
            self._conn.commit()
            self._conn.close()
            self._conn = None
        except sa.exc.DBAPIError:
            self._discard_connection()

    def _discard_connection(self) -> None:
        """Close the session for good: the server drops its advisory locks with it."""
        if self._conn is not None:
            self._conn.invalidate()
            self._conn.close()
            self._conn = None

    # -- SQLite ------------------------------------------------------------------------------

    def _acquire_row(self, now: datetime) -> bool:
        expires = now + timedelta(seconds=self.ttl_s)
        with self.db.write() as conn:
            row = conn.execute(
                sa.select(rollout_leases).where(rollout_leases.c.deployment == self.deployment)
            ).first()
            if row is None:
                conn.execute(
                    sa.insert(rollout_leases).values(
                        deployment=self.deployment, holder=self.holder, expires_at=expires
                    )
                )
                return True
            if row.holder != self.holder and row.expires_at > now:
                return False
            conn.execute(
                sa.update(rollout_leases)
                .where(rollout_leases.c.deployment == self.deployment)
                .values(holder=self.holder, expires_at=expires)
            )
            return True
