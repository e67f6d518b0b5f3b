"""Monitoring pages: every logged deployment (or served model) with its volume, current drift and
firing alerts, and one name's drift over a selectable window (1h, 24h, 7d): drift share per hour,
per-column scores with reference vs current histograms, output drift, performance once labels
arrive, estimated performance, and alert incidents."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from modelyard.monitoring.dashboard import WINDOWS
from modelyard.ui import _monitoring_data as data
from modelyard.ui._base import ROOT, blocking, page, render, state


@page
async def monitoring(request: Request) -> Response:
    ui = state(request)
    summaries = await blocking(data.overview, ui)
    return render(request, "monitoring/list.html", {"summaries": summaries})


@page
async def monitored(request: Request) -> Response:
    ui = state(request)
    name = request.path_params["name"]
    found = await blocking(data.detail, ui, name, request.query_params.get("window"))
    return render(request, "monitoring/detail.html", {"d": found, "windows": list(WINDOWS)})


ROUTES = [
    Route(f"{ROOT}/monitoring", monitoring),
    Route(f"{ROOT}/monitoring/{{name}}", monitored),
]
