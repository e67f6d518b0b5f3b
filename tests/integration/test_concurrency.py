"""8 processes register 20 versions each of one model and move one alias concurrently."""

from __future__ import annotations

import itertools
import multiprocessing
from pathlib import Path

from modelyard.registry import Registry
from tests.conftest import database_url
from tests.integration._workers import register_and_move

WORKERS = 8
EACH = 20


def test_concurrent_registration_and_alias_moves(backend: str, tmp_path: Path) -> None:
    url = database_url(backend, tmp_path)
    root = str(tmp_path / "artifacts")
    setup = Registry(database_url=url, artifact_root=root)
    setup.db.upgrade()
    setup.close()
    # Separate processes; forked from one server that imported the heavy modules once, so the
    # test spends its time registering rather than importing scikit-learn eight times.
    ctx = multiprocessing.get_context("forkserver")
    ctx.set_forkserver_preload(["sklearn.linear_model", "skops.io", "modelyard.registry"])
    with ctx.Pool(WORKERS) as pool:
        results = pool.starmap(register_and_move, [(url, root, w, EACH) for w in range(WORKERS)])
    registry = Registry(database_url=url, artifact_root=root)
    versions = sorted(v for moved in results for v in moved)
    assert versions == list(range(1, WORKERS * EACH + 1))
    listed = registry.search_versions(name="shared", page_size=1000)
    assert sorted(v.version for v in listed.items) == versions
    events = registry.history("shared", alias="production", limit=10_000)
    assert len(events) == WORKERS * EACH
    assert sorted(e.to_version or 0 for e in events) == versions
    # each move's "from" is the previous move's "to": one unbroken chain, nothing lost
    chain = list(reversed(events))
    assert chain[0].from_version is None
    assert all(b.from_version == a.to_version for a, b in itertools.pairwise(chain))
    final = registry.get_version("shared@production").version
    assert final == chain[-1].to_version and final in versions
    registry.close()
