"""Lineage of a registered version: the data, the code commit and the environment it came from."""

from __future__ import annotations

import logging
import platform
import subprocess
from collections.abc import Iterable
from importlib import metadata
from pathlib import Path

from modelyard.core.types import DatasetFingerprint, Lineage

__all__ = ["DEFAULT_PACKAGES", "GIT_TIMEOUT_S", "collect_lineage"]

logger = logging.getLogger(__name__)

DEFAULT_PACKAGES = ("numpy", "pandas", "scikit-learn", "modelyard")
"""Always recorded when installed."""
GIT_TIMEOUT_S = 2.0


def collect_lineage(
    *,
    dataset: DatasetFingerprint | None,
    packages: Iterable[str],
    cwd: Path | None = None,
    source: str | None = None,
) -> Lineage:
    """Record the dataset, the git commit of ``cwd`` and the installed versions of ``packages``.

    ``git_commit`` and ``git_dirty`` are ``None`` outside a git work tree or without git; a tree
    with uncommitted changes or untracked files is dirty. Packages that are not installed are
    skipped; ``DEFAULT_PACKAGES`` are always included when installed.
    """
    commit = _git(["rev-parse", "HEAD"], cwd)
    dirty: bool | None = None
    if commit is not None:
        status = _git(["--no-optional-locks", "status", "--porcelain"], cwd)
        dirty = None if status is None else status != ""
    return Lineage(
        dataset=dataset,
        git_commit=commit or None,
        git_dirty=dirty,
        python=platform.python_version(),
        packages=_versions([*DEFAULT_PACKAGES, *packages]),
        source=source,
    )


def _git(args: list[str], cwd: Path | None) -> str | None:
    """Run git and return its stripped stdout, or ``None`` if git is missing, fails or hangs."""
    try:
        done = subprocess.run(
            ["git", *args],
            cwd=cwd,
            capture_output=True,
            text=True,
            timeout=GIT_TIMEOUT_S,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        logger.debug("git %s failed in %s: %s", " ".join(args), cwd, exc)
        return None
    if done.returncode != 0:
        return None
    return done.stdout.strip()


def _versions(names: Iterable[str]) -> dict[str, str]:
    versions: dict[str, str] = {}
    for raw in names:
        name = raw.strip()
        if not name or name in versions:
            continue
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return dict(sorted(versions.items()))
