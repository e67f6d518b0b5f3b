"""``yard k8s``: Kubernetes or KServe manifests for a model reference or a deployment."""

from __future__ import annotations

from pathlib import Path

import typer

from modelyard.cli._output import console, parse_pairs
from modelyard.cli.observability import runbook_url_option


def k8s(
    ref: str | None = typer.Argument(None, help="NAME@ALIAS (followed) or NAME/VERSION."),
    deployment: str | None = typer.Option(None, help="A deployment (yard deploy) instead."),
    output: Path = typer.Option(..., "-o", "--output", help="The folder to write (made whole)."),
    image: str | None = typer.Option(
        None, help="The image 'yard build' made, as pushed (default: the tag it printed)."
    ),
    replicas: int = typer.Option(2, help="Fewest pods (the autoscaler's minimum); at least 1."),
    max_replicas: int | None = typer.Option(None, help="Most pods (default max(10, replicas))."),
    cpu_target: int = typer.Option(70, help="Average CPU use (% of the request) to scale at."),
    cpu_request: str = typer.Option("1", help="CPU requested per pod."),
    cpu_limit: str = typer.Option("2", help="CPU limit per pod."),
    memory_request: str = typer.Option("1Gi", help="Memory requested per pod."),
    memory_limit: str = typer.Option("2Gi", help="Memory limit per pod."),
    namespace: str | None = typer.Option(None, help="Namespace (default: kubectl's)."),
    secret: str = typer.Option("modelyard", help="The Secret holding database-url and more."),
    pre_stop_s: int = typer.Option(5, help="Seconds a stopping pod waits before SIGTERM."),
    graceful_timeout_s: float | None = typer.Option(
        None, help="The server's drain on SIGTERM (default: the serving setting, 30)."
    ),
    startup_timeout_s: int = typer.Option(300, help="Longest model load before a restart."),
    auth: bool = typer.Option(False, "--auth", help="Serve with tokens (metrics stay open)."),
    log_predictions: bool = typer.Option(
        False, "--log-predictions", help="Log predictions (to the Secret's log-root)."
    ),
    kserve: bool = typer.Option(False, "--kserve", help="A KServe InferenceService instead."),
    monitoring_label: list[str] = typer.Option(
        [], help="KEY=VALUE on the ServiceMonitor and PrometheusRule (e.g. release=prometheus)."
    ),
    runbook_url: str = runbook_url_option(),
    force: bool = typer.Option(False, "--force", help="Replace a folder yard k8s wrote before."),
) -> None:
    """Write Kubernetes manifests (Deployment, Service, HorizontalPodAutoscaler,
    PodDisruptionBudget, ServiceMonitor, PrometheusRule), or with --kserve a KServe
    InferenceService in their place, for the image 'yard build' made of the same target."""
    from modelyard.cli._registry import open_registry
    from modelyard.deploy import k8s as manifests
    from modelyard.deploy import resolve_target
    from modelyard.deploy.observability import RUNBOOK_FILE

    labels = parse_pairs("--monitoring-label", monitoring_label)
    registry = open_registry()
    try:
        target = resolve_target(registry, ref, deployment)
    finally:
        registry.close()
    drain_s = graceful_timeout_s
    if drain_s is None:
        drain_s = registry.settings.serving.graceful_timeout_s
    opts = manifests.K8sOptions(
        image=image or target.image_tag, replicas=replicas,
        max_replicas=max_replicas, cpu_target_percent=cpu_target, namespace=namespace,
        secret=secret, cpu_request=cpu_request, cpu_limit=cpu_limit,
        memory_request=memory_request, memory_limit=memory_limit, pre_stop_s=pre_stop_s,
        graceful_timeout_s=drain_s, startup_timeout_s=startup_timeout_s, auth=auth,
        kserve=kserve, monitoring_labels=labels, log_predictions=log_predictions,
        upload_drain_s=registry.settings.monitoring.upload_drain_s, runbook_url=runbook_url,
    )  # fmt: skip
    names = manifests.write_manifests(target, opts, output, force=force)
    out = console()
    out.print(f"wrote {len(names)} manifests to {output}: {', '.join(names)}")
    out.print(f"image {opts.image}; the pods read their settings from Secret '{secret}':")
    print(f"  {manifests.secret_command(opts)}")  # one line, to copy
    if runbook_url == RUNBOOK_FILE:  # relative: no alert receiver can open it
        out.print("the alerts link to RUNBOOK.md#<alert>: give --runbook-url the address where "
                  "the RUNBOOK.md of 'yard observability' is published", style="dim")  # fmt: skip
    out.print(f"then: kubectl apply -f {output}", style="dim")
