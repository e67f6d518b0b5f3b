"""Batch scoring end to end: the Ray engine on a real local Ray (one per session) writes what
the local engine writes, and ``yard batch-score`` in a subprocess."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from modelyard.errors import PredictionError
from modelyard.pipelines.batch import batch_score
from modelyard.registry import Registry
from modelyard.settings import Settings
from tests.integration._models import PickyModel
from tests.integration._server import YARD, server_env

FEATURES = [f"f{i}" for i in range(5)]


@pytest.fixture(scope="module")
def home(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A registry home with hgb/1 (an ONNX twin) and picky/1 (raises on negative x)."""
    from sklearn.datasets import make_classification
    from sklearn.ensemble import HistGradientBoostingClassifier

    home = tmp_path_factory.mktemp("batch-home")
    registry = Registry(Settings(home=home, identity="tester"))
    X, y = make_classification(n_samples=2000, n_features=len(FEATURES), random_state=0)
    frame = pd.DataFrame(X, columns=FEATURES)
    model = HistGradientBoostingClassifier(max_iter=20, random_state=0).fit(frame, y)
    registry.register(model, name="hgb", data=frame, convert="onnx")
    registry.set_alias("hgb/1", "production")
    cols = pd.DataFrame({"x": [1.0, 2.0], "y": [3.0, 4.0]})
    registry.register(PickyModel(), name="picky", data=cols, trust_pickle=True)
    registry.close()
    yield home


@pytest.fixture
def registry(home: Path) -> Iterator[Registry]:
    reg = Registry(Settings(home=home, identity="tester"))
    yield reg
    reg.close()


def inputs(folder: Path) -> Path:
    """Three files (one empty), several row groups, a few bad rows."""
    rng = np.random.default_rng(0)
    frames = []
    for i, n in enumerate([700, 0, 450]):
        frame = pd.DataFrame(rng.standard_normal((n, len(FEATURES))), columns=FEATURES)
        frame.insert(0, "id", pd.Series([f"r{i}-{j}" for j in range(n)], dtype="str"))
        frames.append(frame)
    frames[0].loc[[5, 650], "f1"] = np.nan
    frames[2]["f0"] = frames[2]["f0"].astype(str)
    frames[2].loc[400, "f0"] = "n/a"
    folder.mkdir(parents=True)
    for i, frame in enumerate(frames):
        table = pa.Table.from_pandas(frame, preserve_index=False)
        pq.write_table(table, folder / f"day-{i}.parquet", row_group_size=100)
    return folder


def test_ray_writes_what_local_writes(registry: Registry, ray_cluster: Any, tmp_path: Path) -> None:
    data = inputs(tmp_path / "in")
    local = batch_score(
        registry, "hgb@production", str(data / "*.parquet"), tmp_path / "local", batch_size=64
    )
    ray = batch_score(
        registry, "hgb@production", str(data / "*.parquet"), tmp_path / "ray", engine="ray",
        batch_size=64,
    )  # fmt: skip
    assert (ray.engine, ray.workers, ray.runtime, ray.kernel) == ("ray", 2, "onnx", "tree kernel")
    assert ray_cluster.is_initialized()  # not ours: left running
    for summary in (local, ray):
        assert (summary.rows, summary.scored, summary.rejected) == (1150, 1147, 3)
    names = sorted(p.name for p in (tmp_path / "local").iterdir())
    assert names == ["part-00000.parquet", "part-00001.parquet", "part-00002.parquet",
                     "rejected.parquet"]  # fmt: skip
    assert sorted(p.name for p in (tmp_path / "ray").iterdir()) == names
    for name in names:
        assert pq.read_table(tmp_path / "ray" / name).equals(
            pq.read_table(tmp_path / "local" / name)
        ), name
    rejects = pd.read_parquet(tmp_path / "ray" / "rejected.parquet")
    assert rejects["id"].tolist() == ["r0-5", "r0-650", "r2-400"]
    assert rejects["input_row"].tolist() == [5, 650, 400]
    assert pq.read_table(tmp_path / "ray" / "part-00001.parquet").num_rows == 0


def test_a_model_failing_on_a_ray_worker_leaves_nothing(
    registry: Registry, ray_cluster: Any, tmp_path: Path
) -> None:
    frame = pd.DataFrame({"x": np.arange(-100.0, 900.0), "y": 0.0})
    pq.write_table(pa.Table.from_pandas(frame), tmp_path / "in.parquet", row_group_size=250)
    with pytest.raises(PredictionError, match=r"picky/1 failed on rows 0-249 .*negative"):
        batch_score(
            registry, "picky/1", tmp_path / "in.parquet", tmp_path / "out", engine="ray",
            trust_pickle=True, batch_size=250, num_cpus=1,
        )  # fmt: skip
    assert not (tmp_path / "out").exists()


def yard(home: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [YARD, "batch-score", *args], env=server_env(home), capture_output=True, text=True,
        timeout=120, check=False,
    )  # fmt: skip


def test_cli_end_to_end(home: Path, tmp_path: Path) -> None:
    data = inputs(tmp_path / "in")
    out = tmp_path / "out"
    done = yard(home, "hgb/1", "--input", str(data / "*.parquet"), "--output", str(out), "--json")
    assert done.returncode == 0, done.stderr
    summary = json.loads(done.stdout)
    assert (summary["rows"], summary["scored"], summary["rejected"]) == (1150, 1147, 3)
    assert summary["rejects_file"] == str(out / "rejected.parquet")
    assert len(summary["outputs"]) == 3 and summary["runtime"] == "onnx"
    assert pd.read_parquet(out / "part-00002.parquet")["id"].iloc[0] == "r2-0"

    again = yard(home, "hgb/1", "--input", str(data / "*.parquet"), "--output", str(out))
    assert again.returncode == 1
    assert again.stderr.strip().splitlines() == [
        f"error: Output folder '{out}' already holds results (part-00000.parquet, "
        "part-00001.parquet, part-00002.parquet); pass --overwrite or choose another folder."
    ]
    # a Ray of its own this time (started, one worker, stopped), and the summary as a table
    table = yard(home, "hgb/1", "--input", str(data), "--output", str(out), "--overwrite",
                 "--key", "id", "--engine", "ray", "--cpus", "1")  # fmt: skip
    assert table.returncode == 0, table.stderr
    assert "ray (1 worker)" in table.stdout
    assert "rejected" in table.stdout and "1,147" in table.stdout
    assert "'f1' has missing values" in table.stdout  # the most common reasons

    pd.DataFrame({"id": ["a"], "f0": [1.0]}).to_parquet(tmp_path / "narrow.parquet")
    bad = yard(home, "hgb/1", "--input", str(tmp_path / "narrow.parquet"), "--output",
               str(tmp_path / "out2"))  # fmt: skip
    assert bad.returncode == 1
    assert bad.stderr.startswith("error: Input file") and bad.stderr.count("\n") == 1
    assert "f1, f2, f3, f4" in bad.stderr
    assert not (tmp_path / "out2").exists()
