"""Bridges to the systems teams already use (an MLflow tracking server, run mirrors to MLflow,
Weights & Biases and Neptune...).

Each bridge is an optional extra imported lazily; only the CLI, the top-level API and the
pipelines import them, never the registry, serving or anything below.
"""
