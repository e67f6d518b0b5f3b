"""Choosing a route per request, the same way on every replica (pure functions, no I/O).

A/B stickiness hashes the key with BLAKE2b keyed by the deployment's name, not Python's
``hash`` (randomised per process), so every replica sends a key to the same route; raising the
weight only moves keys from stable to the candidate, never back.
"""

from __future__ import annotations

import hashlib

from modelyard.rollout.types import Deployment, RouteName

_SCALE = 2**64


def sticky_share(deployment: str, key: str) -> float:
    """Where ``key`` falls in [0, 100): below the weight means the candidate."""
    digest = hashlib.blake2b(key.encode(), digest_size=8, key=deployment.encode()[:64]).digest()
    return int.from_bytes(digest, "big") * 100 / _SCALE


def choose_route(deployment: Deployment, *, key: str | None = None, draw: float) -> RouteName:
    """The route that answers a request. ``draw`` is a uniform random number in [0, 1) (used by
    canary); ``key`` is the request's sticky header or field value (used by A/B: a request
    without one is answered by stable). In shadow mode stable answers every request; ``shadows``
    says which ones are copied to the candidate."""
    if not deployment.active or deployment.mode is None or deployment.mode == "shadow":
        return "stable"
    if deployment.mode == "canary":
        return "candidate" if draw * 100 < deployment.weight else "stable"
    if key is None:
        return "stable"
    return "candidate" if sticky_share(deployment.name, key) < deployment.weight else "stable"


def shadows(deployment: Deployment, *, draw: float) -> bool:
    """Whether a request answered by stable is also sent to a shadow candidate (``draw`` is a
    uniform random number in [0, 1))."""
    return deployment.active and deployment.mode == "shadow" and draw < deployment.shadow_sample
