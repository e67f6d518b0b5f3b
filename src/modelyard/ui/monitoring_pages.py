"""Monitoring pages: every logged deployment (or served model) with its volume, current drift and
firing alerts, and one name's drift over a selectable window (1h, 24h, 7d): drift share per hour,
per-column scores with reference vs current histograms, output drift, performance once labels
arrive, estimated performance, and alert incidents."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from modelyard.errors import InvalidInputError
from modelyard.monitoring.dashboard import WINDOWS
from modelyard.ui import _monitoring_data as data
from modelyard.ui._base import ROOT, blocking, fragment, page, render, state

#: Seconds before a page still being computed reloads itself (the ``Refresh`` header: no
#: script needed, and the Content-Security-Policy allows it).
RELOAD_S = 2


#: Seconds between the list's live refreshes (``static/live.js``).
LIVE_S = 30


@page
async def monitoring(request: Request) -> Response:
    ui = state(request)
    part = request.query_params.get("part")
    if part not in (None, "rows"):
        raise InvalidInputError(f"Part {part[:40]!r} is not one of this page's; use part=rows.")
    rows = await blocking(data.overview, ui)
    if part == "rows":
        return fragment(request, "monitoring/_rows.html", {"rows": rows})
    response = render(request, "monitoring/list.html", {"rows": rows, "every": LIVE_S})
    if any(r.summary is None and r.error is None for r in rows):
        response.headers["Refresh"] = str(RELOAD_S)
    return response


@page
async def monitored(request: Request) -> Response:
    ui = state(request)
    name = request.path_params["name"]
    window = request.query_params.get("window")
    found = await blocking(data.detail, ui, name, window)
    if found is None:
        context = {"name": name, "window": window or "24h", "windows": list(WINDOWS)}
        response = render(request, "monitoring/computing.html", context)
        response.headers["Refresh"] = str(RELOAD_S)
        return response
    return render(request, "monitoring/detail.html", {"d": found, "windows": list(WINDOWS)})


ROUTES = [
    Route(f"{ROOT}/monitoring", monitoring),
    Route(f"{ROOT}/monitoring/{{name}}", monitored),
]
