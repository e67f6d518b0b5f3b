"""Reading back the Dockerfile ``yard build`` writes: the final stage's instructions, as the
Docker builder would apply them (continuation lines joined, ENV values unquoted and expanded)."""

from __future__ import annotations

import json
import re
import shlex
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

HADOLINT = str(Path(sys.executable).parent / "hadolint")


def hadolint(dockerfile: Path) -> list[dict[str, object]]:
    """The real hadolint's findings at every level (style and info included), as JSON."""
    done = subprocess.run(
        [HADOLINT, "--format", "json", "--failure-threshold", "style", str(dockerfile)],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    findings: list[dict[str, object]] = json.loads(done.stdout)
    assert (done.returncode == 0) == (findings == []), done.stderr
    return findings


@dataclass
class Stage:
    base: str = ""
    env: dict[str, str] = field(default_factory=dict)
    labels: dict[str, str] = field(default_factory=dict)
    workdir: str = "/"
    user: str = ""
    expose: list[str] = field(default_factory=list)
    healthcheck: str = ""
    stopsignal: str = ""
    entrypoint: list[str] = field(default_factory=list)
    cmd: list[str] = field(default_factory=list)
    copies: list[str] = field(default_factory=list)
    runs: list[str] = field(default_factory=list)

    @property
    def command(self) -> list[str]:
        """What the container runs: ENTRYPOINT followed by CMD."""
        return [*self.entrypoint, *self.cmd]


def instructions(text: str) -> list[tuple[str, str]]:
    """``(INSTRUCTION, arguments)`` pairs, comments dropped and continuations joined."""
    out: list[tuple[str, str]] = []
    pending = ""
    for line in text.splitlines():
        if line.lstrip().startswith("#"):
            continue  # a comment, also one inside a continued instruction
        pending = f"{pending[:-1]} {line.strip()}" if pending.endswith("\\") else line.strip()
        if pending and not pending.endswith("\\"):
            word, _, rest = pending.partition(" ")
            out.append((word.upper(), rest.strip()))
            pending = ""
    return out


def final_stage(path: Path, base_env: dict[str, str] | None = None) -> Stage:
    """The last stage of the Dockerfile at ``path``; ENV values see ``base_env`` (the base
    image's environment, e.g. its PATH) and the ENV before them."""
    stage = Stage()
    for word, rest in instructions(path.read_text()):
        if word == "FROM":
            stage = Stage(base=rest.split()[0])
        elif word in ("ENV", "LABEL"):
            target = stage.env if word == "ENV" else stage.labels
            for token in shlex.split(rest):
                key, _, value = token.partition("=")
                target[key] = _expand(value, {**(base_env or {}), **stage.env})
        elif word == "WORKDIR":
            stage.workdir = rest
        elif word == "USER":
            stage.user = rest
        elif word == "EXPOSE":
            stage.expose = rest.split()
        elif word == "HEALTHCHECK":
            stage.healthcheck = rest
        elif word == "STOPSIGNAL":
            stage.stopsignal = rest
        elif word == "ENTRYPOINT":
            stage.entrypoint = json.loads(rest)
        elif word == "CMD":
            stage.cmd = json.loads(rest)
        elif word == "COPY":
            stage.copies.append(rest)
        elif word == "RUN":
            stage.runs.append(rest)
    return stage


def _expand(value: str, scope: dict[str, str]) -> str:
    """``$NAME`` and ``${NAME}`` replaced by their values (empty when unset), as Docker does."""
    return re.sub(r"\$\{?(\w+)\}?", lambda m: scope.get(m.group(1), ""), value)
