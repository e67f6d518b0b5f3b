"""XGBoost and LightGBM training spread over Ray workers, with each library's own distributed
training: the rows are split into one part per worker, each worker holds only its part, and the
workers build one model together.

``train_on_ray("xgboost" | "lightgbm", X, y, params=..., num_boost_round=100, workers=2)``:

- XGBoost: its collective (a Rabit tracker in this process, one
  ``xgboost.collective.CommunicatorContext`` per worker); with the ``hist`` tree method the
  workers allreduce their gradient histograms, so the model is what one process would train on
  all rows, up to the quantile sketch of the bins.
- LightGBM: its data-parallel tree learner (``tree_learner="data"``) over its
  own socket network: each worker reports an address and a free port, then all of them train
  with ``machines`` listing every worker.

It returns a ``DistributedModel``: the booster (registrable like any XGBoost or LightGBM
booster) and the rows each worker trained on. It uses the Ray this process is connected to (a
local one is started and shut down when there is none). ``resources`` are each worker's
(``{"cpus": 1}`` by default; see ``modelyard.pipelines.resources``).
"""

from __future__ import annotations

import importlib.util
import itertools
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

from modelyard.errors import InvalidInputError
from modelyard.pipelines.resources import check_capacity, clean_resources, ray_options

__all__ = ["DistributedModel", "train_on_ray"]

_TIMEOUT_S = 300


@dataclass(frozen=True, slots=True)
class DistributedModel:
    """The booster the workers trained, how many rows each of them held, and whether every
    worker ended with the same model (they trained one model together)."""

    booster: Any
    rows_per_worker: tuple[int, ...]
    workers_agree: bool


def train_on_ray(
    library: Literal["xgboost", "lightgbm"],
    X: Any,
    y: Any,
    *,
    params: Mapping[str, Any],
    num_boost_round: int = 100,
    workers: int = 2,
    resources: Mapping[str, float] | None = None,
) -> DistributedModel:
    """Train a ``library`` booster on ``X``, ``y`` split over ``workers`` Ray workers."""
    trainers = {"xgboost": _train_xgboost, "lightgbm": _train_lightgbm}
    if library not in trainers:
        raise InvalidInputError(
            f"train_on_ray trains 'xgboost' or 'lightgbm' boosters, not {library!r}."
        )
    if importlib.util.find_spec(library) is None:
        raise ImportError(
            f"train_on_ray({library!r}) needs {library}; install it with pip install "
            f"'modelyard[{library}]'."
        )
    with _Ray(workers, resources, f"train_on_ray({library!r})") as (ray, options):
        job = _Job(ray, options, _parts(X, y, workers), dict(params), num_boost_round)
        return trainers[library](job)


@dataclass(frozen=True, slots=True)
class _Job:
    ray: Any
    options: dict[str, Any]
    parts: list[tuple[Any, Any]]
    params: dict[str, Any]
    rounds: int


def _train_xgboost(job: _Job) -> DistributedModel:
    import xgboost as xgb
    from xgboost.tracker import RabitTracker

    host = job.ray.util.get_node_ip_address()
    tracker = RabitTracker(n_workers=len(job.parts), host_ip=host, sortby="task")
    tracker.start()
    args = tracker.worker_args()
    task: Any = job.ray.remote(_xgboost_worker)
    refs = [
        task.options(max_retries=0, **job.options).remote(
            {**args, "dmlc_task_id": f"worker-{rank}"}, px, py, job.params, job.rounds
        )
        for rank, (px, py) in enumerate(job.parts)
    ]
    results = job.ray.get(refs, timeout=_TIMEOUT_S)
    tracker.wait_for(_TIMEOUT_S)
    booster = xgb.Booster()
    booster.load_model(bytearray(results[0][0]))
    return _result(booster, results)


def _xgboost_worker(
    args: dict[str, Any], X: Any, y: Any, params: dict[str, Any], rounds: int
) -> tuple[bytes, int, str]:
    import xgboost as xgb

    with xgb.collective.CommunicatorContext(**args):
        booster = xgb.train(
            {"tree_method": "hist", **params}, xgb.DMatrix(X, label=y), num_boost_round=rounds
        )
    raw = bytes(booster.save_raw("json"))
    return raw, len(X), _digest(raw)


def _train_lightgbm(job: _Job) -> DistributedModel:
    import lightgbm as lgb

    ray = job.ray
    actor_class: Any = ray.remote(_LightGBMWorker)
    actors = [actor_class.options(**job.options).remote() for _ in job.parts]
    try:
        addresses = ray.get([a.address.remote() for a in actors], timeout=_TIMEOUT_S)
        network = {
            "machines": ",".join(f"{host}:{port}" for host, port in addresses),
            "num_machines": len(actors),
            "tree_learner": "data",
            "pre_partition": True,
            "time_out": 5,
        }
        refs = [
            actor.train.remote(
                px, py, {**job.params, **network, "local_listen_port": port}, job.rounds
            )
            for actor, (px, py), (_, port) in zip(actors, job.parts, addresses, strict=True)
        ]
        results = ray.get(refs, timeout=_TIMEOUT_S)
    finally:
        for actor in actors:
            ray.kill(actor)
    return _result(lgb.Booster(model_str=results[0][0]), results)


def _result(booster: Any, results: list[tuple[Any, int, str]]) -> DistributedModel:
    rows = tuple(count for _, count, _ in results)
    return DistributedModel(booster, rows, len({trees for _, _, trees in results}) == 1)


def _digest(data: bytes) -> str:
    import hashlib

    return hashlib.sha256(data).hexdigest()


class _LightGBMWorker:
    """A Ray actor: holds a free port from ``address`` until ``train`` listens on it."""

    def address(self) -> tuple[str, int]:
        import socket

        import ray

        with socket.socket() as probe:
            probe.bind(("", 0))
            port = int(probe.getsockname()[1])
        host = ray.util.get_node_ip_address()  # type: ignore[no-untyped-call]  # Ray's
        return str(host), port

    def train(self, X: Any, y: Any, params: dict[str, Any], rounds: int) -> tuple[str, int, str]:
        import lightgbm as lgb

        booster = lgb.train(
            {"verbose": -1, **params}, lgb.Dataset(X, label=y), num_boost_round=rounds
        )
        text = booster.model_to_string()
        booster.free_network()
        trees = text.split("\nparameters:", 1)[0]  # the parameters hold each worker's own port
        return text, len(X), _digest(trees.encode())


def _parts(X: Any, y: Any, workers: int) -> list[tuple[Any, Any]]:
    import numpy as np

    if len(X) != len(y):
        raise InvalidInputError(f"X has {len(X)} rows but y has {len(y)}; give one label a row.")
    if len(X) < workers:
        raise InvalidInputError(
            f"{len(X)} rows cannot be split over {workers} workers; use fewer workers."
        )
    bounds = np.linspace(0, len(X), workers + 1).astype(int)
    return [(_rows(X, a, b), _rows(y, a, b)) for a, b in itertools.pairwise(bounds)]


def _rows(data: Any, start: int, stop: int) -> Any:
    return data.iloc[start:stop] if hasattr(data, "iloc") else data[start:stop]


class _Ray:
    """Connect to Ray (start a local one when needed), check that the cluster can hold the
    workers, and shut down on exit what was started here."""

    def __init__(self, workers: int, resources: Mapping[str, float] | None, owner: str) -> None:
        if not isinstance(workers, int) or isinstance(workers, bool) or workers < 1:
            raise InvalidInputError(f"{owner}'s workers must be at least 1, got {workers!r}.")
        self.workers = workers
        self.resources = clean_resources(resources, owner=f"{owner}'s workers")
        self.owner = owner
        self.started = False

    def __enter__(self) -> tuple[Any, dict[str, Any]]:
        try:
            import ray
        except ImportError as exc:
            raise ImportError(
                f"{self.owner} needs Ray; install it with pip install 'modelyard[ray]'."
            ) from exc
        if not ray.is_initialized():
            ray.init(include_dashboard=False, log_to_driver=False)
            self.started = True
        total = {k: v * self.workers for k, v in {"cpus": 1.0, **self.resources}.items()}
        check_capacity(total, owner=f"{self.owner} with {self.workers} workers")
        return ray, ray_options(self.resources)

    def __exit__(self, *exc: object) -> None:
        if self.started:
            import ray

            ray.shutdown()
