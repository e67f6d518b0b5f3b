"""Triton's protocol extensions that describe the server rather than answer predictions: model
configuration, statistics and the model repository index. Each answer is built here as the dict
Triton's REST API answers; the gRPC edge fills the same fields into its protobuf messages.

Nothing here runs per prediction: the configuration comes from the served version's signature
and the serving settings, the statistics from the Prometheus metrics the server keeps anyway.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from prometheus_client.metrics_core import Metric

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


#: The routes whose requests are inferences (the statistics' success and fail counts).
_INFER_ROUTES = frozenset({"v2_infer", "invocations", "tf_predict", "vertex_predict"})
#: The histograms the statistics read, by metric name: their count and sum per model.
_HISTOGRAMS = {
    "modelyard_queue_wait_seconds": "queue",
    "modelyard_model_compute_seconds": "compute_infer",
    "modelyard_serialize_seconds": "compute_output",
    "modelyard_batch_rows": "rows",
}

#: Where a histogram's ``_count`` and ``_sum`` samples go in ``_Measured.histograms``.
_SLOTS = {"count": 0, "sum": 1}


class _Measured:
    """What the server's metrics hold, added up per model (and version) in one pass."""

    def __init__(self, families: Iterable[Metric]) -> None:
        self.ok: dict[tuple[str, str], float] = defaultdict(float)
        self.failed: dict[str, float] = defaultdict(float)
        self.latency_s: dict[str, float] = defaultdict(float)
        #: (what, model) -> [count, sum]
        self.histograms: dict[tuple[str, str], list[float]] = defaultdict(lambda: [0.0, 0.0])
        for family in families:
            if family.name == "modelyard_requests":
                self._requests(family)
            elif family.name == "modelyard_request_seconds":
                for sample in family.samples:
                    labels = sample.labels
                    if sample.name.endswith("_sum") and labels.get("route") in _INFER_ROUTES:
                        self.latency_s[labels["model"]] += sample.value
            elif family.name in _HISTOGRAMS:
                what = _HISTOGRAMS[family.name]
                for sample in family.samples:
                    slot = _SLOTS.get(sample.name.rpartition("_")[2])
                    if slot is not None:
                        self.histograms[what, sample.labels["model"]][slot] += sample.value

    def _requests(self, family: Metric) -> None:
        for sample in family.samples:
            labels = sample.labels
            if not sample.name.endswith("_total") or labels.get("route") not in _INFER_ROUTES:
                continue
            if labels["status"] == "200":
                self.ok[labels["model"], labels["version"]] += sample.value
            else:
                self.failed[labels["model"]] += sample.value

    def stat(self, name: str, served: ServedModel) -> dict[str, Any]:
        """Triton's ``model_stat`` of ``served`` under ``name`` (a deployment counts its
        requests under its own name, its model's batches under the model's)."""
        model = served.name
        rows_count, rows_sum = self.histograms["rows", model]

        def duration(what: str) -> dict[str, int]:
            count, seconds = self.histograms[what, model]
            return {"count": int(count), "ns": _ns(seconds)}

        return {
            "name": name,
            "version": served.version,
            "last_inference": 0,
            "inference_count": int(rows_sum),
            "execution_count": int(rows_count),
            "inference_stats": {
                "success": {
                    "count": int(self.ok[name, served.version]),
                    "ns": _ns(self.latency_s[name]),
                },
                "fail": {"count": int(self.failed[name]), "ns": 0},
                "queue": duration("queue"),
                "compute_input": {"count": 0, "ns": 0},
                "compute_infer": duration("compute_infer"),
                "compute_output": duration("compute_output"),
                "cache_hit": {"count": 0, "ns": 0},
                "cache_miss": {"count": 0, "ns": 0},
            },
            "batch_stats": [],
        }


def model_stats(
    served: Iterable[tuple[str, ServedModel]], families: Iterable[Metric]
) -> dict[str, Any]:
    """Triton's statistics of each ``(name, served version)``, from the server's metrics since
    it started, every worker's: ``inference_count`` and ``execution_count`` are the rows and
    the model calls of ``modelyard_batch_rows``; ``success`` and ``fail`` count the inference
    requests of ``modelyard_requests`` (status 200 of this version, or any other status), and
    ``success.ns`` is ``modelyard_request_seconds``' sum, which times failed requests too;
    ``queue``, ``compute_infer`` (per model call) and ``compute_output`` (encoding the answer)
    are the queue-wait, model-compute and serialize histograms. What the server does not time
    apart (decoding a request: ``compute_input``; the time of the last inference) is 0, and
    ``batch_stats`` is empty (the rows histogram has buckets, not each batch size). A model's
    own histograms are per name, so a version swapped in carries its predecessor's counts."""
    measured = _Measured(families)
    return {"model_stats": [measured.stat(name, version) for name, version in served]}


def _ns(seconds: float) -> int:
    return round(seconds * 1e9)


def repository_index(
    served: Iterable[tuple[str, ServedModel | None]], *, ready_only: bool
) -> list[dict[str, str]]:
    """Triton's repository index of the served names (a model still loading has no version:
    ``LOADING``; ``ready_only`` leaves it out)."""
    out = []
    for name, version in served:
        if version is not None:
            out.append({"name": name, "version": version.version, "state": "READY", "reason": ""})
        elif not ready_only:
            out.append({"name": name, "version": "", "state": "LOADING", "reason": "loading"})
    return out


def load_refused(action: str, served: Iterable[str]) -> str:
    """Why ``action`` (load or unload) is refused, and what moves a model instead."""
    names = ", ".join(served) or "none"
    return (
        f"This server does not {action} models on request: it serves what 'yard serve' started "
        f"with ({names}). Move the alias a model follows ('yard models alias NAME/VERSION "
        "ALIAS') and the server swaps that version in, or restart 'yard serve' with other refs."
    )
