"""``yard assess [PROJECT_DIR]``: production readiness against the ML Test Score, from evidence;
``yard assess attest TEST``: record a test done by hand. The service lives in
``modelyard.assess``; nothing heavy is imported until a command runs."""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer
from typer.core import TyperGroup

from modelyard.cli._output import console, print_json

if TYPE_CHECKING:
    from typer._click.core import Context  # typer's own click, which TyperGroup extends

    from modelyard.settings import Settings


class _DefaultGroup(TyperGroup):
    """``yard assess ARGS`` runs ``yard assess report ARGS`` unless ARGS start with a
    subcommand's name (or ask for help): the report is the command people type."""

    default_command = "report"

    def parse_args(self, ctx: Context, args: list[str]) -> list[str]:
        if not args or (args[0] not in self.commands and args[0] not in ctx.help_option_names):
            args = [self.default_command, *args]
        return super().parse_args(ctx, args)


app = typer.Typer(
    cls=_DefaultGroup,
    help="Production readiness (the ML Test Score) from evidence: 'yard assess [PROJECT_DIR] "
    "[OPTIONS]' runs 'report' (the default); 'attest' records a test done by hand.",
)


@app.command("report")
def report(
    project: Path = typer.Argument(
        Path("."), help="The project folder (modelyard.toml, pipeline, tests, CI workflow)."
    ),
    model: str | None = typer.Option(None, "--model", help="The model to assess."),
    deployment: str | None = typer.Option(
        None, "--deployment", help="The deployment to assess (default: one serving the model)."
    ),
    output: Path | None = typer.Option(
        None, "-o", "--output", help="Also write the report: FILE.md (Markdown) or FILE.html."
    ),
    json: bool = typer.Option(False, "--json", help="Print the assessment as JSON."),
    fail_under: float | None = typer.Option(
        None, "--fail-under", min=0, max=7, help="Exit 1 when the final score is below this."
    ),
) -> None:
    """Assess the project and the model it serves against the ML Test Score (28 tests); print
    the score, its band and what to do next. With --fail-under it is a CI gate."""
    from modelyard.assess import assess
    from modelyard.assess.assessment import check_project
    from modelyard.assess.report import check_output, render_text, write_report
    from modelyard.registry import Registry

    if output is not None:
        check_output(output)  # before anything is read
    check_project(project)  # before the registry is opened (it would create its home)
    settings = _project_settings(project)
    registry = Registry(settings)
    try:
        result = assess(registry, settings, project=project, model=model, deployment=deployment)
    finally:
        registry.close()
    if output is not None:
        write_report(result, output)
    if json:
        print_json(result)
    else:
        console().print(render_text(result))
        if output is not None:
            console().print(f"Report written to {output}")
    if fail_under is not None and result.score < fail_under:
        typer.echo(
            f"error: the ML Test Score is {result.score:g}, under --fail-under {fail_under:g}; "
            "see the plan above ('yard assess -o report.md' for the full report).",
            err=True,
        )
        raise typer.Exit(1)


@app.command("attest")
def attest(
    test: str = typer.Argument(..., help="The test: 'Data 1', 'data-1', ... 'Monitor 7'."),
    by: str = typer.Option(..., "--by", help="Who did it."),
    note: str = typer.Option(..., "--note", help="What was done and where the results are."),
    model: str | None = typer.Option(
        None, "--model", help="The model it was done for (default: the whole project)."
    ),
    not_applicable: bool = typer.Option(
        False, "--not-applicable", help="The test does not apply here; the note says why."
    ),
    json: bool = typer.Option(False, "--json", help="Print the attestation as JSON."),
) -> None:
    """Record that a test was done by hand, with documented results (0.5 point; an automated
    finding still beats it)."""
    from modelyard.assess import attest as record
    from modelyard.assess.rubric import rubric_test
    from modelyard.registry import Registry

    rubric_test(test)  # a bad id is one line before the store is opened
    registry = Registry(_project_settings(Path(".")))
    try:
        done = record(registry, test, by=by, note=note, model=model, not_applicable=not_applicable)
    finally:
        registry.close()
    if json:
        print_json(done)
        return
    what = "not applicable" if done.kind == "not_applicable" else "done by hand"
    scope = f" for {done.model}" if done.model else ""
    console().print(
        f"{rubric_test(done.test).label} attested {what}{scope} by {done.actor} on "
        f"{done.at:%Y-%m-%d}."
    )


def _project_settings(project: Path) -> Settings:
    """The settings as the project sees them: its ``modelyard.toml`` (unless MODELYARD_CONFIG
    names another), with a relative ``home`` taken from the project folder, so that
    ``yard assess path/to/project`` reads the registry the project's own commands use."""
    from modelyard.cli._registry import load_settings

    config = project / "modelyard.toml"
    overrides: dict[str, Any] = {}
    if "MODELYARD_CONFIG" not in os.environ and project.is_dir() and config.is_file():
        os.environ["MODELYARD_CONFIG"] = str(config)
        try:
            settings = load_settings()
        finally:
            del os.environ["MODELYARD_CONFIG"]
        if not settings.home.is_absolute() and "MODELYARD_HOME" not in os.environ:
            overrides["home"] = project / settings.home
        return settings.with_overrides(**overrides)
    return load_settings()
