"""Starts MLServer for benchmarks/transformers.py: ``python mlserver_start.py start FOLDER``.

MLServer 1.7.1's Hugging Face runtime imports optimum 1.x's ONNX exporter when it starts, and that
imports private helpers from ``torch.onnx.symbolic_opset14`` which torch 2.13 (the one CPU build
on these machines) moved to ``torch.onnx._internal.torchscript_exporter``. The runtime serves a
PyTorch pipeline and never exports, so the helpers are put back where optimum looks for them, and
MLServer's own command line runs unchanged.
"""

from __future__ import annotations

import sys

import torch.onnx.symbolic_opset14 as public
from torch.onnx._internal.torchscript_exporter import symbolic_opset14 as moved

for name in dir(moved):
    if not hasattr(public, name):
        setattr(public, name, getattr(moved, name))

from mlserver.cli import main  # noqa: E402 (after the helpers are back)

sys.exit(main())
