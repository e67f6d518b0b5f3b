"""Writing a generated folder whole or not at all: the files go to a hidden sibling first, which
takes the folder's place once every file is written (``yard build``, ``yard k8s``,
``yard observability``).

Each such folder holds ``MARKER``, naming the command that wrote it and every path it wrote.
``--force`` replaces a folder only while it holds that command's marker and nothing the marker
does not list: a folder of the user's (a checkout, ``.git`` and all) is never deleted."""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from modelyard.errors import AlreadyExistsError, InvalidInputError

#: The file in a generated folder that names its command and lists the paths it wrote.
MARKER = ".yard-generated"


def check_output_dir(out: Path, *, force: bool, command: str) -> None:
    """Fail before any work when ``out`` cannot become the folder ``command`` (``yard k8s``...)
    generates: a file, a non-empty folder without ``force``, or with ``force`` a folder that
    holds anything ``command`` did not write there."""
    if out.exists() and not out.is_dir():
        raise InvalidInputError(f"Output path '{out}' is a file; give a folder with -o.")
    if not out.is_dir() or not any(out.iterdir()):
        return
    if not force:
        raise AlreadyExistsError(
            f"Output folder '{out}' is not empty; pass --force to replace it or choose another -o."
        )
    written = _read_marker(out, command)
    if written is None:
        raise AlreadyExistsError(
            f"Output folder '{out}' is not one {command} wrote (no {MARKER} of it inside), so "
            "--force leaves it alone; remove it yourself or choose another -o."
        )
    others = sorted(p for p in _listing(out) if p not in written and p != MARKER)
    if others:
        more = f" and {len(others) - 1} more" if len(others) > 1 else ""
        raise AlreadyExistsError(
            f"Output folder '{out}' holds {others[0]}{more}, which {command} did not write, so "
            "--force leaves it alone; move them out or choose another -o."
        )


@contextmanager
def staged_folder(out: Path, *, command: str) -> Iterator[Path]:
    """A hidden sibling of ``out`` to write into. Leaving the block without an error, ``MARKER``
    is added (``command`` and what the block wrote) and the folder takes ``out``'s place (a
    previous ``out`` is removed only once the new one is in); on an error it is removed, with
    any parent folders made for it, and ``out`` stays as it was."""
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
        _write_marker(staging, command)
        _swap_into_place(staging, out)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        if created is not None:
            shutil.rmtree(created, ignore_errors=True)
        raise


def write_folder(out: Path, files: dict[str, str], *, force: bool, command: str) -> None:
    """Make ``out`` hold ``files`` (name -> text) and ``MARKER``. With ``force`` an ``out`` that
    ``command`` wrote before is replaced (see ``check_output_dir``); if anything fails, ``out``
    is left as it was and no temporary folder remains."""
    check_output_dir(out, force=force, command=command)
    with staged_folder(out, command=command) as staging:
        for name, text in files.items():
            (staging / name).write_text(text, encoding="utf-8")


def _marker_header(command: str) -> str:
    return f"# Written by {command}; {command} --force replaces this folder while it holds only:"


def _listing(folder: Path) -> list[str]:
    """Every path under ``folder``, relative, with '/' (symbolic links listed, not followed)."""
    return [p.relative_to(folder).as_posix() for p in folder.rglob("*")]


def _write_marker(folder: Path, command: str) -> None:
    paths = sorted(_listing(folder))
    (folder / MARKER).write_text("\n".join([_marker_header(command), *paths]) + "\n")


def _read_marker(folder: Path, command: str) -> set[str] | None:
    """The paths ``command``'s marker in ``folder`` lists; None without one."""
    marker = folder / MARKER
    try:
        lines = marker.read_text(encoding="utf-8").splitlines() if marker.is_file() else []
    except (OSError, UnicodeDecodeError):
        return None
    if not lines or lines[0] != _marker_header(command):
        return None
    return set(lines[1:])


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
