import os
import sys
import threading

import pytest

from modelyard.core.threads import BACKGROUND_NICE, run_in_background

linux_only = pytest.mark.skipif(sys.platform != "linux", reason="per-thread nice is Linux's")


def _in_thread(nice: int) -> tuple[bool, int, int]:
    seen: list[tuple[bool, int, int]] = []

    def body() -> None:
        tid = threading.get_native_id()
        before = os.getpriority(os.PRIO_PROCESS, tid)
        changed = run_in_background(nice)
        seen.append((changed, before, os.getpriority(os.PRIO_PROCESS, tid)))

    thread = threading.Thread(target=body)
    thread.start()
    thread.join()
    return seen[0]


@linux_only
def test_lowers_only_the_calling_thread() -> None:
    main_before = os.getpriority(os.PRIO_PROCESS, threading.get_native_id())
    changed, before, after = _in_thread(BACKGROUND_NICE)
    assert changed
    assert after == min(before + BACKGROUND_NICE, 19)
    # the process's other threads (here the main one) keep their priority
    assert os.getpriority(os.PRIO_PROCESS, threading.get_native_id()) == main_before


@linux_only
def test_caps_at_the_lowest_priority() -> None:
    changed, _, after = _in_thread(40)
    assert changed
    assert after == 19


def test_zero_changes_nothing() -> None:
    changed, before, after = _in_thread(0)
    assert not changed
    assert after == before
