"""DVC-tracked files as training data, through DVC's own Python API (``dvc.api``).

A file inside a DVC repository that a ``.dvc`` file or a ``dvc.lock`` tracks is read as DVC
tracks it, and ``dvc://<path>`` (with ``version=<git rev>``) reads it as of a git revision. What
was read is recorded as a ``DataSource``: the DVC md5, the default remote and the object's URL
there, the repository and the git revision whose ``.dvc`` file holds that md5 (none when the
workspace is ahead of the last commit), so that ``dvc get REPO PATH --rev REV`` fetches the same
bytes again. The object must be on the remote (``dvc push``): a version whose data nobody else
can fetch is refused with that next step, and so is an unreachable remote.

``tracked_candidate`` looks for the ``.dvc`` folder and the ``.dvc`` / ``dvc.lock`` files
without importing DVC (about 2 s); DVC is imported only for a file that may be tracked.
"""

from __future__ import annotations

import hashlib
import logging
import subprocess
from pathlib import Path
from typing import Any

from modelyard.core.types import DataSource
from modelyard.errors import ConfigError, InvalidInputError, StorageError

__all__ = [
    "EXTRA_HINT", "SCHEME", "is_dvc_uri", "resolve_dvc", "revision_key", "tracked_candidate",
]  # fmt: skip

logger = logging.getLogger(__name__)

SCHEME = "dvc://"
EXTRA_HINT = "pip install 'modelyard[dvc]'"
_GIT_TIMEOUT_S = 5.0


def is_dvc_uri(path: object) -> bool:
    return isinstance(path, str) and path.startswith(SCHEME)


def tracked_candidate(path: object) -> bool:
    """Whether ``path`` is a file in a DVC repository with a ``.dvc`` file beside it or a
    ``dvc.lock`` on the way up to the repository's root (DVC itself decides later)."""
    if not isinstance(path, str | Path) or "://" in str(path):
        return False
    file = Path(path).expanduser().resolve()
    root = _repo_root(file)
    if root is None:
        return False
    if file.with_name(file.name + ".dvc").is_file():
        return True
    return any((folder / "dvc.lock").is_file() for folder in _folders(file.parent, root))


def resolve_dvc(path: str, rev: str | None) -> tuple[Path | bytes, DataSource | None]:
    """The file to read (its workspace path, or its bytes as of ``rev``) and the source to
    record; no source for a plain path that DVC does not track after all."""
    explicit = is_dvc_uri(path)
    file = Path(path.removeprefix(SCHEME)).expanduser().resolve()
    root = _repo_root(file)
    if root is None:
        raise InvalidInputError(
            f"{path!r} is not inside a DVC repository; run 'dvc init' and 'dvc add' there, or "
            "pass a plain path."
        )
    rel = file.relative_to(root).as_posix()
    try:
        api = _dvc_api()
    except ConfigError:
        if explicit or rev is not None:
            raise
        # a plain path that loaded before the DVC bridge existed keeps loading without DVC
        logger.warning(
            "%s is tracked by DVC, which is not installed: read as a plain file, and its DVC "
            "md5 is not recorded in the lineage; run %s to record it.", rel, EXTRA_HINT,
        )  # fmt: skip
        return file, None
    info = _info(api, root, rel, rev)
    if info is None:
        if explicit or rev is not None:
            raise InvalidInputError(
                f"{rel!r} is not tracked by DVC in {root}"
                + (f" at revision {rev!r}" if rev else "")
                + f"; run 'dvc add {rel}' and commit the .dvc file, or pass a plain path."
            )
        return file, None
    md5 = str(info["md5"])
    if rev is None and file.is_file() and _md5(file) != md5:
        raise InvalidInputError(
            f"{rel!r} differs from what DVC tracks (md5 {md5}); run 'dvc add {rel}' to track "
            "this content or 'dvc checkout' to restore it."
        )
    url, remote, remote_url = _remote(api, root, rel, rev)
    _check_pushed(rel, md5, url, remote, remote_url)
    commit = _git(root, "rev-parse", "--verify", f"{rev or 'HEAD'}^{{commit}}")
    if commit is not None and rev is None:
        committed = _info(api, root, rel, commit)
        if committed is None or committed.get("md5") != md5:
            commit = None  # the workspace is ahead of the last commit
    source = DataSource(
        kind="dvc", uri=f"{SCHEME}{root / rel}", repo=_git(root, "remote", "get-url", "origin")
        or str(root), path=rel, rev=commit, md5=md5, remote=remote, remote_url=remote_url,
        url=url,
    )  # fmt: skip
    if rev is None and file.is_file():
        return file, source
    return _read_bytes(api, root, rel, rev, remote_url), source


def revision_key(uri: str, rev: str | None) -> str:
    """A cache key for ``dvc://`` ``uri`` at ``rev``: the commit the revision names, or the
    ``.dvc`` file and the workspace file's content when there is none."""
    file = Path(uri.removeprefix(SCHEME)).expanduser().resolve()
    digest = hashlib.sha256(str(file).encode())
    if rev is not None:
        root = _repo_root(file)
        commit = _git(root, "rev-parse", "--verify", f"{rev}^{{commit}}") if root else None
        if commit is None:
            raise InvalidInputError(
                f"{rev!r} is not a git revision of the repository holding {uri!r}; pass a "
                "tag, branch or commit."
            )
        digest.update(commit.encode())
        return digest.hexdigest()
    for part in (file.with_name(file.name + ".dvc"), file):
        if part.is_file():
            digest.update(part.read_bytes())
    return digest.hexdigest()


def _info(api: Any, root: Path, rel: str, rev: str | None) -> dict[str, Any] | None:
    try:
        info = api.DVCFileSystem(str(root), rev=rev).info(rel)
    except FileNotFoundError:
        return None
    except Exception as exc:  # DVC's own errors (an unknown revision, a broken .dvc file)
        raise InvalidInputError(
            f"DVC cannot read {rel!r} in {root}" + (f" at revision {rev!r}" if rev else "")
            + f": {exc}; check the path and the revision."
        ) from None  # fmt: skip
    tracked = info.get("dvc_info") or {}
    md5 = info.get("md5") or tracked.get("md5")  # the workspace's info keeps it in dvc_info
    if not md5 or info.get("type") != "file":
        return None
    return {**info, "md5": md5}


def _remote(api: Any, root: Path, rel: str, rev: str | None) -> tuple[str, str, str]:
    from dvc.config import NoRemoteError

    try:
        url = str(api.get_url(rel, repo=str(root), rev=rev))
    except NoRemoteError:
        raise ConfigError(
            f"The DVC repository {root} has no default remote, so {rel!r} could not be fetched "
            "again; run 'dvc remote add -d NAME URL' and 'dvc push'."
        ) from None
    from dvc.repo import Repo

    with Repo(str(root)) as repo:
        name = str(repo.config["core"].get("remote", ""))
    remote_url = url.split("/files/md5/", maxsplit=1)[0] if "/files/md5/" in url else url
    return url, name, remote_url


def _check_pushed(rel: str, md5: str, url: str, remote: str, remote_url: str) -> None:
    from fsspec.core import url_to_fs

    try:
        fs, root_path = url_to_fs(remote_url)
        reachable = fs.isdir(root_path)
        present = reachable and fs.exists(url_to_fs(url)[1])
    except (OSError, ValueError, ImportError) as exc:
        raise StorageError(
            f"DVC remote {remote!r} at {remote_url} cannot be reached ({exc}); check it with "
            "'dvc remote list' and your network."
        ) from None
    if not reachable:
        raise StorageError(
            f"DVC remote {remote!r} at {remote_url} cannot be reached (no such folder); check "
            "it with 'dvc remote list', or create it and run 'dvc push'."
        )
    if not present:
        raise InvalidInputError(
            f"{rel!r} (md5 {md5}) is not on DVC remote {remote!r} ({remote_url}), so it could "
            "not be fetched again; run 'dvc push'."
        )


def _read_bytes(api: Any, root: Path, rel: str, rev: str | None, remote_url: str) -> bytes:
    try:
        with api.open(rel, repo=str(root), rev=rev, mode="rb") as handle:
            return bytes(handle.read())
    except Exception as exc:  # DVC's fetch errors
        raise StorageError(
            f"DVC could not fetch {rel!r} from {remote_url} ({exc}); check the remote with "
            "'dvc remote list' and run 'dvc push' where the data is."
        ) from None


def _repo_root(file: Path) -> Path | None:
    for folder in file.parents:
        if (folder / ".dvc").is_dir():
            return folder
    return None


def _folders(start: Path, root: Path) -> list[Path]:
    out = [start]
    while out[-1] != root and out[-1] != out[-1].parent:
        out.append(out[-1].parent)
    return out


def _md5(file: Path) -> str:
    digest = hashlib.md5(usedforsecurity=False)
    with file.open("rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _git(root: Path, *args: str) -> str | None:
    try:
        done = subprocess.run(
            ["git", *args], cwd=root, capture_output=True, text=True,
            timeout=_GIT_TIMEOUT_S, check=False,
        )  # fmt: skip
    except (OSError, subprocess.TimeoutExpired):
        return None
    return done.stdout.strip() or None if done.returncode == 0 else None


def _dvc_api() -> Any:
    try:
        import dvc.api
    except ImportError:
        raise ConfigError(f"Reading DVC-tracked files needs DVC; run {EXTRA_HINT}.") from None
    return dvc.api
