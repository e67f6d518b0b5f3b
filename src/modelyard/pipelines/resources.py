"""What a step (or a tune trial) asks of the machine it runs on: ``{"cpus": 4}``.

``cpus``, ``gpus`` and ``memory`` (bytes) become Ray's ``num_cpus``, ``num_gpus`` and ``memory``;
any other name is a custom Ray resource (``{"trainer": 1}``). The Ray executor reserves them for
each task and refuses, before anything is submitted, a request its cluster cannot meet (instead
of a task that waits forever). The local executor checks their form and otherwise ignores them:
its steps share one machine, and how many run at once is ``--workers``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from modelyard.errors import PipelineDefinitionError

__all__ = ["check_capacity", "clean_resources", "ray_options"]

_RAY_NAMES = {"cpus": "CPU", "gpus": "GPU", "memory": "memory"}


def clean_resources(resources: Mapping[str, Any] | None, *, owner: str) -> dict[str, float]:
    """``resources`` as names and positive finite numbers; ``PipelineDefinitionError`` else."""
    out: dict[str, float] = {}
    for name, value in (resources or {}).items():
        if not isinstance(name, str) or not name:
            raise PipelineDefinitionError(f"{owner} has a resource name {name!r}; use a string.")
        number = value if isinstance(value, int | float) and not isinstance(value, bool) else None
        if number is None or not math.isfinite(number) or number <= 0:
            raise PipelineDefinitionError(
                f"{owner} asks for {value!r} of resource {name!r}; give a positive number, e.g. "
                "resources={'cpus': 2}."
            )
        out[name] = float(number)
    return out


def ray_options(resources: Mapping[str, float]) -> dict[str, Any]:
    """Ray's ``.options(...)`` for ``resources`` (one CPU when none is asked for)."""
    options: dict[str, Any] = {"num_cpus": resources.get("cpus", 1.0)}
    if "gpus" in resources:
        options["num_gpus"] = resources["gpus"]
    if "memory" in resources:
        options["memory"] = resources["memory"]
    custom = {k: v for k, v in resources.items() if k not in _RAY_NAMES}
    if custom:
        options["resources"] = custom
    return options


def check_capacity(resources: Mapping[str, float], *, owner: str) -> None:
    """Refuse a request the connected Ray cluster cannot meet at all (it would wait forever)."""
    import ray

    total: dict[str, float] = ray.cluster_resources()  # type: ignore[no-untyped-call]  # Ray's
    wanted = {"cpus": 1.0, **resources}
    for name, amount in wanted.items():
        have = float(total.get(_RAY_NAMES.get(name, name), 0.0))
        if amount > have:
            raise PipelineDefinitionError(
                f"{owner} asks for {amount:g} {name} but the Ray cluster has {have:g}; lower "
                f"its resources or run on a cluster that has them (--address)."
            )
