"""Where training data came from: the Delta table version or the DVC-tracked file a DataFrame
was read from, or the Feast feature service and feature views it was retrieved from, carried
with the frame to the lineage of the version registered on it.

``modelyard.pipelines.builtin.load_table`` (and ``feast_training_data``) attaches a
``DataSource`` to the DataFrame it returns
(in ``DataFrame.attrs``, which pandas keeps through ``drop``, slicing, ``train_test_split`` and
``concat`` of frames that share it; the pipelines' Parquet step outputs keep it too), and the
registry records the sources of the data a version is registered on. ``fetch_hint`` says how to
read the same bytes again.
"""

from __future__ import annotations

from typing import Any

import msgspec

from modelyard.core.types import DataSource

__all__ = ["ATTRS_KEY", "attach_sources", "fetch_hint", "sources_of"]

ATTRS_KEY = "modelyard.data_sources"
"""The ``DataFrame.attrs`` key holding the sources, as plain dicts (JSON-able)."""


def attach_sources(frame: Any, sources: tuple[DataSource, ...]) -> None:
    """Record ``sources`` in the ``attrs`` of ``frame`` (a DataFrame)."""
    frame.attrs[ATTRS_KEY] = [msgspec.to_builtins(s) for s in sources]


def sources_of(data: Any) -> tuple[DataSource, ...]:
    """The sources recorded on ``data`` (a DataFrame), or none for anything else."""
    attrs = getattr(data, "attrs", None)
    if not isinstance(attrs, dict) or not attrs.get(ATTRS_KEY):
        return ()
    try:
        return tuple(msgspec.convert(attrs[ATTRS_KEY], list[DataSource]))
    except msgspec.ValidationError:
        return ()  # something else wrote the key: record nothing rather than fail a register


def fetch_hint(source: DataSource) -> tuple[str, str | None]:
    """What ``source`` is, in a few words, and the command that fetches its exact bytes again
    (none for a Delta table: its URI and version are what ``load_table`` takes)."""
    if source.kind == "delta":
        return f"{source.uri} version {source.version}", None
    if source.kind == "feast":
        service = source.uri.rsplit("/", 1)[-1]
        views = ", ".join(source.feature_views) or "-"
        return (
            f"{source.uri} in {source.repo} (feature views {views})",
            f"feast_training_data(<the same entity rows>, {service!r}, {source.repo!r})",
        )
    what = (
        f"{source.path} md5 {source.md5} on DVC remote {source.remote or '-'} "
        f"({source.remote_url or '-'})"
    )
    if source.rev:
        return what, f"dvc get {source.repo} {source.path} --rev {source.rev}"
    return what + ", not in a git commit", f"copy {source.url}"
