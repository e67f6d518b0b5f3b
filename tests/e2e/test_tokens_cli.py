"""``yard tokens create`` refuses lifetimes that would make a dead token and warns about a model
nobody registered, in subprocesses as a user runs it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

YARD = str(Path(sys.executable).parent / "yard")


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    out = {k: v for k, v in os.environ.items() if not k.startswith("MODELYARD_")}
    out["MODELYARD_HOME"] = str(tmp_path / "home")
    out["MODELYARD_IDENTITY"] = "cli-user"
    return out


def yard(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [YARD, *args], env=env, capture_output=True, text=True, timeout=120, check=False
    )


def _stored(env: dict[str, str]) -> list[dict[str, object]]:
    proc = yard(env, "tokens", "list", "--json")
    assert proc.returncode == 0, proc.stderr
    listed: list[dict[str, object]] = json.loads(proc.stdout)
    return listed


@pytest.mark.parametrize(
    ("expires", "message"),
    [
        (
            "0s",
            "error: Token lifetime '0s' must be more than zero; use e.g. 30d, 12h, 90m or 2w.\n",
        ),
        (
            "0d",
            "error: Token lifetime '0d' must be more than zero; use e.g. 30d, 12h, 90m or 2w.\n",
        ),
        ("-1d", "error: Invalid token lifetime '-1d'; use e.g. 30d, 12h, 90m or 2w.\n"),
        ("soon", "error: Invalid token lifetime 'soon'; use e.g. 30d, 12h, 90m or 2w.\n"),
        ("", "error: Invalid token lifetime ''; use e.g. 30d, 12h, 90m or 2w.\n"),
        (
            "99999999999w",
            "error: Token lifetime '99999999999w' is too long; use at most 36500d, or no "
            "--expires for a token that does not expire.\n",
        ),
    ],
)
def test_a_lifetime_that_is_not_positive_or_not_a_duration_is_refused(
    env: dict[str, str], expires: str, message: str
) -> None:
    proc = yard(env, "tokens", "create", "--scope", "admin", f"--expires={expires}")
    assert (proc.returncode, proc.stdout, proc.stderr) == (1, "", message)
    assert _stored(env) == []


def test_a_positive_lifetime_makes_a_token_that_expires_then(env: dict[str, str]) -> None:
    proc = yard(env, "tokens", "create", "--scope", "admin", "--expires", "1s")
    assert proc.returncode == 0 and proc.stdout.startswith("myd_"), proc.stderr
    [stored] = _stored(env)
    assert stored["expires_at"] is not None


def test_a_model_nobody_registered_is_taken_with_a_warning(env: dict[str, str]) -> None:
    """A token may be made before its model is registered (or for a deployment's name), so this
    warns on stderr, names the model and where to look, and still prints the token."""
    proc = yard(env, "tokens", "create", "--scope", "predict", "--model", "nonexistent")
    assert proc.returncode == 0 and proc.stdout.startswith("myd_")
    assert proc.stderr.startswith(
        "warning: No model or deployment 'nonexistent' is registered yet; the token works once "
        "one is (check the name with 'yard models list' or 'yard rollout list').\n"
    )
    [stored] = _stored(env)
    assert stored["model"] == "nonexistent"


def test_a_registered_model_gets_no_warning(env: dict[str, str], tmp_path: Path) -> None:
    from sklearn.dummy import DummyClassifier

    from modelyard.registry import Registry
    from modelyard.settings import Settings

    registry = Registry(Settings(home=tmp_path / "home"), identity="setup")
    registry.register(DummyClassifier().fit([[0.0], [1.0]], [0, 1]), name="churn")
    registry.close()
    proc = yard(env, "tokens", "create", "--scope", "predict", "--model", "churn")
    assert (proc.returncode, proc.stderr) == (0, "")
    assert "predict token" in proc.stdout and "for model churn" in proc.stdout
