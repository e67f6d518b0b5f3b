"""What every benchmark script records and prints the same way: the machine, the commit, and the
result file. Imported by name (``import _harness``): each script runs with this folder first on
``sys.path``."""

from __future__ import annotations

import contextlib
import json
import os
import platform
import subprocess
import sys
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent


def machine(**extra: Any) -> dict[str, Any]:
    """Platform, CPU model and count, Python version, and the script's own ``extra`` fields."""
    cpu = ""
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    return {"platform": platform.platform(), "cpu": cpu, "cpus": os.cpu_count(),
            "python": platform.python_version(), **extra}  # fmt: skip


def git_commit() -> dict[str, Any]:
    """The commit measured, and whether the tree had uncommitted changes."""

    def git(*a: str) -> str:
        done = subprocess.run(["git", *a], cwd=REPO, capture_output=True, text=True, check=False)
        return done.stdout.strip()

    return {"commit": git("rev-parse", "HEAD"), "dirty": bool(git("status", "--porcelain"))}


def shown(path: Path) -> str:
    """``path`` relative to the repository when it is inside it."""
    return str(path.relative_to(REPO)) if path.is_relative_to(REPO) else str(path)


def write_report(path: Path, report: dict[str, Any]) -> None:
    """Write the result JSON and say where."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(report, indent=2) + "\n")
    print(f"\nwrote {shown(path)}")


def ensure_venv(env: Path, specs: list[str]) -> Path:
    """A virtualenv at ``env`` with ``specs`` installed (uv beside this interpreter, else pip),
    made once: a marker file holding the specs makes reruns free. Returns its python."""
    python = env / "bin" / "python"
    marker = env / ".bench-specs"
    wanted = "\n".join(specs)
    if python.exists() and marker.exists() and marker.read_text() == wanted:
        return python
    print(f"  installing {' '.join(specs)} into {shown(env)} ...", flush=True)
    if not python.exists():
        subprocess.run([sys.executable, "-m", "venv", str(env)], check=True, timeout=300)
    uv = Path(sys.executable).parent / "uv"
    installer = [str(uv), "pip", "install", "-q", "--python", str(python)]
    if not uv.exists():
        installer = [str(python), "-m", "pip", "install", "-q"]
    subprocess.run([*installer, *specs], check=True, timeout=1200)
    marker.write_text(wanted)
    return python
