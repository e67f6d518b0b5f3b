"""Per-request routing and the fixed output bins: the same answer on every replica."""

from __future__ import annotations

import random
import subprocess
import sys
from datetime import UTC, datetime

import msgspec
import pytest

from modelyard.rollout.buckets import value_bin, window_start
from modelyard.rollout.routing import choose_route, shadows, sticky_share
from tests.unit.rollout._records import NOW, deployment


def test_canary_follows_the_weight() -> None:
    d = deployment(weight=10.0)
    assert choose_route(d, draw=0.0999) == "candidate"
    assert choose_route(d, draw=0.1) == "stable"
    assert choose_route(deployment(weight=100.0), draw=0.99999) == "candidate"
    assert choose_route(deployment(weight=0.0), draw=0.0) == "stable"
    rng = random.Random(0)
    share = sum(choose_route(d, draw=rng.random()) == "candidate" for _ in range(20_000)) / 20_000
    assert share == pytest.approx(0.10, abs=0.01)


def test_no_candidate_or_a_finished_one_means_stable() -> None:
    assert choose_route(deployment(state="rolled_back"), draw=0.0) == "stable"
    assert choose_route(deployment(mode=None), draw=0.0) == "stable"


def test_ab_is_sticky_per_key_and_monotonic_in_the_weight() -> None:
    d10 = deployment(mode="ab", weight=10.0, sticky_header="X-User-Id")
    d50 = msgspec.structs.replace(d10, weight=50.0)
    keys = [f"user-{i}" for i in range(5000)]
    at10 = {k for k in keys if choose_route(d10, key=k, draw=0.99) == "candidate"}
    at50 = {k for k in keys if choose_route(d50, key=k, draw=0.0) == "candidate"}
    assert len(at10) / len(keys) == pytest.approx(0.10, abs=0.015)
    assert len(at50) / len(keys) == pytest.approx(0.50, abs=0.02)
    assert at10 <= at50  # raising the weight never moves a key back to stable
    assert choose_route(d10, key=None, draw=0.0) == "stable"


def test_sticky_share_is_the_same_in_another_process() -> None:
    code = "from modelyard.rollout.routing import sticky_share; print(sticky_share('web', 'u-7'))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert float(out.stdout) == sticky_share("web", "u-7")
    assert 0 <= sticky_share("web", "u-7") < 100
    assert sticky_share("web", "u-7") != sticky_share("other", "u-7")


def test_shadow_answers_from_stable_and_samples_the_copies() -> None:
    d = deployment(mode="shadow", weight=0.0, shadow_sample=0.2)
    assert choose_route(d, draw=0.0) == "stable"
    assert shadows(d, draw=0.19) and not shadows(d, draw=0.2)
    assert not shadows(deployment(), draw=0.0)


def test_value_bins_are_quarter_decades() -> None:
    assert value_bin(0.0) == value_bin(0.0009) == "0"
    assert value_bin(1.0) == value_bin(1.7) == "+1"
    assert value_bin(2.0) == "+1.78"  # 10**0.25
    assert value_bin(-42.0) == "-31.6"  # 10**1.5
    assert value_bin(1e12) == "+1e+09"
    assert value_bin(float("nan")) == "nan"
    assert value_bin(float("-inf")) == "-inf"


def test_windows_align_to_the_epoch() -> None:
    assert window_start(NOW) == datetime(2026, 11, 27, 12, 0, 0, tzinfo=UTC)
    assert window_start(NOW, window_s=60) == datetime(2026, 11, 27, 12, 0, tzinfo=UTC)
