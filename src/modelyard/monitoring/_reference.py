"""The reference drift compares a deployment's traffic with (a version's stored profile or a data
file), and the model's outputs on its rows, which the logged outputs are compared with.

The model's outputs are computed on a seeded sample of its reference rows: those of the reference
data file (its input columns), else its stored reference sample (then cached per version next to
the hour profiles); at most 10,000 rows for class labels, probabilities and numeric predictions,
1,000 for an embedding output (a ``predict`` of rows x dim floats, as the signature records it,
compared by MMD). Where neither can be had (a version registered with an input example only and no
file, a pickle not trusted here, a model that cannot load here), a note says why and what to pass.
"""

from __future__ import annotations

import io
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import pandas as pd

from modelyard.core.profile import Profile, profile_from_json
from modelyard.core.tables import read_data_file
from modelyard.core.types import ModelVersion
from modelyard.errors import InvalidInputError, ModelyardError
from modelyard.monitoring._filecache import replace_with
from modelyard.monitoring._span import Span
from modelyard.monitoring.drift import DriftDetector
from modelyard.monitoring.embeddings import MAX_ROWS, EmbeddingDetector
from modelyard.monitoring.text import TextDescriptors
from modelyard.monitoring.types import ColumnDrift
from modelyard.monitoring.windows import read_embeddings
from modelyard.registry.client import Registry

__all__ = [
    "OUTPUT_ROWS",
    "Ref",
    "comparable",
    "embedding_drift",
    "embedding_outputs",
    "load_reference",
    "output_detector",
]

#: Rows of a reference file the outputs are computed on: as many as a stored reference sample
#: holds (``compute_profile``'s ``sample_rows``).
OUTPUT_ROWS = 10_000

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class Ref:
    """What drift compares the traffic with, and the model version it stands for."""

    data: pd.DataFrame | Profile
    description: str
    version: str | None  # "name/version" when the reference is a model version
    found: ModelVersion | None = None  # that version
    #: Fitted on the reference's text columns; ``data`` then holds their descriptors.
    text: TextDescriptors | None = None
    #: A reference data file's rows as read (the model's inputs, whatever ``data`` holds).
    rows: pd.DataFrame | None = None

    def names(self, columns: Sequence[str]) -> list[str]:
        """Input ``columns`` as the detector names them (text columns as descriptors)."""
        return list(columns) if self.text is None else self.text.names(columns)


def load_reference(registry: Registry, reference: str | None, span: Span | None) -> Ref:
    """The reference: a data file (CSV or Parquet) by its suffix, else the stored profile of the
    version ``reference`` names (default: the one that answered most of ``span``'s rows)."""
    if reference is not None and Path(reference).suffix.lower() in (".csv", ".parquet", ".pq"):
        frame = read_data_file(reference, "reference")
        version, found = None, None
        if span is not None:
            version = span.version()
            found = registry.get_version(version)
        return Ref(frame, Path(reference).name, version, found, rows=frame)
    if reference is None:
        if span is None:
            raise InvalidInputError(
                "Comparing a current file needs a reference; pass --reference NAME/VERSION or "
                "a reference data file."
            )
        reference = span.version()
    found = registry.get_version(reference)
    try:
        profile = profile_from_json(registry.read_file(found.ref, "profile"))
    except ModelyardError as exc:
        raise InvalidInputError(
            f"Model {found.ref} has no stored reference profile ({exc}); pass --reference with "
            "the training data file."
        ) from exc
    return Ref(profile, f"{found.ref} (stored profile)", found.ref, found)


# --- the model's outputs on the reference ------------------------------------------------------


def embedding_outputs(ref: Ref, logged: set[str]) -> set[str]:
    """The logged outputs that the reference version's signature records as rows of floats
    (``predict`` of shape (-1, dim)); class probabilities are compared per class instead."""
    if ref.found is None or ref.found.signature is None:
        return set()
    return {
        spec.name
        for spec in ref.found.signature.outputs
        if spec.name == "predict"
        and len(spec.shape) == 2
        and spec.dtype.startswith("float")
        and spec.name in logged
    }


def embedding_drift(
    registry: Registry,
    root: str | Path,
    ref: Ref,
    span: Span,
    names: Sequence[str],
    *,
    threshold: float,
    trust_pickle: bool,
) -> tuple[tuple[ColumnDrift, ...], tuple[str, ...]]:
    """The drift of each embedding output in ``names``, and a note for each left out."""
    drifts, notes = [], []
    for name in names:
        reference = _reference_embeddings(registry, root, ref, name, trust_pickle=trust_pickle)
        if isinstance(reference, str) or len(reference) < 2:
            why = reference if isinstance(reference, str) else (
                "its reference has one row; pass --reference with a file of more rows to "
                "compare it by MMD."
            )  # fmt: skip
            notes.append(f"Output {name!r} (embeddings) was not compared: {why}")
            continue
        if span.last is not None:
            current, rows = read_embeddings(span.files, f"out_{name}", last=span.last)
        else:
            current, rows = read_embeddings(
                span.files, f"out_{name}", start=span.start, end=span.end
            )
        if len(current) < 2:
            continue  # no traffic to compare: not a section left out
        detector = EmbeddingDetector(threshold=threshold).fit(reference, name=name)
        drifts.append(detector.compare(current, rows=rows))
    return tuple(drifts), tuple(notes)


def _reference_embeddings(
    registry: Registry, root: str | Path, ref: Ref, name: str, *, trust_pickle: bool
) -> np.ndarray | str:
    """The model's ``name`` output on its reference rows (at most 1,000), cached per version
    when they are its stored sample; or why there is none, as ``_reference_outputs`` says."""
    assert ref.version is not None
    cache = _cache(root, ref.version, f"{name}.npy")
    if ref.rows is None and cache.is_file():
        cached: np.ndarray = np.load(cache, allow_pickle=False)
        return cached
    embeddings = _reference_outputs(
        registry, ref, lambda model, rows: np.asarray(model.predict(rows), dtype=np.float64),
        limit=MAX_ROWS, trust_pickle=trust_pickle, purpose="compare it by MMD",
    )  # fmt: skip
    if ref.rows is None and not isinstance(embeddings, str):  # a file's are not the version's
        replace_with(cache, lambda path: np.save(path, embeddings, allow_pickle=False))
    return embeddings


def output_detector(
    registry: Registry,
    root: str | Path,
    ref: Ref,
    logged: set[str],
    *,
    trust_pickle: bool,
    share_threshold: float,
) -> DriftDetector | str | None:
    """A detector on the model's outputs on its reference rows (at most 10,000), for the
    outputs the log holds; a note naming why when those cannot be had; ``None`` when the log
    holds none of them."""
    if ref.version is None or not logged:
        return None
    cache = _cache(root, ref.version, "parquet")
    if ref.rows is None and cache.is_file():
        outputs = pd.read_parquet(cache)
    else:
        found = _reference_outputs(
            registry, ref, _model_outputs, limit=OUTPUT_ROWS, trust_pickle=trust_pickle,
            purpose="compare them",
        )  # fmt: skip
        if isinstance(found, str):
            listed = ", ".join(map(repr, sorted(logged)))
            return f"Outputs {listed} were not compared: {found}"
        outputs = found
        if ref.rows is None:
            replace_with(cache, outputs.to_parquet)
    keep = [
        c
        for c in outputs.columns
        if c in logged or (c.startswith("proba_") and "predict_proba" in logged)
    ]
    if not keep:
        return None
    # an output is null where a request did not ask for it (no predict_proba): not drift
    on = ref.description if ref.rows is not None else "its reference sample"
    return DriftDetector(share_threshold=share_threshold, nulls=False).fit(
        outputs[keep], description=f"{ref.version} outputs on {on}"
    )


def _reference_outputs(
    registry: Registry,
    ref: Ref,
    compute: Callable[[Any, pd.DataFrame], T],
    *,
    limit: int,
    trust_pickle: bool,
    purpose: str,
) -> T | str:
    """``compute(model, rows)``: the loaded model on a seeded sample of at most ``limit`` rows
    of its inputs, from the reference data file, else from the version's stored reference
    sample; or why not and what to pass, as the end of a sentence ending in "to ``purpose``."."""
    assert ref.version is not None
    inputs = ref.found.signature.column_names if ref.found and ref.found.signature else []
    listed = ", ".join(inputs)
    if ref.rows is not None:
        missing = [c for c in inputs if c not in ref.rows.columns]
        if missing:
            return (
                f"the reference file lacks {ref.version}'s input {', '.join(map(repr, missing))}; "
                f"pass --reference with a file of its inputs ({listed}) to {purpose}."
            )
        rows = ref.rows[inputs] if inputs else ref.rows
    elif ref.found is None or "sample" not in {f.role for f in ref.found.files}:
        return (
            f"{ref.version} has no stored reference sample (it was registered without data); "
            f"pass --reference with a CSV or Parquet file of its inputs ({listed}) to {purpose}."
        )
    if ref.found is not None and ref.found.flavor == "pickle" and not trust_pickle:
        return (
            f"{ref.version} is a pickle, loaded only when trusted; set "
            f"MODELYARD_SERVING__TRUST_PICKLE=true to {purpose}."
        )
    try:
        model = registry.load(ref.version, trust_pickle=trust_pickle)
        if ref.rows is None:
            rows = pd.read_parquet(io.BytesIO(registry.read_file(ref.version, "sample")))
    except ModelyardError as exc:
        return f"{ref.version} cannot be loaded here: {exc}"
    if len(rows) > limit:
        keep = np.random.default_rng(0).choice(len(rows), limit, replace=False)
        rows = rows.iloc[np.sort(keep)]
    try:
        return compute(model, rows.reset_index(drop=True))
    except ModelyardError as exc:
        return f"{ref.version} cannot predict on its reference rows: {exc}"


def _cache(root: str | Path, version: str, suffix: str) -> Path:
    """Where a version's outputs on its stored sample are cached (next to the hour profiles)."""
    return Path(root) / "_profiles" / "outputs" / f"{version.replace('/', '-')}.{suffix}"


def _model_outputs(model: Any, sample: pd.DataFrame) -> pd.DataFrame:
    predictions = np.asarray(model.predict(sample))
    columns: dict[str, Any] = {}
    if predictions.ndim == 1:
        columns["predict"] = predictions
    if hasattr(model, "predict_proba"):
        proba = np.asarray(model.predict_proba(sample), dtype=np.float64)
        for j in range(proba.shape[1]):
            columns[f"proba_{j}"] = proba[:, j]
    frame = pd.DataFrame(columns)
    if "predict" in frame and hasattr(model, "predict_proba"):  # class labels are categories
        frame["predict"] = frame["predict"].astype(str).astype("string")
    return frame


def comparable(detector: DriftDetector, logged: pd.DataFrame) -> pd.DataFrame:
    """The logged outputs the reference outputs have, class labels as text like theirs."""
    columns = {}
    for ref in detector.reference_:
        values = logged[ref.name] if ref.name in logged else pd.Series(np.nan, index=logged.index)
        columns[ref.name] = values if ref.numeric else values.astype(str).astype("string")
    return pd.DataFrame(columns, index=logged.index)
