"""The ``yard`` CLI in subprocesses, as a user runs it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from sklearn.datasets import load_breast_cancer
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

YARD = str(Path(sys.executable).parent / "yard")


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    out = {k: v for k, v in os.environ.items() if not k.startswith("MODELYARD_")}
    out["MODELYARD_HOME"] = str(tmp_path / "home")
    out["MODELYARD_IDENTITY"] = "cli-user"
    return out


def yard(
    env: dict[str, str], *args: str, check: int | None = 0
) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(
        [YARD, *args], env=env, capture_output=True, text=True, timeout=120, check=False
    )
    if check is not None:
        assert proc.returncode == check, proc.stdout + proc.stderr
    return proc


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    import skops.io

    tmp_path = tmp_path_factory.mktemp("files")
    frame = load_breast_cancer(as_frame=True).frame
    X, y = frame.drop(columns=["target"]), frame["target"]
    model = make_pipeline(StandardScaler(), LogisticRegression()).fit(X, y)
    skops_path = tmp_path / "model.skops"
    skops.io.dump(model, skops_path)
    csv = tmp_path / "train.csv"
    frame.to_csv(csv, index=False)
    bad_csv = tmp_path / "other.csv"
    frame.iloc[:, :5].to_csv(bad_csv, index=False)
    return {"model": skops_path, "data": csv, "bad": bad_csv}


def test_register_list_show_alias_rollback_history(env, files) -> None:
    out = yard(env, "models", "register", str(files["model"]), "--name", "churn",
               "--data", str(files["data"]), "--target", "target", "--metric", "auc=0.97",
               "--tag", "team=risk", "--json")  # fmt: skip
    v1 = json.loads(out.stdout)
    assert v1["version"] == 1 and v1["flavor"] == "sklearn" and v1["metrics"] == {"auc": 0.97}
    assert v1["created_by"] == "cli-user" and v1["signature"]["kind"] == "columns"
    out = yard(env, "models", "register", str(files["model"]), "--name", "churn")
    assert "registered churn/2 (sklearn)" in out.stdout
    listed = json.loads(yard(env, "models", "list", "churn", "--json").stdout)
    assert [v["version"] for v in listed["items"]] == [2, 1] and listed["total"] == 2
    assert "churn" in yard(env, "models", "list").stdout
    yard(env, "models", "alias", "churn/1", "production", "--reason", "first")
    yard(env, "models", "alias", "churn/2", "production")
    shown = json.loads(yard(env, "models", "show", "churn@production", "--json").stdout)
    assert shown["version"] == 2 and shown["aliases"] == ["production"]
    assert (
        "production: version 2 -> version 1"
        in yard(env, "models", "rollback", "churn", "production").stdout
    )
    history = json.loads(yard(env, "models", "history", "churn", "--json").stdout)
    assert [(e["from_version"], e["to_version"]) for e in history] == [(2, 1), (1, 2), (None, 1)]
    assert yard(env, "models", "verify", "churn/1").returncode == 0
    assert "alias history of churn" in yard(env, "models", "history", "churn").stdout


def test_errors_are_one_line_exit_1_and_change_nothing(env, files, tmp_path: Path) -> None:
    yard(env, "models", "register", str(files["model"]), "--name", "churn")
    cases = [
        (["models", "show", "nope"], "No model named 'nope'"),
        (["models", "show", "churn/9"], "no version 9 (latest is 1)"),
        (["models", "show", "churn@prod"], "no alias 'prod'"),
        (["models", "show", "churn//1"], "Malformed model reference"),
        (["models", "register", str(files["model"]), "--name", "churn", "--data",
          str(files["bad"])], "do not match model 'churn'"),
        (["models", "register", str(tmp_path / "missing.skops"), "--name", "churn"], "missing"),
        (["models", "register", str(files["data"]), "--name", "churn"], "is not a model file"),
    ]  # fmt: skip
    for args, expected in cases:
        proc = yard(env, *args, check=1)
        assert proc.stderr.startswith("error: "), proc.stderr
        assert expected.lower() in proc.stderr.lower(), proc.stderr
        assert len(proc.stderr.strip().splitlines()) == 1, proc.stderr
    listed = json.loads(yard(env, "models", "list", "churn", "--json").stdout)
    assert listed["total"] == 1
    debug = yard(env, "--debug", "models", "show", "nope", check=1)
    assert "Traceback" in debug.stderr


def test_archive_an_aliased_version_is_refused(env, files) -> None:
    yard(env, "models", "register", str(files["model"]), "--name", "churn")
    yard(env, "models", "alias", "churn/1", "production")
    proc = yard(env, "models", "archive", "churn/1", check=1)
    assert "cannot be archived" in proc.stderr
    shown = json.loads(yard(env, "models", "show", "churn/1", "--json").stdout)
    assert shown["archived"] is False


def test_usage_errors_exit_2(env) -> None:
    assert yard(env, "models", "register", check=2).returncode == 2
    proc = yard(env, "models", "register", "x.skops", "--name", "a", "--metric", "oops", check=2)
    assert "KEY=VALUE" in proc.stderr


def test_verify_fails_on_a_tampered_file(env, files, tmp_path: Path) -> None:
    v = json.loads(
        yard(env, "models", "register", str(files["model"]), "--name", "churn", "--json").stdout
    )
    sha = next(f["sha256"] for f in v["files"] if f["role"] == "model")
    blob = tmp_path / "home" / "artifacts" / "sha256" / sha[:2] / sha
    blob.write_bytes(b"tampered")
    proc = yard(env, "models", "verify", "churn/1", check=1)
    assert "altered" in proc.stdout
    from modelyard.store.schema import HEAD_REVISION

    proc = yard(env, "db", "current")
    assert proc.stdout.strip() == HEAD_REVISION


def test_unreachable_database_is_one_clear_line(env, files) -> None:
    env["MODELYARD_DATABASE_URL"] = "postgresql+psycopg://postgres@127.0.0.1:1/none"
    proc = yard(env, "models", "register", str(files["model"]), "--name", "churn", check=1)
    assert "Cannot use the metadata database" in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1
    artifacts = Path(env["MODELYARD_HOME"]) / "artifacts" / "sha256"
    assert not artifacts.exists() or not any(p.is_file() for p in artifacts.rglob("*"))
