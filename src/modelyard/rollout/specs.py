"""Checking what a user asks for before anything is written: names, weights, steps, durations,
modes and policies. Each check raises a typed error naming the bad value and the fix."""

from __future__ import annotations

import bisect
import itertools
import math
import re
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import msgspec

from modelyard.core.durations import parse_duration
from modelyard.core.refs import NAME_PATTERN
from modelyard.errors import InvalidInputError, InvalidSpecError
from modelyard.rollout.types import MODES, Mode, Policy

_NAME_RE = re.compile(NAME_PATTERN)
_HEADER_RE = re.compile(r"[A-Za-z0-9!#$%&'*+.^_`|~-]{1,128}")


def check_deployment_name(name: str) -> str:
    if not isinstance(name, str) or _NAME_RE.fullmatch(name) is None:
        raise InvalidInputError(
            f"Invalid deployment name {name!r}: use letters, digits, '.', '_' or '-' "
            "(starting with a letter or digit, at most 128 characters)."
        )
    return name


def check_weight(weight: float) -> float:
    """A candidate weight: a percentage from 0 to 100."""
    if isinstance(weight, bool) or not isinstance(weight, int | float):
        raise InvalidInputError(f"Weight {weight!r} is not a number; give a percentage 0-100.")
    if not math.isfinite(weight) or not 0 <= weight <= 100:
        raise InvalidInputError(
            f"Weight {weight!r} is outside 0-100; give the candidate's percentage, e.g. 10."
        )
    return float(weight)


def check_steps(steps: Iterable[float]) -> tuple[float, ...]:
    """Step weights: each above 0 and at most 100, strictly increasing."""
    out = tuple(steps)
    if not out:
        raise InvalidSpecError("Steps are empty; give increasing weights such as 10,50,100.")
    for value in out:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise InvalidSpecError(f"Step {value!r} is not a number; give weights like 10,50,100.")
        if not math.isfinite(value) or not 0 < value <= 100:
            raise InvalidSpecError(
                f"Step {value!r} is outside 0-100; give weights above 0 and at most 100, "
                "such as 10,50,100."
            )
    for before, after in itertools.pairwise(out):
        if after <= before:
            raise InvalidSpecError(
                f"Steps {','.join(f'{s:g}' for s in out)} do not increase ({after:g} follows "
                f"{before:g}); give strictly increasing weights such as 10,50,100."
            )
    return tuple(float(s) for s in out)


def parse_steps(text: str) -> tuple[float, ...]:
    """``"10,50,100"`` as step weights."""
    try:
        values = [float(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise InvalidSpecError(
            f"Invalid steps {text!r}; give comma-separated weights such as 10,50,100."
        ) from None
    return check_steps(values)


def check_mode(mode: str) -> Mode:
    if mode not in MODES:
        raise InvalidSpecError(f"Unknown rollout mode {mode!r}; use 'canary', 'ab' or 'shadow'.")
    return mode


def check_sticky(mode: Mode, header: str | None, field: str | None) -> None:
    """A/B needs exactly one sticky key; the other modes take none."""
    if mode != "ab":
        if header is not None or field is not None:
            raise InvalidSpecError(
                f"Only A/B rollouts are sticky; drop the sticky key from this {mode} rollout or "
                "use --ab."
            )
        return
    if (header is None) == (field is None):
        raise InvalidSpecError(
            "An A/B rollout needs exactly one sticky key; pass --sticky-header HEADER (such as "
            "X-User-Id) or --sticky-field FIELD."
        )
    if header is not None and _HEADER_RE.fullmatch(header) is None:
        raise InvalidSpecError(f"Invalid sticky header {header!r}; use a name like X-User-Id.")
    if field is not None and not 0 < len(field) <= 128:
        raise InvalidSpecError(f"Invalid sticky field {field!r}; name one input column.")


def check_sample(sample: float) -> float:
    """A shadow sample: the share (above 0, at most 1) of requests copied to the candidate."""
    if isinstance(sample, bool) or not isinstance(sample, int | float):
        raise InvalidInputError(f"Shadow sample {sample!r} is not a number; give e.g. 0.2.")
    if not math.isfinite(sample) or not 0 < sample <= 1:
        raise InvalidInputError(
            f"Shadow sample {sample!r} is outside (0, 1]; give the share of requests, e.g. 0.2."
        )
    return float(sample)


def to_policy(value: Policy | Mapping[str, Any] | None) -> Policy:
    """A checked Policy from a Policy, a mapping (strings are converted) or ``None`` (defaults)."""
    if value is None:
        policy = Policy()
    elif isinstance(value, Policy):
        policy = value
    else:
        try:
            policy = msgspec.convert(dict(value), Policy, strict=False)
        except msgspec.ValidationError as exc:
            raise InvalidSpecError(
                f"Invalid rollout policy ({exc}); the fields are "
                f"{', '.join(Policy.__struct_fields__)}."
            ) from None
    return _check_policy(policy)


def _check_policy(policy: Policy) -> Policy:
    problems = []
    if policy.min_requests < 1:
        problems.append(f"min_requests {policy.min_requests} must be at least 1")
    for field in ("max_error_rate", "error_rate_floor"):
        value = getattr(policy, field)
        if not 0 <= value <= 1:
            problems.append(f"{field} {value!r} must be within 0-1")
    for field in ("max_error_ratio", "max_p99_ratio"):
        value = getattr(policy, field)
        if not value > 0:
            problems.append(f"{field} {value!r} must be above 0")
    if policy.p99_floor_ms < 0 or (policy.max_p99_ms is not None and policy.max_p99_ms <= 0):
        problems.append("latencies must be positive")
    distance = policy.max_output_distance
    if distance is not None and not 0 <= distance <= 1:
        problems.append(f"max_output_distance {distance!r} must be within 0-1")
    if policy.min_outcomes is not None and policy.min_outcomes < 2:
        problems.append(f"min_outcomes {policy.min_outcomes} must be at least 2 (or unset)")
    if not 0 < policy.outcome_alpha < 1:
        problems.append(f"outcome_alpha {policy.outcome_alpha!r} must be between 0 and 1")
    if not 0 <= policy.outcome_tolerance < 1:
        problems.append(f"outcome_tolerance {policy.outcome_tolerance!r} must be within [0, 1)")
    if policy.on_breach not in ("rollback", "pause"):
        problems.append(f"on_breach {policy.on_breach!r} must be 'rollback' or 'pause'")
    if problems:
        raise InvalidSpecError(f"Invalid rollout policy: {'; '.join(problems)}.")
    return policy


def candidate_values(
    *,
    mode: str,
    weight: float | None,
    sticky_header: str | None,
    sticky_field: str | None,
    sample: float,
    steps: Sequence[float] | None,
    bake_s: float | str | None,
    policy: Policy | Mapping[str, Any] | None,
) -> dict[str, Any]:
    """The candidate columns for a request, every value checked (nothing is written here)."""
    checked_mode = check_mode(mode)
    check_sticky(checked_mode, sticky_header, sticky_field)
    schedule = check_steps(steps) if steps is not None else ()
    if checked_mode == "shadow":
        if (weight is not None and weight != 0) or schedule:
            raise InvalidSpecError(
                "A shadow candidate answers no client, so it takes no weight or steps; give "
                "--sample (the share of requests copied to it) instead."
            )
        share, chosen = check_sample(sample), 0.0
    else:
        if sample != 1.0:
            raise InvalidSpecError(
                f"Only shadow rollouts sample requests; drop --sample from this {checked_mode} "
                "rollout or use --weight."
            )
        share, chosen = 1.0, _initial_weight(weight, schedule)
    return {
        "mode": checked_mode,
        "weight": chosen,
        "sticky_header": sticky_header,
        "sticky_field": sticky_field,
        "shadow_sample": share,
        "steps": list(schedule),
        "bake_s": parse_duration(bake_s) if bake_s is not None else 0.0,
        "step_index": step_index(schedule, chosen),
        "policy": msgspec.to_builtins(to_policy(policy)),
    }


def _initial_weight(weight: float | None, schedule: tuple[float, ...]) -> float:
    if weight is None:
        if not schedule:
            raise InvalidSpecError(
                "A canary or A/B candidate needs a weight; pass --weight 10 or --steps 10,50,100."
            )
        return schedule[0]
    chosen = check_weight(weight)
    if schedule and chosen != schedule[0]:
        raise InvalidSpecError(
            f"Weight {chosen:g} differs from the first step {schedule[0]:g}; drop --weight or "
            f"start the steps at {chosen:g}."
        )
    return chosen


def step_index(steps: Sequence[float], weight: float) -> int:
    return max(bisect.bisect_right(list(steps), weight) - 1, 0)
