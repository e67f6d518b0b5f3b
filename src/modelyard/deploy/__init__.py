"""Leaving the laptop: build contexts, Kubernetes and KServe manifests, the observability bundle.

Everything here is generated from the registry (a model reference or a deployment) and from the
server's own settings, so that an image, its probes and its drain agree with ``yard serve``.
"""

from modelyard.deploy.target import Target, resolve_target

__all__ = ["Target", "resolve_target"]
