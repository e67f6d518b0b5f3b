"""What a user may ask for: weights, steps, durations, modes, sticky keys and policies."""

from __future__ import annotations

import pytest

from modelyard.errors import InvalidInputError, InvalidSpecError
from modelyard.rollout.specs import (
    candidate_values,
    check_deployment_name,
    check_steps,
    check_weight,
    parse_duration,
    parse_steps,
    to_policy,
)
from modelyard.rollout.types import Policy


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("90", 90), ("90s", 90), ("5m", 300), ("1h30m", 5400), ("1.5h", 5400), ("250ms", 0.25),
     ("2d", 172800), (" 0 ", 0), (12.5, 12.5)],
)  # fmt: skip
def test_durations(text: str | float, seconds: float) -> None:
    assert parse_duration(text) == pytest.approx(seconds)


@pytest.mark.parametrize("text", ["5x", "m", "", "-5s", "5 m", "1h30", "inf", "-3"])
def test_bad_durations_name_the_value_and_the_forms(text: str) -> None:
    with pytest.raises(InvalidInputError, match="duration") as info:
        parse_duration(text)
    assert repr(text) in str(info.value)


def test_weights() -> None:
    assert check_weight(0) == 0.0
    assert check_weight(100) == 100.0
    for bad in (-1, 100.5, float("nan")):
        with pytest.raises(InvalidInputError, match="outside 0-100"):
            check_weight(bad)
    with pytest.raises(InvalidInputError, match="not a number"):
        check_weight(True)


def test_steps() -> None:
    assert parse_steps("10,50,100") == (10.0, 50.0, 100.0)
    assert check_steps([5, 25.5]) == (5.0, 25.5)
    with pytest.raises(InvalidSpecError, match=r"Steps 10,50,50 do not increase \(50 follows 50\)"):
        parse_steps("10,50,50")
    with pytest.raises(InvalidSpecError, match=r"Step 150\.0 is outside 0-100"):
        parse_steps("10,150")
    with pytest.raises(InvalidSpecError, match="Step 0 is outside 0-100"):
        check_steps([0, 10])
    with pytest.raises(InvalidSpecError, match="Invalid steps 'ten'"):
        parse_steps("ten")
    with pytest.raises(InvalidSpecError, match="Steps are empty"):
        parse_steps(",")


def test_deployment_names() -> None:
    assert check_deployment_name("churn-api.v2") == "churn-api.v2"
    with pytest.raises(InvalidInputError, match="Invalid deployment name 'a b'"):
        check_deployment_name("a b")


def test_policies_from_mappings_convert_strings_and_refuse_unknown_fields() -> None:
    policy = to_policy({"min_requests": "50", "on_breach": "pause", "max_output_distance": "0.3"})
    assert policy == Policy(min_requests=50, on_breach="pause", max_output_distance=0.3)
    assert to_policy(None) == Policy()
    with pytest.raises(InvalidSpecError, match=r"Invalid rollout policy.*min_requets"):
        to_policy({"min_requets": "5"})
    with pytest.raises(InvalidSpecError, match="on_breach"):
        to_policy({"on_breach": "explode"})
    with pytest.raises(InvalidSpecError, match=r"max_error_rate 2\.0 must be within 0-1"):
        to_policy(Policy(max_error_rate=2.0))


def candidate(**overrides: object) -> dict[str, object]:
    args: dict[str, object] = dict(
        mode="canary", weight=None, sticky_header=None, sticky_field=None, sample=1.0,
        steps=None, bake_s=None, policy=None,
    )  # fmt: skip
    args.update(overrides)
    return candidate_values(**args)  # type: ignore[arg-type]


def test_candidate_values() -> None:
    values = candidate(steps=[10, 50, 100], bake_s="5m")
    assert (values["weight"], values["steps"], values["bake_s"]) == (10.0, [10.0, 50.0, 100.0], 300)
    assert candidate(weight=25)["steps"] == []
    shadow = candidate(mode="shadow", sample=0.2)
    assert (shadow["weight"], shadow["shadow_sample"]) == (0.0, 0.2)
    ab = candidate(mode="ab", weight=50, sticky_header="X-User-Id")
    assert ab["sticky_header"] == "X-User-Id"


@pytest.mark.parametrize(
    ("overrides", "error", "message"),
    [
        ({"mode": "blue-green", "weight": 5}, InvalidSpecError, "Unknown rollout mode"),
        ({"weight": None}, InvalidSpecError, "needs a weight"),
        ({"weight": 20, "steps": [10, 50]}, InvalidSpecError, "differs from the first step"),
        ({"mode": "ab", "weight": 50}, InvalidSpecError, "needs exactly one sticky key"),
        ({"mode": "ab", "weight": 50, "sticky_header": "X", "sticky_field": "user"},
         InvalidSpecError, "needs exactly one sticky key"),
        ({"weight": 5, "sticky_header": "X-User-Id"}, InvalidSpecError, "Only A/B rollouts"),
        ({"mode": "shadow", "weight": 10}, InvalidSpecError, "takes no weight or steps"),
        ({"mode": "shadow", "sample": 1.5}, InvalidInputError, r"outside \(0, 1\]"),
        ({"weight": 5, "sample": 0.5}, InvalidSpecError, "Only shadow rollouts sample"),
        ({"mode": "ab", "weight": 5, "sticky_header": "X User"}, InvalidSpecError,
         "Invalid sticky header"),
        ({"weight": 5, "bake_s": "soon"}, InvalidInputError, "Invalid duration 'soon'"),
    ],
)  # fmt: skip
def test_bad_candidates(overrides: dict[str, object], error: type[Exception], message: str) -> None:
    with pytest.raises(error, match=message):
        candidate(**overrides)
