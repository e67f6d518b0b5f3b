"""Writing a generated folder whole or not at all: the files go to a hidden sibling first, which
takes the folder's place once every file is written (``yard build``, ``yard k8s``,
``yard observability``)."""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
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


@contextmanager
def staged_folder(out: Path) -> Iterator[Path]:
    """A hidden sibling of ``out`` to write into. Leaving the block without an error, it takes
    ``out``'s place (a previous ``out`` is removed only once the new one is in); on an error it
    is removed, with any parent folders made for it, and ``out`` stays as it was."""
    out = out.absolute()
    created = _make_parents(out.parent)
    try:
        # mkdtemp's 0700 would hide the files from the user's group: the modes of a new folder
        staging = Path(tempfile.mkdtemp(prefix=f".{out.name}.", suffix=".tmp", dir=out.parent))
        staging.chmod(0o755)
    except OSError as exc:
        raise InvalidInputError(f"Cannot write {out}: {exc.strerror}.") from None
    try:
        yield staging
        _swap_into_place(staging, out)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        if created is not None:
            shutil.rmtree(created, ignore_errors=True)
        raise


def write_folder(out: Path, files: dict[str, str], *, force: bool) -> None:
    """Make ``out`` hold exactly ``files`` (name -> text). With ``force`` a non-empty ``out`` is
    replaced; if anything fails, ``out`` is left as it was and no temporary folder remains."""
    check_output_dir(out, force=force)
    with staged_folder(out) as staging:
        for name, text in files.items():
            (staging / name).write_text(text, encoding="utf-8")


def _make_parents(parent: Path) -> Path | None:
    """Create ``parent`` when missing; returns the topmost folder created (to undo), if any."""
    missing = None
    for folder in (parent, *parent.parents):
        if folder.exists():
            break
        missing = folder
    if missing is not None:
        try:
            parent.mkdir(parents=True)
        except OSError as exc:
            raise InvalidInputError(f"Cannot create {parent}: {exc.strerror}.") from None
    return missing


def _swap_into_place(staging: Path, out: Path) -> None:
    if not out.exists():
        staging.rename(out)
        return
    old = out.with_name(f".{out.name}.{staging.name}.old")
    out.rename(old)
    try:
        staging.rename(out)
    except BaseException:
        old.rename(out)
        raise
    shutil.rmtree(old, ignore_errors=True)
