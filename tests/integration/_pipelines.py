"""A churn project on disk for the pipeline tests: data, a helper module, a pipeline file."""

from __future__ import annotations

import sys
import textwrap
from pathlib import Path
from types import ModuleType

import numpy as np
import pandas as pd

from modelyard.pipelines.loader import load_pipeline
from modelyard.pipelines.tracing import PipelineDef

PIPELINE = """
from __future__ import annotations

import logging

import numpy as np
import pandas as pd

from features import add_ratio
from modelyard.pipelines import log_metrics, pipeline, step
from modelyard.pipelines.builtin import load_table, split

logger = logging.getLogger("churn")


@step
def prepare(table: pd.DataFrame) -> pd.DataFrame:
    print(f"preparing {len(table)} rows")
    return add_ratio(table)


@step
def train(train: pd.DataFrame, C: float = 1.0):
    from sklearn.linear_model import LogisticRegression

    logger.info("training with C=%s", C)
    X, y = train.drop(columns=["churned"]), train["churned"]
    return LogisticRegression(C=C, max_iter=500).fit(X, y)


@step
def evaluate(model, test: pd.DataFrame, fail: bool = False) -> dict:
    if fail:
        raise ValueError("evaluation data is empty")
    accuracy = float((model.predict(test.drop(columns=["churned"])) == test["churned"]).mean())
    log_metrics(accuracy=accuracy)
    return {"accuracy": accuracy}


@step
def report(scores: dict) -> str:
    return f"accuracy {scores['accuracy']:.3f}"


@step
def profile(table: pd.DataFrame) -> np.ndarray:
    return table.drop(columns=["churned"]).mean().to_numpy()


@pipeline
def churn(data: str = "churn.csv", C: float = 1.0, fail_eval: bool = False, seed: int = 0):
    table = prepare(load_table(data))
    parts = split(table, target="churned", seed=seed)
    model = train(parts.train, C=C)
    report(evaluate(model, parts.test, fail=fail_eval))
    profile(table)
"""

FEATURES = """
def add_ratio(table):
    return table.assign(ratio=table["calls"] / (table["tenure"] + 1))
"""

DIAMOND = """
import numpy as np
import pandas as pd
from modelyard.pipelines import log_metrics, pipeline, step


@step
def make(n: int = 50) -> pd.DataFrame:
    rng = np.random.default_rng(0)
    return pd.DataFrame({"x": rng.normal(size=n), "k": rng.choice(["a", "b"], n)})


@step
def means(table: pd.DataFrame) -> pd.Series:
    print("grouping")
    return table.groupby("k")["x"].mean()


@step
def squares(table: pd.DataFrame) -> np.ndarray:
    return table["x"].to_numpy() ** 2


@step
def combine(means: pd.Series, squares: np.ndarray, fail: bool = False) -> dict:
    if fail:
        raise RuntimeError("cannot combine")
    log_metrics(total=float(squares.sum()))
    return {"a": float(means["a"]), "sum": float(squares.sum())}


@step
def summary(result: dict) -> str:
    return f"sum {result['sum']:.2f}"


@pipeline
def diamond(n: int = 50, fail: bool = False):
    table = make(n)
    summary(combine(means(table), squares(table), fail=fail))
"""

STEPS = ["load_table", "prepare", "split", "train", "evaluate", "report", "profile"]


class ChurnProject:
    def __init__(self, root: Path) -> None:
        self.root = root
        root.mkdir(parents=True, exist_ok=True)
        rng = np.random.default_rng(0)
        n = 300
        frame = pd.DataFrame(
            {"tenure": rng.integers(0, 60, n).astype(float), "calls": rng.poisson(3, n)}
        )
        frame["churned"] = ((frame["calls"] > 3) & (frame["tenure"] < 30)).astype(int)
        self.data = root / "churn.csv"
        frame.to_csv(self.data, index=False)
        self.pipeline_file = self.write("pipe.py", PIPELINE)
        self.write("features.py", FEATURES)

    def write(self, name: str, source: str) -> Path:
        path = self.root / name
        path.write_text(textwrap.dedent(source))
        return path

    def load(self) -> PipelineDef:
        """The pipeline, imported afresh (as a new ``yard run`` process would)."""
        self.forget()
        loaded = load_pipeline(str(self.pipeline_file))
        assert isinstance(loaded, PipelineDef)
        return loaded

    def forget(self) -> None:
        for key, module in list(sys.modules.items()):
            if (getattr(module, "__file__", None) or "").startswith(str(self.root)):
                del sys.modules[key]

    def close(self) -> None:
        self.forget()
        while str(self.root) in sys.path:
            sys.path.remove(str(self.root))


def modules_under(root: Path) -> list[ModuleType]:
    return [
        m
        for m in sys.modules.values()
        if (getattr(m, "__file__", None) or "").startswith(str(root))
    ]
