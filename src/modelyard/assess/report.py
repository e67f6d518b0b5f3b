"""The assessment rendered: a text summary for the terminal, and the report an ML engineer
writes, in eight sections, as Markdown (``.md``; GitHub draws its Mermaid diagram) or as one
self-contained HTML page (``.html``; inline CSS, no script, autoescaped by jinja2 from
``templates/assessment.html.j2``)."""

from __future__ import annotations

from importlib import resources
from pathlib import Path

from modelyard.assess.types import Assessment, TestResult
from modelyard.errors import InvalidInputError

__all__ = [
    "SUFFIXES",
    "check_output",
    "render_html",
    "render_markdown",
    "render_text",
    "write_report",
]

SUFFIXES = (".md", ".html")
_TEMPLATE = "assessment.html.j2"
_SHOWN = {
    "automated": "automated",
    "manual": "manual",
    "missing": "missing",
    "not_applicable": "n/a",
}
_TITLES = (
    "1. Current state assessment",
    "2. Recommended architecture",
    "3. Implementation plan",
    "4. Technology stack",
    "5. Monitoring strategy",
    "6. Deployment strategy",
    "7. Maintenance plan",
    "8. Risk mitigation",
)


def check_output(path: str | Path) -> Path:
    """``path`` when its suffix is one the report is written as, else a one-line error."""
    out = Path(path)
    if out.suffix.lower() not in SUFFIXES:
        raise InvalidInputError(
            f"Cannot write the report as {out.name!r}: give a file ending in .md (Markdown) or "
            ".html (one self-contained page)."
        )
    if not out.parent.is_dir():
        raise InvalidInputError(
            f"The folder of {str(out)!r} does not exist; create it or write the report elsewhere."
        )
    return out


def write_report(assessment: Assessment, path: str | Path) -> Path:
    """Write the report where ``path`` says, as Markdown or HTML by its suffix; the file is
    replaced whole (written beside it, then renamed)."""
    out = check_output(path)
    text = render_html(assessment) if out.suffix.lower() == ".html" else render_markdown(assessment)
    partial = out.with_name(f".{out.name}.partial")
    partial.write_text(text, encoding="utf-8")
    partial.replace(out)
    return out


def render_text(a: Assessment) -> str:
    """The terminal summary: what was assessed, the sections, the score and its band, the first
    steps of the plan."""
    lines = [
        f"ML Test Score: {a.score:g} (band {a.band.range}): {a.band.reading}",
        f"  project {a.project or '-'}; model {a.model or '-'}; deployment {a.deployment or '-'}",
        "",
    ]
    for s in a.sections:
        lines.append(
            f"  {s.name:<20} {s.points:>4g} / 7   ({s.automated} automated, {s.manual} manual)"
        )
    lines.append("")
    for t in a.tests:
        lines.append(f"  {t.label:<10} {_SHOWN[t.status]:<10} {t.points:>3g}  {t.name}")
    if a.plan:
        lines += ["", "Next (most points per effort first):"]
        lines += [f"  +{p.gain:g} {p.label}: {p.next_step}" for p in a.plan[:5]]
    lines += ["", f"Cost: {a.cost.detail}"]
    return "\n".join(lines)


def render_markdown(a: Assessment) -> str:
    out = [
        "# Production readiness: the ML Test Score",
        "",
        f"Project `{a.project or '-'}`, model `{a.model or '-'}`, deployment "
        f"`{a.deployment or '-'}`; generated {a.generated_at}. {a.rubric}.",
        "",
        f"**Final score {a.score:g}** (the minimum of the four section sums), band "
        f"{a.band.range}: {a.band.reading}",
        "",
        f"## {_TITLES[0]}",
        "",
        "| Section | Points | Automated | Manual |",
        "|---|---:|---:|---:|",
        *[f"| {s.name} | {s.points:g} / 7 | {s.automated} | {s.manual} |" for s in a.sections],
        "",
        "| Test | Status | Points | Evidence | Next step |",
        "|---|---|---:|---|---|",
        *[_test_row(t) for t in a.tests],
        "",
        f"## {_TITLES[1]}",
        "",
        "```mermaid",
        a.architecture,
        "```",
        "",
        f"## {_TITLES[2]}",
        "",
    ]
    if a.plan:
        out += ["| # | Test | Gain | Effort | Step |", "|---:|---|---:|---:|---|"]
        out += [
            f"| {n} | {p.label}: {_cell(p.name)} | +{p.gain:g} | {p.effort} | "
            f"{_cell(p.next_step)} |"
            for n, p in enumerate(a.plan, start=1)
        ]
    else:
        out.append("Nothing left: every test is as far as it can go.")
    out += ["", f"## {_TITLES[3]}", "", "| Component | Version | Source |", "|---|---|---|"]
    out += [f"| {_cell(s.name)} | {_cell(s.version)} | {_cell(s.source)} |" for s in a.stack]
    out += ["", f"## {_TITLES[4]}", "", *_monitoring_md(a)]
    out += ["", f"## {_TITLES[5]}", "", *_deployment_md(a)]
    out += ["", f"## {_TITLES[6]}", "", *_maintenance_md(a)]
    out += ["", f"## {_TITLES[7]}", ""]
    if a.risks:
        out += ["| Risk | Finding | Mitigation |", "|---|---|---|"]
        out += [
            f"| {_cell(r.risk)} | {_cell(r.finding)} | {_cell(r.mitigation)} |" for r in a.risks
        ]
    else:
        out.append("No test is missing.")
    out += ["", "## Cost and resource use", "", a.cost.detail]
    columns = cost_columns(a)
    if columns:
        out += ["", "| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
        out += [
            "| " + " | ".join(_cell(_value(m.get(c))) for c in columns) + " |"
            for m in a.cost.models
        ]
    return "\n".join(out) + "\n"


def _test_row(t: TestResult) -> str:
    evidence = "<br>".join(_cell(f"{e.where}: {e.detail}") for e in t.evidence[:4]) or "-"
    status = _SHOWN[t.status] + (f" ({_cell(t.reason)})" if t.reason else "")
    step = _cell(t.next_step) if t.next_step else "-"
    return f"| {t.label}: {_cell(t.name)} | {status} | {t.points:g} | {evidence} | {step} |"


def _monitoring_md(a: Assessment) -> list[str]:
    m = a.monitoring
    out = [
        f"Prediction log: {'on' if m['log'] else 'off'}; predictions recorded: "
        f"{'yes' if m['predictions'] else 'no'}; labels: {'yes' if m['labels'] else 'no'}.",
        "",
    ]
    drift = m["drift"]
    assert isinstance(drift, dict)
    out += [
        f"Drift: a dataset drifts when at least {drift['share_threshold']:g} of its columns "
        f"drift, over {drift['window']} windows.",
        "",
    ]
    rules = m["rules"]
    assert isinstance(rules, list)
    if rules:
        out += ["| Rule | Deployment | Condition | Where | Firing |", "|---|---|---|---|---|"]
        out += [
            f"| {_cell(r['name'])} | {_cell(r['deployment'])} | {_cell(r['metric'])} {r['op']} "
            f"{r['threshold']:g} over {r['window']} for {r['for']} | {_cell(r['where'])} | "
            f"{'yes' if r['firing'] else 'no'} |"
            for r in rules
        ]
    else:
        out.append("No alert rules are configured.")
    proposed = m["proposed"]
    assert isinstance(proposed, list)
    for p in proposed:
        out += ["", f"Proposed, for {p['why']}:", "", "```toml", p["toml"], "```"]
    return out


def _deployment_md(a: Assessment) -> list[str]:
    d = a.deployment_strategy
    deployments, loops = d["deployments"], d["loops"]
    assert isinstance(deployments, list) and isinstance(loops, dict)
    out = []
    for dep in deployments:
        p = dep["policy"]
        out.append(
            f"- `{_cell(dep['name'])}`: stable {dep['stable']}"
            + (f" (follows @{dep['alias']})" if dep["alias"] else "")
            + (
                f", candidate {dep['candidate']} {dep['mode']} at {dep['weight']:g}%"
                if dep["candidate"]
                else ""
            )
            + f", state {dep['state']}; steps {dep['steps'] or '-'}, bake {dep['bake_s']:g}s, "
            f"{'automatic' if dep['auto'] else 'by hand'}; policy: at least {p['min_requests']} "
            f"requests, error rate <= {p['max_error_rate']:g}, p99 <= {p['max_p99_ratio']:g}x "
            f"stable, on breach {p['on_breach']}."
        )
    for name, loop in loops.items():
        out.append(
            f"- retraining loop `{_cell(name)}` rolls out as {loop['mode']} "
            f"{loop['steps']}, bake {loop['bake']}"
            + (", with approval" if loop["require_approval"] else "")
            + "."
        )
    if not out:
        out.append("No deployment yet.")
    if d["proposed"]:
        out += ["", f"Proposed: {d['proposed']}"]
    return out


def _maintenance_md(a: Assessment) -> list[str]:
    m = a.maintenance
    age = m["model_age_days"]
    out = [
        f"- Model age: {age:g} days (registered {m['registered_at']})."
        if isinstance(age, float | int)
        else "- Model age: no model registered."
    ]
    retraining = m["retraining"]
    if isinstance(retraining, dict):
        triggers = ", ".join(
            f"{k} {v}"
            for k, v in retraining.items()
            if v not in (None, [], "") and k not in ("pipeline", "cooldown")
        )
        out.append(
            f"- Retraining: {retraining['pipeline']} on {triggers or 'manual triggers'}"
            f" (cooldown {retraining['cooldown']})."
        )
    else:
        out.append("- Retraining: no loop policy.")
    drift, firing = m["drift_rules"], m["drift_firing"]
    assert isinstance(drift, list) and isinstance(firing, list)
    out.append(
        f"- Drift watched by: {', '.join(drift) or 'no rule'}; firing now: "
        f"{', '.join(firing) or 'none'}."
    )
    out.append(f"- Labels: {m['label_delay']}.")
    if m["proposed"]:
        out.append(f"- Proposed: {m['proposed']}")
    return out


def cost_columns(a: Assessment) -> list[str]:
    """The cost table's columns: every key of the cost section's rows, in first-seen order."""
    return list(dict.fromkeys(key for row in a.cost.models for key in row))


def _value(value: object) -> str:
    if value is None:
        return "-"
    return f"{value:.4g}" if isinstance(value, float) else str(value)


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def render_html(a: Assessment) -> str:
    import jinja2

    source = (resources.files("modelyard.assess") / "templates" / _TEMPLATE).read_text(
        encoding="utf-8"
    )
    env = jinja2.Environment(
        autoescape=True, undefined=jinja2.StrictUndefined, trim_blocks=True, lstrip_blocks=True
    )
    env.filters["value"] = _value
    return env.from_string(source).render(
        a=a, titles=_TITLES, shown=_SHOWN, cost_columns=cost_columns(a)
    )
