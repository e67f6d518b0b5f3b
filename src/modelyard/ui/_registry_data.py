"""What the registry pages show, gathered in one thread call per page: the registry's lean
listings (``registry.overview``), a version and its profile, two versions compared
(``registry.compare``), drawn with the shared charts."""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from markupsafe import Markup

from modelyard.core.datasources import fetch_hint
from modelyard.core.refs import check_alias, check_name
from modelyard.core.types import ModelVersion, Page
from modelyard.errors import IntegrityError, InvalidInputError, NotFoundError
from modelyard.monitoring.charts import bars_svg, histogram_svg
from modelyard.monitoring.types import Histogram
from modelyard.registry import FileCheck, Registry
from modelyard.registry.compare import (
    bin_labels,
    bin_shares,
    compare_versions,
    reference_profile,
)
from modelyard.registry.overview import alias_spans, model_summaries, version_summaries

if TYPE_CHECKING:
    from modelyard.core.profile import ColumnProfile, Profile

MODELS_PER_PAGE = 50
VERSIONS_PER_PAGE = 25
MAX_METRIC_COLUMNS = 12
MAX_VERSION = 2**31 - 1


class PageNotFoundError(NotFoundError):
    """A page number past the last page of a listing."""


@dataclass(frozen=True)
class Filters:
    """The model list's filters, as in ``yard models list``."""

    q: str | None = None
    prefix: str | None = None
    tag: str | None = None
    alias: str | None = None
    flavor: str | None = None

    def query(self) -> dict[str, str]:
        return {k: v for k, v in vars(self).items() if v}


def model_name(text: str) -> str:
    """A model name from a URL, checked (hostile text gets a 400 naming the rule)."""
    return check_name(text)


def version_number(name: str, text: str | None, *, what: str = "Version") -> int:
    if text is None or not text.strip():
        raise InvalidInputError(f"{what} of {name!r} is missing; give a version number such as 1.")
    text = text.strip()
    if not text.isdigit() or not 1 <= int(text) <= MAX_VERSION:
        raise InvalidInputError(
            f"{what} {text[:40]!r} of {name!r} is not a version number; versions are 1, 2, 3, ..."
        )
    return int(text)


def _check_page(result: Page, what: str) -> None:
    if result.page > 1 and not result.items:
        last = (result.total + result.page_size - 1) // result.page_size or 1
        raise PageNotFoundError(
            f"Page {result.page} is past the last page ({last}) of {what}; go back to page 1."
        )


def models_view(registry: Registry, filters: Filters, page: int) -> dict[str, Any]:
    if filters.alias:
        check_alias(filters.alias)
    result = model_summaries(
        registry.db, search=filters.q, prefix=filters.prefix, tag=filters.tag,
        alias=filters.alias, flavor=filters.flavor, page=page, page_size=MODELS_PER_PAGE,
    )  # fmt: skip
    _check_page(result, "the models")
    return {"result": result, "filters": filters, "query": filters.query()}


def model_view(registry: Registry, name: str, page: int) -> dict[str, Any]:
    model = registry.get_model(name)
    versions = version_summaries(registry.db, name, page=page, page_size=VERSIONS_PER_PAGE)
    _check_page(versions, f"the versions of {name!r}")
    metrics = sorted({k for v in versions.items for k in v.metrics})[:MAX_METRIC_COLUMNS]
    spans = alias_spans(registry.history(name, limit=200))
    latest = model.latest_version
    return {
        "model": model,
        "versions": versions,
        "metric_names": metrics,
        "spans": spans,
        "pick": (max(latest - 1, 1), latest),
    }


def compare_view(registry: Registry, name: str, a: int, b: int) -> dict[str, Any]:
    first = registry.get_version(f"{name}/{a}")
    second = registry.get_version(f"{name}/{b}")
    profiles = [reference_profile(registry, v) for v in (first, second)]
    compared = compare_versions(first, second, *profiles)
    charts: dict[str, Markup] = {}
    apart: dict[str, list[Markup]] = {}
    for column in compared.columns:
        if column.shares is None:
            apart[column.name] = _each(profiles, column.name, (a, b))
        else:
            hist = Histogram(labels=column.shares.labels, reference=column.shares.a,
                             current=column.shares.b)  # fmt: skip
            charts[column.name] = bars_svg(
                hist, f"{column.name}: training data of versions {a} and {b}",
                names=(f"version {a}", f"version {b}"),
            )  # fmt: skip
    return {"a": first, "b": second, "compared": compared, "charts": charts, "apart": apart}


def _each(profiles: list[Profile | None], name: str, numbers: tuple[int, int]) -> list[Markup]:
    """A histogram of column ``name`` per version that has it (bins that differ)."""
    out = []
    for profile, number in zip(profiles, numbers, strict=True):
        column = next((c for c in profile.columns if c.name == name), None) if profile else None
        if column is not None and bin_labels(column):
            out.append(_histogram(column, f"{name}: training data of version {number}"))
    return out


def _histogram(column: ColumnProfile, title: str) -> Markup:
    return histogram_svg(bin_labels(column), bin_shares(column), title, edges=column.bin_edges)


#: How many versions' histograms the version page keeps drawn (oldest dropped first).
CHARTS_CACHED = 256


@dataclass(frozen=True)
class Twin:
    """An ONNX or int8 copy a version keeps beside its model, and what its check measured."""

    name: str
    kept: bool
    detail: str
    numbers: dict[str, Any]


def twins(version: ModelVersion) -> list[Twin]:
    """The version's ONNX export (sklearn, XGBoost, LightGBM, PyTorch, text models) and int8
    twin, with their parity numbers where registration recorded them."""
    meta = version.flavor_meta
    out = []
    if version.file("onnx") is not None and "onnx" in meta:
        out.append(Twin("ONNX", True, "passed the parity check on the training sample", {}))
    model = meta.get("model", {})
    parity = model.get("parity") if isinstance(model, dict) else None
    if isinstance(parity, dict):  # a PyTorch module's export
        out.append(Twin("ONNX (the stored model)", True, "export checked against the module",
                        dict(parity)))  # fmt: skip
    if isinstance(meta.get("parity"), dict):  # a text model's export
        out.append(Twin("ONNX (the stored model)", True, "export checked against the eager model",
                        dict(meta["parity"])))  # fmt: skip
    twin = meta.get("quantized")
    if isinstance(twin, dict):
        kept = bool(twin.get("kept"))
        detail = "kept" if kept else f"not kept: {twin.get('reason')}"
        numbers = {k: v for k, v in twin.items() if k not in ("kept", "reason")}
        out.append(Twin("int8", kept, detail, numbers))
    return out


def version_view(
    registry: Registry,
    name: str,
    number: int,
    checks: list[FileCheck] | None = None,
    *,
    charts_cache: dict[str, dict[str, Markup]] | None = None,
) -> dict[str, Any]:
    """The version page's context. A version's profile never changes, so its histograms are
    drawn once per profile file (``charts_cache``, keyed by its sha256) and reused."""
    version = registry.get_version(f"{name}/{number}")
    profile_error = None
    try:
        profile = reference_profile(registry, version)
    except IntegrityError as exc:  # the page still shows the files, to verify them
        profile, profile_error = None, str(exc)
    stored = version.file("profile")
    key = f"{stored.sha256}:{number}" if stored is not None else ""
    charts = charts_cache.get(key) if charts_cache is not None and profile else None
    if charts is None:
        charts = {}
        for column in profile.columns if profile else ():
            if bin_labels(column):
                charts[column.name] = _histogram(
                    column, f"{column.name}: training data of version {number}"
                )
        if charts_cache is not None and profile:
            if len(charts_cache) >= CHARTS_CACHED:
                # another request's thread may evict at the same moment: either one wins
                with contextlib.suppress(RuntimeError, StopIteration, KeyError):
                    charts_cache.pop(next(iter(charts_cache)))
            charts_cache[key] = charts
    tags = version.tags
    return {
        "v": version,
        "profile": profile,
        "charts": charts,
        "twins": twins(version),
        "checks": checks,
        "verified": registry.checks(version.ref, limit=5),
        "profile_error": profile_error,
        "pipeline": (tags.get("pipeline"), tags.get("pipeline_run")),
        # each Delta table / DVC file / Feast service read: (what, the command to fetch it)
        "sources": [fetch_hint(s) for s in version.lineage.data_sources],
    }


def verify_view(registry: Registry, name: str, number: int) -> dict[str, Any]:
    return version_view(registry, name, number, checks=registry.verify(f"{name}/{number}"))
