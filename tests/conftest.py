"""Shared fixtures: a registry on real SQLite, and on the machine's PostgreSQL when
MODELYARD_TEST_POSTGRES_URL is set (``.ci/run`` sets it)."""

from __future__ import annotations

import os

# sklearn, XGBoost and LightGBM each start OpenMP threads; on 2 cores their idle spinning starves
# the others (a flavor test suite took 54 s instead of 9 s). Must be set before they load.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
from collections.abc import Iterator
from pathlib import Path

import pytest

from modelyard.registry import Registry
from modelyard.settings import Settings
from tests._s3 import S3Server

POSTGRES_URL = os.environ.get("MODELYARD_TEST_POSTGRES_URL")
# Under pytest-xdist (make test runs two workers) each worker empties and fills a database of its
# own, named after the given one and the worker: the tests TRUNCATE every table.
_WORKER = os.environ.get("PYTEST_XDIST_WORKER")
if POSTGRES_URL and _WORKER:
    POSTGRES_URL = f"{POSTGRES_URL}_{_WORKER}"
SKIP_POSTGRES = pytest.mark.skipif(
    not POSTGRES_URL,
    reason="set MODELYARD_TEST_POSTGRES_URL=postgresql+psycopg://postgres@127.0.0.1:5432/DB "
    "to run the PostgreSQL tests (.ci/run does)",
)
BACKENDS = ["sqlite", pytest.param("postgres", marks=[pytest.mark.postgres, SKIP_POSTGRES])]


def reset_postgres(url: str) -> None:
    """Empty every modelyard table (keeps the schema); a fresh start for each test."""
    import sqlalchemy as sa

    from modelyard.store.db import Database
    from modelyard.store.schema import metadata

    database = Database(url)
    try:
        database.upgrade()
        names = ", ".join(t.name for t in reversed(metadata.sorted_tables))
        with database.engine.begin() as conn:
            conn.execute(sa.text(f"TRUNCATE {names} RESTART IDENTITY CASCADE"))
    finally:
        database.close()


def database_url(backend: str, tmp_path: Path) -> str:
    if backend == "postgres":
        assert POSTGRES_URL is not None
        reset_postgres(POSTGRES_URL)
        return POSTGRES_URL
    return f"sqlite:///{tmp_path / 'meta.db'}"


def _worker_database(*, create: bool) -> None:
    """Create (or drop, at the end) this xdist worker's own PostgreSQL database."""
    import sqlalchemy as sa

    assert POSTGRES_URL is not None
    url = sa.engine.make_url(POSTGRES_URL)
    engine = sa.create_engine(url.set(database="postgres"), isolation_level="AUTOCOMMIT")
    try:
        with engine.connect() as conn:
            exists = conn.execute(
                sa.text("SELECT 1 FROM pg_database WHERE datname = :n"), {"n": url.database}
            ).first()
            if create and not exists:
                conn.execute(sa.text(f'CREATE DATABASE "{url.database}"'))
            elif not create and exists:
                conn.execute(sa.text(f'DROP DATABASE "{url.database}" WITH (FORCE)'))
    finally:
        engine.dispose()


def _is_worker(config: pytest.Config) -> bool:
    """This process is an xdist worker itself: a pytest that a test starts in a subprocess
    inherits ``PYTEST_XDIST_WORKER`` and must neither create nor drop the worker's database."""
    return bool(POSTGRES_URL and _WORKER and hasattr(config, "workerinput"))


def pytest_configure(config: pytest.Config) -> None:
    if _is_worker(config):
        _worker_database(create=True)


def pytest_unconfigure(config: pytest.Config) -> None:
    if _is_worker(config):
        _worker_database(create=False)


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def registry(backend: str, tmp_path: Path) -> Iterator[Registry]:
    settings = Settings(
        home=tmp_path / "home",
        database_url=database_url(backend, tmp_path),
        artifact_root=str(tmp_path / "artifacts"),
        identity="tester",
    )
    reg = Registry(settings)
    yield reg
    reg.close()


@pytest.fixture
def sqlite_registry(tmp_path: Path) -> Iterator[Registry]:
    reg = Registry(
        Settings(
            home=tmp_path / "home",
            database_url=f"sqlite:///{tmp_path / 'meta.db'}",
            artifact_root=str(tmp_path / "artifacts"),
            identity="tester",
        )
    )
    yield reg
    reg.close()


def blob_count(root: Path) -> int:
    """How many artifact blobs exist under an artifact root."""
    base = root / "sha256"
    return sum(1 for p in base.rglob("*") if p.is_file()) if base.exists() else 0


@pytest.fixture(scope="session")
def modelyard_wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A wheel of this checkout, built once (about 5 s) for the tests of ``yard build``."""
    from modelyard.deploy.wheel import copy_wheel

    return copy_wheel(None, tmp_path_factory.mktemp("wheel"))


@pytest.fixture(scope="session")
def s3_server() -> Iterator[S3Server]:
    """moto's S3 server on a loopback port for the whole session (tests/_s3.py)."""
    server = S3Server()
    server.start()
    yield server
    server.stop()


@pytest.fixture
def s3(s3_server: S3Server, monkeypatch: pytest.MonkeyPatch) -> Iterator[S3Server]:
    """The S3 server, up (a test may have stopped it), with this process's S3 clients pointed at
    it; ``s3.bucket()`` makes a fresh bucket."""
    if not s3_server.running:
        s3_server.start()
    for key, value in s3_server.env.items():
        monkeypatch.setenv(key, value)
    yield s3_server
    if not s3_server.running:
        s3_server.start()
