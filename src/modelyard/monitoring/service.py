"""Drift of a deployment's logged traffic: what ``yard monitor drift``, the report, alerts and the
server's gauges call.

- The reference is the stored profile of a model version (default: the version that answered most
  rows in the window) or a data file (CSV or Parquet) for exact statistics.
- The current data is the log's window (``window`` back from now, or the newest ``last`` rows) or a
  data file. With a stored profile, the whole hours of a window come from cached hour profiles and
  only the hours at its edges are read; with a reference file, the window's rows are read and
  compared exactly.
- Output drift compares the logged outputs with the model's outputs on its reference
  (``monitoring._reference``), embeddings by a kernel two-sample test (``monitoring.embeddings``);
  where they cannot be had, ``DriftResult.notes`` says why.
- A free-text input is compared by its descriptors (``monitoring.text``: length, unknown words,
  character classes), derived from the reference's rows (a stored version's reference sample) and
  from each window's rows. Which string inputs are text: ``DriftOptions.text_columns`` when set,
  else the input a version's flavor meta names ``text_input`` (``TextPredictor.text_input``) and
  any string input that ``looks_like_text``.
"""

from __future__ import annotations

import io
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING

import msgspec
import pandas as pd

from modelyard.core.durations import format_duration
from modelyard.core.profile import ColumnProfile, Profile, column_kind
from modelyard.core.signature import column_dtype
from modelyard.core.tables import read_data_file
from modelyard.core.types import ModelVersion
from modelyard.errors import InvalidInputError, ModelyardError, PredictionLogEmptyError
from modelyard.monitoring._partitions import HOUR
from modelyard.monitoring._reference import (
    Ref,
    comparable,
    embedding_drift,
    embedding_outputs,
    load_reference,
    output_detector,
)
from modelyard.monitoring._span import Progress, Span, merged_profile, prepare_inputs
from modelyard.monitoring.drift import DEFAULT_THRESHOLDS, ColumnRule, DriftDetector, null_score
from modelyard.monitoring.text import (
    TextDescriptors,
    descriptor_names,
    looks_like_text,
    profile_descriptors,
)
from modelyard.monitoring.traffic import traffic_points, window_traffic
from modelyard.monitoring.types import (
    CostReport,
    DriftResult,
    Performance,
    Prices,
    Reconstruction,
    ReportData,
)
from modelyard.monitoring.windows import hour_profiles, log_frames
from modelyard.registry.client import Registry
from modelyard.settings import EstimationSettings, ReconstructionSettings, Settings

if TYPE_CHECKING:
    from modelyard.monitoring.estimated import EstimatedPerformance

__all__ = [
    "DriftOptions",
    "build_report",
    "deployment_drift",
    "drift_series",
    "read_data_file",
    "window_metrics",
]


@dataclass(frozen=True, slots=True)
class DriftOptions:
    """Per-column rules, per-method thresholds and the dataset share threshold (from config)."""

    columns: Mapping[str, ColumnRule] = field(default_factory=dict)
    thresholds: Mapping[str, float] = field(default_factory=dict)
    share_threshold: float = 0.5
    #: Input columns the log does not hold as sent (hashed or dropped for privacy).
    exclude: frozenset[str] = frozenset()
    trust_pickle: bool = False
    #: Input columns of free text (``None``: the model's text input and string columns that
    #: look like text; empty: none).
    text_columns: frozenset[str] | None = None
    #: How the reconstruction error (``monitoring.multivariate``) is fitted and thresholded.
    reconstruction: ReconstructionSettings = field(default_factory=ReconstructionSettings)
    #: How performance is estimated before labels (CBPE, ``monitoring.estimated``).
    estimation: EstimationSettings = field(default_factory=EstimationSettings)

    @classmethod
    def from_settings(cls, settings: Settings) -> DriftOptions:
        drift = settings.monitoring.drift
        return cls(
            columns={
                name: ColumnRule(method=rule.method, threshold=rule.threshold)
                for name, rule in drift.columns.items()
            },
            thresholds={str(k): v for k, v in drift.thresholds.items()},
            share_threshold=drift.share_threshold,
            exclude=frozenset(settings.monitoring.hash_columns)
            | frozenset(settings.monitoring.drop_columns),
            trust_pickle=settings.serving.trust_pickle,
            text_columns=None if drift.text_columns is None else frozenset(drift.text_columns),
            reconstruction=settings.monitoring.reconstruction,
            estimation=settings.monitoring.estimation,
        )


def deployment_drift(
    registry: Registry,
    root: str | Path,
    name: str,
    *,
    window: timedelta | None = timedelta(hours=1),
    last: int | None = None,
    reference: str | None = None,
    current: str | None = None,
    options: DriftOptions | None = None,
    now: datetime | None = None,
    progress: Progress | None = None,
) -> DriftResult:
    """Drift of ``name``'s inputs (and outputs) in a window of its prediction log."""
    options = options or DriftOptions()
    now = now or datetime.now(UTC)
    if current is not None:
        frame = read_data_file(current, "current")
        ref = load_reference(registry, reference, None)
        ref = _with_text(registry, ref, options, [str(c) for c in frame.columns])
        if ref.text is not None:
            frame = ref.text.transform(frame)
        detector = _detector(ref, options, columns=[str(c) for c in frame.columns])
        return detector.compare(frame, description=Path(current).name, progress=progress)
    span = Span.of(root, name, window=window, last=last, now=now)
    ref = load_reference(registry, reference, span)
    ref = _with_text(registry, ref, options, span.input_columns())
    detector = _detector(ref, options, columns=ref.names(span.input_columns()))
    embedded = embedding_outputs(ref, span.output_columns())
    found = output_detector(
        registry, root, ref, span.output_columns() - embedded,
        trust_pickle=options.trust_pickle, share_threshold=options.share_threshold,
    )  # fmt: skip
    outputs = found if isinstance(found, DriftDetector) else None
    if last is not None or isinstance(ref.data, pd.DataFrame):
        rows = span.rows()
        prepare = prepare_inputs(detector, ref.text)
        result = detector.compare(prepare(rows), description=span.description, progress=progress)
        if outputs is not None:
            logged = log_frames(rows)[1]
            out = outputs.compare(comparable(outputs, logged), description=span.description)
            result = msgspec.structs.replace(result, outputs=out.columns)
    else:
        merged = merged_profile(
            detector, root, name, span, prepare_inputs(detector, ref.text), progress
        )
        result = detector.compare(merged, description=span.description)
        if outputs is not None:

            def prepare_outputs(
                frame: pd.DataFrame, detector: DriftDetector = outputs
            ) -> pd.DataFrame:
                return comparable(detector, log_frames(frame)[1])

            out = outputs.compare(merged_profile(outputs, root, name, span, prepare_outputs, None))
            result = msgspec.structs.replace(result, outputs=out.columns)
    drifts, notes = embedding_drift(
        registry, root, ref, span, sorted(embedded), trust_pickle=options.trust_pickle,
        threshold=options.thresholds.get("mmd", DEFAULT_THRESHOLDS["mmd"]),
    )  # fmt: skip
    if isinstance(found, str):
        notes = (found, *notes)
    if drifts or notes:
        result = msgspec.structs.replace(
            result, outputs=(*result.outputs, *drifts), notes=(*result.notes, *notes)
        )
    return result


def drift_series(
    registry: Registry,
    root: str | Path,
    name: str,
    *,
    window: timedelta,
    reference: str | None = None,
    options: DriftOptions | None = None,
    now: datetime | None = None,
    progress: Progress | None = None,
) -> list[tuple[datetime, DriftResult]]:
    """Input drift per hour of the window, from the cached hour profiles (stored profile only)."""
    options = options or DriftOptions()
    now = now or datetime.now(UTC)
    span = Span.of(root, name, window=window, last=None, now=now)
    ref = load_reference(registry, reference, span)
    if isinstance(ref.data, pd.DataFrame):
        raise InvalidInputError(
            "A drift series needs a model version's stored profile as reference; pass a model "
            "reference (NAME/VERSION) rather than a data file."
        )
    ref = _with_text(registry, ref, options, span.input_columns())
    detector = _detector(ref, options, columns=ref.names(span.input_columns()))
    prepare = prepare_inputs(detector, ref.text)
    series = []
    for hour, profile in hour_profiles(
        detector, root, name, span.hours, prepare=prepare, progress=progress
    ):
        if profile.rows:
            label = hour.start.strftime("%Y-%m-%d %H:00")
            series.append((hour.start, detector.compare(profile, description=label)))
    return series


def window_metrics(
    registry: Registry,
    root: str | Path,
    name: str,
    *,
    window: timedelta,
    now: datetime | None = None,
    options: DriftOptions | None = None,
) -> dict[str, float]:
    """What alert rules watch, over the last ``window`` of ``name``'s log: ``rows``,
    ``requests``, ``error_rate``, ``p50_latency_ms``, ``p99_latency_ms``, ``drift_share``,
    ``drift:<column>``, ``null_drift:<column>`` (``drift.null_score``),
    ``output_drift:<output>``, ``performance:<metric>`` and
    ``outcome:<count|sum|mean>``; a metric without data is left out (an empty window gives
    ``rows`` 0 only)."""
    now = now or datetime.now(UTC)
    try:
        span = Span.of(root, name, window=window, last=None, now=now)
    except PredictionLogEmptyError:
        return {"rows": 0.0}
    metrics: dict[str, float] = {}
    point = window_traffic(root, name, span.hours, start=span.start, end=now)
    if point is not None:
        metrics.update(rows=float(point.rows), requests=float(point.requests))
        for key in ("error_rate", "p50_latency_ms", "p99_latency_ms"):
            value = getattr(point, key)
            if value is not None:
                metrics[key] = float(value)
    if not metrics.get("rows"):
        return {"rows": 0.0, **{k: v for k, v in metrics.items() if k != "rows"}}
    try:
        drift = deployment_drift(registry, root, name, window=window, options=options, now=now)
    except PredictionLogEmptyError:
        drift = None
    if drift is not None:
        metrics["drift_share"] = drift.share
        metrics.update({f"drift:{c.name}": c.score for c in drift.columns})
        metrics.update({f"null_drift:{c.name}": null_score(c) for c in drift.columns})
        metrics.update({f"output_drift:{c.name}": c.score for c in drift.outputs})
    performance = _performance(registry, root, name, start=span.start, end=now)
    if performance is not None:
        metrics.update({f"performance:{k}": v for k, v in performance.metrics.items()})
    metrics.update(_outcome_metrics(root, name, start=span.start, end=now))
    return metrics


def _outcome_metrics(
    root: str | Path, name: str, *, start: datetime, end: datetime
) -> dict[str, float]:
    """``outcome:count``, ``outcome:sum`` and ``outcome:mean`` of the window's predictions
    (every model, version and route together); none without outcomes."""
    from modelyard.monitoring.outcomes import has_outcomes, summarize_outcomes

    if not has_outcomes(root, name):
        return {}
    total = summarize_outcomes(root, name, start=start, end=end).total
    if total is None:
        return {}
    return {"outcome:count": float(total.count), "outcome:sum": total.sum,
            "outcome:mean": total.mean}  # fmt: skip


def build_report(
    registry: Registry,
    root: str | Path,
    name: str,
    *,
    window: timedelta,
    reference: str | None = None,
    options: DriftOptions | None = None,
    now: datetime | None = None,
    progress: Progress | None = None,
    every: timedelta | None = None,
    reconstruction: bool = True,
    prices: Prices | None = None,
) -> ReportData:
    """Everything ``yard monitor report`` draws: the window's drift, and hourly points (daily
    past three days, unless ``every`` says: an hour or a day) of volume, latency, errors, drift
    share and performance; the reconstruction error unless ``reconstruction`` is false (it
    reads every row of the window); each version's cost at ``prices`` (default: the
    ``monitoring.cost`` defaults)."""
    from modelyard.monitoring.cost import model_costs
    from modelyard.monitoring.performance import performance_series

    now = now or datetime.now(UTC)
    if every not in (None, HOUR, timedelta(days=1)):
        raise InvalidInputError(f"A report's points are an hour or a day apart, not {every}.")
    drift = deployment_drift(
        registry, root, name, window=window, reference=reference, options=options, now=now,
        progress=progress,
    )  # fmt: skip
    span = Span.of(root, name, window=window, last=None, now=now)
    every = every or (timedelta(days=1) if window > timedelta(days=3) else HOUR)
    points = {
        p.start: p for p in traffic_points(span.files, start=span.start, end=now, every=every)
    }
    if every == HOUR and _stored(reference):
        for began, result in drift_series(
            registry, root, name, window=window, reference=reference, options=options, now=now
        ):
            key = max(began, span.start).isoformat()
            if key in points:
                points[key] = msgspec.structs.replace(
                    points[key],
                    drift_share=result.share,
                    scores={c.name: c.score for c in result.columns},
                )
    try:
        by_window = performance_series(
            root, name, since=window, every="1d" if every > HOUR else "1h", registry=registry,
            now=now,
        )  # fmt: skip
    except ModelyardError:
        by_window = []
    for began, _, performance in by_window:
        key = max(began, span.start).isoformat()
        if performance is not None and key in points:
            points[key] = msgspec.structs.replace(points[key], performance=performance.metrics)
    prices = prices or Prices.defaults()
    costs, measured = model_costs(span.files, start=span.start, end=now, prices=prices)
    return ReportData(
        name=name,
        generated_at=now.isoformat(timespec="seconds"),
        window=format_duration(window),
        drift=drift,
        series=tuple(points[k] for k in sorted(points)),
        performance=_performance(registry, root, name, start=span.start, end=now),
        reconstruction=_reconstruction(
            registry, root, name, window=window, every=every, reference=reference,
            options=options, now=now,
        ) if reconstruction else None,
        estimated=_estimated(registry, root, name, window=window, every=every, options=options,
                             now=now),
        cost=CostReport(name=name, start=span.start.isoformat(timespec="seconds"),
                        end=now.isoformat(timespec="seconds"), prices=prices, measured=measured,
                        models=tuple(costs)),
    )  # fmt: skip


def _estimated(
    registry: Registry,
    root: str | Path,
    name: str,
    *,
    window: timedelta,
    every: timedelta,
    options: DriftOptions | None,
    now: datetime,
) -> EstimatedPerformance | None:
    """The report's CBPE estimates per window; ``None`` where the log cannot be estimated."""
    from modelyard.monitoring.estimated import estimate_performance

    try:
        return estimate_performance(
            root, name, since=window, chunk=format_duration(every), registry=registry,
            settings=options.estimation if options is not None else None, now=now,
        )  # fmt: skip
    except ModelyardError:
        return None


def _reconstruction(
    registry: Registry,
    root: str | Path,
    name: str,
    *,
    window: timedelta,
    every: timedelta,
    reference: str | None,
    options: DriftOptions | None,
    now: datetime,
) -> Reconstruction | None:
    """The report's reconstruction error per window; ``None`` where it cannot be fitted."""
    from modelyard.monitoring.multivariate import reconstruction_error

    try:
        return reconstruction_error(
            registry, root, name, window=window, every=every, reference=reference,
            options=options, now=now,
        )  # fmt: skip
    except ModelyardError:
        return None


def _stored(reference: str | None) -> bool:
    """Whether ``reference`` is a model version (its stored profile) rather than a data file."""
    return reference is None or Path(reference).suffix.lower() not in (".csv", ".parquet", ".pq")


def _performance(
    registry: Registry, root: str | Path, name: str, *, start: datetime, end: datetime
) -> Performance | None:
    from modelyard.monitoring.labels import has_labels
    from modelyard.monitoring.performance import compute_performance

    # Without labels there is no performance to compute, and computing it would still read
    # every prediction of the window (its request ids, to join them with none) each round.
    if not has_labels(root, name):
        return None
    try:
        performance = compute_performance(
            root, name, start=start, end=end, registry=registry, count_unmatched=False
        )
    except ModelyardError:
        return None
    return performance if performance.labelled else None


def _detector(ref: Ref, options: DriftOptions, *, columns: Sequence[str]) -> DriftDetector:
    """A detector on the reference columns the current data has (hashed or dropped ones out)."""
    keep = [c for c in columns if c not in options.exclude]
    if isinstance(ref.data, Profile):
        known = {c.name for c in ref.data.columns}
        missing = [c for c in keep if c not in known]
        if missing:
            raise InvalidInputError(
                f"The current data has columns the reference {ref.description} lacks: "
                f"{', '.join(map(repr, missing))}; compare data of the same model."
            )
        subset = tuple(c for c in ref.data.columns if c.name in set(keep))
        data: pd.DataFrame | Profile = msgspec.structs.replace(ref.data, columns=subset)
    else:
        missing = [c for c in keep if c not in set(map(str, ref.data.columns))]
        if missing:
            raise InvalidInputError(
                f"The current data has columns the reference {ref.description} lacks: "
                f"{', '.join(map(repr, missing))}; pass a reference with the same columns."
            )
        data = ref.data[keep]
    rules = {k: v for k, v in options.columns.items() if k in set(keep)}
    return DriftDetector(
        columns=rules, thresholds=options.thresholds, share_threshold=options.share_threshold
    ).fit(data, description=ref.description, salt=ref.text.fingerprint_ if ref.text else "")


# --- text inputs -------------------------------------------------------------------------------


def _with_text(registry: Registry, ref: Ref, options: DriftOptions, columns: Sequence[str]) -> Ref:
    """``ref`` with its text columns (among ``columns``, the current data's inputs) replaced by
    their descriptors; as it is when there are none, or no reference rows to learn them from
    (a version registered without data)."""
    candidates = [c for c in columns if c not in options.exclude]
    if isinstance(ref.data, Profile):
        named = options.text_columns
        if named is None:
            named = frozenset({_text_input(ref.found) or ""})
        # the sample is read only for a column that may be text: named so, or with more
        # distinct values than the profile keeps (free text is mostly distinct; the usual
        # categorical column is not, and costs no read of the artifact store)
        strings = [
            c.name
            for c in ref.data.columns
            if c.name in candidates
            and c.kind == "categorical"
            and (
                c.name in named
                or (options.text_columns is None and (c.n_unique or 0) > len(c.top or ()))
            )
        ]
        if not strings or ref.version is None:
            return ref
        try:
            rows = pd.read_parquet(io.BytesIO(registry.read_file(ref.version, "sample")))
        except ModelyardError:
            return ref
    else:
        rows = ref.data
        strings = [
            c
            for c in candidates
            if c in rows.columns and column_kind(column_dtype(rows[c])) == "categorical"
        ]
    texts = _text_columns(strings, rows, ref.found, options)
    if not texts:
        return ref
    text = TextDescriptors(texts).fit(rows)
    described = text.reference_frame(rows)
    if isinstance(ref.data, pd.DataFrame):
        return Ref(described, ref.description, ref.version, ref.found, text, ref.rows)
    names = [n for c in texts for n in descriptor_names(c)]
    by_name = {c.name: c for c in profile_descriptors(described[names], bins=ref.data.bins)}
    kept: list[ColumnProfile] = []
    for column in ref.data.columns:
        if column.name in texts:
            kept.extend(by_name[n] for n in descriptor_names(column.name))
        else:
            kept.append(column)
    data = msgspec.structs.replace(ref.data, columns=tuple(kept))
    return Ref(data, ref.description, ref.version, ref.found, text, ref.rows)


def _text_columns(
    strings: Sequence[str], rows: pd.DataFrame, found: ModelVersion | None, options: DriftOptions
) -> list[str]:
    """Which of the string columns ``strings`` hold free text (see the module)."""
    if options.text_columns is not None:
        return [c for c in strings if c in options.text_columns]
    named = _text_input(found)
    return [c for c in strings if c == named or (c in rows.columns and looks_like_text(rows[c]))]


def _text_input(found: ModelVersion | None) -> str | None:
    """The input a version's flavor meta names as its text (``text_input``)."""
    if found is None:
        return None
    meta = found.flavor_meta
    model = meta.get("model")
    named = model.get("text_input") if isinstance(model, dict) else None
    named = named or meta.get("text_input")
    return named if isinstance(named, str) else None


# --- embedding outputs -------------------------------------------------------------------------
