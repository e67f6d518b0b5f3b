"""Writing a generated folder whole or not at all: the files go to a hidden sibling first, which is
renamed into place once every file is written."""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

from modelyard.errors import AlreadyExistsError, InvalidInputError


def check_output_dir(out: Path, *, force: bool) -> None:
    """Fail before any work when ``out`` cannot become the generated folder."""
    if out.exists() and not out.is_dir():
        raise InvalidInputError(f"Output path '{out}' is a file; give a folder with -o.")
    if out.is_dir() and any(out.iterdir()) and not force:
        raise AlreadyExistsError(
            f"Output folder '{out}' is not empty; pass --force to replace it or choose another -o."
        )


def write_folder(out: Path, files: dict[str, str], *, force: bool) -> None:
    """Make ``out`` hold exactly ``files`` (name -> text). With ``force`` a non-empty ``out`` is
    replaced; if anything fails, ``out`` is left as it was and no temporary folder remains."""
    check_output_dir(out, force=force)
    out.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    old: Path | None = None
    try:
        for name, text in files.items():
            (staging / name).write_text(text, encoding="utf-8")
        staging.chmod(0o755)  # mkdtemp's 0700 would hide the manifests from the user's group
        if out.exists():
            old = Path(tempfile.mkdtemp(prefix=f".{out.name}.old.", dir=out.parent))
            os.replace(out, old)  # over the empty folder mkdtemp made
        os.replace(staging, out)
    except BaseException:
        if old is not None and not out.exists():
            os.replace(old, out)
            old = None
        shutil.rmtree(staging, ignore_errors=True)
        raise
    finally:
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
