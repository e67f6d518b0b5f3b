"""``yard init DIR``: scaffold a model project."""

from __future__ import annotations

from pathlib import Path

import typer


def init(
    directory: Path = typer.Argument(..., help="A new (or empty) folder for the project."),
    name: str | None = typer.Option(None, "--name", help="The model's name; default: DIR's."),
) -> None:
    """Scaffold a model project: a training pipeline on sample data, modelyard.toml, a test and
    a GitHub Actions workflow that trains and gates every pull request."""
    from modelyard.pipelines.project import init_project

    files = init_project(directory, name=name)
    print(f"Created {directory} ({len(files)} files):")
    for file in files:
        print(f"  {file.relative_to(directory)}")
    print(f"Next: cd {directory} && pytest -q tests && yard run pipeline.py")
