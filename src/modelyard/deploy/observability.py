"""The observability bundle (``yard observability -o DIR``): a Grafana dashboard, Prometheus
alerting rules with their ``promtool test rules`` cases, and the runbook the alerts link to.

``rule_groups`` is what ``yard k8s`` puts in a PrometheusRule; ``grafana_dashboard`` the JSON a
Grafana imports (or a provisioning ConfigMap carries).
"""

from __future__ import annotations

import json
import string
from importlib import resources
from pathlib import Path

import yaml

from modelyard.deploy._alert_tests import rule_tests
from modelyard.deploy._alerts import INFERENCE_ROUTES, AlertThresholds, alert_groups
from modelyard.deploy._dashboard import build_dashboard
from modelyard.deploy._folder import check_output_dir, write_folder
from modelyard.errors import InvalidInputError

__all__ = [
    "BUNDLE_FILES",
    "DASHBOARD_FILE",
    "INFERENCE_ROUTES",
    "RULES_FILE",
    "RULES_TEST_FILE",
    "RUNBOOK_FILE",
    "AlertThresholds",
    "grafana_dashboard",
    "rule_groups",
    "write_bundle",
]

_COMMAND = "yard observability"
DASHBOARD_FILE = "modelyard-dashboard.json"
RULES_FILE = "modelyard-alerts.yaml"
RULES_TEST_FILE = "modelyard-alerts.test.yaml"
RUNBOOK_FILE = "RUNBOOK.md"
BUNDLE_FILES = (DASHBOARD_FILE, RULES_FILE, RULES_TEST_FILE, RUNBOOK_FILE)


def rule_groups(
    thresholds: AlertThresholds | None = None, *, runbook_url: str = RUNBOOK_FILE
) -> list[dict[str, object]]:
    """Prometheus rule groups (``{"name": ..., "rules": [...]}``), as a rule file's ``groups``
    or a PrometheusRule's ``spec.groups`` hold them. Each alert's ``runbook_url`` annotation is
    ``runbook_url`` + ``#`` + the alert's name in lower case (its section of RUNBOOK.md)."""
    t = thresholds or AlertThresholds()
    _check_url(runbook_url)
    return [
        {"name": name, "rules": [alert.rule(runbook_url) for alert in alerts]}
        for name, alerts in alert_groups(t)
    ]


def grafana_dashboard(thresholds: AlertThresholds | None = None) -> dict[str, object]:
    """The Grafana dashboard (JSON model, ``uid`` ``modelyard-serving``); the alert thresholds
    are drawn as red lines on their panels."""
    return build_dashboard(thresholds or AlertThresholds())


def write_bundle(
    directory: Path,
    *,
    thresholds: AlertThresholds | None = None,
    runbook_url: str = RUNBOOK_FILE,
    force: bool = False,
) -> list[Path]:
    """Write ``BUNDLE_FILES`` into ``directory`` whole or not at all: they are made in a sibling
    temporary folder that then takes the directory's place. An existing non-empty directory is
    replaced only with ``force``. Returns the files written."""
    t = thresholds or AlertThresholds()
    groups = rule_groups(t, runbook_url=runbook_url)
    directory = Path(directory)
    check_output_dir(directory, force=force, command=_COMMAND)
    texts = {
        DASHBOARD_FILE: json.dumps(grafana_dashboard(t), indent=2) + "\n",
        RULES_FILE: _yaml({"groups": groups}),
        RULES_TEST_FILE: _yaml(rule_tests(t, rules_file=RULES_FILE, runbook_url=runbook_url)),
        RUNBOOK_FILE: _runbook(t),
    }
    write_folder(directory, texts, force=force, command=_COMMAND)
    return [directory / name for name in BUNDLE_FILES]


def _check_url(url: str) -> None:
    if not url or any(c.isspace() for c in url) or "#" in url:
        raise InvalidInputError(
            f"Runbook URL {url!r} must be an address without spaces or '#' (each alert adds "
            "its own #section), e.g. --runbook-url https://wiki.example.com/modelyard/RUNBOOK.md."
        )


def _runbook(t: AlertThresholds) -> str:
    source = resources.files("modelyard.deploy") / "templates" / "observability-runbook.md"
    return string.Template(source.read_text(encoding="utf-8")).substitute(
        error_ratio=f"{t.error_ratio:g}",
        error_ratio_pct=f"{t.error_ratio * 100:.4g}%",
        p99_ms=f"{t.p99_ms:g}",
        queue_depth=f"{t.queue_depth:g}",
        queue_pct=f"{t.queue_saturation * 100:.4g}%",
        max_queue=str(t.max_queue),
        drift_share=f"{t.drift_share:g}",
        drift_share_pct=f"{t.drift_share * 100:.4g}%",
        log_backlog_rows=str(t.log_backlog_rows),
    )


class _BlockDumper(yaml.SafeDumper):
    """Multi-line strings (the PromQL) as YAML literal blocks, the way people write rules."""


def _str(dumper: yaml.SafeDumper, value: str) -> yaml.Node:
    style = "|" if "\n" in value else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)


_BlockDumper.add_representer(str, _str)


def _yaml(value: object) -> str:
    # no folding: a long description stays one line, as people grep for it
    return yaml.dump(value, Dumper=_BlockDumper, sort_keys=False, width=1 << 16, allow_unicode=True)
