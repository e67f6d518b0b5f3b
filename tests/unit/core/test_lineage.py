from __future__ import annotations

import platform
import shutil
import subprocess
from importlib import metadata
from pathlib import Path

import pytest

from modelyard.core import lineage
from modelyard.core.lineage import collect_lineage
from modelyard.core.types import DatasetFingerprint

needs_git = pytest.mark.skipif(shutil.which("git") is None, reason="git is not installed")


def git(cwd: Path, *args: str) -> str:
    done = subprocess.run(
        ["git", "-c", "user.name=t", "-c", "user.email=t@example.com", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        check=True,
    )
    return done.stdout.strip()


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    git(tmp_path, "init", "-q")
    (tmp_path / "train.py").write_text("print('hi')\n")
    git(tmp_path, "add", "train.py")
    git(tmp_path, "commit", "-q", "-m", "first")
    return tmp_path


@needs_git
def test_a_clean_repository_gives_its_commit(repo: Path) -> None:
    dataset = DatasetFingerprint(sha256="ab" * 32, rows=3, schema={"a": "int64"})

    found = collect_lineage(dataset=dataset, packages=[], cwd=repo, source="train.py")

    assert found.git_commit == git(repo, "rev-parse", "HEAD")
    assert found.git_dirty is False
    assert found.dataset == dataset
    assert found.source == "train.py"
    assert found.python == platform.python_version()


@needs_git
def test_changed_or_untracked_files_make_it_dirty(repo: Path) -> None:
    (repo / "train.py").write_text("print('changed')\n")
    assert collect_lineage(dataset=None, packages=[], cwd=repo).git_dirty is True

    git(repo, "checkout", "--", "train.py")
    (repo / "notes.txt").write_text("new\n")
    assert collect_lineage(dataset=None, packages=[], cwd=repo).git_dirty is True


@needs_git
def test_outside_a_repository_there_is_no_commit(tmp_path: Path) -> None:
    outside = tmp_path / "plain"
    outside.mkdir()
    (outside / ".git").write_text("gitdir: /nonexistent\n")  # stops git searching upwards

    found = collect_lineage(dataset=None, packages=[], cwd=outside)

    assert (found.git_commit, found.git_dirty) == (None, None)


def test_without_git_there_is_no_commit(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    def missing(*args: object, **kwargs: object) -> None:
        raise FileNotFoundError("git")

    monkeypatch.setattr(lineage.subprocess, "run", missing)

    found = collect_lineage(dataset=None, packages=[], cwd=tmp_path)

    assert (found.git_commit, found.git_dirty) == (None, None)


def test_a_hanging_git_is_given_up(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    seen: list[float] = []

    def hang(*args: object, timeout: float, **kwargs: object) -> None:
        seen.append(timeout)
        raise subprocess.TimeoutExpired("git", timeout)

    monkeypatch.setattr(lineage.subprocess, "run", hang)

    found = collect_lineage(dataset=None, packages=[], cwd=tmp_path)

    assert found.git_commit is None
    assert seen == [lineage.GIT_TIMEOUT_S]


def test_package_versions_always_include_the_defaults_and_skip_missing() -> None:
    found = collect_lineage(
        dataset=None, packages=["msgspec", " msgspec ", "no-such-package-xyz", ""], cwd=None
    )

    assert found.packages["numpy"] == metadata.version("numpy")
    assert found.packages["pandas"] == metadata.version("pandas")
    assert found.packages["scikit-learn"] == metadata.version("scikit-learn")
    assert found.packages["msgspec"] == metadata.version("msgspec")
    assert "no-such-package-xyz" not in found.packages
    assert list(found.packages) == sorted(found.packages)
