"""``yard run``: run a pipeline file, with a live view of its steps; the pipeline-run views that
``yard runs show`` uses."""

from __future__ import annotations

import contextlib
import sys
import time
from types import TracebackType
from typing import TYPE_CHECKING, Any

import typer

from modelyard.cli._output import console, kv, print_json, table, when
from modelyard.cli._registry import open_registry
from modelyard.core.sizes import format_size

if TYPE_CHECKING:
    from rich.live import Live

    from modelyard.pipelines import PipelineEvent, PipelineRun
    from modelyard.pipelines.records import ArtifactRecord, StepRecord

_TRACEBACK_LINES = 12
_STYLE = {"succeeded": "green", "cached": "cyan", "failed": "red", "running": "yellow"}


def run(
    target: str = typer.Argument(..., metavar="PIPELINE.py[:NAME]", help="The pipeline file."),
    param: list[str] | None = typer.Option(
        None, "--param", "-p", metavar="KEY=VALUE", help="A pipeline parameter (repeatable)."
    ),
    executor: str = typer.Option("local", "--executor", help="Where steps run: local or ray."),
    address: str | None = typer.Option(
        None, "--address", help="The Ray cluster to join (ray://HOST:10001); default: a local Ray."
    ),
    workers: int | None = typer.Option(
        None, "--workers", min=1, help="Parallel worker processes (Ray: CPUs); default: all CPUs."
    ),
    no_cache: bool = typer.Option(False, "--no-cache", help="Run every step; reuse nothing."),
    force: list[str] | None = typer.Option(
        None, "--force", metavar="STEP", help="Run STEP even on a cache hit (repeatable)."
    ),
    mirror: list[str] | None = typer.Option(
        None,
        "--mirror",
        metavar="TOOL[:TARGET]",
        help="Mirror the run to mlflow, wandb or neptune (repeatable); default: [runs] mirror.",
    ),
    json: bool = typer.Option(False, "--json", help="Print the run as JSON for scripts."),
) -> None:
    """Run a pipeline: cached steps are reused, the others run; exit 1 if a step fails."""
    from modelyard.cli._output import parse_pairs
    from modelyard.errors import PipelineDefinitionError, StepFailedError
    from modelyard.pipelines.engine import build_pipeline
    from modelyard.pipelines.engine import run as run_pipeline
    from modelyard.pipelines.executors import make_executor
    from modelyard.pipelines.loader import load_pipeline
    from modelyard.pipelines.records import get_pipeline_run

    params = parse_pairs("--param", param)
    registry = open_registry()
    try:
        pipeline = build_pipeline(load_pipeline(target), params)
        chosen = make_executor(executor, address=address, workers=workers)
        # with --json, stdout is the JSON only: what a mirror's client prints (Neptune logs to
        # stdout) goes to stderr
        quiet = contextlib.redirect_stdout(sys.stderr) if json else contextlib.nullcontext()
        with quiet, _Progress([n.name for n in pipeline.nodes], enabled=not json) as progress:
            result = run_pipeline(
                pipeline, registry=registry, executor=chosen, no_cache=no_cache,
                force=force or (), on_event=progress.update, mirror=mirror,
            )  # fmt: skip
    except PipelineDefinitionError as exc:
        sys.stderr.write(f"error: {exc}\n")
        raise typer.Exit(2) from None
    except StepFailedError as exc:
        failed = get_pipeline_run(registry, exc.run_id) if exc.run_id else None
        if failed is not None:
            if json:
                print_json(failed)
            else:
                summary(failed)
            _print_failures(failed)
        sys.stderr.write(f"error: {exc}\n")
        raise typer.Exit(1) from None
    finally:
        registry.close()
    if json:
        print_json(result)
    else:
        summary(result)


class _Progress:
    """A live table of the steps on a terminal's stderr; one line per change elsewhere."""

    def __init__(self, steps: list[str], *, enabled: bool) -> None:
        self.steps: dict[str, tuple[str, float | None]] = {n: ("pending", None) for n in steps}
        self.started: dict[str, float] = {}
        self.enabled = enabled
        self.tty = enabled and sys.stderr.isatty()
        self._live: Live | None = None

    def __enter__(self) -> _Progress:
        if self.tty:
            from rich.console import Console
            from rich.live import Live

            self._live = Live(
                get_renderable=self._render,
                console=Console(file=sys.stderr),
                refresh_per_second=4,
                transient=True,
            )
            self._live.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._live is not None:
            self._live.stop()

    def update(self, event: PipelineEvent) -> None:
        if event.step is None or not self.enabled:
            return
        if event.status == "running":
            self.started[event.step] = time.monotonic()
        self.steps[event.step] = (event.status, event.duration_s)
        if not self.tty:
            took = f" {event.duration_s:.2f}s" if event.duration_s is not None else ""
            sys.stderr.write(f"[{event.status}] {event.step}{took}\n")
            sys.stderr.flush()

    def _render(self) -> Any:
        from rich.table import Table

        out = Table(show_header=True, header_style="bold", box=None)
        for column in ("step", "status", "time"):
            out.add_column(column)
        now = time.monotonic()
        for name, (status, recorded) in self.steps.items():
            duration = now - self.started.get(name, now) if status == "running" else recorded
            took = f"{duration:.1f}s" if duration is not None else ""
            out.add_row(name, f"[{_STYLE.get(status, 'dim')}]{status}[/]", took)
        return out


def summary(result: PipelineRun) -> None:
    """The steps of a run: status, where a cache hit came from, duration, outputs."""
    table(
        f"pipeline {result.pipeline}: run {result.id} {result.status}",
        ["step", "status", "cached from", "duration", "outputs"],
        [
            (s.name, s.status, s.cached_from, _seconds(s.duration_s),
             ", ".join(f"{n} ({_artifact(a)})" for n, a in s.outputs.items()) or None)
            for s in result.steps
        ],
    )  # fmt: skip
    hits = sum(s.status == "cached" for s in result.steps)
    out = console()
    out.print(f"{len(result.steps)} steps, {hits} cached; metrics: {kv(result.metrics)}")


def render_run(result: PipelineRun, *, log_step: str | None = None) -> None:
    """``yard runs show`` for a pipeline run: the run, its steps, inputs and artifacts."""
    if log_step is not None:
        record = result.step(log_step)
        if record.status == "cached":
            sys.stdout.write(
                f"(a cache hit: step {log_step!r} ran in run {record.cached_from}; see "
                f"'yard runs show {record.cached_from} --log {log_step}')\n"
            )
        else:
            sys.stdout.write((record.log or "(no output)") + "\n")
        return
    table(
        f"run {result.id}",
        ["field", "value"],
        [
            ("pipeline", result.pipeline), ("status", result.status), ("user", result.user),
            ("started", when(result.start_time)), ("ended", when(result.end_time)),
            ("params", kv(result.params)), ("metrics", kv(result.metrics)),
            ("tags", kv(result.tags)),
        ],
    )  # fmt: skip
    table(
        "steps",
        ["step", "status", "key", "cache", "duration", "metrics"],
        [
            (s.name, s.status, (s.cache_key or "")[:12] or None, _cache_text(s),
             _seconds(s.duration_s), kv(s.metrics))
            for s in result.steps
        ],
    )  # fmt: skip
    lineage = [
        (s.name, arg, f"{a.step}.{a.output} of run {a.run_id}", a.sha256[:12])
        for s in result.steps
        for arg, a in s.inputs.items()
    ]
    if lineage:
        table("inputs", ["step", "input", "produced by", "sha256"], lineage)
    artifacts = [
        (s.name, name, f"{a.kind}/{a.format}", a.sha256[:12], format_size(a.size_bytes),
         f"run {a.run_id}" + (" (cached)" if a.run_id != result.id else ""))
        for s in result.steps
        for name, a in s.outputs.items()
    ]  # fmt: skip
    if artifacts:
        table("artifacts", ["step", "output", "format", "sha256", "size", "produced in"], artifacts)
    _print_failures(result)


def _print_failures(result: PipelineRun) -> None:
    for s in result.steps:
        if s.status == "failed" and s.error:
            lines = s.error.rstrip().splitlines()[-_TRACEBACK_LINES:]
            sys.stderr.write(f"step {s.name!r} failed:\n" + "\n".join(lines) + "\n")


def _cache_text(step: StepRecord) -> str | None:
    if step.status == "cached":
        return f"hit: run {step.cached_from}"
    return step.cache_note


def _artifact(a: ArtifactRecord) -> str:
    return f"{a.format} {a.sha256[:10]} {format_size(a.size_bytes)}"


def _seconds(value: float | None) -> str | None:
    return None if value is None else f"{value:.2f}s"
