"""Validators for generated manifests: Kubernetes' own schemas for a named version (the
kubernetes-validate package, strict: an unknown field fails), and the vendored CRDs'
``openAPIV3Schema`` for the custom resources (jsonschema).

A CRD schema leaves ``additionalProperties`` out; the API server then prunes unknown fields, and
``kubectl apply`` (server-side field validation ``Strict``, its default) refuses them. The same
rule is applied here by closing every object schema that lists ``properties`` and does not say
``x-kubernetes-preserve-unknown-fields``: a misspelt field fails as it would on a cluster.
"""

from __future__ import annotations

import gzip
from functools import cache
from importlib import resources
from typing import Any

import jsonschema
import kubernetes_validate
import yaml

#: The Kubernetes versions the manifests are checked against: the oldest with the ``sleep``
#: preStop action on by default (1.30), and a current one.
K8S_VERSIONS = ("1.30.0", "1.34.0")

CRD_FILES = {
    ("monitoring.coreos.com", "ServiceMonitor"): "monitoring.coreos.com_servicemonitors.yaml",
    ("monitoring.coreos.com", "PrometheusRule"): "monitoring.coreos.com_prometheusrules.yaml",
    ("serving.kserve.io", "InferenceService"): "serving.kserve.io_inferenceservices.yaml.gz",
}


def validate_builtin(manifest: dict[str, Any], version: str) -> None:
    """Raises ``kubernetes_validate.ValidationError`` when ``manifest`` breaks the schema."""
    kubernetes_validate.validate(manifest, version, strict=True)


def _closed(schema: Any) -> Any:
    if isinstance(schema, list):
        return [_closed(item) for item in schema]
    if not isinstance(schema, dict):
        return schema
    out = {key: _closed(value) for key, value in schema.items()}
    if isinstance(out.get("pattern"), str) and out["pattern"].startswith("^(?i)"):
        # Go's RE2 takes a flag group anywhere; Python's re only at the start
        out["pattern"] = "(?i)^" + out["pattern"][len("^(?i)") :]
    if (
        "properties" in schema
        and "additionalProperties" not in schema
        and not schema.get("x-kubernetes-preserve-unknown-fields")
    ):
        out["additionalProperties"] = False
    return out


@cache
def crd_validator(api_version: str, kind: str) -> jsonschema.Draft4Validator:
    """The validator for ``kind`` at ``api_version`` (``group/version``) from the vendored CRD."""
    group, _, version = api_version.partition("/")
    raw = resources.files("modelyard.deploy").joinpath("crds", CRD_FILES[group, kind]).read_bytes()
    text = gzip.decompress(raw) if raw[:2] == b"\x1f\x8b" else raw
    crd = yaml.load(text, Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))  # 1.9 MB: C
    assert crd["spec"]["names"]["kind"] == kind and crd["spec"]["group"] == group
    served = {v["name"]: v for v in crd["spec"]["versions"] if v["served"]}
    schema = _closed(served[version]["schema"]["openAPIV3Schema"])
    jsonschema.Draft4Validator.check_schema(schema)
    return jsonschema.Draft4Validator(schema)


def validate_custom(manifest: dict[str, Any]) -> None:
    """Raises ``jsonschema.ValidationError`` when ``manifest`` breaks its CRD's schema."""
    crd_validator(manifest["apiVersion"], manifest["kind"]).validate(manifest)
