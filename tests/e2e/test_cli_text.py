"""What the CLI prints, as a user reads it, in subprocesses: text with brackets is printed as
given (Rich markup is off; a data path with brackets: tests/integration/test_gate_exit_codes.py),
wide prediction logs keep whole headers, and lists of names say how many were left out."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from tests._logdata import write_log

YARD = str(Path(sys.executable).parent / "yard")


def _env(home: Path) -> dict[str, str]:
    out = {k: v for k, v in os.environ.items() if not k.startswith("MODELYARD_")}
    out["MODELYARD_HOME"] = str(home)
    out["MODELYARD_IDENTITY"] = "cli-user"
    return out


def yard(home: Path, *args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [YARD, *args], env=_env(home), cwd=cwd, capture_output=True, text=True, timeout=180,
        check=False,
    )  # fmt: skip


def test_monitor_check_without_rules_names_the_table_to_add(tmp_path: Path) -> None:
    proc = yard(tmp_path / "home", "monitor", "check", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == "No alert rules; add [[monitoring.alerts.rules]] to modelyard.toml.\n"


def test_help_text_names_the_rules_table(tmp_path: Path) -> None:
    proc = yard(tmp_path / "home", "monitor", "check", "--help", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert "alert rule (the monitoring.alerts.rules tables of" in " ".join(proc.stdout.split())
    assert "([])" not in proc.stdout


def test_monitor_log_with_30_inputs_keeps_headers_whole_and_says_what_it_left_out(
    tmp_path: Path,
) -> None:
    home = tmp_path / "home"
    rng = np.random.default_rng(0)
    inputs = pd.DataFrame({f"feature_{i:02d}": rng.normal(size=3) for i in range(30)})
    now = datetime.now(UTC)
    write_log(home / "predictions", "wide", inputs, [now - timedelta(minutes=m) for m in (1, 2, 3)],
              model="wide", version="1", predict=np.array([0, 1, 0]))  # fmt: skip
    proc = yard(home, "monitor", "log", "wide", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert max(len(line) for line in lines[:-1]) <= 160  # the table: the width Rich uses piped
    header = next(line for line in lines if "request_id" in line)
    shown = re.findall(r"in_feature_\d\d", header)
    for column in ("time", "route", "version", "latency_ms", "out_predict", *shown):
        assert re.search(rf"\b{column}\b", header), column  # whole, on the header line
    assert 1 <= len(shown) < 30
    left_out = [f"in_feature_{i:02d}" for i in range(len(shown), 30)]
    assert shown == [f"in_feature_{i:02d}" for i in range(len(shown))]
    listed = ", ".join(left_out[:8]) + (
        f" and {len(left_out) - 8} more" if len(left_out) > 8 else ""
    )
    assert lines[-1] == (
        f"{len(left_out)} of 30 input columns not shown: {listed}; use --json for every column."
    )
    body = [line for line in lines[lines.index(header) + 2 :] if line.startswith("│")]
    assert len(body) == 3  # one line per logged row: nothing folded


@pytest.fixture(scope="module")
def wide_files(tmp_path_factory: pytest.TempPathFactory) -> Path:
    import skops.io
    from sklearn.dummy import DummyClassifier

    path = tmp_path_factory.mktemp("wide")
    frame = pd.DataFrame({f"c{i:02d}": [0.0, 1.0, 2.0, 3.0] for i in range(31)})
    skops.io.dump(DummyClassifier().fit(frame, [0, 1, 0, 1]), path / "model.skops")
    frame.to_csv(path / "wide.csv", index=False)
    return path


def test_a_missing_target_lists_20_columns_and_how_many_more(
    tmp_path: Path, wide_files: Path
) -> None:
    proc = yard(
        tmp_path / "home", "models", "register", str(wide_files / "model.skops"), "--name", "w",
        "--data", str(wide_files / "wide.csv"), "--target", "label", cwd=tmp_path,
    )  # fmt: skip
    shown = ", ".join(f"c{i:02d}" for i in range(20))
    assert proc.returncode == 1
    assert proc.stderr == (
        f"error: The data has no target column 'label' (columns: {shown} and 11 more); pass "
        "--target with one of them.\n"
    )
