"""Data sources ride on a DataFrame's attrs to the lineage; fetch_hint says how to get them back."""

from __future__ import annotations

import msgspec
import pandas as pd

from modelyard.core.datasources import ATTRS_KEY, attach_sources, fetch_hint, sources_of
from modelyard.core.types import DataSource

DELTA = DataSource(kind="delta", uri="delta:///data/customers", version=3)
DVC = DataSource(
    kind="dvc", uri="dvc:///repo/data/train.csv", repo="git@example.com:team/data.git",
    path="data/train.csv", rev="abc123", md5="0" * 32, remote="store",
    remote_url="s3://bucket/dvc", url="s3://bucket/dvc/files/md5/00/" + "0" * 30,
)  # fmt: skip


def test_sources_survive_the_frame_operations_a_training_script_uses() -> None:
    frame = pd.DataFrame({"x": [1.0, 2.0, 3.0], "y": [0, 1, 0]})
    attach_sources(frame, (DELTA, DVC))
    features = frame.drop(columns=["y"]).iloc[1:].reset_index(drop=True)
    assert sources_of(features) == (DELTA, DVC)
    assert sources_of(features.to_numpy()) == ()  # an array carries nothing


def test_a_foreign_value_under_the_key_records_nothing() -> None:
    frame = pd.DataFrame({"x": [1.0]})
    frame.attrs[ATTRS_KEY] = [{"kind": "ftp"}]
    assert sources_of(frame) == ()


def test_fetch_hints_name_the_version_or_the_command() -> None:
    assert fetch_hint(DELTA) == ("delta:///data/customers version 3", None)
    what, fetch = fetch_hint(DVC)
    assert what == f"data/train.csv md5 {'0' * 32} on DVC remote store (s3://bucket/dvc)"
    assert fetch == "dvc get git@example.com:team/data.git data/train.csv --rev abc123"
    uncommitted = msgspec.structs.replace(DVC, rev=None)  # the workspace ahead of git
    what, fetch = fetch_hint(uncommitted)
    assert what.endswith(", not in a git commit") and fetch == f"copy {DVC.url}"
