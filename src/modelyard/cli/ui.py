"""``yard ui``: the dashboard on its own port."""

from __future__ import annotations

import typer

from modelyard.cli._output import console


def ui(
    host: str | None = typer.Option(None, help="Address to bind (default 127.0.0.1)."),
    port: int = typer.Option(8090, min=0, max=65535, help="Port."),
    auth: bool = typer.Option(
        False, "--auth", help="Require a read token to look and an admin token to act."
    ),
) -> None:
    """Serve the dashboard: models, deployments, monitoring, runs and pipelines."""
    import uvicorn

    from modelyard.cli._registry import load_settings
    from modelyard.ui.app import create_app

    settings = load_settings()
    if auth:
        settings = settings.model_copy(
            update={"serving": settings.serving.model_copy(update={"auth": True})}
        )
    bind = host or settings.serving.host
    app = create_app(settings)
    shown = f"[{bind}]" if ":" in bind else bind
    console().print(f"dashboard at http://{shown}:{port}/ui/models (Ctrl-C stops it)")
    uvicorn.run(app, host=bind, port=port, log_level="warning", server_header=False)
