"""The registry's pages: the models, one model (its versions, alias timeline and rollback), two
versions compared, and one version (signature, files and their verification, lineage, the
training-data profile, ONNX and int8 twins)."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from modelyard.core.refs import check_alias
from modelyard.ui import _registry_data as data
from modelyard.ui._base import (
    ROOT,
    Confirm,
    action,
    blocking,
    done,
    page,
    page_number,
    query_text,
    quote,
    registry_for,
    render,
    state,
    url,
)


def _name(request: Request) -> str:
    return data.model_name(str(request.path_params["name"]))


def _number(request: Request, name: str) -> int:
    return data.version_number(name, str(request.path_params["number"]))


@page
async def models(request: Request) -> Response:
    filters = data.Filters(
        q=query_text(request, "q"),
        prefix=query_text(request, "prefix"),
        tag=query_text(request, "tag"),
        alias=query_text(request, "alias"),
        flavor=query_text(request, "flavor"),
    )
    context = await blocking(
        data.models_view, state(request).registry, filters, page_number(request)
    )
    return render(request, "registry/models.html", context)


@page
async def model(request: Request) -> Response:
    name = _name(request)
    context = await blocking(data.model_view, state(request).registry, name, page_number(request))
    return render(request, "registry/model.html", context)


@page
async def compare(request: Request) -> Response:
    name = _name(request)
    a = data.version_number(name, request.query_params.get("a"), what="Version a")
    b = data.version_number(name, request.query_params.get("b"), what="Version b")
    context = await blocking(data.compare_view, state(request).registry, name, a, b)
    return render(request, "registry/compare.html", context)


@page
async def version(request: Request) -> Response:
    name = _name(request)
    ui = state(request)
    charts = ui.caches.setdefault("registry.charts", {})
    context = await blocking(data.version_view, ui.registry, name, _number(request, name),
                             charts_cache=charts)  # fmt: skip
    return render(request, "registry/version.html", context)


def _model_url(name: str) -> str:
    return url(f"models/{quote(name)}")


async def _describe_rollback(request: Request, form: dict[str, str]) -> Confirm:
    name = _name(request)
    alias = check_alias(form.get("alias", ""))
    current, earlier = await blocking(state(request).registry.rollback_target, name, alias)
    return Confirm(
        title=f"Roll back {name}@{alias}",
        detail=f"Alias {alias!r} of {name!r} moves from version {current} back to version "
        f"{earlier}, where it pointed before its last move; the move is recorded in the audit "
        "under your token.",
        back=_model_url(name),
    )


@action(_describe_rollback)
async def rollback(request: Request, form: dict[str, str]) -> Response:
    name = _name(request)
    alias = check_alias(form.get("alias", ""))
    reason = (form.get("reason") or "").strip()[:500] or None
    event = await blocking(registry_for(request).rollback, name, alias, reason=reason)
    return done(
        _model_url(name),
        f"{name}@{alias} moved back to version {event.to_version} "
        f"(from version {event.from_version}).",
    )


def _describe_verify(request: Request, form: dict[str, str]) -> Confirm:
    name = _name(request)
    number = _number(request, name)
    return Confirm(
        title=f"Verify {name}/{number}",
        detail=f"Every file of {name}/{number} is read back from the artifact store and "
        "its sha256 checked; large models take a while.",
        back=url(f"models/{quote(name)}/versions/{number}"),
    )


@action(_describe_verify)
async def verify(request: Request, form: dict[str, str]) -> Response:
    name = _name(request)
    number = _number(request, name)
    context = await blocking(data.verify_view, registry_for(request), name, number)
    return render(request, "registry/version.html", context)


ROUTES = [
    Route(f"{ROOT}/models", models),
    Route(f"{ROOT}/models/{{name}}", model),
    Route(f"{ROOT}/models/{{name}}/compare", compare),
    Route(f"{ROOT}/models/{{name}}/versions/{{number}}", version),
    Route(f"{ROOT}/models/{{name}}/rollback", rollback, methods=["POST"]),
    Route(f"{ROOT}/models/{{name}}/versions/{{number}}/verify", verify, methods=["POST"]),
]
