"""What the project folder shows: ``modelyard.toml``, the pipeline code (its steps and gates),
the tests, the CI workflows and the pinned requirements. Files are only read, never imported:
every hit is a ``path:line`` the report links to."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

from modelyard.assess.types import Evidence

__all__ = ["ProjectFacts", "read_project"]

_SKIP_DIRS = {".git", ".venv", "venv", "node_modules", "__pycache__", ".modelyard", "build", "dist"}
_MAX_FILES = 2000
_MAX_BYTES = 512 * 1024
_CI_FILES = (".gitlab-ci.yml", ".circleci/config.yml", "Jenkinsfile", "azure-pipelines.yml")
_LOCK_FILES = ("uv.lock", "poetry.lock", "Pipfile.lock", "pdm.lock", "pylock.toml")
_DEPENDENCY_BOTS = (
    ".github/dependabot.yml",
    ".github/dependabot.yaml",
    "renovate.json",
    ".github/renovate.json",
    ".renovaterc",
    ".renovaterc.json",
)
#: What a CI line or a pipeline line is evidence of (a regex on the line).
CI_PATTERNS = {
    # a test run, not the line that installs the runner
    "tests": re.compile(r"^(?!.*\binstall\b).*(\bpytest\b|python -m unittest|\btox\b|\bnox\b)"),
    "run": re.compile(r"\byard run\b"),
    "gate": re.compile(r"\byard gate\b"),
    "slices": re.compile(r"--slice\b"),
    "assess": re.compile(r"\byard assess\b"),
    "canary": re.compile(r"\byard deploy\b.*--canary\b|--mode[\s=]+canary"),
}
PIPELINE_PATTERNS = {
    "validate": re.compile(r"\bvalidate\("),
    "gate": re.compile(r"\bgate\("),
    "slices": re.compile(r"\bslices\s*="),
    "register": re.compile(r"\bregister\("),
    "canary": re.compile(r"\bdeploy_canary\("),
}
#: What a test file exercising each kind of code mentions.
TEST_PATTERNS = {
    "features": re.compile(r"\bvalidate\b|\bload_table\b|feature|transform|preprocess|constraint"),
    "model": re.compile(r"\btrain|\.fit\(|\.training\b"),
    "pipeline": re.compile(r"\brun\(\s*pipeline\.|pipelines import run\b"),
}


@dataclass(frozen=True, slots=True)
class ProjectFacts:
    root: Path | None
    config: Path | None = None
    config_lines: tuple[str, ...] = ()
    pipeline_files: tuple[str, ...] = ()
    tests: tuple[str, ...] = ()
    workflows: tuple[str, ...] = ()
    #: Evidence found, by key: ``ci:gate``, ``pipeline:validate``, ``test:model``, ...
    hits: dict[str, tuple[Evidence, ...]] = field(default_factory=dict)
    pinned: tuple[Evidence, ...] = ()
    unpinned: tuple[str, ...] = ()
    dependency_bot: tuple[Evidence, ...] = ()

    def found(self, key: str) -> tuple[Evidence, ...]:
        return self.hits.get(key, ())

    def config_line(self, pattern: str) -> str:
        """``modelyard.toml:N`` of the first line (not a comment) that the regular expression
        ``pattern`` matches; the file alone when none does."""
        name = self.config.name if self.config is not None else "modelyard.toml"
        found = re.compile(pattern)
        for number, line in enumerate(self.config_lines, start=1):
            if not line.lstrip().startswith("#") and found.search(line):
                return f"{name}:{number}"
        return name

    def rule_line(self, rule: str) -> str:
        """Where the alert rule named ``rule`` is written."""
        return self.config_line(rf"""^\s*name\s*=\s*["']{re.escape(rule)}["']""")


def read_project(root: Path | None) -> ProjectFacts:
    """Everything the collectors need from the folder ``root`` (``None``: no project folder)."""
    if root is None:
        return ProjectFacts(root=None)
    hits: dict[str, list[Evidence]] = {}
    files = _files(root)
    config = root / "modelyard.toml"
    lines = tuple(_text(config).splitlines()) if config.is_file() else ()
    pipelines = [p for p in files if p.suffix == ".py" and not _is_test(p, root)]
    pipeline_files = []
    for path in pipelines:
        text = _text(path)
        if "@pipeline" not in text:
            continue
        pipeline_files.append(_rel(path, root))
        _scan(path, root, text, PIPELINE_PATTERNS, prefix="pipeline", hits=hits, kind="pipeline")
    tests = [p for p in files if p.suffix == ".py" and _is_test(p, root)]
    for path in tests:
        _scan(
            path, root, _text(path), TEST_PATTERNS, prefix="test", hits=hits, kind="test", once=True
        )
    workflows = _workflows(root, files)
    for path in workflows:
        _scan(path, root, _text(path), CI_PATTERNS, prefix="ci", hits=hits, kind="ci")
    pinned, unpinned = _pins(root)
    bots = tuple(
        Evidence(kind="file", where=name, detail="dependency updates are proposed automatically")
        for name in _DEPENDENCY_BOTS
        if (root / name).is_file()
    )
    return ProjectFacts(
        root=root,
        config=config if config.is_file() else None,
        config_lines=lines,
        pipeline_files=tuple(pipeline_files),
        tests=tuple(_rel(p, root) for p in tests),
        workflows=tuple(_rel(p, root) for p in workflows),
        hits={k: tuple(v) for k, v in hits.items()},
        pinned=pinned,
        unpinned=unpinned,
        dependency_bot=bots,
    )


def _files(root: Path) -> list[Path]:
    found: list[Path] = []
    stack = [root]
    while stack and len(found) < _MAX_FILES:
        folder = stack.pop()
        try:
            entries = sorted(folder.iterdir())
        except OSError:
            continue
        for entry in entries:
            if entry.is_dir():
                if entry.name not in _SKIP_DIRS and not (
                    entry.name.startswith(".") and entry.name != ".github"
                ):
                    stack.append(entry)
            elif entry.is_file():
                found.append(entry)
    return sorted(found)


def _is_test(path: Path, root: Path) -> bool:
    parts = path.relative_to(root).parts
    return path.name.startswith("test_") or path.name.endswith("_test.py") or "tests" in parts[:-1]


def _workflows(root: Path, files: list[Path]) -> list[Path]:
    folder = root / ".github" / "workflows"
    out = [p for p in files if p.parent == folder and p.suffix in (".yml", ".yaml")]
    out += [root / name for name in _CI_FILES if (root / name).is_file()]
    return out


def _scan(
    path: Path,
    root: Path,
    text: str,
    patterns: dict[str, re.Pattern[str]],
    *,
    prefix: str,
    hits: dict[str, list[Evidence]],
    kind: str,
    once: bool = False,
) -> None:
    where = _rel(path, root)
    for number, line in enumerate(text.splitlines(), start=1):
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            continue
        for key, pattern in patterns.items():
            if pattern.search(line):
                bucket = hits.setdefault(f"{prefix}:{key}", [])
                if once and any(e.where.split(":")[0] == where for e in bucket):
                    continue
                bucket.append(
                    Evidence(kind=kind, where=f"{where}:{number}", detail=stripped[:160])  # type: ignore[arg-type]  # kind is one of the literals
                )


def _pins(root: Path) -> tuple[tuple[Evidence, ...], tuple[str, ...]]:
    """Pinned dependency files (a lock file, requirements with only ``==`` pins) and the
    requirement lines that are not pinned."""
    pinned = [
        Evidence(kind="file", where=name, detail="lock file: every dependency pinned")
        for name in _LOCK_FILES
        if (root / name).is_file()
    ]
    loose: list[str] = []
    for path in sorted(root.glob("requirements*.txt")):
        lines = [
            line.split("#")[0].strip()
            for line in _text(path).splitlines()
            if line.split("#")[0].strip() and not line.strip().startswith("-")
        ]
        bad = [line for line in lines if "==" not in line and "@" not in line]
        loose += [f"{path.name}: {line}" for line in bad]
        if lines and not bad:
            detail = f"{len(lines)} requirements, all pinned with =="
            pinned.append(Evidence(kind="file", where=path.name, detail=detail))
    return tuple(pinned), tuple(loose)


def _text(path: Path) -> str:
    try:
        if path.stat().st_size > _MAX_BYTES:
            return ""
        return path.read_text(errors="replace")
    except OSError:
        return ""


def _rel(path: Path, root: Path) -> str:
    return path.relative_to(root).as_posix()
