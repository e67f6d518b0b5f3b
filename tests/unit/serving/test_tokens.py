"""The server's token cache on a real SQLite store: bounded, and never holding made-up ids."""

from __future__ import annotations

import asyncio
import secrets
from pathlib import Path

import pytest

from modelyard.errors import ForbiddenError, UnauthorizedError
from modelyard.serving.tokens import TokenChecker, create_token
from modelyard.store.db import Database


@pytest.fixture
def db(tmp_path: Path):
    database = Database(f"sqlite:///{tmp_path / 'meta.db'}")
    yield database
    database.close()


def test_unknown_ids_are_not_cached_and_the_cache_is_bounded(db: Database) -> None:
    made = [create_token(db, scope="predict", model=None, expires=None, created_by="t")[0]
            for _ in range(6)]  # fmt: skip
    checker = TokenChecker(db, cache_size=4)

    async def main() -> None:
        for _ in range(2000):
            made_up = f"Bearer myd_{secrets.token_hex(6)}_{secrets.token_urlsafe(32)}"
            with pytest.raises(UnauthorizedError, match="not valid"):
                await checker.check(made_up, scope="predict", model="m")
        assert checker.cached == 0
        for token in made:
            info = await checker.check(f"Bearer {token}", scope="predict", model="m")
            assert info.id == token.split("_")[1]
        assert checker.cached == 4  # the oldest were dropped
        # a known id with a wrong secret is refused, cached or not
        forged = made[-1][:-4] + ("AAAA" if not made[-1].endswith("AAAA") else "BBBB")
        with pytest.raises(UnauthorizedError, match="not valid"):
            await checker.check(f"Bearer {forged}", scope="predict", model="m")

    asyncio.run(main())


def test_authenticate_then_permit_for_one_model(db: Database) -> None:
    token = create_token(db, scope="predict", model="lin", expires=None, created_by="t")[0]
    checker = TokenChecker(db)

    async def main() -> None:
        with pytest.raises(UnauthorizedError, match="needs a token"):
            await checker.authenticate(None)
        info = await checker.authenticate(f"Bearer {token}")
        assert info.model == "lin"
        await checker.check(f"Bearer {token}", scope="predict", model="lin")
        with pytest.raises(ForbiddenError, match="limited to model 'lin'"):
            await checker.check(f"Bearer {token}", scope="predict", model=None)
        with pytest.raises(ForbiddenError, match="admin"):
            await checker.check(f"Bearer {token}", scope="admin", model=None)

    asyncio.run(main())


def test_a_read_token_opens_the_dashboard_and_nothing_else(db: Database) -> None:
    from modelyard.errors import InvalidInputError
    from modelyard.serving.tokens import permit

    text, _ = create_token(db, scope="read", model=None, expires=None, created_by="t")
    info = asyncio.run(TokenChecker(db).authenticate(f"Bearer {text}"))
    permit(info, scope="read", model=None)
    with pytest.raises(ForbiddenError, match="needs a predict token"):
        permit(info, scope="predict", model="churn")
    with pytest.raises(ForbiddenError, match="needs an admin token"):
        permit(info, scope="admin", model=None)
    predict, _ = create_token(db, scope="predict", model=None, expires=None, created_by="t")
    predict_info = asyncio.run(TokenChecker(db).authenticate(f"Bearer {predict}"))
    with pytest.raises(ForbiddenError, match="needs a read or admin token"):
        permit(predict_info, scope="read", model=None)
    with pytest.raises(InvalidInputError, match="use 'predict', 'read' or 'admin'"):
        create_token(db, scope="write", model=None, expires=None, created_by="t")
    with pytest.raises(InvalidInputError, match="Only predict tokens"):
        create_token(db, scope="read", model="churn", expires=None, created_by="t")


def test_the_cache_alone_answers_for_cached_tokens_and_reads_nothing(db: Database) -> None:
    """``check_cached`` (the server's short path, which cannot wait for the database): ``None``
    for a token not cached yet, the token once ``check`` read it, and the same refusals."""
    token = create_token(db, scope="predict", model="lin", expires=None, created_by="t")[0]
    checker = TokenChecker(db)
    header = f"Bearer {token}"
    assert checker.check_cached(header, scope="predict", model="lin") is None
    assert checker.cached == 0  # nothing read
    asyncio.run(checker.check(header, scope="predict", model="lin"))
    info = checker.check_cached(header, scope="predict", model="lin")
    assert info is not None and info.id == token.split("_")[1]
    with pytest.raises(ForbiddenError):
        checker.check_cached(header, scope="predict", model="other")
    with pytest.raises(UnauthorizedError, match="not valid"):
        checker.check_cached(header[:-4] + "AAAA", scope="predict", model="lin")
    with pytest.raises(UnauthorizedError, match="malformed"):
        checker.check_cached("Bearer nope", scope="predict", model="lin")
    with pytest.raises(UnauthorizedError, match="needs a token"):
        checker.check_cached(None, scope="predict", model="lin")
