"""Triton's protocol extensions that describe the server rather than answer predictions: model
configuration. Each answer is built here as the dict
Triton's REST API answers; the gRPC edge fills the same fields into its protobuf messages.

Nothing here runs per prediction: the configuration comes from the served version's signature
and the serving settings.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from modelyard.serving.models import ServedModel
    from modelyard.settings import ServingSettings

#: Triton's ``DataType`` name of each Open Inference Protocol datatype (BYTES is TYPE_STRING).
_DATA_TYPES = {
    "BOOL": "TYPE_BOOL", "UINT8": "TYPE_UINT8", "UINT16": "TYPE_UINT16",
    "UINT32": "TYPE_UINT32", "UINT64": "TYPE_UINT64", "INT8": "TYPE_INT8",
    "INT16": "TYPE_INT16", "INT32": "TYPE_INT32", "INT64": "TYPE_INT64", "FP16": "TYPE_FP16",
    "FP32": "TYPE_FP32", "FP64": "TYPE_FP64", "BYTES": "TYPE_STRING", "BF16": "TYPE_BF16",
}  # fmt: skip


def model_config(name: str, served: ServedModel, settings: ServingSettings) -> dict[str, Any]:
    """Triton's model configuration of ``served`` under ``name`` (a model's or a deployment's).

    ``max_batch_size`` is ``serving.max_batch_size``, the rows the batcher puts in one model
    call, and ``dynamic_batching`` its delay; every tensor's first dimension is the batch's, so
    ``dims`` leaves it out, and a column (one value per row) is ``dims: [1]`` reshaped to a
    scalar, as Triton writes a batch of scalars. The version policy names the served version."""
    meta = served.metadata()
    return {
        "name": name,
        "platform": meta["platform"],
        "backend": "modelyard",
        "version_policy": {"specific": {"versions": [_version_number(served.version)]}},
        "max_batch_size": settings.max_batch_size,
        "input": [_tensor(spec) for spec in meta["inputs"]],
        "output": [_tensor(spec) for spec in meta["outputs"]],
        "dynamic_batching": {
            "max_queue_delay_microseconds": round(settings.max_batch_delay_ms * 1000)
        },
    }


def _tensor(spec: dict[str, Any]) -> dict[str, Any]:
    dims = list(spec["shape"][1:])
    out: dict[str, Any] = {
        "name": spec["name"],
        "data_type": _DATA_TYPES.get(spec["datatype"], "TYPE_STRING"),
        "dims": dims or [1],
    }
    if not dims:
        out["reshape"] = {"shape": []}
    return out


def _version_number(version: str) -> int:
    return int(version) if version.isdigit() else 0
