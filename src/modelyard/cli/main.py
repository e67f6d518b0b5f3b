"""``yard``: the entry point. Errors print one line on stderr (exit 1; 2 for usage), tracebacks
only with ``--debug``."""

from __future__ import annotations

import logging
import sys
import traceback

import typer

from modelyard.cli import (
    assess,
    batch,
    build,
    db,
    feast,
    gate,
    init,
    k8s,
    labels,
    loop,
    mlflow,
    models,
    monitor,
    observability,
    outcomes,
    pipelines,
    rollout,
    runs,
    serve,
    ui,
)
from modelyard.errors import ModelyardError

app = typer.Typer(
    name="yard",
    help="modelyard: register, serve and watch machine-learning models.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
mlflow.register(models.app)
app.add_typer(models.app, name="models")
app.add_typer(runs.app, name="runs")
app.add_typer(db.app, name="db")
app.add_typer(serve.tokens_app, name="tokens")
app.command("serve")(serve.serve)
app.add_typer(rollout.app, name="rollout")
app.command("deploy")(rollout.deploy)
app.add_typer(monitor.app, name="monitor")
app.add_typer(labels.app, name="labels")
app.add_typer(outcomes.app, name="outcomes")
app.command("run")(pipelines.run)
app.command("batch-score")(batch.batch_score)
app.command("gate")(gate.gate)
app.command("init")(init.init)
build.register(app)
app.command("k8s")(k8s.k8s)
app.command("observability")(observability.observability)
app.add_typer(loop.app, name="loop")
app.command("ui")(ui.ui)
app.add_typer(assess.app, name="assess")
app.add_typer(feast.app, name="features")


@app.callback()
def _root(
    debug: bool = typer.Option(False, "--debug", help="Show tracebacks and debug logs."),
) -> None:
    logging.basicConfig(
        level=logging.DEBUG if debug else logging.WARNING,
        format="%(levelname)s %(name)s: %(message)s",
    )


def main(argv: list[str] | None = None) -> None:
    args = sys.argv[1:] if argv is None else argv
    debug = "--debug" in args
    try:
        app(args=args, prog_name="yard")
    except ModelyardError as exc:
        if debug:
            traceback.print_exc()
        sys.stderr.write(f"error: {exc}\n")
        sys.exit(1)
    except KeyboardInterrupt:
        sys.stderr.write("interrupted\n")
        sys.exit(130)


if __name__ == "__main__":
    main()
