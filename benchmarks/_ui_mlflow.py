"""The MLflow side of ``benchmarks/ui.py``: MLflow 3 in its own virtualenv under the benchmark's
home, the seeded registry's content imported into a SQLite backend, a real ``mlflow server``,
and the REST calls behind the MLflow UI's model list, model page and version page."""

from __future__ import annotations

import json
import os
import subprocess
from dataclasses import asdict
from pathlib import Path
from typing import Any

import _harness
import _ui_http
import _ui_seed
import httpx

SPEC = "mlflow>=3,<4"
IMPORT = Path(__file__).resolve().parent / "_ui_peers" / "mlflow_import.py"


def export(home: Path) -> list[dict[str, Any]]:
    """Every model's versions (number, metrics, params, tags, author, time) and aliases, read
    back from the seeded registry through ``Registry.search_versions``."""
    from modelyard.registry import Registry

    registry = Registry(_ui_seed.settings_for(home))
    by_model: dict[str, dict[str, Any]] = {}
    page = 1
    while True:
        result = registry.search_versions(page=page, page_size=1000)
        for v in result.items:
            model = by_model.setdefault(v.name, {"name": v.name, "versions": [], "aliases": {}})
            model["versions"].append({
                "version": v.version, "metrics": v.metrics, "params": v.params,
                "tags": v.tags, "created_by": v.created_by,
                "created_ms": int(v.created_at.timestamp() * 1000),
            })  # fmt: skip
            for alias in v.aliases:
                model["aliases"][alias] = v.version
        if page * 1000 >= result.total:
            break
        page += 1
    registry.close()
    return sorted(by_model.values(), key=lambda m: m["name"])


def prepare(home: Path, size: _ui_seed.Size, venv: Path) -> tuple[Path, Path, dict[str, Any]]:
    """MLflow's virtualenv (``venv``) and its SQLite database holding the seeded content (made
    once per home and size). Returns the venv's python, the database and the import's report."""
    python = _harness.ensure_venv(venv, [SPEC])
    folder = home / "mlflow"
    database = folder / "mlflow.db"
    marker = folder / "imported.json"
    if marker.exists() and json.loads(marker.read_text()).get("size") == asdict(size):
        return python, database, json.loads(marker.read_text())
    folder.mkdir(parents=True, exist_ok=True)
    database.unlink(missing_ok=True)
    content = folder / "content.json"
    content.write_text(json.dumps(export(home)))
    done = subprocess.run(
        [str(python), str(IMPORT), str(content), f"sqlite:///{database}", str(folder / "art")],
        capture_output=True, text=True, check=False, timeout=1800,
    )  # fmt: skip
    if done.returncode != 0:
        raise RuntimeError(f"MLflow import failed:\n{done.stderr[-3000:]}")
    info = {"size": asdict(size), **json.loads(done.stdout.strip().splitlines()[-1])}
    marker.write_text(json.dumps(info))
    return python, database, info


def version_of(python: Path) -> str:
    done = subprocess.run(
        [str(python), "-c", "import mlflow; print(mlflow.__version__)"],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    return done.stdout.strip()


def calls(model: str, version: int, page_size: int) -> dict[str, tuple[str, dict[str, Any]]]:
    """The REST calls the MLflow UI makes for the pages compared."""
    api = "/api/2.0/mlflow"
    return {
        "models list": (f"{api}/registered-models/search", {"max_results": page_size}),
        "version list": (
            f"{api}/model-versions/search",
            {"filter": f"name='{model}'", "max_results": page_size},
        ),
        "one version": (f"{api}/model-versions/get", {"name": model, "version": str(version)}),
    }


def measure(
    home: Path, size: _ui_seed.Size, *, model: str, version: int, page_size: int, warmup: int,
    fetches: int, core: int | None, venv: Path,
) -> dict[str, Any]:  # fmt: skip
    python, database, imported = prepare(home, size, venv)
    port = _ui_http.free_port()
    command = _ui_http.pinned([
        str(python.parent / "mlflow"), "server", "--backend-store-uri", f"sqlite:///{database}",
        "--default-artifact-root", str(database.parent / "art"), "--host", "127.0.0.1",
        "--port", str(port), "--workers", "1",
    ], core)  # fmt: skip
    # MLflow starts uvicorn by name: its venv's bin must be on PATH (FIELD-NOTES)
    env = {"PATH": f"{python.parent}{os.pathsep}{os.environ.get('PATH', '')}"}
    base = f"http://127.0.0.1:{port}"
    results: dict[str, Any] = {"version": version_of(python), "imported": imported}
    with (
        _ui_http.serving(command, f"{base}/health", env=env, log=home / "mlflow-server.log"),
        httpx.Client(base_url=base, timeout=60) as client,
    ):
        check = client.get(*calls(model, version, page_size)["version list"][:1],
                           params=calls(model, version, page_size)["version list"][1])  # fmt: skip
        found = len(check.json().get("model_versions", []))
        results["check"] = f"{model}: {found} versions answered by model-versions/search"
        for name, (path, params) in calls(model, version, page_size).items():
            results[name] = {"call": f"GET {path}", "params": params,
                             **_ui_http.time_get(client, path, warmup=warmup, fetches=fetches,
                                                 params=params)}  # fmt: skip
    return results
