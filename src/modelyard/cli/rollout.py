"""``yard deploy`` and ``yard rollout``: deployments, canaries, A/B tests, shadows, the controller.

The service functions live in ``modelyard.rollout`` and are imported inside each command so that
``yard --help`` does not load SQLAlchemy.
"""

from __future__ import annotations

import threading
import time
from datetime import UTC, datetime
from typing import TYPE_CHECKING

import typer

from modelyard.cli._output import console, parse_pairs, print_json, table, when
from modelyard.cli._registry import open_registry

if TYPE_CHECKING:
    from collections.abc import Callable

    from rich.table import Table

    from modelyard.rollout import Deployment, RolloutStatus, StepResult

app = typer.Typer(
    help="Rollouts: status, promote, abort, history, controller.", no_args_is_help=True
)
JSON = typer.Option(False, "--json", help="Print JSON for scripts.")
REASON = typer.Option(None, "--reason", help="Why; kept in the audit log.")


def deploy(
    name: str = typer.Argument(..., help="The deployment (created on first use)."),
    model: str | None = typer.Option(None, "--model", help="REF becomes the stable route."),
    canary: str | None = typer.Option(None, "--canary", help="REF gets --weight % of requests."),
    ab: str | None = typer.Option(None, "--ab", help="REF gets --weight %, sticky per key."),
    shadow: str | None = typer.Option(None, "--shadow", help="REF sees copies of requests."),
    weight: float | None = typer.Option(None, "--weight", help="Candidate percentage, 0-100."),
    steps: str | None = typer.Option(None, "--steps", help="Step weights, e.g. 10,50,100."),
    bake: str | None = typer.Option(None, "--bake", help="Time each step must pass, e.g. 5m."),
    auto: bool = typer.Option(False, "--auto", help="Let the controller advance and promote."),
    sticky_header: str | None = typer.Option(None, "--sticky-header", help="A/B key header."),
    sticky_field: str | None = typer.Option(None, "--sticky-field", help="A/B key input field."),
    sample: float | None = typer.Option(None, "--sample", help="Shadowed share, 0-1."),
    policy: list[str] = typer.Option([], "--policy", help="KEY=VALUE (see Policy), repeatable."),
    retry: bool = typer.Option(
        True, "--retry-on-stable/--no-retry-on-stable", help="Answer candidate failures on stable."
    ),
    force: bool = typer.Option(
        False, "--force", help="Start a candidate whose inputs differ from the stable route's."
    ),
    reason: str | None = REASON,
    json: bool = JSON,
) -> None:
    """Set the stable route (--model REF) or start a candidate (--canary, --ab or --shadow REF)."""
    from modelyard import rollout
    from modelyard.cli._registry import load_settings

    given = {"model": model, "canary": canary, "ab": ab, "shadow": shadow}
    chosen = [(mode, ref) for mode, ref in given.items() if ref is not None]
    if len(chosen) != 1:
        raise typer.BadParameter("give exactly one of --model, --canary, --ab or --shadow")
    mode, ref = chosen[0]
    registry = open_registry()
    if mode == "model":
        extra = (weight, steps, bake, sticky_header, sticky_field, sample) != (None,) * 6
        if extra or auto or policy or not retry or force:
            raise typer.BadParameter("candidate options need --canary, --ab or --shadow")
        result = rollout.deploy(registry, name, model_ref=ref, reason=reason)
    else:
        result = rollout.start_candidate(
            registry, name, ref=ref, mode=mode, weight=weight, sticky_header=sticky_header,
            sticky_field=sticky_field, sample=1.0 if sample is None else sample,
            steps=rollout.parse_steps(steps) if steps is not None else None, bake_s=bake,
            policy=parse_pairs("--policy", policy) or None, auto=auto, retry_on_stable=retry,
            force=force, reason=reason, prediction_log=load_settings().monitoring.log,
        )  # fmt: skip
    _print_deployment(result, json)


@app.command()
def status(
    name: str,
    json: bool = JSON,
    watch: bool = typer.Option(False, "--watch", help="Refresh until interrupted."),
    interval: float = typer.Option(2.0, "--interval", min=0.1, help="Seconds between refreshes."),
) -> None:
    """Routes, versions, weights, traffic, verdict and the controller's next move."""
    from rich.live import Live

    from modelyard.rollout import rollout_status

    db = open_registry().db
    root = _log_root()
    if json:
        print_json(rollout_status(db, name, log_root=root))
        return
    if not watch:
        console().print(_status_table(rollout_status(db, name, log_root=root)))
        return
    with Live(_status_table(rollout_status(db, name, log_root=root)), console=console()) as live:
        while True:
            time.sleep(interval)
            live.update(_status_table(rollout_status(db, name, log_root=root)))


@app.command("list")
def list_(json: bool = JSON) -> None:
    """Every deployment with its routes and state."""
    from modelyard.rollout import list_deployments

    items = list_deployments(open_registry().db)
    if json:
        print_json(items)
        return
    table(
        "deployments",
        ["name", "stable", "candidate", "mode", "weight", "state", "revision", "updated"],
        [(d.name, _stable(d), d.candidate_ref, d.mode, _weight(d), d.state, d.revision,
          when(d.updated_at)) for d in items],
    )  # fmt: skip


@app.command()
def promote(name: str, reason: str | None = REASON, json: bool = JSON) -> None:
    """Make the candidate the stable route; the stable alias moves with it (audited)."""
    from modelyard import rollout

    _print_deployment(rollout.promote(open_registry(), name, reason=reason), json)


@app.command()
def abort(
    name: str,
    reason: str = typer.Option(..., "--reason", help="Why; kept in the audit log."),
    json: bool = JSON,
) -> None:
    """Drop the candidate: every request goes back to the stable route."""
    from modelyard import rollout

    _print_deployment(rollout.abort(open_registry(), name, reason=reason), json)


@app.command()
def weight(name: str, percent: float, reason: str | None = REASON, json: bool = JSON) -> None:
    """Give the canary or A/B candidate PERCENT of requests."""
    from modelyard import rollout

    result = rollout.set_weight(open_registry(), name, weight=percent, reason=reason)
    _print_deployment(result, json)


@app.command()
def pause(name: str, reason: str | None = REASON, json: bool = JSON) -> None:
    """Hold the rollout where it is; the controller stops acting until 'resume'."""
    from modelyard import rollout

    _print_deployment(rollout.pause(open_registry(), name, reason=reason), json)


@app.command()
def resume(name: str, reason: str | None = REASON, json: bool = JSON) -> None:
    """Let the controller act on a paused rollout again."""
    from modelyard import rollout

    _print_deployment(rollout.resume(open_registry(), name, reason=reason), json)


@app.command()
def history(name: str, limit: int = typer.Option(100, min=1), json: bool = JSON) -> None:
    """The deployment's audited changes, newest first."""
    from modelyard.rollout import history as fetch

    events = fetch(open_registry().db, name, limit=limit)
    if json:
        print_json(events)
        return
    table(
        f"history of deployment {name}",
        ["when", "revision", "action", "who", "reason", "detail"],
        [(when(e.at), e.revision, e.action, e.actor, e.reason, e.summary) for e in events],
    )


@app.command()
def run(
    name: str,
    interval: float = typer.Option(5.0, "--interval", min=0.05, help="Seconds between rounds."),
    until_done: bool = typer.Option(False, "--until-done", help="Stop once nothing is left."),
) -> None:
    """Run the controller for NAME: judge, advance, promote or roll back every INTERVAL seconds."""
    from modelyard import rollout

    def show(result: StepResult) -> None:
        stamp = datetime.now(UTC).strftime("%H:%M:%S")
        console().print(f"{stamp} {result.action}: {result.reason}", markup=False)

    rollout.run(
        open_registry(), name, interval_s=interval, stop=threading.Event(),
        until_settled=until_done, on_step=show, log_root=_log_root(),
    )  # fmt: skip


def _log_root() -> Callable[[str], str]:
    """Where a deployment's prediction log (and business outcomes) can be read from here."""
    from functools import partial

    from modelyard.cli._registry import load_settings
    from modelyard.monitoring.mirror import readable_root

    return partial(readable_root, load_settings())


# -- rendering ---------------------------------------------------------------------------------


def _print_deployment(d: Deployment, json: bool) -> None:
    if json:
        print_json(d)
        return
    line = f"deployment {d.name} (revision {d.revision}, {d.state}): stable {_stable(d)}"
    if d.active:
        line += f", candidate {d.candidate_ref} ({d.mode}, {_weight(d)})"
    console().print(line, markup=False)


def _status_table(s: RolloutStatus) -> Table:
    from rich.table import Table

    d, summary, verdict = s.deployment, s.summary, s.verdict
    title = f"deployment {d.name}: {d.state}, revision {d.revision}" + (
        f", {d.mode}" + (", auto" if d.auto else "") if d.active else ""
    )
    out = Table(title=title, title_justify="left", header_style="bold")
    for column in ["route", "version", "weight", "requests", "errors", "error rate", "p50 ms",
                   "p99 ms"]:  # fmt: skip
        out.add_column(column)
    routes = [(summary.stable, _stable(d), _stable_weight(d))]
    if d.active:
        routes.append((summary.candidate, d.candidate_ref or "-", _weight(d)))
    for r, version, share in routes:
        out.add_row(r.route, version, share, str(r.requests), str(r.errors), _pct(r.error_rate),
                    _num(r.p50_ms), _num(r.p99_ms))  # fmt: skip
    distance = _num(verdict.output_distance, "{:.3f}")
    out.caption = "\n".join(
        [f"output distance (Jensen-Shannon, base 2): {distance}",
         f"verdict: {verdict.status}" + "".join(f"\n  - {r}" for r in verdict.reasons),
         *(f"  note: {n}" for n in verdict.notes),
         *(f"outcomes ({o.route}): {o.count}, mean {_num(o.mean, '{:.4g}')}"
           for o in s.outcomes),
         f"next: {s.next.action}: {s.next.reason}", _steps(d)]
    )  # fmt: skip
    out.caption_justify = "left"
    return out


def _stable(d: Deployment) -> str:
    return d.stable_ref + (f" ({d.stable_model}@{d.stable_alias})" if d.stable_alias else "")


def _weight(d: Deployment) -> str:
    if not d.active:
        return "-"
    return f"shadow {d.shadow_sample:.0%}" if d.mode == "shadow" else f"{d.weight:g}%"


def _stable_weight(d: Deployment) -> str:
    return f"{100 - d.weight:g}%" if d.active and d.mode != "shadow" else "100%"


def _steps(d: Deployment) -> str:
    if not d.active:
        return ""
    schedule = ",".join(f"{s:g}" for s in d.steps) or "-"
    return f"steps {schedule}, bake {d.bake_s:g}s, since {when(d.step_started_at)}"


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{value:.2%}"


def _num(value: float | None, pattern: str = "{:.1f}") -> str:
    return "-" if value is None else pattern.format(value)
