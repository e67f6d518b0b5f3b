"""API tokens: ``predict`` (optionally for one model), ``read`` (the dashboard's pages only)
and ``admin`` scopes.

A token is ``myd_<id>_<secret>``; it is printed once and only the sha256 of the secret is stored.
The server checks a presented token by id, compares the secret's hash in constant time and
caches what it read for a few seconds, so a revoked token stops working within that time. The
cache holds only ids that exist (at most ``CACHE_SIZE``, the oldest dropped first): made-up ids
cannot grow it, and each costs one database read, in a thread, never on the event loop.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import re
import secrets
import time
from collections import OrderedDict
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Literal

import sqlalchemy as sa

from modelyard.errors import ForbiddenError, InvalidInputError, NotFoundError, UnauthorizedError
from modelyard.store.schema import tokens

if TYPE_CHECKING:
    from modelyard.store.db import Database

Scope = Literal["predict", "read", "admin"]
SCOPES: tuple[Scope, ...] = ("predict", "read", "admin")
_TOKEN_RE = re.compile(r"myd_([0-9a-f]{12})_([A-Za-z0-9_-]{20,})")
_DURATION_RE = re.compile(r"(\d+)\s*([smhdw])")
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
_DURATION_HINT = "use e.g. 30d, 12h, 90m or 2w"
#: The longest lifetime ``--expires`` takes (longer ones overflow dates; omit it instead).
MAX_LIFETIME = timedelta(days=36500)
CACHE_S = 5.0
CACHE_SIZE = 4096


@dataclass(frozen=True, slots=True)
class TokenInfo:
    id: str
    scope: str
    model: str | None
    description: str | None
    created_by: str
    created_at: datetime
    expires_at: datetime | None
    revoked: bool


def parse_duration(text: str) -> timedelta:
    """A token's lifetime: ``30d``, ``12h``, ``90m``, ``2w``; more than zero and at most
    ``MAX_LIFETIME``."""
    match = _DURATION_RE.fullmatch(text.strip())
    if match is None:
        raise InvalidInputError(f"Invalid token lifetime {text!r}; {_DURATION_HINT}.")
    seconds = int(match[1]) * _UNITS[match[2]]
    if seconds <= 0:
        raise InvalidInputError(
            f"Token lifetime {text!r} must be more than zero; {_DURATION_HINT}."
        )
    if seconds > MAX_LIFETIME.total_seconds():
        raise InvalidInputError(
            f"Token lifetime {text!r} is too long; use at most {MAX_LIFETIME.days}d, or no "
            "--expires for a token that does not expire."
        )
    return timedelta(seconds=seconds)


def _hash(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def create_token(
    db: Database,
    *,
    scope: str,
    model: str | None,
    expires: str | None,
    created_by: str,
    description: str | None = None,
) -> tuple[str, TokenInfo]:
    """A new token: returns the token text (shown once) and what is stored about it."""
    if scope not in SCOPES:
        raise InvalidInputError(f"Unknown scope {scope!r}; use 'predict', 'read' or 'admin'.")
    if model is not None and scope != "predict":
        raise InvalidInputError("Only predict tokens can be limited to one model (--model).")
    token_id = secrets.token_hex(6)
    secret = secrets.token_urlsafe(32)
    now = datetime.now(UTC)
    expires_at = now + parse_duration(expires) if expires is not None else None
    with db.write() as conn:
        conn.execute(
            sa.insert(tokens).values(
                id=token_id, secret_sha256=_hash(secret), scope=scope, model=model,
                description=description, created_by=created_by, created_at=now,
                expires_at=expires_at, revoked=False,
            )
        )  # fmt: skip
    info = TokenInfo(token_id, scope, model, description, created_by, now, expires_at, False)
    return f"myd_{token_id}_{secret}", info


def list_tokens(db: Database) -> list[TokenInfo]:
    with db.read() as conn:
        rows = conn.execute(sa.select(tokens).order_by(tokens.c.created_at.desc())).all()
    return [_info(row) for row in rows]


def revoke_token(db: Database, token_id: str) -> TokenInfo:
    with db.write() as conn:
        done = conn.execute(
            sa.update(tokens).where(tokens.c.id == token_id).values(revoked=True)
        ).rowcount
        if not done:
            raise NotFoundError(f"No token {token_id!r}; run 'yard tokens list'.")
        row = conn.execute(sa.select(tokens).where(tokens.c.id == token_id)).one()
    return _info(row)


def _info(row: sa.Row[tuple[object, ...]]) -> TokenInfo:
    m = row._mapping
    return TokenInfo(
        id=str(m["id"]), scope=str(m["scope"]), model=m["model"], description=m["description"],
        created_by=str(m["created_by"]), created_at=m["created_at"], expires_at=m["expires_at"],
        revoked=bool(m["revoked"]),
    )  # fmt: skip


class TokenChecker:
    """Checks ``Authorization: Bearer`` tokens for a server; reads the store at most every
    ``CACHE_S`` seconds per known token.

    ``authenticate`` says who is asking (before any body is read); ``permit`` says whether that
    token may use a scope and model; ``check`` does both.
    """

    def __init__(self, db: Database, *, cache_size: int = CACHE_SIZE) -> None:
        self._db = db
        self._cache_size = cache_size
        self._cache: OrderedDict[str, tuple[float, str, TokenInfo]] = OrderedDict()

    @property
    def cached(self) -> int:
        """How many token ids the cache holds."""
        return len(self._cache)

    async def check(
        self, authorization: str | None, *, scope: Scope, model: str | None
    ) -> TokenInfo:
        info = await self.authenticate(authorization)
        permit(info, scope=scope, model=model)
        return info

    def check_cached(
        self, authorization: str | None, *, scope: Scope, model: str | None
    ) -> TokenInfo | None:
        """``check`` from the cache alone, without waiting: ``None`` when the token is not
        cached (``check`` reads it)."""
        token_id, secret = _presented(authorization)
        entry = self._cached(token_id)
        if entry is None:
            return None
        info = _verified(entry, secret)
        permit(info, scope=scope, model=model)
        return info

    async def authenticate(self, authorization: str | None) -> TokenInfo:
        """The stored token the header presents, or ``UnauthorizedError``."""
        token_id, secret = _presented(authorization)
        entry: tuple[str, TokenInfo | None] | None = self._cached(token_id)
        if entry is None:
            entry = await asyncio.to_thread(self._read, token_id)
            self._remember(token_id, entry[0], entry[1])
        return _verified(entry, secret)

    def _cached(self, token_id: str) -> tuple[str, TokenInfo] | None:
        cached = self._cache.get(token_id)
        if cached is None or time.monotonic() - cached[0] >= CACHE_S:
            return None
        return cached[1], cached[2]

    def _read(self, token_id: str) -> tuple[str, TokenInfo | None]:
        """The stored hash and token (a thread runs this); an unknown id still costs one hash
        comparison, against a value nobody holds."""
        with self._db.read() as conn:
            row = conn.execute(sa.select(tokens).where(tokens.c.id == token_id)).first()
        return (str(row.secret_sha256), _info(row)) if row else ("0" * 64, None)

    def _remember(self, token_id: str, stored: str, info: TokenInfo | None) -> None:
        """Cache a token that exists (on the event loop); unknown ids are never kept."""
        if info is None:
            self._cache.pop(token_id, None)
            return
        self._cache[token_id] = (time.monotonic(), stored, info)
        self._cache.move_to_end(token_id)
        while len(self._cache) > self._cache_size:
            self._cache.popitem(last=False)


def permit(info: TokenInfo, *, scope: Scope, model: str | None) -> None:
    """Raise ``ForbiddenError`` unless ``info`` may use ``scope`` (for ``model``: ``None`` means
    every model, which a token limited to one model may not)."""
    if scope == "admin" and info.scope != "admin":
        raise ForbiddenError("This endpoint needs an admin token.")
    if scope == "read" and info.scope not in ("read", "admin"):
        raise ForbiddenError("This page needs a read or admin token.")
    if scope == "predict" and info.scope == "read":
        raise ForbiddenError(
            "A read token opens the dashboard only; predict needs a predict token."
        )
    if scope == "predict" and info.model is not None and info.model != model:
        raise ForbiddenError(f"The token is limited to model {info.model!r}.")


def _presented(authorization: str | None) -> tuple[str, str]:
    """The token id and secret an ``Authorization`` header presents."""
    if not authorization:
        raise UnauthorizedError("This endpoint needs a token: send 'Authorization: Bearer ...'.")
    kind, _, value = authorization.partition(" ")
    match = _TOKEN_RE.fullmatch(value.strip()) if kind.lower() == "bearer" else None
    if match is None:
        raise UnauthorizedError("The token is malformed; send 'Authorization: Bearer myd_...'.")
    return match[1], match[2]


def _verified(entry: tuple[str, TokenInfo | None], secret: str) -> TokenInfo:
    """The stored token when ``secret`` is its secret and it is still good."""
    stored_hash, info = entry
    if info is None or not hmac.compare_digest(_hash(secret), stored_hash):
        raise UnauthorizedError("The token is not valid.")
    if info.revoked:
        raise UnauthorizedError("The token was revoked.")
    if info.expires_at is not None and info.expires_at <= datetime.now(UTC):
        raise UnauthorizedError("The token has expired; create a new one.")
    return info
