"""DVC-tracked files as training data, against a real DVC repository in tmp_path (git init, dvc
init, dvc add, a local folder as the remote, dvc push): the md5, the remote and the git revision
in the lineage, ``yard models show`` printing the ``dvc get`` command, and that command fetching
the same bytes again."""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import pytest
from sklearn.linear_model import LogisticRegression

from modelyard.errors import ConfigError, InvalidInputError, StorageError
from modelyard.pipelines import LocalExecutor, pipeline, run, step
from modelyard.pipelines.builtin import load_table, register
from modelyard.registry import Registry
from tests.integration._server import YARD, server_env

BIN = Path(YARD).parent
ENV = {**os.environ, "DVC_NO_ANALYTICS": "1", "PATH": f"{BIN}:{os.environ['PATH']}"}


def sh(cwd: Path, *args: str) -> str:
    done = subprocess.run(
        args, cwd=cwd, env=ENV, capture_output=True, text=True, timeout=120, check=False
    )
    assert done.returncode == 0, f"{args}: {done.stdout}{done.stderr}"
    return done.stdout.strip()


@dataclass
class DvcRepo:
    root: Path
    remote: Path
    first: str  # the commit of the first data version

    @property
    def data(self) -> Path:
        return self.root / "data" / "train.csv"


def rows(start: int, n: int) -> pd.DataFrame:
    return pd.DataFrame({"x": [float(i) for i in range(start, start + n)], "y": [0, 1] * (n // 2)})


@pytest.fixture(scope="module")
def repo(tmp_path_factory: pytest.TempPathFactory) -> DvcRepo:
    """Two data versions, each committed and pushed; DVC's own Repo API, in this process (the
    dvc command costs 1-2 s a call here). DVC is imported here, not at collection (2 s); without
    the dvc extra (in dev) every test here errors rather than skips."""
    from dvc.repo import Repo

    base = tmp_path_factory.mktemp("dvc")
    root, remote = base / "repo", base / "remote"
    root.mkdir()
    remote.mkdir()
    sh(root, "git", "init", "-q")
    sh(root, "git", "config", "user.email", "t@example.com")
    sh(root, "git", "config", "user.name", "t")
    (root / "data").mkdir()
    commits = []
    with contextlib.chdir(root), Repo.init(str(root)) as dvc_repo:
        with dvc_repo.config.edit() as conf:
            conf["core"].update(analytics=False, remote="store")
            conf["remote"]["store"] = {"url": str(remote)}
        for start, n in ((0, 20), (100, 30)):
            rows(start, n).to_csv(root / "data" / "train.csv", index=False)
            dvc_repo.add("data/train.csv")
            sh(root, "git", "add", "-A")
            sh(root, "git", "commit", "-qm", f"data from {start}")
            commits.append(sh(root, "git", "rev-parse", "HEAD"))
            dvc_repo.push()
        # a pipeline stage's output: tracked by dvc.lock, with no .dvc file of its own
        dvc_repo.stage.add(
            name="head", cmd="head -n 6 data/train.csv > data/head.csv",
            deps=["data/train.csv"], outs=["data/head.csv"],
        )  # fmt: skip
        dvc_repo.reproduce("head")
        sh(root, "git", "add", "-A")
        sh(root, "git", "commit", "-qm", "head stage")
        dvc_repo.push()
    return DvcRepo(root, remote, commits[0])


@step
def fit(table: pd.DataFrame) -> LogisticRegression:
    return LogisticRegression().fit(table[["x"]], table["y"])


@pipeline
def train(data: str = "", version: str | None = None) -> None:
    table = load_table(data, version=version)
    register(fit(table), table, name="churn", target="y")


def test_a_version_trained_on_a_dvc_file_can_fetch_its_data_again(
    tmp_path: Path, repo: DvcRepo
) -> None:
    home = tmp_path / "home"
    registry = Registry(
        database_url=f"sqlite:///{home / 'modelyard.db'}", artifact_root=str(home / "artifacts")
    )
    done = run(train, registry=registry, executor=LocalExecutor(workers=1),
               params={"data": f"dvc://{repo.data}", "version": repo.first})  # fmt: skip
    assert done.status == "finished"
    source = registry.get_version("churn/1").lineage.data_sources[0]
    registry.close()
    assert (source.kind, source.path, source.rev) == ("dvc", "data/train.csv", repo.first)
    assert (source.remote, source.remote_url, source.repo) == (
        "store",
        str(repo.remote),
        str(repo.root),
    )
    assert source.url == f"{repo.remote}/files/md5/{source.md5[:2]}/{source.md5[2:]}"  # type: ignore[index]

    show = subprocess.run([YARD, "models", "show", "churn/1"], env=server_env(home, COLUMNS="400"),
                          capture_output=True, text=True, timeout=120, check=False)  # fmt: skip
    assert show.returncode == 0, show.stderr
    command = f"dvc get {repo.root} data/train.csv --rev {repo.first}"
    assert command in show.stdout
    sh(tmp_path, *command.split(), "-o", "fetched.csv")  # what the line says, run for real
    assert pd.read_csv(tmp_path / "fetched.csv").equals(rows(0, 20))


def test_a_tracked_workspace_file_records_the_last_commit(repo: DvcRepo) -> None:
    frame = load_table(str(repo.data))  # found by its .dvc file, read from the workspace
    assert frame.equals(rows(100, 30))
    (source,) = frame.attrs["modelyard.data_sources"]
    assert source["rev"] == sh(repo.root, "git", "rev-parse", "HEAD")
    assert source["md5"] == sh(repo.root, "md5sum", "data/train.csv").split()[0]


def test_a_stage_output_in_dvc_lock_is_tracked_too(repo: DvcRepo) -> None:
    assert not (repo.root / "data" / "head.csv.dvc").exists()
    frame = load_table(str(repo.root / "data" / "head.csv"))
    assert frame.equals(rows(100, 30).head(5))
    (source,) = frame.attrs["modelyard.data_sources"]
    assert (source["path"], source["remote"]) == ("data/head.csv", "store")
    assert source["rev"] == sh(repo.root, "git", "rev-parse", "HEAD")


def test_bad_dvc_inputs_get_one_line_errors(tmp_path: Path, repo: DvcRepo) -> None:
    loose = repo.root / "data" / "loose.csv"
    rows(0, 4).to_csv(loose, index=False)
    with pytest.raises(InvalidInputError, match=r"'data/loose.csv' is not tracked by DVC in .*"
                       r"run 'dvc add data/loose.csv'"):  # fmt: skip
        load_table(f"dvc://{loose}")
    assert load_table(str(loose)).equals(rows(0, 4))  # a plain path: read as a plain file
    with pytest.raises(InvalidInputError, match="is not inside a DVC repository; run 'dvc init'"):
        load_table(f"dvc://{tmp_path / 'x.csv'}")
    with pytest.raises(InvalidInputError, match="is not a git revision"):
        load_table(str(repo.data), version=3)

    copy = tmp_path / "copy"
    shutil.copytree(repo.root, copy)
    edited = copy / "data" / "train.csv"
    rows(7, 4).to_csv(edited, index=False)
    with pytest.raises(InvalidInputError, match=r"differs from what DVC tracks .* 'dvc checkout'"):
        load_table(str(edited))
    from dvc.repo import Repo

    with contextlib.chdir(copy), Repo(str(copy)) as dvc_repo:
        dvc_repo.add("data/train.csv")  # tracked now, but never pushed
    with pytest.raises(InvalidInputError, match=r"is not on DVC remote 'store' .* run 'dvc push'"):
        load_table(str(edited))
    with Repo(str(copy)) as dvc_repo, dvc_repo.config.edit() as conf:
        conf["remote"]["store"]["url"] = str(tmp_path / "gone")
    with pytest.raises(StorageError, match=r"DVC remote 'store' at .*gone cannot be reached"):
        load_table(str(edited))


def test_without_dvc_a_tracked_file_reads_plainly_and_dvc_uris_name_the_extra(
    repo: DvcRepo, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    import sys

    monkeypatch.setitem(sys.modules, "dvc.api", None)  # what an absent package looks like
    with pytest.raises(ConfigError, match=r"needs DVC; run pip install 'modelyard\[dvc\]'"):
        load_table(f"dvc://{repo.data}")
    frame = load_table(str(repo.data))  # as before the bridge: a plain file, nothing recorded
    assert frame.equals(rows(100, 30)) and "modelyard.data_sources" not in frame.attrs
    assert "tracked by DVC, which is not installed" in caplog.text
