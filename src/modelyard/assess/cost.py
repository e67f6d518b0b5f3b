"""Cost and resource use per model, the report's ``cost`` section.

Not measured yet: the server's per-model CPU-seconds and memory (issue 17's second part) fill
it. ``collect_cost`` is the one place to do that: it gets the store facts of the assessment (the
assessed model, version and deployment, the settings' log root) and returns a ``CostReport``;
set ``status="measured"`` and put one mapping per model version in ``models`` (for example
``{"model": "churn/2", "cpu_s_per_1k": 0.8, "memory_mb": 120.0, "cost_per_1k": 0.0004}``) and
the ``currency`` of the prices. The Markdown and HTML reports draw ``models`` as a table (one
column per key, in first-seen order; ``None`` shows as ``-``), ``--json`` prints it as given, and
``detail`` is the sentence above the table. ``tests/unit/assess/test_report.py`` renders a
measured section.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from modelyard.assess.types import CostReport

if TYPE_CHECKING:
    from modelyard.assess.store import StoreFacts
    from modelyard.settings import Settings

__all__ = ["collect_cost"]


def collect_cost(store: StoreFacts, settings: Settings) -> CostReport:
    """The cost section for the assessed deployment: not measured yet (see the module)."""
    del store, settings  # the measurement lands with the server's per-model accounting
    return CostReport()
