"""A retraining-loop project on disk for the loop tests: training data, a tiny pipeline file that
registers a LogisticRegression as the deployment's model, a registry with version 1 serving as
deployment 'churn', and the settings with ``[loops.churn]``."""

from __future__ import annotations

import json
import textwrap
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from modelyard import rollout
from modelyard.loop import LoopController, LoopStep
from modelyard.registry import Registry
from modelyard.rollout.buckets import LATENCY_BUCKETS
from modelyard.settings import Settings

PIPELINE = """
from __future__ import annotations

import os
import time
from pathlib import Path

import pandas as pd

from modelyard.pipelines import pipeline, step
from modelyard.pipelines.builtin import load_table, register


@step
def fit(table: pd.DataFrame, quality: str = "good", block: str = "", counter: str = ""):
    from sklearn.dummy import DummyClassifier
    from sklearn.linear_model import LogisticRegression

    if block:  # hold here while the file exists (a test kills the controller meanwhile)
        Path(block + ".started").touch()
        while os.path.exists(block):
            time.sleep(0.05)
    if quality == "broken":
        raise ValueError("the training data is unusable")
    X, y = table.drop(columns=["target"]), table["target"]
    if quality == "bad":
        model = DummyClassifier(strategy="constant", constant=0).fit(X, y)
    else:
        model = LogisticRegression().fit(X, y)
    if counter:
        with open(counter, "a") as out:
            out.write("trained\\n")
    return model


@step
def finish(ref: str, block: str = "") -> str:
    if block:
        Path(block + ".started").touch()
        while os.path.exists(block):
            time.sleep(0.05)
    return ref


@pipeline
def retrain(
    data: str = "train.csv",
    name: str = "churn",
    quality: str = "good",
    block: str = "",
    counter: str = "",
    finish_block: str = "",
    register_model: bool = True,
):
    table = load_table(data)
    model = fit(table, quality=quality, block=block, counter=counter)
    if register_model:
        finish(register(model, table, name=name, target="target"), block=finish_block)
"""


def make_data(rows: int, seed: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(rows, 2))
    return pd.DataFrame(
        {"x1": X[:, 0], "x2": X[:, 1], "target": (X[:, 0] + 0.5 * X[:, 1] > 0).astype(int)}
    )


@dataclass
class Project:
    root: Path
    settings: Settings
    registry: Registry

    @property
    def home(self) -> Path:
        return self.settings.home_dir

    def with_loop(self, **changes: Any) -> Settings:
        """The settings with ``[loops.churn]`` changed (nested keys as dicts, merged)."""
        loop = self.settings.loops["churn"].model_dump()
        for key, value in changes.items():
            if isinstance(value, dict) and isinstance(loop.get(key), dict):
                loop[key] = {**loop[key], **value}
            else:
                loop[key] = value
        return self.settings.model_copy(
            update={"loops": {"churn": type(self.settings.loops["churn"])(**loop)}}
        )


def loop_settings(root: Path, database_url: str, **more: Any) -> Settings:
    return Settings(
        home=root / "home",
        database_url=database_url,
        artifact_root=str(root / "artifacts"),
        identity="tester",
        loops={
            "churn": {
                "cooldown": "0s",
                "train": {
                    "pipeline": str(root / "pipeline.py"),
                    "training_data": str(root / "train.csv"),
                    "params": {},
                },
                "gate": {
                    "holdout": 0.3,
                    "thresholds": [{"metric": "accuracy", "min_absolute_change": 0.0}],
                },
                "rollout": {
                    "mode": "canary",
                    "steps": [50, 100],
                    "bake": "0s",
                    "policy": {"min_requests": 10, "max_output_distance": None},
                },
            }
        },
        **more,
    )


def make_project(root: Path, database_url: str, **more: Any) -> Project:
    """churn/1 (a weak model: trained on 20 rows, one feature) serving as deployment 'churn'."""
    from sklearn.linear_model import LogisticRegression

    root.mkdir(parents=True, exist_ok=True)
    (root / "pipeline.py").write_text(textwrap.dedent(PIPELINE))
    make_data(300, seed=0).to_csv(root / "train.csv", index=False)
    settings = loop_settings(root, database_url, **more)
    registry = Registry(settings)
    first = make_data(20, seed=1)
    weak = first.assign(x2=0.0)
    model = LogisticRegression().fit(weak[["x1", "x2"]], weak["target"])
    registry.register(model, name="churn", data=first[["x1", "x2"]])
    registry.set_alias("churn/1", "production")
    rollout.deploy(registry, "churn", model_ref="churn@production")
    return Project(root=root, settings=settings, registry=registry)


def feed(registry: Registry, route: str, requests: int, *, errors: int = 0) -> None:
    """Record traffic for deployment 'churn''s current revision, as a server replica would."""
    counts = [0] * LATENCY_BUCKETS
    counts[3] = requests
    rollout.record_route_stats(
        registry.db, deployment="churn",
        revision=rollout.deployment_revision(registry.db, "churn"), replica="pod-a",
        window_start=datetime.now(UTC), route=route,  # type: ignore[arg-type]
        requests=requests, errors=errors, latency_counts=counts,
        output_counts={"0": requests // 2, "1": requests - requests // 2},
    )  # fmt: skip


def good_traffic(registry: Registry) -> None:
    feed(registry, "stable", 100)
    feed(registry, "candidate", 100)


def write_config(project: Project, params: dict[str, str]) -> Path:
    """``modelyard.toml`` holding the project's settings, with ``params`` for the pipeline: the
    file a ``yard loop run`` subprocess reads (``MODELYARD_CONFIG``)."""
    s = project.settings
    loop = s.loops["churn"]
    quoted = ", ".join(f"{k} = {json.dumps(v)}" for k, v in params.items())
    text = f"""
database_url = {json.dumps(s.resolved_database_url)}
artifact_root = {json.dumps(s.resolved_artifact_root)}
home = {json.dumps(str(s.home_dir))}
identity = "controller"

[loops.churn]
cooldown = "0s"

[loops.churn.train]
pipeline = {json.dumps(loop.train.pipeline)}
training_data = {json.dumps(loop.train.training_data)}
params = {{ {quoted} }}

[loops.churn.rollout]
steps = [50, 100]
bake = "0s"
policy = {{ min_requests = 10 }}
"""
    path = project.root / "modelyard.toml"
    path.write_text(text)
    return path


def steps_until(controller: LoopController, state: str, limit: int = 8) -> list[LoopStep]:
    seen = []
    for _ in range(limit):
        result = controller.step("churn")
        seen.append(result)
        if result.state == state:
            return seen
    raise AssertionError(f"the loop did not reach {state}: {seen}")
