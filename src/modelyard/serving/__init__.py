"""The model server: Open Inference Protocol v2 and MLflow /invocations, adaptive batching,
validation against the signature, Prometheus metrics, hot swaps and tokens."""

from modelyard.serving.server import build_app, serve

__all__ = ["build_app", "serve"]
