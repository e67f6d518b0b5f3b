"""Lineage of a registered version: the data, the code commit and the environment it came from."""

from __future__ import annotations

import logging
import platform
import subprocess
import time
from collections.abc import Iterable
from importlib import metadata
from pathlib import Path

from modelyard.core.types import DatasetFingerprint, DataSource, Lineage

__all__ = [
    "DEFAULT_PACKAGES",
    "GIT_CACHE_S",
    "GIT_TIMEOUT_S",
    "LineageCollector",
    "collect_lineage",
]

logger = logging.getLogger(__name__)

DEFAULT_PACKAGES = ("numpy", "pandas", "scikit-learn", "modelyard")
"""Always recorded when installed."""
GIT_TIMEOUT_S = 2.0
GIT_CACHE_S = 5.0
"""How long a collector reuses what git said about a folder (two git processes cost ~10 ms)."""


class LineageCollector:
    """``collect_lineage`` with memory: package versions are read once per process and git's
    answer for a folder is reused for ``GIT_CACHE_S`` seconds, so a loop that registers many
    versions does not start two git processes for each."""

    def __init__(self) -> None:
        self._versions: dict[str, str | None] = {}
        self._git: dict[Path | None, tuple[float, str | None, bool | None]] = {}

    def collect(
        self,
        *,
        dataset: DatasetFingerprint | None,
        packages: Iterable[str],
        cwd: Path | None = None,
        source: str | None = None,
        data_sources: tuple[DataSource, ...] = (),
    ) -> Lineage:
        now = time.monotonic()
        cached = self._git.get(cwd)
        if cached is None or now - cached[0] > GIT_CACHE_S:
            cached = (now, *_git_state(cwd))
            self._git[cwd] = cached
        return Lineage(
            dataset=dataset,
            data_sources=data_sources,
            git_commit=cached[1],
            git_dirty=cached[2],
            python=platform.python_version(),
            packages=self._package_versions([*DEFAULT_PACKAGES, *packages]),
            source=source,
        )

    def _package_versions(self, names: Iterable[str]) -> dict[str, str]:
        out: dict[str, str] = {}
        for raw in names:
            name = raw.strip()
            if not name or name in out:
                continue
            if name not in self._versions:
                try:
                    self._versions[name] = metadata.version(name)
                except metadata.PackageNotFoundError:
                    self._versions[name] = None
            version = self._versions[name]
            if version is not None:
                out[name] = version
        return dict(sorted(out.items()))


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
    return LineageCollector().collect(dataset=dataset, packages=packages, cwd=cwd, source=source)


def _git_state(cwd: Path | None) -> tuple[str | None, bool | None]:
    commit = _git(["rev-parse", "HEAD"], cwd)
    dirty: bool | None = None
    if commit is not None:
        status = _git(["--no-optional-locks", "status", "--porcelain"], cwd)
        dirty = None if status is None else status != ""
    return commit or None, dirty


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
