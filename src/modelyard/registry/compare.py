"""Two versions side by side: metrics, params, signature, lineage and the reference profiles of
their training data, column by column (``compare_versions``). Pure functions over the records the
registry returns; ``reference_profile`` reads a version's stored profile."""

from __future__ import annotations

import itertools
from collections.abc import Mapping
from typing import TYPE_CHECKING

import msgspec

from modelyard.core.datasources import fetch_hint
from modelyard.core.types import ModelVersion, Signature, TensorSpec

if TYPE_CHECKING:
    from modelyard.core.profile import ColumnProfile, Profile
    from modelyard.registry.client import Registry

STATS = ("count", "nulls", "mean", "std", "min", "max")
Value = str | int | float | bool | None


class Row(msgspec.Struct, frozen=True, kw_only=True):
    """One compared field: its value in version ``a`` and ``b`` (``None`` where absent)."""

    name: str
    a: Value
    b: Value

    @property
    def changed(self) -> bool:
        return self.a != self.b


class Shares(msgspec.Struct, frozen=True, kw_only=True):
    """Both versions' shares of rows per bin (or category), on bins they have in common."""

    labels: tuple[str, ...]
    a: tuple[float, ...]
    b: tuple[float, ...]


class ColumnComparison(msgspec.Struct, frozen=True, kw_only=True):
    """One training-data column in both profiles: its statistics, and its bin shares when both
    versions binned it the same way (``None`` otherwise, with ``note`` saying why)."""

    name: str
    kind: str
    stats: tuple[Row, ...]
    shares: Shares | None
    note: str | None = None


class VersionComparison(msgspec.Struct, frozen=True, kw_only=True):
    a: int
    b: int
    metrics: tuple[Row, ...]
    params: tuple[Row, ...]
    signature: tuple[Row, ...]
    lineage: tuple[Row, ...]
    columns: tuple[ColumnComparison, ...]


def reference_profile(registry: Registry, version: ModelVersion) -> Profile | None:
    """The version's stored training-data profile (verified), or ``None`` when it kept none."""
    from modelyard.core.profile import profile_from_json  # numpy and pandas: on first use

    stored = version.file("profile")
    if stored is None:
        return None
    label = f"File {stored.name!r} of {version.ref}"
    return profile_from_json(registry.artifacts.get(stored.sha256, label=label))


def compare_versions(
    a: ModelVersion,
    b: ModelVersion,
    profile_a: Profile | None = None,
    profile_b: Profile | None = None,
) -> VersionComparison:
    """Everything that differs, and what does not, between versions ``a`` and ``b``."""
    return VersionComparison(
        a=a.version,
        b=b.version,
        metrics=_rows(a.metrics, b.metrics),
        params=_rows(a.params, b.params),
        signature=signature_rows(a.signature, b.signature),
        lineage=_rows(_lineage(a), _lineage(b)),
        columns=profile_columns(profile_a, profile_b),
    )


def _rows(a: Mapping[str, Value], b: Mapping[str, Value]) -> tuple[Row, ...]:
    keys = sorted(set(a) | set(b))
    return tuple(Row(name=k, a=a.get(k), b=b.get(k)) for k in keys)


def _spec(spec: TensorSpec) -> str:
    shape = "" if spec.shape == (-1,) else str(list(spec.shape))
    return spec.dtype + shape + (" nullable" if spec.nullable else "")


def signature_rows(a: Signature | None, b: Signature | None) -> tuple[Row, ...]:
    """Input and output specs by name (dtype, shape, nullable), the kind and the classes."""

    def fields(sig: Signature | None) -> dict[str, Value]:
        if sig is None:
            return {}
        out: dict[str, Value] = {"kind": sig.kind}
        out.update({f"input {s.name}": _spec(s) for s in sig.inputs})
        out.update({f"output {s.name}": _spec(s) for s in sig.outputs})
        if sig.classes is not None:
            out["classes"] = ", ".join(map(str, sig.classes))
        return out

    fa, fb = fields(a), fields(b)
    order = list(dict.fromkeys([*fa, *fb]))
    return tuple(Row(name=k, a=fa.get(k), b=fb.get(k)) for k in order)


def _lineage(v: ModelVersion) -> dict[str, Value]:
    lineage = v.lineage
    data = lineage.dataset
    out: dict[str, Value] = {
        "dataset sha256": data.sha256 if data else None,
        "dataset rows": data.rows if data else None,
        "git commit": lineage.git_commit,
        "git dirty": lineage.git_dirty,
        "python": lineage.python or None,
        "source": lineage.source,
        "run": v.run_id,
    }
    for number, source in enumerate(lineage.data_sources, start=1):
        out[f"data source {number}"] = fetch_hint(source)[0]  # the table version or DVC md5
    out.update({f"package {k}": val for k, val in lineage.packages.items()})
    return out


def profile_columns(a: Profile | None, b: Profile | None) -> tuple[ColumnComparison, ...]:
    """Each column of either profile, in ``a``'s order then ``b``'s new ones."""
    cols_a = {c.name: c for c in a.columns} if a else {}
    cols_b = {c.name: c for c in b.columns} if b else {}
    out = []
    for name in dict.fromkeys([*cols_a, *cols_b]):
        ca, cb = cols_a.get(name), cols_b.get(name)
        stats = tuple(
            Row(name=s, a=getattr(ca, s) if ca else None, b=getattr(cb, s) if cb else None)
            for s in STATS
        )
        shares, note = _shares(ca, cb)
        either = ca if ca is not None else cb
        kind = either.kind if either is not None else ""
        out.append(ColumnComparison(name=name, kind=kind, stats=stats, shares=shares, note=note))
    return tuple(out)


def bin_labels(column: ColumnProfile) -> tuple[str, ...]:
    """``[a, b)`` per numeric bin (the last closed), or the top categories then ``other``."""
    if column.bin_edges is not None:
        edges = column.bin_edges
        if len(edges) <= 1:
            return tuple(f"{e:.4g}" for e in edges)
        last = len(edges) - 2
        return tuple(
            f"[{x:.4g}, {y:.4g}{']' if i == last else ')'}"
            for i, (x, y) in enumerate(itertools.pairwise(edges))
        )
    labels = tuple(str(c.value) for c in column.top or ())
    return (*labels, "other") if column.other_count else labels


def bin_shares(column: ColumnProfile) -> tuple[float, ...]:
    """Shares of the column's counted rows per bin (or category, then ``other``)."""
    if column.bin_counts is not None:
        counts: list[int] = list(column.bin_counts)
    else:
        counts = [c.count for c in column.top or ()]
        if column.other_count:
            counts.append(column.other_count)
    total = sum(counts)
    return tuple(c / total if total else 0.0 for c in counts)


def _shares(a: ColumnProfile | None, b: ColumnProfile | None) -> tuple[Shares | None, str | None]:
    if a is None or b is None:
        return None, "only one version has this column"
    labels_a, labels_b = bin_labels(a), bin_labels(b)
    if not labels_a or labels_a != labels_b:
        return None, "the versions bin this column differently"
    return Shares(labels=labels_a, a=bin_shares(a), b=bin_shares(b)), None
