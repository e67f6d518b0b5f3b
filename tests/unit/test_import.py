"""``import modelyard`` has no side effects and loads no ML framework."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path


def test_import_is_light_and_touches_nothing(tmp_path: Path) -> None:
    home = tmp_path / "home"
    env = {**os.environ, "MODELYARD_HOME": str(home)}
    code = (
        "import json, sys, modelyard, modelyard.cli.main;"
        "heavy = ('sklearn', 'xgboost', 'lightgbm', 'onnxruntime', 'skops', 'pandas', 'torch',"
        " 'ray', 'sqlalchemy', 'alembic');"
        "print(json.dumps([m for m in heavy if m in sys.modules]))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True
    )
    assert json.loads(out.stdout) == []
    assert not home.exists()
