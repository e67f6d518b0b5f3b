"""Frozen domain records. msgspec Structs: cheap to build, encode and compare."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any, Literal

import msgspec

from modelyard.core.listing import listed

InputKind = Literal["columns", "tensor"]
Scalar = str | int | float | bool


class TensorSpec(msgspec.Struct, frozen=True, kw_only=True):
    """One named input or output: a column (shape ``(-1,)``) or a tensor (``(-1, n)``).

    ``dtype`` is a numpy-style name: ``float64``, ``float32``, ``int64``, ``bool``, ``string``,
    ``category`` or ``datetime64[ns]``. ``nullable`` says whether the training data had missing
    values. ``categories`` lists the levels of a ``category`` column.
    """

    name: str
    dtype: str
    shape: tuple[int, ...] = (-1,)
    nullable: bool = False
    categories: tuple[Scalar, ...] | None = None

    @property
    def family(self) -> str:
        """The kind of value the server validates this spec's data as: ``float``, ``int``,
        ``bool``, ``datetime`` or ``string`` (text and categories)."""
        dtype = self.dtype
        if dtype.startswith("float"):
            return "float"
        if dtype.startswith(("int", "uint")):
            return "int"
        if dtype == "bool":
            return "bool"
        if dtype.startswith("datetime"):
            return "datetime"
        return "string"


class Signature(msgspec.Struct, frozen=True, kw_only=True):
    """What a model takes and gives.

    ``kind == "columns"``: ``inputs`` has one spec per column, in order (a DataFrame).
    ``kind == "tensor"``: ``inputs`` has one 2-D spec (an ndarray of shape ``(-1, n)``).
    ``outputs`` names ``predict`` and, for classifiers, ``predict_proba``; ``classes`` are the
    class labels in the order of ``predict_proba``'s columns.
    """

    kind: InputKind
    inputs: tuple[TensorSpec, ...]
    outputs: tuple[TensorSpec, ...] = ()
    classes: tuple[Scalar, ...] | None = None

    @property
    def column_names(self) -> list[str]:
        return [spec.name for spec in self.inputs]

    @property
    def n_features(self) -> int:
        if self.kind == "tensor":
            return self.inputs[0].shape[-1]
        return len(self.inputs)


class ArtifactFile(msgspec.Struct, frozen=True, kw_only=True):
    """A stored file of a version: its role (``model``, ``onnx``, ``profile``, ``sample``)."""

    role: str
    name: str
    sha256: str
    size_bytes: int


class DatasetFingerprint(msgspec.Struct, frozen=True, kw_only=True):
    sha256: str
    rows: int
    schema: dict[str, str]


class DataSource(msgspec.Struct, frozen=True, kw_only=True):
    """Where training data was read from, exactly enough to read it again
    (``modelyard.core.datasources``).

    ``kind == "delta"``: ``uri`` is ``delta://<absolute path or URL>`` and ``version`` the table
    version read. ``kind == "dvc"``: ``path`` is the file's path in the DVC repository ``repo``
    at git revision ``rev``, ``md5`` its DVC hash and ``remote`` / ``remote_url`` the DVC remote
    that holds it (``url`` is the object's own address there). ``kind == "feast"``: ``uri`` is
    ``feast://<project>/<feature service>``, ``repo`` the Feast repository and ``feature_views``
    each view the service read, as ``name@version:sha256`` (of the view's definition, 16 hex).
    """

    kind: Literal["delta", "dvc", "feast"]
    uri: str
    version: int | None = None
    repo: str | None = None
    path: str | None = None
    rev: str | None = None
    md5: str | None = None
    remote: str | None = None
    remote_url: str | None = None
    url: str | None = None
    feature_views: tuple[str, ...] = ()


class Lineage(msgspec.Struct, frozen=True, kw_only=True):
    dataset: DatasetFingerprint | None = None
    #: the Delta tables and DVC-tracked files the training data was read from
    data_sources: tuple[DataSource, ...] = ()
    git_commit: str | None = None
    git_dirty: bool | None = None
    python: str = ""
    packages: dict[str, str] = msgspec.field(default_factory=dict)
    source: str | None = None


class ModelVersion(msgspec.Struct, frozen=True, kw_only=True):
    """An immutable registered version (only tags, description and ``archived`` may change)."""

    name: str
    version: int
    flavor: str
    files: tuple[ArtifactFile, ...]
    signature: Signature | None
    input_example: dict[str, Any] | None
    flavor_meta: dict[str, Any]
    metrics: dict[str, float]
    params: dict[str, str]
    tags: dict[str, str]
    description: str | None
    lineage: Lineage
    run_id: str | None
    created_by: str
    created_at: datetime
    archived: bool = False
    untrusted: bool = False
    aliases: tuple[str, ...] = ()

    @property
    def ref(self) -> str:
        return f"{self.name}/{self.version}"

    def file(self, role: str) -> ArtifactFile | None:
        for f in self.files:
            if f.role == role:
                return f
        return None


class RegisteredModel(msgspec.Struct, frozen=True, kw_only=True):
    name: str
    latest_version: int
    description: str | None
    created_at: datetime
    updated_at: datetime
    aliases: dict[str, int] = msgspec.field(default_factory=dict)


class AliasEvent(msgspec.Struct, frozen=True, kw_only=True):
    """One audited alias move; ``to_version`` is ``None`` when the alias was removed.
    ``undoes`` is the id of the move a rollback undid (``None`` for other moves)."""

    id: int
    name: str
    alias: str
    from_version: int | None
    to_version: int | None
    actor: str
    reason: str | None
    at: datetime
    undoes: int | None = None


class Run(msgspec.Struct, frozen=True, kw_only=True):
    id: str
    name: str | None
    status: Literal["running", "finished", "failed"]
    start_time: datetime
    end_time: datetime | None
    params: dict[str, str]
    metrics: dict[str, float]
    tags: dict[str, str]
    user: str


class Page(msgspec.Struct, frozen=True, kw_only=True):
    """One page of a listing, newest first; ``next_page`` is ``None`` on the last page."""

    items: tuple[Any, ...]
    page: int
    page_size: int
    total: int

    @property
    def next_page(self) -> int | None:
        return self.page + 1 if self.page * self.page_size < self.total else None


def describe_mismatch(missing: Sequence[str], extra: Sequence[str]) -> str:
    """``missing a, b; unexpected c`` (at most ten names of each, then how many more) for column
    mismatch errors."""
    parts = []
    if missing:
        parts.append(f"missing {listed(missing, limit=10)}")
    if extra:
        parts.append(f"unexpected {listed(extra, limit=10)}")
    return "; ".join(parts)
