"""``yard loop``: retraining loops (``[loops.NAME]``): the controller, status, approval,
rejection and manual triggers. The service functions live in ``modelyard.loop``."""

from __future__ import annotations

import json as jsonlib
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import typer

from modelyard.cli._output import console, print_json, when
from modelyard.cli._registry import load_settings

if TYPE_CHECKING:
    from modelyard.loop import LoopStatus, LoopStep
    from modelyard.registry import Registry

app = typer.Typer(
    help="Retraining loops: run, status, approve, reject, trigger.", no_args_is_help=True
)
JSON = typer.Option(False, "--json", help="Print JSON for scripts.")
REASON = typer.Option(..., "--reason", help="Why; kept with the loop's transitions.")
_EVIDENCE_CHARS = 400


def _registry() -> Registry:
    from modelyard.registry import Registry

    return Registry(load_settings())


@app.command()
def run(
    once: bool = typer.Option(False, "--once", help="One round for each loop, then exit."),
    interval: float = typer.Option(5.0, "--interval", min=0.05, help="Seconds between rounds."),
    deployment: list[str] | None = typer.Option(
        None, "--deployment", help="Only this deployment's loop (repeatable)."
    ),
) -> None:
    """Run the loop controller: triggers, training, gating, canary, promotion (every policy is
    checked first)."""
    from modelyard.loop import LoopController

    registry = _registry()
    controller = LoopController(registry, registry.settings)
    if not controller.plans:
        raise typer.BadParameter("no [loops.NAME] in the configuration; add one first")

    def show(result: LoopStep) -> None:
        if not (result.moved or once):
            return
        stamp = datetime.now(UTC).strftime("%H:%M:%S")
        console().print(
            f"{stamp} {result.deployment} loop {result.loop}: {result.action} "
            f"({result.state}): {result.reason}"
        )

    try:
        controller.run(interval_s=interval, deployments=deployment or None, once=once,
                       on_step=show)  # fmt: skip
    finally:
        registry.close()


@app.command()
def status(deployment: str | None = typer.Argument(None), json: bool = JSON) -> None:
    """Each loop's state, since when, its trigger and candidate, and the evidence of each
    transition of its current (or last) loop."""
    from modelyard.errors import NotFoundError
    from modelyard.loop import loop_status

    registry = _registry()
    configured = sorted(registry.settings.loops)
    try:
        found = loop_status(registry.db, deployment)
    except NotFoundError:
        if deployment not in configured:
            raise
        found = []
    finally:
        registry.close()
    if json:
        print_json(found)
        return
    seen = {s.deployment for s in found}
    waiting = [n for n in configured if n not in seen and deployment in (None, n)]
    for name in waiting:
        console().print(f"loop of {name}: idle (no loop yet; 'yard loop run' watches its triggers)")
    if not found and not waiting:
        console().print("no loops yet; configure [loops.NAME] and run 'yard loop run'")
    for item in found:
        _print_status(item)


@app.command()
def approve(deployment: str, reason: str = REASON, json: bool = JSON) -> None:
    """Approve the candidate waiting for approval: the controller promotes it."""
    _decide(deployment, reason, json, approve=True)


@app.command()
def reject(deployment: str, reason: str = REASON, json: bool = JSON) -> None:
    """End the loop without promotion: its candidate is aborted, the serving version stays."""
    _decide(deployment, reason, json, approve=False)


@app.command()
def trigger(deployment: str, reason: str = REASON, json: bool = JSON) -> None:
    """Start a loop of DEPLOYMENT now (whatever its triggers and cooldown say)."""
    from modelyard import loop

    registry = _registry()
    try:
        if deployment not in registry.settings.loops:
            raise typer.BadParameter(
                f"deployment {deployment!r} has no [loops.{deployment}] in the configuration"
            )
        state = loop.trigger(registry.db, deployment, reason, actor=registry.identity)
    finally:
        registry.close()
    _print_change(state, json)


def _decide(deployment: str, reason: str, json: bool, *, approve: bool) -> None:
    from modelyard import loop

    registry = _registry()
    try:
        act = loop.approve if approve else loop.reject
        state = act(registry.db, deployment, reason, registry.identity)
    finally:
        registry.close()
    _print_change(state, json)


def _print_change(state: Any, json: bool) -> None:
    if json:
        print_json(state)
        return
    note = f", {state.decision} by {state.decided_by}" if state.decision else ""
    console().print(
        f"deployment {state.deployment} loop {state.loop}: {state.state}{note} (the loop "
        "controller acts on it next round)"
    )


def _print_status(s: LoopStatus) -> None:
    lines = [f"loop of {s.deployment}: {s.state} since {when(s.since)} (loop {s.loop})"]
    if s.trigger:
        lines.append(f"  trigger: {_compact(s.trigger)}")
    if s.candidate:
        lines.append(f"  candidate: {s.candidate}" + (f" (run {s.run_id})" if s.run_id else ""))
    if s.decision:
        lines.append(f"  decision: {s.decision} by {s.decided_by}")
    if s.reason:
        lines.append(f"  reason: {s.reason}")
    if s.state == "rejected" and s.notified is not None:
        sent = "sent" if s.notified else f"not delivered ({s.notify_error})"
        lines.append(f"  alert: {sent}")
    if s.transitions:
        lines.append("  transitions:")
    for t in s.transitions:
        lines.append(
            f"    {when(t.at)}  {t.from_state} -> {t.to_state}  by {t.actor}"
            + (f": {t.reason}" if t.reason else "")
        )
        lines.extend(f"      {key}: {_compact(value)}" for key, value in t.evidence.items())
    console().print("\n".join(lines))


def _compact(value: Any) -> str:
    text = jsonlib.dumps(value, default=str, separators=(", ", ": "))
    return text if len(text) <= _EVIDENCE_CHARS else text[: _EVIDENCE_CHARS - 1] + "…"
