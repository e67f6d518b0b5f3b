"""``yard k8s``: Kubernetes (or KServe) manifests for the image ``yard build`` makes of a target.

Plain Kubernetes: a Deployment, a Service (HTTP 8080, gRPC 8081), a HorizontalPodAutoscaler, a
PodDisruptionBudget, and Prometheus Operator's ServiceMonitor and PrometheusRule. With ``kserve``
an InferenceService (``serving.kserve.io/v1beta1``, Standard deployment mode: KServe makes the
Deployment, Service and autoscaler) replaces the first three.

The image's own entry point runs ``yard serve`` of the target on 0.0.0.0:8080 with gRPC on 8081;
the manifests set only what the cluster decides: where the metadata and artifacts live (from a
Secret), the drain time, the home folder on the writable ``/tmp``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import yaml

from modelyard.deploy import observability
from modelyard.deploy._k8s_checks import check_image, check_label, check_name, quantity
from modelyard.deploy.observability import RUNBOOK_FILE
from modelyard.errors import InvalidInputError

if TYPE_CHECKING:
    from pathlib import Path

    from modelyard.deploy.target import Target

Manifest = dict[str, Any]

HTTP_PORT = 8080
GRPC_PORT = 8081
#: The image's user (``yard build`` creates it): numeric, so that ``runAsNonRoot`` can be checked.
UID = 10001
#: Where the read-only root filesystem lets the server write (an emptyDir).
TMP_DIR = "/tmp"
HOME_DIR = "/tmp/modelyard"
#: Seconds between the end of the drain and the kill, for the lifespan shutdown (batches in
#: flight, the prediction log's last flush).
SHUTDOWN_MARGIN_S = 5
#: The Secret's keys and the variables they become; ``optional`` keys may be left out of it.
SECRET_KEYS: tuple[tuple[str, str, bool], ...] = (
    ("MODELYARD_DATABASE_URL", "database-url", False),
    ("MODELYARD_ARTIFACT_ROOT", "artifact-root", True),
    ("AWS_ACCESS_KEY_ID", "aws-access-key-id", True),
    ("AWS_SECRET_ACCESS_KEY", "aws-secret-access-key", True),
    ("AWS_ENDPOINT_URL", "aws-endpoint-url", True),
    ("MODELYARD_MONITORING__LOG_ROOT", "log-root", True),
)
_COMMAND = "yard k8s"
KSERVE_CONTAINER = "kserve-container"  # the name KServe's custom predictors use


@dataclass(frozen=True)
class Drain:
    """How a pod stops. Kubernetes runs ``preStop`` (a sleep, while the endpoints controller and
    every kube-proxy drop the pod), then sends SIGTERM: uvicorn stops accepting and waits up to
    ``graceful_timeout_s`` for HTTP requests in flight, while the gRPC door (started by the same
    signal) refuses new calls and waits as long for its own. The margin covers the last batches
    and log flush; past ``termination_grace_s`` the kubelet sends SIGKILL."""

    pre_stop_s: int
    graceful_timeout_s: float
    margin_s: int = SHUTDOWN_MARGIN_S
    #: With the prediction log on: the seconds its spool keeps uploading after the drain.
    upload_drain_s: float = 0.0

    @property
    def drain_s(self) -> int:
        return math.ceil(self.graceful_timeout_s)

    @property
    def termination_grace_s(self) -> int:
        return self.pre_stop_s + self.drain_s + math.ceil(self.upload_drain_s) + self.margin_s


#: Why a zero request is refused, and what to give instead.
_ZERO_REQUEST = {
    "cpu": "the autoscaler scales on a percentage of it, which it cannot compute; give e.g. 500m",
    "memory": "the scheduler would keep no memory for the pod; give e.g. 512Mi",
}


@dataclass(frozen=True, kw_only=True)
class K8sOptions:
    """What ``yard k8s`` lets a user choose; ``validate`` says what is wrong in one sentence."""

    image: str
    replicas: int = 2
    max_replicas: int | None = None
    cpu_target_percent: int = 70
    namespace: str | None = None
    secret: str = "modelyard"
    cpu_request: str = "1"
    cpu_limit: str = "2"
    memory_request: str = "1Gi"
    memory_limit: str = "2Gi"
    pre_stop_s: int = 5
    graceful_timeout_s: float = 30.0
    startup_timeout_s: int = 300
    auth: bool = False
    kserve: bool = False
    #: Log predictions (``yard serve --log-predictions``); the spool's upload drain joins the
    #: termination grace, since the pod's emptyDir does not outlive the pod.
    log_predictions: bool = False
    upload_drain_s: float = 10.0
    monitoring_labels: dict[str, str] = field(default_factory=dict)
    #: Where RUNBOOK.md is published: the alerts' runbook_url (as ``yard observability``'s).
    runbook_url: str = RUNBOOK_FILE

    @property
    def max_replicas_resolved(self) -> int:
        return self.max_replicas if self.max_replicas is not None else max(10, self.replicas)

    @property
    def drain(self) -> Drain:
        upload = self.upload_drain_s if self.log_predictions else 0.0
        return Drain(self.pre_stop_s, self.graceful_timeout_s, upload_drain_s=upload)

    def validate(self) -> None:
        check_image(self.image)
        if self.replicas < 1:
            raise InvalidInputError(
                f"--replicas {self.replicas} is below 1; give the fewest pods that may serve."
            )
        if self.max_replicas_resolved < self.replicas:
            raise InvalidInputError(
                f"--max-replicas {self.max_replicas} is below --replicas {self.replicas}; give "
                "at least as many."
            )
        if not 1 <= self.cpu_target_percent <= 100:
            raise InvalidInputError(
                f"--cpu-target {self.cpu_target_percent} is outside 1-100 (a percentage of the "
                "CPU request)."
            )
        seconds = {"--pre-stop-s": self.pre_stop_s, "--startup-timeout-s": self.startup_timeout_s}
        for what, count in seconds.items():
            if count < 1:
                raise InvalidInputError(f"{what} {count} is below 1; give whole seconds, e.g. 5.")
        if self.upload_drain_s < 0:
            raise InvalidInputError(
                f"The upload drain {self.upload_drain_s:g} s is negative; set "
                "MODELYARD_MONITORING__UPLOAD_DRAIN_S to the seconds the log may upload at exit."
            )
        if self.graceful_timeout_s < 0:
            raise InvalidInputError(
                f"--graceful-timeout-s {self.graceful_timeout_s:g} is negative; give the seconds "
                "the server waits for requests in flight (default 30)."
            )
        check_name("--secret", self.secret)
        if self.namespace is not None:
            check_name("--namespace", self.namespace)
        for key, value in self.monitoring_labels.items():
            check_label(key, value)
        for kind in ("cpu", "memory"):
            request, limit = getattr(self, f"{kind}_request"), getattr(self, f"{kind}_limit")
            if quantity(f"--{kind}-request", request) == 0:
                raise InvalidInputError(
                    f"--{kind}-request {request} is zero: {_ZERO_REQUEST[kind]}."
                )
            if quantity(f"--{kind}-request", request) > quantity(f"--{kind}-limit", limit):
                raise InvalidInputError(
                    f"--{kind}-request {request} is above --{kind}-limit {limit}; Kubernetes "
                    "refuses such a pod."
                )


# -- the objects -----------------------------------------------------------------------------


def labels(target: Target, component: str) -> dict[str, str]:
    """The recommended labels; ``version`` is the stable version served when generated."""
    return {
        "app.kubernetes.io/name": target.slug,
        "app.kubernetes.io/instance": target.slug,
        "app.kubernetes.io/version": str(target.versions[0].version),
        "app.kubernetes.io/component": component,
        "app.kubernetes.io/managed-by": "modelyard",
    }


def selector(target: Target) -> dict[str, str]:
    """The labels a Deployment selects its pods by (never the version: selectors are immutable)."""
    return {"app.kubernetes.io/name": target.slug, "app.kubernetes.io/instance": target.slug}


def _metadata(target: Target, opts: K8sOptions, component: str, name: str | None = None,
              extra: dict[str, str] | None = None) -> Manifest:  # fmt: skip
    meta: Manifest = {"name": name or target.slug}
    if opts.namespace is not None:
        meta["namespace"] = opts.namespace
    meta["labels"] = labels(target, component) | (extra or {})
    return meta


def _probe(path: str, *, period_s: int, timeout_s: int, failures: int) -> Manifest:
    return {
        "httpGet": {"path": path, "port": "http"},
        "periodSeconds": period_s,
        "timeoutSeconds": timeout_s,
        "failureThreshold": failures,
    }


def _env(opts: K8sOptions) -> list[Manifest]:
    env: list[Manifest] = [
        {"name": "MODELYARD_HOME", "value": HOME_DIR},
        # the tree kernel's numba functions cache their machine code; next to the installed
        # source is read-only here, and numba raises at import when it finds nowhere to write
        {"name": "NUMBA_CACHE_DIR", "value": f"{TMP_DIR}/numba"},
        # the server's drain must be the one termination_grace_s was computed from
        {"name": "MODELYARD_SERVING__GRACEFUL_TIMEOUT_S", "value": f"{opts.graceful_timeout_s:g}"},
    ]
    if opts.log_predictions:
        env.append({"name": "MODELYARD_MONITORING__LOG", "value": "true"})
        drain = f"{opts.upload_drain_s:g}"
        env.append({"name": "MODELYARD_MONITORING__UPLOAD_DRAIN_S", "value": drain})
    if opts.auth:
        env.append({"name": "MODELYARD_SERVING__AUTH", "value": "true"})
        # the ServiceMonitor scrapes without a token
        env.append({"name": "MODELYARD_SERVING__OPEN_METRICS", "value": "true"})
    for variable, key, optional in SECRET_KEYS:
        ref: Manifest = {"name": opts.secret, "key": key}
        if optional:
            ref["optional"] = True
        env.append({"name": variable, "valueFrom": {"secretKeyRef": ref}})
    return env


def container_security_context() -> Manifest:
    return {
        "runAsNonRoot": True,
        "runAsUser": UID,
        "runAsGroup": UID,
        "readOnlyRootFilesystem": True,
        "allowPrivilegeEscalation": False,
        "capabilities": {"drop": ["ALL"]},
        "seccompProfile": {"type": "RuntimeDefault"},
    }


def pod_security_context() -> Manifest:
    return {
        "runAsNonRoot": True,
        "runAsUser": UID,
        "runAsGroup": UID,
        "fsGroup": UID,
        "seccompProfile": {"type": "RuntimeDefault"},
    }


def container(opts: K8sOptions, name: str = "server") -> Manifest:
    """The serving container: the image's own entry point, its ports, probes and drain."""
    drain = opts.drain
    startup_failures = math.ceil(opts.startup_timeout_s / 5)
    return {
        "name": name,
        "image": opts.image,
        "imagePullPolicy": "IfNotPresent",
        "ports": [
            {"name": "http", "containerPort": HTTP_PORT, "protocol": "TCP"},
            {"name": "grpc", "containerPort": GRPC_PORT, "protocol": "TCP"},
        ],
        "env": _env(opts),
        "resources": {
            "requests": {"cpu": opts.cpu_request, "memory": opts.memory_request},
            "limits": {"cpu": opts.cpu_limit, "memory": opts.memory_limit},
        },
        # models load before the port opens; until the startup probe passes the others wait
        "startupProbe": _probe(
            "/v2/health/ready", period_s=5, timeout_s=3, failures=startup_failures
        ),
        "livenessProbe": _probe("/v2/health/live", period_s=10, timeout_s=5, failures=3),
        "readinessProbe": _probe("/v2/health/ready", period_s=5, timeout_s=3, failures=2),
        "lifecycle": {"preStop": {"sleep": {"seconds": drain.pre_stop_s}}},
        "securityContext": container_security_context(),
        "volumeMounts": [{"name": "tmp", "mountPath": TMP_DIR}],
    }


def _pod_spec(opts: K8sOptions, container_name: str = "server") -> Manifest:
    return {
        "automountServiceAccountToken": False,  # the server never calls the Kubernetes API
        "terminationGracePeriodSeconds": opts.drain.termination_grace_s,
        "securityContext": pod_security_context(),
        "containers": [container(opts, container_name)],
        "volumes": [{"name": "tmp", "emptyDir": {"sizeLimit": "1Gi"}}],
    }


def deployment(target: Target, opts: K8sOptions) -> Manifest:
    """No ``replicas``: the HorizontalPodAutoscaler owns the count (from ``minReplicas`` up), and
    a re-applied manifest would otherwise reset it."""
    pod_labels = labels(target, "server")
    spec = _pod_spec(opts)
    spread = {"maxSkew": 1, "topologyKey": "kubernetes.io/hostname"}
    spread |= {"whenUnsatisfiable": "ScheduleAnyway"}
    spread |= {"labelSelector": {"matchLabels": selector(target)}}
    spec["topologySpreadConstraints"] = [spread]
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": _metadata(target, opts, "server"),
        "spec": {
            "selector": {"matchLabels": selector(target)},
            # a new pod is ready before an old one stops: no capacity lost during a rollout
            "strategy": {
                "type": "RollingUpdate",
                "rollingUpdate": {"maxSurge": 1, "maxUnavailable": 0},
            },
            "template": {"metadata": {"labels": pod_labels}, "spec": spec},
        },
    }


def service(target: Target, opts: K8sOptions) -> Manifest:
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": _metadata(target, opts, "server"),
        "spec": {
            "type": "ClusterIP",
            "selector": selector(target),
            "ports": [
                _service_port("http", HTTP_PORT, "http"),
                _service_port("grpc", GRPC_PORT, "kubernetes.io/h2c"),
            ],
        },
    }


def _service_port(name: str, port: int, protocol: str) -> Manifest:
    return {"name": name, "port": port, "targetPort": name, "protocol": "TCP",
            "appProtocol": protocol}  # fmt: skip


def autoscaler(target: Target, opts: K8sOptions) -> Manifest:
    return {
        "apiVersion": "autoscaling/v2",
        "kind": "HorizontalPodAutoscaler",
        "metadata": _metadata(target, opts, "server"),
        "spec": {
            "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": target.slug},
            "minReplicas": opts.replicas,
            "maxReplicas": opts.max_replicas_resolved,
            "metrics": [
                {
                    "type": "Resource",
                    "resource": {
                        "name": "cpu",
                        "target": {
                            "type": "Utilization",
                            "averageUtilization": opts.cpu_target_percent,
                        },
                    },
                }
            ],
        },
    }


def disruption_budget(target: Target, opts: K8sOptions) -> Manifest:
    """At most one pod evicted at a time (a node drain never stalls, even at one replica)."""
    pods = (
        {"serving.kserve.io/inferenceservice": target.slug, "component": "predictor"}
        if opts.kserve
        else selector(target)
    )
    return {
        "apiVersion": "policy/v1",
        "kind": "PodDisruptionBudget",
        "metadata": _metadata(target, opts, "server"),
        "spec": {"maxUnavailable": 1, "selector": {"matchLabels": pods}},
    }


def inference_service(target: Target, opts: K8sOptions) -> Manifest:
    """KServe in Standard mode (KServe 0.16 and later; ``RawDeployment`` before): a Deployment,
    a Service whose port 80 is the container's first port and 8081 its gRPC port, and a CPU
    autoscaler. Not Knative mode: Knative allows one container port, and this server has two.

    Scraping: the ServiceMonitor selects KServe's Service. KServe's documented annotation
    ``serving.kserve.io/enable-prometheus-scraping: "true"`` is set to ``"false"`` here: in
    Standard mode its pod webhook (``pkg/webhook/admission/pod/metrics_aggregate_injector.go``,
    v0.20.0) would point ``prometheus.io/port`` at the Knative queue-proxy's 9091, which does not
    exist without Knative; the pods carry ``prometheus.io/*`` annotations for port 8080 instead,
    and ``prometheus.kserve.io/port``/``path`` say where the metrics are as KServe documents."""
    spec = _pod_spec(opts, KSERVE_CONTAINER)
    predictor: Manifest = {
        "minReplicas": opts.replicas,
        "maxReplicas": opts.max_replicas_resolved,
        "scaleMetric": "cpu",
        "scaleTarget": opts.cpu_target_percent,
        "labels": labels(target, "server"),
        "annotations": {
            "prometheus.io/scrape": "true",
            "prometheus.io/port": str(HTTP_PORT),
            "prometheus.io/path": "/metrics",
        },
    } | spec
    meta = _metadata(target, opts, "server")
    meta["annotations"] = {
        "serving.kserve.io/deploymentMode": "Standard",
        "serving.kserve.io/autoscalerClass": "hpa",
        "serving.kserve.io/enable-prometheus-scraping": "false",
        "prometheus.kserve.io/port": str(HTTP_PORT),
        "prometheus.kserve.io/path": "/metrics",
    }
    return {
        "apiVersion": "serving.kserve.io/v1beta1",
        "kind": "InferenceService",
        "metadata": meta,
        "spec": {"predictor": predictor},
    }


def service_monitor(target: Target, opts: K8sOptions) -> Manifest:
    services = (
        {"serving.kserve.io/inferenceservice": target.slug, "component": "predictor"}
        if opts.kserve
        else selector(target)
    )
    return {
        "apiVersion": "monitoring.coreos.com/v1",
        "kind": "ServiceMonitor",
        "metadata": _metadata(target, opts, "monitoring", extra=opts.monitoring_labels),
        "spec": {
            "selector": {"matchLabels": services},
            "endpoints": [
                {"port": "http", "path": "/metrics", "interval": "30s", "scheme": "http"},
            ],
        },
    }


def prometheus_rule(
    target: Target, opts: K8sOptions, groups: list[Manifest] | None = None
) -> Manifest:
    """Prometheus Operator's PrometheusRule holding ``groups`` (default: the alerts of
    ``yard observability`` with their default thresholds and ``opts.runbook_url``; they are
    grouped by job)."""
    if groups is None:
        groups = observability.rule_groups(runbook_url=opts.runbook_url)
    return {
        "apiVersion": "monitoring.coreos.com/v1",
        "kind": "PrometheusRule",
        "metadata": _metadata(target, opts, "monitoring", extra=opts.monitoring_labels),
        "spec": {"groups": groups},
    }


def build_manifests(
    target: Target, opts: K8sOptions, *, rule_groups: list[Manifest] | None = None
) -> dict[str, Manifest]:
    """File name -> object, in the order ``kubectl apply`` should see them."""
    opts.validate()
    out: dict[str, Manifest] = {}
    if opts.kserve:
        out["inferenceservice.yaml"] = inference_service(target, opts)
    else:
        out["deployment.yaml"] = deployment(target, opts)
        out["service.yaml"] = service(target, opts)
        out["horizontalpodautoscaler.yaml"] = autoscaler(target, opts)
    out["poddisruptionbudget.yaml"] = disruption_budget(target, opts)
    out["servicemonitor.yaml"] = service_monitor(target, opts)
    out["prometheusrule.yaml"] = prometheus_rule(target, opts, rule_groups)
    return out


def render(manifest: Manifest, source: str) -> str:
    """One object as YAML, keys in the order they were built, after a header naming its source."""
    body = yaml.dump(manifest, Dumper=_Dumper, sort_keys=False, default_flow_style=False, width=100)
    return f"# Generated by 'yard k8s {source}'; regenerate rather than edit.\n{body}"


class _Dumper(yaml.SafeDumper):
    """Multi-line strings (PromQL) as literal blocks, as a person would write them."""


def _str(dumper: yaml.SafeDumper, value: str) -> yaml.ScalarNode:
    style = "|" if "\n" in value else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)


_Dumper.add_representer(str, _str)


def write_manifests(
    target: Target, opts: K8sOptions, out: Path, *, force: bool = False,
    rule_groups: list[Manifest] | None = None,
) -> list[str]:  # fmt: skip
    """Write the manifests to ``out`` (whole or not at all); returns the file names."""
    from modelyard.deploy._folder import check_output_dir, write_folder

    check_output_dir(out, force=force, command=_COMMAND)
    manifests = build_manifests(target, opts, rule_groups=rule_groups)
    source = " ".join(target.serve_args)
    texts = {n: render(m, source) for n, m in manifests.items()}
    write_folder(out, texts, force=force, command=_COMMAND)
    return list(manifests)


def secret_command(opts: K8sOptions) -> str:
    """The ``kubectl`` line that creates the Secret the pods read (values left for the user)."""
    namespace = f" -n {opts.namespace}" if opts.namespace else ""
    log = " --from-literal=log-root='s3://BUCKET/PREDICTIONS'" if opts.log_predictions else ""
    return (
        f"kubectl create secret generic {opts.secret}{namespace} "
        "--from-literal=database-url='postgresql+psycopg://USER:PASSWORD@HOST:5432/DB' "
        f"--from-literal=artifact-root='s3://BUCKET/PREFIX'{log}"
    )
