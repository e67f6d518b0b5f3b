"""Deployment pages: every deployment, one deployment's routes, live traffic, the analysis of its
current rollout step, the next step, promote and abort, and its rollout history.

Promote and abort call the same service functions as ``yard rollout promote`` and ``yard rollout
abort``, as the signed-in token, and carry the revision the page showed: if the deployment moved
since (the controller advanced it, someone else acted), the action is refused with a 409 and the
page must be looked at again.
"""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from modelyard import rollout
from modelyard.errors import ConcurrentUpdateError, InvalidInputError
from modelyard.rollout.specs import check_deployment_name
from modelyard.ui import _deployment_data as data
from modelyard.ui._base import (
    ROOT,
    Confirm,
    action,
    actor,
    blocking,
    done,
    fragment,
    page,
    quote,
    registry_for,
    render,
    state,
    url,
)

MAX_REASON_CHARS = 500


def _name(request: Request) -> str:
    """The deployment named in the path; a name no deployment could have is a 400."""
    return check_deployment_name(str(request.path_params["name"]))


def _page_of(name: str) -> str:
    return url(f"deployments/{quote(name)}")


@page
async def deployments(request: Request) -> Response:
    items = await blocking(data.list_view, state(request).registry)
    return render(request, "deployments/list.html", {"deployments": items, "data": data})


@page
async def deployment(request: Request) -> Response:
    name = _name(request)
    ui = state(request)
    view = await blocking(data.deployment_view, ui.settings, ui.registry, name)
    context = {"view": view, "d": view.status.deployment, "live": view.live, "data": data}
    return render(request, "deployments/show.html", context)


@page
async def live(request: Request) -> Response:
    """The routes' table, swapped into the deployment's page every few seconds."""
    name = _name(request)
    view = await blocking(data.live_view, state(request).registry, name)
    return fragment(request, "deployments/_live.html", {"live": view, "data": data})


# -- actions ------------------------------------------------------------------------------------


def _revision(form: dict[str, str]) -> int:
    text = form.get("revision", "")
    if not text.isdigit() or len(text) > 12:
        raise InvalidInputError(
            f"Revision {text[:20]!r} is not a revision number; reload the deployment's page."
        )
    return int(text)


def _reason(form: dict[str, str], *, required: bool) -> str | None:
    text = form.get("reason", "").strip()
    if len(text) > MAX_REASON_CHARS:
        raise InvalidInputError(f"The reason is longer than {MAX_REASON_CHARS} characters.")
    if required and not text:
        raise InvalidInputError("Say why you abort the rollout (the reason goes in its history).")
    return text or None


def _stale(name: str, revision: int) -> ConcurrentUpdateError:
    return ConcurrentUpdateError(
        f"Deployment {name!r} changed since its page was shown (at revision {revision}); open "
        f"{_page_of(name)} again to see what changed, then decide."
    )


def _describe_promote(request: Request, form: dict[str, str]) -> Confirm:
    name = _name(request)
    _revision(form)
    _reason(form, required=False)
    return Confirm(
        title=f"Promote the candidate of {name}",
        detail=(
            f"The candidate of deployment {name!r} becomes its stable route and gets every "
            "request; the stable alias moves to it. This is recorded in the rollout history "
            "and the audit, naming you."
        ),
        back=_page_of(name),
    )


def _describe_abort(request: Request, form: dict[str, str]) -> Confirm:
    name = _name(request)
    _revision(form)
    _reason(form, required=True)
    return Confirm(
        title=f"Abort the rollout of {name}",
        detail=(
            f"The candidate of deployment {name!r} is dropped and every request goes back to "
            "the stable route. This is recorded in the rollout history, naming you."
        ),
        back=_page_of(name),
    )


@action(_describe_promote)
async def promote(request: Request, form: dict[str, str]) -> Response:
    name, revision = _name(request), _revision(form)
    try:
        changed = await blocking(
            rollout.promote, registry_for(request), name, actor=actor(request),
            reason=_reason(form, required=False), expected_revision=revision,
        )  # fmt: skip
    except ConcurrentUpdateError as exc:
        raise _stale(name, revision) from exc
    return done(
        _page_of(name), f"Promoted {changed.stable_ref}: it is the stable route of {name} now."
    )


@action(_describe_abort)
async def abort(request: Request, form: dict[str, str]) -> Response:
    name, revision = _name(request), _revision(form)
    try:
        await blocking(
            rollout.abort, registry_for(request), name, actor=actor(request),
            reason=_reason(form, required=True), expected_revision=revision,
        )  # fmt: skip
    except ConcurrentUpdateError as exc:
        raise _stale(name, revision) from exc
    return done(_page_of(name), f"Aborted the rollout of {name}: every request goes to stable.")


ROUTES = [
    Route(f"{ROOT}/deployments", deployments),
    Route(f"{ROOT}/deployments/{{name}}", deployment),
    Route(f"{ROOT}/deployments/{{name}}/live", live),
    Route(f"{ROOT}/deployments/{{name}}/promote", promote, methods=["POST"]),
    Route(f"{ROOT}/deployments/{{name}}/abort", abort, methods=["POST"]),
]
