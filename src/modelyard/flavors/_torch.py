"""PyTorch modules (``torch.nn.Module``), served by onnxruntime without torch.

Registering a module runs it on the input example, exports it to ONNX with torch's dynamo exporter
(the batch axis dynamic), runs the ONNX model on the same rows and keeps it only when the two
agree within ``REGRESSION_ATOL + REGRESSION_RTOL * |eager|`` (the tolerances of
``flavors.conversion``). The version holds ``model.onnx``, which is what loads and serves
(onnxruntime only), and ``weights/model.safetensors``, the module's state dict, with its import
path (``package.module:QualName``) in the metadata: ``Registry.load_weights`` loads it into a
module the user constructs. Nothing is pickled or ``torch.load``-ed, and the import path is never
imported.

Outputs are the module's numbers: one tensor of shape ``(rows, k)`` serves as ``predict`` of that
shape, or ``(rows,)`` when ``k == 1``; labels or probabilities are not inferred.
"""

from __future__ import annotations

import re
import sys
import tempfile
import warnings
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, TypeVar

import numpy as np

from modelyard.errors import InvalidInputError, UnsupportedFormatError, first_line
from modelyard.flavors._base import Array, Artifact, LoadOptions, Predictor, as_array
from modelyard.flavors._common import artifact_file, is_frame, require_extra
from modelyard.flavors._onnx import OnnxFlavor, onnx_meta

if TYPE_CHECKING:
    import onnx
    import torch

_ONNX_FILE = "model.onnx"
#: The state dict's name in an artifact: the ``weights/`` prefix stores it under the role
#: ``weights``, which loading a version for serving does not read.
WEIGHTS_FILE = "weights/model.safetensors"
#: Rows of the input example (or the data) the parity check runs on; the export traces the
#: first few.
_PARITY_ROWS = 1024
_EXPORT_ROWS = 16
_ANSI = re.compile(r"\x1b\[[0-9;]*m")
_ModuleT = TypeVar("_ModuleT")


class TorchFlavor:
    """``torch.nn.Module`` objects, exported to ``model.onnx`` on an input example."""

    name: ClassVar[str] = "torch"
    #: No file format: a ``.pt`` file is a pickle, which modelyard does not load.
    suffixes: ClassVar[tuple[str, ...]] = ()

    def accepts(self, model: object) -> bool:
        torch_module = sys.modules.get("torch")
        return torch_module is not None and isinstance(model, torch_module.nn.Module)

    def check_header(self, path: Path, head: bytes) -> None:
        raise _no_files(path)

    def dump(self, model: object) -> Artifact:
        raise InvalidInputError(_missing_example("The model"))

    def dump_with_example(
        self, model: object, example: Any, *, name: str
    ) -> tuple[Artifact, Array]:
        """The artifact of ``model`` exported on ``example`` and checked against it, and the
        example as the array the model takes (float examples in the module's float type)."""
        require_extra("torch", "torch")
        require_extra("onnxscript", "torch")
        require_extra("safetensors", "torch")
        import torch

        what = f"Model {name!r}"
        if not isinstance(model, torch.nn.Module):
            raise UnsupportedFormatError(
                f"{what}: the torch flavor saves torch.nn.Module objects, not "
                f"{type(model).__module__}.{type(model).__qualname__}."
            )
        if example is None:
            raise InvalidInputError(_missing_example(what))
        modes = [(module, module.training) for module in model.modules()]
        model.eval()
        try:
            with torch.no_grad():
                rows = _example_tensor(what, model, example)
                expected = _eager(what, model, rows)
                proto = _export(what, model, rows[:_EXPORT_ROWS])
            weights = _state_dict_bytes(model, _import_path(model))
        finally:
            for module, training in modes:  # as the user left each part (a frozen BatchNorm...)
                module.training = training
        meta = {
            **onnx_meta(proto),
            "model_class": f"{type(model).__module__}.{type(model).__qualname__}",
            "import_path": _import_path(model),
            "torch_version": str(torch.__version__).split("+")[0],
            "n_features": int(rows.shape[1]),
            "has_proba": False,
        }
        artifact = Artifact({_ONNX_FILE: proto.SerializeToString(), WEIGHTS_FILE: weights}, meta)
        array = rows.cpu().numpy()
        diff = _check_parity(what, self.load(artifact, LoadOptions()), array, expected)
        parity = {"rows": len(array), "max_abs_diff": diff}
        return replace(artifact, meta={**meta, "parity": parity}), array

    def read_file(self, path: Path, options: LoadOptions) -> Artifact:
        raise _no_files(path)

    def load(self, artifact: Artifact, options: LoadOptions) -> Predictor:
        name, data = artifact_file(artifact, self.name, (_ONNX_FILE,))
        return OnnxFlavor().load(Artifact({name: data}, artifact.meta), options)


def load_weights(data: bytes, module: _ModuleT, *, source: str, import_path: str) -> _ModuleT:
    """Load ``model.safetensors`` bytes into ``module`` (strict: every tensor must fit);
    ``InvalidInputError`` naming ``source`` when they do not."""
    require_extra("torch", "torch")
    require_extra("safetensors", "torch")
    import torch
    from safetensors.torch import load_model

    if not isinstance(module, torch.nn.Module):
        raise InvalidInputError(
            f"The weights of {source} load into a torch.nn.Module, not "
            f"{type(module).__module__}.{type(module).__qualname__}; construct {import_path}."
        )
    with tempfile.TemporaryDirectory(prefix="modelyard-weights-") as folder:
        path = Path(folder) / "model.safetensors"
        path.write_bytes(data)
        try:
            load_model(module, path, strict=True)
        except RuntimeError as exc:
            lines = [line.strip() for line in str(exc).splitlines()[1:] if line.strip()]
            detail = "; ".join(lines) or first_line(exc)
            detail = detail if len(detail) <= 300 else detail[:297] + "..."
            raise InvalidInputError(
                f"The weights of {source} do not fit the {type(module).__qualname__} given "
                f"({detail}); construct {import_path} as it was when registered."
            ) from exc
    return module


def _missing_example(what: str) -> str:
    return (
        f"{what} is a PyTorch module, exported to ONNX by running it on an example; pass "
        "input_example= (a 2-D tensor or array, rows x features) or data=."
    )


def _no_files(path: Path) -> UnsupportedFormatError:
    return UnsupportedFormatError(
        f"modelyard does not read PyTorch files ('{path}': torch saves pickles); register the "
        "module object with modelyard.register(module, name=..., input_example=...)."
    )


def _import_path(module: object) -> str:
    return f"{type(module).__module__}:{type(module).__qualname__}"


def _example_tensor(what: str, module: torch.nn.Module, example: Any) -> torch.Tensor:
    """The first ``_PARITY_ROWS`` rows of ``example`` as a 2-D tensor on the module's device:
    float values in the module's float type, integers as int64; ``InvalidInputError`` for
    anything else."""
    import torch

    if isinstance(example, torch.Tensor):
        tensor = example.detach()
        tensor = tensor[:_PARITY_ROWS] if tensor.dim() else tensor
    else:
        values = example.head(_PARITY_ROWS).to_numpy() if is_frame(example) else np.asarray(example)
        values = values[:_PARITY_ROWS] if values.ndim else values
        if values.dtype.kind not in "fiu":
            raise InvalidInputError(
                f"{what}: the input example must be numeric (rows x features), got values of "
                f"type {values.dtype}; pass numbers."
            )
        tensor = torch.from_numpy(np.ascontiguousarray(values))
    if tensor.dim() != 2 or tensor.shape[0] == 0 or tensor.shape[1] == 0:
        raise InvalidInputError(
            f"{what}: the input example must be 2-D (rows x features) with at least one row, "
            f"got shape {tuple(tensor.shape)}; reshape it to rows x features."
        )
    if tensor.is_complex() or tensor.dtype == torch.bool:
        raise InvalidInputError(
            f"{what}: the input example must be real numbers, got {tensor.dtype}; pass floats."
        )
    params = [t for t in (*module.parameters(), *module.buffers()) if t.is_floating_point()]
    if tensor.is_floating_point():
        tensor = tensor.to(params[0].dtype if params else torch.float32)
    else:
        tensor = tensor.to(torch.int64)
    return tensor.to(params[0].device) if params else tensor


def _eager(what: str, module: torch.nn.Module, rows: torch.Tensor) -> Array:
    """The module's output on ``rows``, as a ``(rows,)`` or ``(rows, k)`` array."""
    import torch

    try:
        out = module(rows)
    except Exception as exc:  # a user's forward raises anything
        raise InvalidInputError(
            f"{what}: the module fails on the input example ({type(exc).__name__}: "
            f"{first_line(exc)}); pass an example it takes (rows x features)."
        ) from exc
    if not isinstance(out, torch.Tensor):
        raise UnsupportedFormatError(
            f"{what}: the module returns a {type(out).__name__}; modelyard serves a module that "
            "returns one tensor of shape (rows,) or (rows, k): wrap it in one that does."
        )
    if out.dim() not in (1, 2) or out.shape[0] != rows.shape[0]:
        raise UnsupportedFormatError(
            f"{what}: the module returns shape {tuple(out.shape)} for {rows.shape[0]} rows; "
            "modelyard serves (rows,) or (rows, k) outputs: wrap it in a module that does."
        )
    return as_array(out.detach().cpu().numpy())


def _export(what: str, module: torch.nn.Module, rows: torch.Tensor) -> onnx.ModelProto:
    import torch

    if rows.shape[0] == 1:
        rows = rows.repeat(2, 1)  # a batch of one would trace the batch axis as the constant 1
    batch = torch.export.Dim("batch")
    try:
        with warnings.catch_warnings():
            # the exporter's own deprecation and tracing warnings are not the user's concern
            warnings.simplefilter("ignore")
            program = torch.onnx.export(
                module, (rows,), dynamo=True, dynamic_shapes=({0: batch},), verbose=False
            )
    except Exception as exc:  # the exporter raises anything; reported as one line
        raise UnsupportedFormatError(
            f"{what}: torch.onnx.export cannot export the {type(module).__qualname__} "
            f"({_export_reason(exc)}); make its forward exportable (torch.export) and register "
            "it again."
        ) from exc
    if program is None or program.model_proto is None:
        raise UnsupportedFormatError(f"{what}: torch.onnx.export returned no ONNX model.")
    proto: onnx.ModelProto = program.model_proto
    return proto


def _export_reason(exc: BaseException) -> str:
    """The exporter's own summary of the failure (the line after "## Exception summary",
    without the exception's class), else its first line."""
    text = _ANSI.sub("", str(exc))
    lines = [line.strip() for line in text.splitlines()]
    if "## Exception summary" in lines:
        after = [line for line in lines[lines.index("## Exception summary") + 1 :] if line]
        if after:
            reason = re.sub(r"^<class '[^']*'>: ", "", after[0])
            return reason if len(reason) <= 200 else reason[:197] + "..."
    first = next((line for line in lines if line), type(exc).__name__)
    return first if len(first) <= 200 else first[:197] + "..."


def _check_parity(what: str, predictor: Predictor, rows: Array, expected: Array) -> float:
    """The largest difference between the ONNX model and the eager module on ``rows``;
    ``UnsupportedFormatError`` beyond the tolerances of ``flavors.conversion``."""
    from modelyard.flavors.conversion import REGRESSION_ATOL, REGRESSION_RTOL

    got = np.asarray(predictor.predict(rows))
    if got.shape != expected.shape:
        raise UnsupportedFormatError(
            f"{what}: the ONNX export gives shape {got.shape}, the module {expected.shape}; "
            "nothing was registered."
        )
    if not np.issubdtype(expected.dtype, np.floating):
        differ = int(np.sum(got != expected))
        if differ:
            raise UnsupportedFormatError(
                f"{what}: the ONNX export differs from the module on {differ} of "
                f"{len(expected)} example rows; nothing was registered."
            )
        return 0.0
    error = np.abs(got.astype(np.float64) - expected.astype(np.float64))
    error[np.isnan(got) & np.isnan(expected)] = 0.0  # NaN where the module gives NaN agrees
    diff = float(np.max(error, initial=0.0))
    bound = REGRESSION_ATOL + REGRESSION_RTOL * np.abs(expected.astype(np.float64))
    if not np.all(error <= bound) or not np.isfinite(diff):
        raise UnsupportedFormatError(
            f"{what}: the ONNX export differs from the module on the input example (max "
            f"difference {diff:.3g}, allowed {REGRESSION_ATOL:g} + {REGRESSION_RTOL:g} * "
            "|output|); nothing was registered: look for code in forward that runs "
            "differently when exported (Python-side state, torch.onnx.is_in_onnx_export()) and "
            "register it again."
        )
    return diff


def _state_dict_bytes(module: torch.nn.Module, import_path: str) -> bytes:
    """``safetensors.torch.save_model``'s file as bytes (it stores shared tensors once)."""
    from safetensors.torch import save_model

    with tempfile.TemporaryDirectory(prefix="modelyard-weights-") as folder:
        path = Path(folder) / "model.safetensors"
        save_model(module, str(path), metadata={"import_path": import_path})
        return path.read_bytes()
