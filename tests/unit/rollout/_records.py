"""Records for the pure-function tests."""

from __future__ import annotations

from datetime import UTC, datetime

import msgspec

from modelyard.rollout.types import Deployment, Policy

NOW = datetime(2026, 11, 27, 12, 0, 7, tzinfo=UTC)


def deployment(**changes: object) -> Deployment:
    """A rolling canary of churn/2 beside churn/1 at 10%, steps 10,50,100, baking 60 s."""
    base = Deployment(
        name="web", stable_model="churn", stable_version=1, stable_alias="production",
        candidate_model="churn", candidate_version=2, mode="canary", weight=10.0,
        sticky_header=None, sticky_field=None, shadow_sample=1.0, retry_on_stable=True,
        steps=(10.0, 50.0, 100.0), bake_s=60.0, step_index=0, step_started_at=NOW, auto=True,
        policy=Policy(), state="rolling", revision=2, created_at=NOW, updated_at=NOW,
    )  # fmt: skip
    return msgspec.structs.replace(base, **changes)
