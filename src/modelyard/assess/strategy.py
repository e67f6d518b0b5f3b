"""The report's plan sections beyond the score: technology stack, monitoring strategy, deployment
strategy, maintenance plan, risks tied to findings, and the architecture as a Mermaid flowchart
of what the registry and store know (data, pipelines, models, deployments, monitors, alerts)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from importlib import metadata
from typing import TYPE_CHECKING, Any

from modelyard.assess.rubric import TESTS
from modelyard.assess.types import Risk, StackItem, TestResult

if TYPE_CHECKING:
    from modelyard.assess.project import ProjectFacts
    from modelyard.assess.store import StoreFacts
    from modelyard.settings import DriftSettings

__all__ = ["architecture", "deployment_strategy", "maintenance", "monitoring", "risks", "stack"]

_PROPOSED = (
    (
        "drift",
        ("drift_share", "drift:"),
        "drift_share",
        ">=",
        0.5,
        "training/serving skew (Monitor 3)",
    ),
    (
        "quality",
        ("performance:", "estimated:", "outcome:"),
        "estimated:roc_auc",
        "<",
        0.8,
        "prediction quality (Monitor 7); performance:<metric> once labels arrive",
    ),
    (
        "latency",
        ("p50_latency_ms", "p99_latency_ms"),
        "p99_latency_ms",
        ">",
        100.0,
        "computing performance (Monitor 6)",
    ),
    (
        "stability",
        ("error_rate", "output_drift:"),
        "error_rate",
        ">",
        0.01,
        "numerical stability and failures (Monitor 5)",
    ),
)


def stack(store: StoreFacts, *, runtime: str) -> tuple[StackItem, ...]:
    """What is in use, with versions: the installed modelyard, the metadata database, the
    artifact store, the served version's flavor, and the packages its lineage recorded."""
    items = [StackItem(name="modelyard", version=_installed("modelyard"), source="installed")]
    items.append(
        StackItem(name=store.database.split(":", 1)[0], version="-", source="metadata database")
    )
    scheme = store.artifact_root.split("://", 1)[0] if "://" in store.artifact_root else "file"
    items.append(StackItem(name=f"artifacts ({scheme})", version="-", source="artifact store"))
    v = store.version
    if v is not None:
        items.append(StackItem(name=f"flavor {v.flavor}", version="-", source=f"{v.ref}"))
        items.append(StackItem(name="serving runtime", version=runtime, source="settings"))
        if v.lineage.python:
            items.append(
                StackItem(name="python", version=v.lineage.python, source=f"lineage of {v.ref}")
            )
        items += [
            StackItem(name=name, version=version, source=f"lineage of {v.ref}")
            for name, version in sorted(v.lineage.packages.items())
        ]
    return tuple(items)


def monitoring(store: StoreFacts, project: ProjectFacts, *, drift: DriftSettings) -> dict[str, Any]:
    """The alert rules in force (with the ones firing now), the prediction log and labels, and
    the rules proposed for what no rule watches yet."""
    name = store.deployment.name if store.deployment is not None else "DEPLOYMENT"
    mine = store.deployment_rules()
    rules = [
        {
            "name": r.name,
            "deployment": r.deployment,
            "metric": r.metric,
            "op": r.op,
            "threshold": r.threshold,
            "window": r.window,
            "for": r.hold,
            "where": project.rule_line(r.name),
            "firing": r.name in store.firing,
        }
        for r in store.rules
    ]
    proposed = []
    for kind, prefixes, metric, op, threshold, why in _PROPOSED:
        if any(r.metric.startswith(prefixes) for r in mine):
            continue
        toml = (
            f'[[monitoring.alerts.rules]]\nname = "{name}-{kind}"\ndeployment = "{name}"\n'
            f'metric = "{metric}"\nop = "{op}"\nthreshold = {threshold:g}\nwindow = "1h"\n'
            'for = "10m"'
        )
        proposed.append({"metric": metric, "why": why, "toml": toml})
    return {
        "log": store.log_on,
        "predictions": store.predictions,
        "labels": store.labels,
        "drift": {
            "share_threshold": drift.share_threshold,
            "window": drift.window,
            "thresholds": dict(drift.thresholds),
        },
        "rules": rules,
        "proposed": proposed,
    }


def deployment_strategy(store: StoreFacts) -> dict[str, Any]:
    """The rollout policy in force for each deployment, and the retraining loop's rollout."""
    deployments = [
        {
            "name": d.name,
            "stable": d.stable_ref,
            "alias": d.stable_alias,
            "candidate": d.candidate_ref,
            "mode": d.mode,
            "weight": d.weight,
            "steps": list(d.steps),
            "bake_s": d.bake_s,
            "auto": d.auto,
            "state": d.state,
            "policy": {
                "min_requests": d.policy.min_requests,
                "max_error_rate": d.policy.max_error_rate,
                "max_p99_ratio": d.policy.max_p99_ratio,
                "max_output_distance": d.policy.max_output_distance,
                "on_breach": d.policy.on_breach,
            },
        }
        for d in store.deployments
    ]
    loops = {
        name: {
            "mode": loop.rollout.mode,
            "steps": list(loop.rollout.steps),
            "bake": loop.rollout.bake,
            "require_approval": loop.require_approval,
        }
        for name, loop in store.loops.items()
    }
    canaried = any(e.action == "start" for e in store.deployment_events)
    proposed = None
    if not canaried and not loops:
        proposed = (
            "Roll each new version out as a canary with automatic analysis: yard deploy "
            "DEPLOYMENT --canary MODEL/N --steps 10,50,100 --bake 10m --auto (breaches roll "
            "back)."
        )
    return {"deployments": deployments, "loops": loops, "proposed": proposed}


def maintenance(store: StoreFacts, *, now: datetime | None = None) -> dict[str, Any]:
    """Retraining triggers, staleness (model age against drift) and labels."""
    now = now or datetime.now(UTC)
    v = store.version
    age_days = round((now - v.created_at).total_seconds() / 86400, 1) if v is not None else None
    loop = store.loop()
    retraining = None
    if loop is not None:
        t = loop.trigger
        retraining = {
            "alerts": list(t.alerts),
            "metric": t.metric,
            "below": t.below,
            "drift_share": t.drift_share,
            "max_age": t.max_age,
            "cooldown": loop.cooldown,
            "pipeline": loop.train.pipeline,
        }
    drift_rules = [r.name for r in store.deployment_rules() if r.metric.startswith("drift")]
    return {
        "model_age_days": age_days,
        "registered_at": v.created_at.isoformat() if v is not None else None,
        "retraining": retraining,
        "drift_rules": drift_rules,
        "drift_firing": [r for r in store.firing if r in drift_rules],
        "labels": store.labels,
        "label_delay": _delay_text(store),
        "proposed": None
        if retraining
        else (
            "Add [loops.DEPLOYMENT] with trigger.max_age and trigger.drift_share so the model "
            "retrains when it is old or its data has drifted (Monitor 4)."
        ),
    }


def _delay_text(store: StoreFacts) -> str:
    delay, count = store.label_delay
    if not store.labels:
        return "no labels ingested"
    if delay is None:
        return "labels ingested, none matches a logged prediction yet"
    hours = delay / 3600
    shown = f"{hours:.1f} h" if hours >= 1 else f"{delay / 60:.1f} min"
    return f"median {shown} from prediction to label, over {count} labelled predictions"


def risks(results: Sequence[TestResult]) -> tuple[Risk, ...]:
    """A risk for each test that is missing, tied to what the collectors found."""
    by_id = {t.id: t for t in TESTS}
    out = []
    for r in results:
        if r.status != "missing":
            continue
        found = "; ".join(f"{e.where}: {e.detail}" for e in r.evidence[:3])
        finding = f"{r.label} missing" + (f" (found: {found})" if found else " (nothing found)")
        out.append(
            Risk(test=r.id, risk=by_id[r.id].risk, finding=finding, mitigation=r.next_step or "-")
        )
    return tuple(out)


def architecture(store: StoreFacts, project: ProjectFacts) -> str:
    """A Mermaid flowchart of the system as recorded: data sources (lineage fingerprints),
    pipelines (files and runs), registry models with their aliases, deployments, the prediction
    log, alert rules and retraining loops."""
    lines = ["flowchart LR"]
    ids: dict[str, str] = {}

    def node(key: str, label: str, shape: str = "[]") -> str:
        if key not in ids:
            ids[key] = f"n{len(ids) + 1}"
            half = len(shape) // 2  # "[()]": "[(" opens, ")]" closes
            lines.append(f'  {ids[key]}{shape[:half]}"{_label(label)}"{shape[half:]}')
        return ids[key]

    def edge(a: str, b: str, text: str = "") -> None:
        lines.append(f"  {a} -->|{_label(text)}| {b}" if text else f"  {a} --> {b}")

    piped = [node(f"p:{p}", p, "[]") for p in _pipelines(store, project)]
    v = store.version
    model = node(f"m:{store.model}", f"registry: {store.model}", "[()]") if store.model else None
    if v is not None and model is not None:
        aliases = ", ".join(f"@{a}" for a in v.aliases)
        version = node(f"v:{v.ref}", f"{v.ref} {v.flavor}" + (f" {aliases}" if aliases else ""))
        edge(model, version)
        if v.lineage.dataset is not None:
            data = node(
                "d", f"data {v.lineage.dataset.sha256[:8]} ({v.lineage.dataset.rows} rows)", "[//]"
            )
            for p in piped or [version]:
                edge(data, p)
        for p in piped:
            edge(p, model, "registers")
    for d in store.deployments:
        dep = node(f"dep:{d.name}", f"deployment {d.name}", "{}")
        stable = node(f"m:{d.stable_model}", f"registry: {d.stable_model}", "[()]")
        edge(stable, dep, f"stable {d.stable_version}")
        if d.candidate_ref is not None:
            edge(stable, dep, f"{d.mode} {d.candidate_version} {d.weight:g}%")
        if (
            store.deployment is not None
            and d.name == store.deployment.name
            and (store.log_on or store.predictions)
        ):
            log = node(
                f"log:{d.name}", "prediction log" + (" + labels" if store.labels else ""), "[()]"
            )
            edge(dep, log)
    for r in store.rules:
        target = ids.get(f"log:{r.deployment}") or ids.get(f"dep:{r.deployment}")
        alert = node(f"a:{r.name}", f"alert {r.name}: {r.metric} {r.op} {r.threshold:g}", "([])")
        if target is not None:
            edge(target, alert)
    for name, loop in store.loops.items():
        looped = node(f"loop:{name}", f"retraining loop {name}", "[[]]")
        for alert_name in loop.trigger.alerts:
            if f"a:{alert_name}" in ids:
                edge(ids[f"a:{alert_name}"], looped, "triggers")
        if f"dep:{name}" in ids:
            edge(looped, ids[f"dep:{name}"], loop.rollout.mode)
    if len(lines) == 1:
        lines.append('  n1["nothing recorded yet: yard run pipeline.py registers a model"]')
    return "\n".join(lines)


def _pipelines(store: StoreFacts, project: ProjectFacts) -> list[str]:
    """The pipelines' labels: those that ran (by name), with the file when the project has one
    pipeline file; else the pipeline files."""
    ran = sorted({s.pipeline for s in store.steps if s.pipeline})
    files = project.pipeline_files
    if not ran:
        return [f"pipeline {f}" for f in files]
    where = f" ({files[0]})" if len(files) == 1 else ""
    return [f"pipeline {name}{where}" for name in ran]


def _label(text: str) -> str:
    """Mermaid label text (always inside quotes): the characters that could end the label or
    start an entity or an edge label as entity codes, so a name cannot break the diagram."""
    table = {'"': "#quot;", "<": "#lt;", ">": "#gt;", "|": "#124;", "#": "#35;"}
    return "".join(table.get(c, c) for c in text.replace("\n", " "))


def _installed(name: str) -> str:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return "not installed"
