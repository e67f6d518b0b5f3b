"""Cost and resource use per model, the report's ``cost`` section: what each version of the
assessed deployment (or model) cost to serve over the last week of its prediction log, as
``yard monitor cost`` shows it (``modelyard.monitoring.cost``). The Markdown and HTML reports
draw ``models`` as a table (one column per key, in first-seen order); ``--json`` prints it.
"""

from __future__ import annotations

from datetime import timedelta
from typing import TYPE_CHECKING

from modelyard.assess.store import logged
from modelyard.assess.types import CostReport
from modelyard.errors import ModelyardError

if TYPE_CHECKING:
    from modelyard.assess.store import StoreFacts
    from modelyard.settings import Settings

__all__ = ["WINDOW", "collect_cost"]

#: How far back the assessment reads the log for cost.
WINDOW = timedelta(days=7)


def collect_cost(store: StoreFacts, settings: Settings) -> CostReport:
    """Each version's CPU-seconds, memory and money per 1,000 predictions over ``WINDOW``;
    ``not_measured`` with the reason and the next step where there is no measured log."""
    name = store.deployment.name if store.deployment is not None else store.model
    if name is None:
        return CostReport(
            detail="not measured: no model is registered; register one and serve it with "
            "'yard serve NAME --log-predictions'"
        )
    if logged(settings.resolved_log_root, f"deployment={name}") is False:
        return _no_log(name)  # before importing the log's readers (DuckDB)
    from modelyard.monitoring.cost import cost_report
    from modelyard.monitoring.mirror import readable_root
    from modelyard.monitoring.types import Prices

    try:
        report = cost_report(
            readable_root(settings, name), name, window=WINDOW,
            prices=Prices.of(settings.monitoring.cost),
        )  # fmt: skip
    except ModelyardError:
        return _no_log(name)
    if not report.measured or not report.models:
        return CostReport(
            detail=f"not measured: the log of {name!r} was written before the server measured "
            "cost; serve it again with 'yard serve --log-predictions'"
        )
    p = report.prices
    rows = tuple(
        {
            "model": f"{m.model}/{m.version}",
            "predictions": m.predictions,
            "cpu_s_per_1k": round(m.cpu_s_per_1k, 6),
            "memory_mb": round(m.memory_bytes / 1e6, 1),
            "gb_h_per_1k": float(f"{m.gb_h_per_1k:.4g}"),
            "cost_per_1k": float(f"{m.cost_per_1k:.4g}"),
            "cost": float(f"{m.cost:.4g}"),
        }
        for m in report.models
    )
    return CostReport(
        status="measured",
        detail=f"Serving cost of {name} over the last 7 days at {p.cpu_hour:g} {p.currency} per "
        f"CPU-hour and {p.gb_hour:g} per GB-hour of memory ('yard monitor cost {name} --since "
        "7d'; prices in [monitoring.cost]).",
        currency=p.currency,
        models=rows,
    )


def _no_log(name: str) -> CostReport:
    return CostReport(
        detail=f"not measured: {name!r} has no prediction log in the last 7 days; serve it "
        f"with 'yard serve --log-predictions', then see 'yard monitor cost {name}'"
    )
