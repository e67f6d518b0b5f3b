"""A wheel of modelyard for the build context: modelyard is not on PyPI, so the image installs
the wheel ``yard build`` puts beside requirements.txt.

Given ``--wheel PATH``, that wheel (its version must be the one installed here, as the pins are
read from the installed metadata). Otherwise one is built from the source checkout modelyard is
installed from (an editable or ``pip install DIR`` install records it in ``direct_url.json``) with
``pip wheel --no-deps``, which builds it with the project's own backend (hatchling) in an isolated
environment; or, when modelyard was installed from a wheel file that is still there, that wheel.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import tempfile
from importlib import metadata
from pathlib import Path
from urllib.parse import unquote, urlparse

from modelyard.errors import ConfigError, InvalidInputError

_BUILD_TIMEOUT_S = 600
_HINT = (
    "pass --wheel PATH (a modelyard wheel: 'pip wheel --no-deps DIR' in a modelyard checkout "
    "builds one)"
)


def copy_wheel(wheel: Path | None, dest: Path) -> Path:
    """Put a modelyard wheel into the folder ``dest``; returns its path there."""
    installed = metadata.version("modelyard")
    if wheel is None:
        source = _installed_from(installed)
        if source.suffix == ".whl":
            wheel = source
        else:
            return _build_wheel(source, dest, installed)
    if not wheel.is_file() or wheel.suffix != ".whl":
        raise InvalidInputError(f"--wheel {str(wheel)!r} is not a wheel file (*.whl); {_HINT}.")
    parts = wheel.name.split("-")
    if len(parts) < 3 or parts[0] != "modelyard":
        raise InvalidInputError(f"--wheel {wheel.name!r} is not a modelyard wheel; {_HINT}.")
    if parts[1] != installed:
        raise InvalidInputError(
            f"--wheel {wheel.name!r} is modelyard {parts[1]} but {installed} is installed here "
            "(the pins come from the installed one); give a wheel of the installed version."
        )
    dest.mkdir(parents=True, exist_ok=True)
    return Path(shutil.copy2(wheel, dest / wheel.name))


def _installed_from(version: str) -> Path:
    """The source checkout modelyard was installed from, or the wheel file when that is still
    where it was installed from (``direct_url.json``, PEP 610)."""
    raw = metadata.distribution("modelyard").read_text("direct_url.json")
    record = json.loads(raw) if raw else {}
    url = urlparse(record.get("url", ""))
    path = Path(unquote(url.path)) if url.scheme == "file" else None
    if path is not None and "dir_info" in record:
        if (path / "pyproject.toml").is_file():
            return path
        raise ConfigError(
            f"modelyard's source checkout {path} (where it was installed from) is gone; {_HINT}."
        )
    if path is not None and path.suffix == ".whl" and path.is_file():
        return path
    raise ConfigError(
        f"modelyard {version} was installed from a wheel that is no longer at hand, not from a "
        f"source checkout, so yard build cannot make one; {_HINT}."
    )


def _build_wheel(source: Path, dest: Path, version: str) -> Path:
    import importlib.util

    if importlib.util.find_spec("pip") is None:
        raise ConfigError(
            f"pip is not installed here, so yard build cannot build a wheel; {_HINT}."
        )
    with tempfile.TemporaryDirectory(prefix="modelyard-wheel-") as out:
        done = subprocess.run(
            [sys.executable, "-m", "pip", "wheel", "--no-deps", "--quiet",
             "--disable-pip-version-check", "--wheel-dir", out, str(source)],
            capture_output=True, text=True, timeout=_BUILD_TIMEOUT_S, check=False,
        )  # fmt: skip
        built = sorted(Path(out).glob(f"modelyard-{version}-*.whl"))
        if done.returncode != 0 or not built:
            last = (done.stderr.strip().splitlines() or ["no wheel was written"])[-1]
            raise ConfigError(
                f"Building a modelyard wheel from {source} failed ({last.strip()}); {_HINT}."
            )
        dest.mkdir(parents=True, exist_ok=True)
        return Path(shutil.move(built[0], dest / built[0].name))
