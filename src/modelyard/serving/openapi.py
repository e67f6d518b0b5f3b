"""The server's OpenAPI document and a self-contained docs page (no CDN: it renders the
document with a few lines of inline JavaScript)."""

from __future__ import annotations

import copy
from typing import Any

_ERROR = {
    "description": "Error",
    "content": {
        "application/json": {
            "schema": {
                "type": "object",
                "properties": {"error": {"type": "string"}},
                "required": ["error"],
            }
        }
    },
}
_TENSOR = {
    "type": "object",
    "required": ["name", "shape", "datatype", "data"],
    "properties": {
        "name": {"type": "string"},
        "shape": {"type": "array", "items": {"type": "integer", "minimum": 0}},
        "datatype": {
            "type": "string",
            "enum": [
                "BOOL", "UINT8", "UINT16", "UINT32", "UINT64", "INT8", "INT16", "INT32",
                "INT64", "FP16", "FP32", "FP64", "BYTES",
            ],
        },
        "parameters": {"type": "object"},
        "data": {"type": "array", "items": {}},
    },
}  # fmt: skip
_INFER_REQUEST = {
    "type": "object",
    "required": ["inputs"],
    "properties": {
        "id": {"type": "string"},
        "parameters": {"type": "object"},
        "inputs": {"type": "array", "items": _TENSOR, "minItems": 1},
        "outputs": {
            "type": "array",
            "items": {
                "type": "object",
                "required": ["name"],
                "properties": {"name": {"type": "string"}, "parameters": {"type": "object"}},
            },
        },
    },
}
_INFER_RESPONSE = {
    "type": "object",
    "required": ["model_name", "outputs"],
    "properties": {
        "model_name": {"type": "string"},
        "model_version": {"type": "string"},
        "id": {"type": "string"},
        "outputs": {"type": "array", "items": _TENSOR},
    },
}
#: An inference answer: JSON, or (Triton's binary tensor data extension, when the request asks
#: ``binary_data_output`` or an output's ``binary_data``) the JSON part followed by the binary
#: outputs' bytes, its length in ``Inference-Header-Content-Length``.
_INFER_ANSWER = {
    "description": "OK",
    "headers": {"Inference-Header-Content-Length": {
        "description": "With binary outputs: the length of the JSON part of the body.",
        "schema": {"type": "integer", "minimum": 0},
    }},
    "content": {
        "application/json": {"schema": _INFER_RESPONSE},
        "application/octet-stream": {"schema": {"type": "string", "format": "binary"}},
    },
}  # fmt: skip
_MLFLOW_REQUEST = {
    "type": "object",
    "description": "Exactly one of dataframe_split, dataframe_records, instances, inputs.",
    "properties": {
        "dataframe_split": {
            "type": "object",
            "properties": {
                "columns": {"type": "array", "items": {"type": "string"}},
                "data": {"type": "array", "items": {"type": "array", "items": {}}},
            },
            "required": ["data"],
        },
        "dataframe_records": {"type": "array", "items": {"type": "object"}},
        "instances": {"type": "array", "items": {}},
        "inputs": {},
        "params": {"type": "object"},
    },
}


_LABELS_REQUEST: dict[str, Any] = {
    "type": "object",
    "required": ["deployment", "labels"],
    "properties": {
        "deployment": {"type": "string", "description": "The deployment or model name."},
        "labels": {
            "type": "array",
            "minItems": 1,
            "description": "At most one label per (request_id, row); a later POST replaces it.",
            "items": {
                "type": "object",
                "required": ["request_id", "label"],
                "properties": {
                    "request_id": {"type": "string", "description": "X-Request-Id of the answer."},
                    "label": {"oneOf": [
                        {"type": "string"}, {"type": "number"}, {"type": "boolean"},
                    ]},
                    "time": {
                        "oneOf": [{"type": "string", "format": "date-time"}, {"type": "number"}],
                        "description": "When the outcome was observed: ISO 8601 or epoch seconds.",
                    },
                    "row": {"type": "integer", "minimum": 0, "default": 0,
                            "description": "The row of a multi-row request."},
                },
            },
        },
    },
}  # fmt: skip


_OUTCOMES_REQUEST = copy.deepcopy(_LABELS_REQUEST)
_OUTCOMES_REQUEST["required"] = ["deployment", "outcomes"]
_OUTCOMES_REQUEST["properties"]["outcomes"] = _OUTCOMES_REQUEST["properties"].pop("labels")
_OUTCOME_ITEM = _OUTCOMES_REQUEST["properties"]["outcomes"]["items"]
_OUTCOME_ITEM["required"] = ["request_id", "value"]
_OUTCOME_ITEM["properties"].pop("label")
_OUTCOME_ITEM["properties"]["value"] = {
    "type": "number", "description": "A finite number: revenue, 1 for a conversion...",
}  # fmt: skip
_OUTCOMES_REQUEST["properties"]["outcomes"]["description"] = (
    "At most one outcome per (request_id, row); a later POST replaces it."
)


def _json(schema: dict[str, Any], description: str = "OK") -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def _model_params(with_version: bool, models: list[str]) -> list[dict[str, Any]]:
    name_schema: dict[str, Any] = {"type": "string"}
    if models:
        name_schema["enum"] = models
    params = [{"name": "model_name", "in": "path", "required": True, "schema": name_schema}]
    if with_version:
        params.append(
            {
                "name": "model_version",
                "in": "path",
                "required": True,
                "schema": {"type": "string"},
            }
        )
    return params


def openapi_document(
    models: list[str] | None = None,
    *,
    predict_route: str | None = None,
    health_route: str | None = None,
) -> dict[str, Any]:
    """The API description; ``models`` (the served names) become the model_name values;
    ``predict_route`` and ``health_route``: Vertex AI's routes, when the server has them."""
    errors = {"400": _ERROR, "404": _ERROR, "500": _ERROR, "503": _ERROR, "504": _ERROR}
    names = sorted(models or [])
    paths: dict[str, Any] = {
        "/v2": {"get": {"summary": "Server metadata", "responses": {"200": _json({
            "type": "object", "properties": {"name": {"type": "string"},
            "version": {"type": "string"}, "extensions": {"type": "array"}}})}}},
        "/v2/health/live": {"get": {"summary": "Server live", "responses": {"200": _json({})}}},
        "/v2/health/ready": {"get": {"summary": "Server ready (503 while loading)",
                                     "responses": {"200": _json({}), "503": _json({})}}},
        "/metrics": {"get": {"summary": "Prometheus metrics", "responses": {
            "200": {"description": "OK", "content": {"text/plain": {"schema": {"type": "string"}}}}
        }}},
        "/invocations": {"post": {
            "summary": "MLflow-compatible scoring (a server with one model)",
            "requestBody": {"content": {"application/json": {"schema": _MLFLOW_REQUEST},
                                        "text/csv": {"schema": {"type": "string"}}}},
            "responses": {"200": _json({"type": "object", "properties": {
                "predictions": {"type": "array"}}}), "415": _ERROR, **errors},
        }},
        "/v1/labels": {"post": {
            "summary": "Ground-truth labels for logged predictions (needs --log-predictions)",
            "requestBody": {"required": True,
                            "content": {"application/json": {"schema": _LABELS_REQUEST}}},
            "responses": {"202": _json({"type": "object", "required": ["accepted"],
                                        "properties": {"accepted": {"type": "integer"}}},
                                       "Accepted"),
                          "400": _ERROR, "401": _ERROR, "403": _ERROR, "404": _ERROR,
                          "409": _ERROR, "503": _ERROR},
        }},
    }  # fmt: skip
    paths["/v1/outcomes"] = {"post": {
        "summary": "Business outcomes of logged predictions (needs --log-predictions)",
        "requestBody": {"required": True,
                        "content": {"application/json": {"schema": _OUTCOMES_REQUEST}}},
        "responses": paths["/v1/labels"]["post"]["responses"],
    }}  # fmt: skip
    for with_version in (False, True):
        base = "/v2/models/{model_name}" + ("/versions/{model_version}" if with_version else "")
        params = _model_params(with_version, names)
        for suffix, summary, schema in (
            ("", "Model metadata", {"type": "object"}),
            ("/ready", "Model ready", {}),
            ("/config", "Model configuration (Triton's model configuration extension)",
             {"type": "object"}),
            ("/stats", "Model statistics (Triton's statistics extension)", {"type": "object"}),
        ):  # fmt: skip
            paths[base + suffix] = {
                "get": {
                    "summary": summary,
                    "parameters": params,
                    "responses": {"200": _json(schema), **errors},
                }
            }
        paths[base + "/infer"] = {"post": {
            "summary": "Inference (Open Inference Protocol v2)", "parameters": params,
            "requestBody": {"required": True,
                            "content": {"application/json": {"schema": _INFER_REQUEST}}},
            "responses": {"200": _INFER_ANSWER, **errors},
        }}  # fmt: skip
    paths["/v2/models/stats"] = {"get": {
        "summary": "Every served model's statistics (Triton's statistics extension)",
        "responses": {"200": _json({"type": "object"}), "401": _ERROR, "403": _ERROR},
    }}  # fmt: skip
    paths["/v2/repository/index"] = {"post": {
        "summary": "The served models, READY (Triton's model repository extension)",
        "requestBody": {"content": {"application/json": {"schema": {
            "type": "object", "properties": {"ready": {"type": "boolean"}}}}}},
        "responses": {"200": _json({"type": "array"}), "400": _ERROR, "401": _ERROR,
                      "403": _ERROR},
    }}  # fmt: skip
    for action in ("load", "unload"):
        paths[f"/v2/repository/models/{{model_name}}/{action}"] = {"post": {
            "summary": f"Refused: models are not {action}ed on request (use 'yard models alias')",
            "parameters": _model_params(False, names),
            "responses": {"400": _ERROR, "401": _ERROR, "403": _ERROR},
        }}  # fmt: skip
    _tf_paths(paths, names, errors)
    _other_paths(paths, names, errors)
    if predict_route is not None:
        paths[predict_route] = {"post": {
            "summary": "Vertex AI predict (AIP_PREDICT_ROUTE): instances -> predictions",
            "requestBody": {"required": True,
                            "content": {"application/json": {"schema": _TF_REQUEST}}},
            "responses": {"200": _json({"type": "object"}), **errors},
        }}  # fmt: skip
    if health_route is not None:
        ready = paths["/v2/health/ready"]["get"]
        paths[health_route] = {"get": {**ready, "summary": "Vertex AI health (AIP_HEALTH_ROUTE)"}}
    return {
        "openapi": "3.0.3",
        "info": {"title": "modelyard model server", "version": "0.1.0"},
        "paths": paths,
    }


_TF_REQUEST: dict[str, Any] = {
    "type": "object",
    "description": "Exactly one of instances (rows) and inputs (columns).",
    "properties": {
        "signature_name": {"type": "string", "enum": ["serving_default"]},
        "instances": {"type": "array", "minItems": 1, "items": {
            "oneOf": [{"type": "array"}, {"type": "object"}]}},
        "inputs": {"oneOf": [{"type": "object"}, {"type": "array"}]},
    },
}  # fmt: skip


def _tf_paths(paths: dict[str, Any], models: list[str], errors: dict[str, Any]) -> None:
    """TF Serving's REST API: status, metadata and predict, by name, version or label."""
    for kind in ("", "versions", "labels"):
        base = "/v1/models/{model_name}" + (f"/{kind}/{{{kind[:-1]}}}" if kind else "")
        params = _model_params(False, models)
        if kind:
            params.append({"name": kind[:-1], "in": "path", "required": True,
                           "schema": {"type": "string"}})  # fmt: skip
        paths[base] = {"get": {
            "summary": "TF Serving model status", "parameters": params,
            "responses": {"200": _json({"type": "object"}), **errors},
        }}  # fmt: skip
        paths[base + "/metadata"] = {"get": {
            "summary": "TF Serving model metadata (the serving_default signature)",
            "parameters": params, "responses": {"200": _json({"type": "object"}), **errors},
        }}  # fmt: skip
        paths[base + ":predict"] = {"post": {
            "summary": "TF Serving predict: instances -> predictions, inputs -> outputs",
            "parameters": params,
            "requestBody": {"required": True,
                            "content": {"application/json": {"schema": _TF_REQUEST}}},
            "responses": {"200": _json({"type": "object"}), **errors},
        }}  # fmt: skip


def _other_paths(paths: dict[str, Any], models: list[str], errors: dict[str, Any]) -> None:
    """MLflow's per-model scoring, the health aliases, the admin view and these docs."""
    invocations = copy.deepcopy(paths["/invocations"])
    invocations["post"]["summary"] = "MLflow-compatible scoring of one model or deployment"
    invocations["post"]["parameters"] = _model_params(False, models)
    paths["/models/{model_name}/invocations"] = invocations
    ready = paths["/v2/health/ready"]["get"]
    paths["/ping"] = {"get": {**ready, "summary": "Server ready (SageMaker's /ping)"}}
    paths["/health"] = {"get": {**ready, "summary": "Server ready (503 while loading)"}}
    summary = "Served models and deployments (needs an admin token under --auth)"
    admin = {
        "summary": summary,
        "responses": {
            "200": _json({"type": "array", "items": {"type": "object", "required": ["name", "kind"],
                          "properties": {"name": {"type": "string"},
                                         "kind": {"type": "string",
                                                  "enum": ["model", "deployment"]}}}}),
            "401": _ERROR, "403": _ERROR,
        },
    }  # fmt: skip
    listed = {**admin, "summary": summary + "; POST answers the same"}
    paths["/admin/models"] = {"get": admin, "post": listed}
    paths["/openapi.json"] = {"get": {"summary": "This API description (OpenAPI 3)",
                                      "responses": {"200": _json({"type": "object"}),
                                                    "401": _ERROR}}}  # fmt: skip
    paths["/docs"] = {"get": {"summary": "The API's docs page", "responses": {
        "200": {"description": "OK", "content": {"text/html": {"schema": {"type": "string"}}}},
        "401": _ERROR,
    }}}  # fmt: skip


DOCS_HTML = b"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>modelyard API</title>
<style>body{font:15px/1.5 system-ui,sans-serif;max-width:60rem;margin:2rem auto;padding:0 1rem}
code{background:#f4f4f4;padding:0 .3em}h2{margin-top:2rem}.m{font-weight:700;width:4rem;
display:inline-block}</style></head>
<body><h1>modelyard model server</h1>
<p>Open Inference Protocol v2 (KServe, Triton, MLServer clients work unchanged; over gRPC too,
with <code>--grpc-port</code>), MLflow's <code>/invocations</code> and TF Serving's
<code>/v1/models</code>. The machine-readable document is
<a href="/openapi.json">/openapi.json</a>.</p><div id="paths">Loading...</div>
<script>
fetch('/openapi.json').then(r => r.json()).then(doc => {
  const out = document.getElementById('paths'); out.textContent = '';
  for (const [path, ops] of Object.entries(doc.paths)) {
    for (const [method, op] of Object.entries(ops)) {
      const p = document.createElement('p');
      const m = document.createElement('span'); m.className = 'm';
      m.textContent = method.toUpperCase();
      const c = document.createElement('code'); c.textContent = path;
      p.append(m, c, ' ' + (op.summary || ''));
      out.append(p);
    }
  }
});
</script></body></html>
"""
