"""The monitoring pages' cache: fresh for a minute while the log stays the same, stale values
answered at once while one thread computes the next."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

from modelyard.ui._monitoring_data import TTLCache


def wait_for(predicate: object, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():  # type: ignore[operator]
        assert time.monotonic() < deadline
        time.sleep(0.01)


def computed(cache: TTLCache, key: str, stamp: object, compute: Callable[[], object]) -> None:
    """Look ``key`` up and wait until its value is fresh (a first value is computed behind)."""
    cache.lookup(key, stamp, compute)
    wait_for(lambda: cache.lookup(key, stamp, compute)[1])


def test_fresh_values_are_kept_and_a_new_stamp_is_computed_in_the_background() -> None:
    cache = TTLCache(ttl=60)
    calls: list[int] = []

    def compute() -> int:
        calls.append(1)
        return len(calls)

    computed(cache, "k", "v1", compute)
    assert cache.lookup("k", "v1", compute) == (1, True)
    assert calls == [1]
    assert cache.lookup("k", "v2", compute) == (1, False)  # stale at once, refreshed behind
    wait_for(lambda: cache.lookup("k", "v2", compute) == (2, True))
    assert len(calls) == 2


def test_an_expired_value_is_refreshed_once_however_many_ask() -> None:
    cache = TTLCache(ttl=0.0)
    gate = threading.Event()
    calls: list[int] = []

    def slow() -> int:
        calls.append(1)
        gate.wait(5)
        return len(calls)

    cache._store("k", "v", 0)
    for _ in range(5):
        assert cache.lookup("k", "v", slow) == (0, False)
    gate.set()
    wait_for(lambda: not cache._refreshing)
    assert calls == [1]


def test_a_failed_refresh_keeps_the_stale_value() -> None:
    cache = TTLCache(ttl=0.0)
    cache._store("k", "v", "old")

    def broken() -> str:
        raise RuntimeError("boom")

    assert cache.lookup("k", "v", broken) == ("old", False)
    wait_for(lambda: not cache._refreshing)
    assert cache.lookup("k", "v", broken)[0] == "old"


def test_the_oldest_entries_go_past_the_size() -> None:
    cache = TTLCache(ttl=60, size=2)
    for key in "abc":
        computed(cache, key, 0, lambda key=key: key)
    assert list(cache._items) == ["b", "c"]


def test_lookup_never_waits_for_a_first_computation() -> None:
    cache = TTLCache(ttl=60)
    gate = threading.Event()

    def slow() -> str:
        gate.wait(5)
        return "ready"

    assert cache.lookup("k", "v", slow) == (None, False)
    assert cache.lookup("k", "v", slow) == (None, False)  # still the one computation
    gate.set()
    wait_for(lambda: cache.lookup("k", "v", slow) == ("ready", True))
