"""Whether a candidate takes every input its stable route takes: pure functions, no I/O.

A candidate that rejects what stable accepts fails real requests (the server answers them on
stable and counts them against the candidate), so ``start_candidate`` refuses one unless forced.
The rules follow the server's validator: the same input kind, the same columns in the same order
(a 2-D request is read by position), and for each column a dtype family that accepts the
stable's values (``int`` and ``bool`` into ``float``, ``bool`` into ``int``; text and categories
are one family). A column stable takes with missing values must take them on the candidate too.
"""

from __future__ import annotations

from modelyard.core.types import Signature, TensorSpec

#: Which stable dtype families each candidate family accepts.
_ACCEPTS = {
    "float": {"float", "int", "bool"},
    "int": {"int", "bool"},
    "bool": {"bool"},
    "string": {"string"},
    "datetime": {"datetime"},
}


def input_differences(stable: Signature | None, candidate: Signature | None) -> list[str]:
    """Why ``candidate`` may reject inputs ``stable`` accepts; empty when it takes them all
    (or when either has no signature to compare)."""
    if stable is None or candidate is None:
        return []
    if stable.kind != candidate.kind:
        return [f"takes {_shape(candidate)} instead of {_shape(stable)}"]
    if stable.kind == "tensor":
        if stable.n_features != candidate.n_features:
            return [f"takes {_shape(candidate)} instead of {_shape(stable)}"]
        return _dtype_differences(stable.inputs[0], candidate.inputs[0])
    names, theirs = stable.column_names, candidate.column_names
    needed = [n for n in theirs if n not in names]
    dropped = [n for n in names if n not in theirs]
    out = []
    if needed:
        out.append(f"needs columns stable does not take: {_listed(needed)}")
    if dropped:
        out.append(f"does not take stable's columns {_listed(dropped)}")
    if out:
        return out
    if names != theirs:
        out.append("takes the same columns in another order (2-D inputs are read by position)")
    by_name = {spec.name: spec for spec in candidate.inputs}
    for spec in stable.inputs:
        out += _dtype_differences(spec, by_name[spec.name])
    return out


def _dtype_differences(stable: TensorSpec, candidate: TensorSpec) -> list[str]:
    name = stable.name
    if stable.family not in _ACCEPTS[candidate.family]:
        return [f"takes {name} as {candidate.dtype}, not {stable.dtype}"]
    if stable.nullable and not candidate.nullable and candidate.family == "float":
        return [f"refuses missing values in {name}, which stable takes"]
    return []


def _shape(signature: Signature) -> str:
    if signature.kind == "tensor":
        return f"one tensor of {signature.n_features} features"
    return f"{len(signature.inputs)} columns"


def _listed(names: list[str]) -> str:
    shown = ", ".join(names[:10])
    return shown + (f" ... ({len(names)} in all)" if len(names) > 10 else "")
