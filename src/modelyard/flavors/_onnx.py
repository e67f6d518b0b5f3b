"""ONNX models, run with onnxruntime (on the CPU unless ``choose_providers`` picks CUDA).

Two input layouts: ``tensor`` (one 2-D input: ``X`` is fed as one array of the input's element
type) and ``columns`` (one ``[n, 1]`` input per column, as skl2onnx makes for a ColumnTransformer
on a DataFrame; strings as string tensors). Two outputs, a label and a probability (an ``[n, k]``
tensor or a ZipMap list of dicts), make a classifier; otherwise the first output is the prediction.
"""

from __future__ import annotations

import logging
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np

from modelyard.errors import (
    ConfigError,
    InvalidInputError,
    ModelLoadError,
    UnsupportedFormatError,
    first_line,
)
from modelyard.flavors._base import Array, Artifact, LoadOptions, Predictor, as_array
from modelyard.flavors._common import (
    artifact_file,
    is_frame,
    json_classes,
    no_proba_error,
    qualified_name,
    read_model_file,
    rejected_input,
)

if TYPE_CHECKING:
    import onnx
    import onnxruntime

    from modelyard.flavors._onnx_trees import TreeKernel

logger = logging.getLogger(__name__)

_FILE = "model.onnx"
_NUMPY_TYPES: dict[str, type[Any]] = {
    "tensor(float)": np.float32,
    "tensor(double)": np.float64,
    "tensor(int64)": np.int64,
    "tensor(int32)": np.int32,
    "tensor(bool)": np.bool_,
    "tensor(string)": np.str_,
}
_LABEL_TYPES = frozenset({"tensor(int64)", "tensor(int32)", "tensor(string)", "tensor(bool)"})
_ONNX_ERRORS_HINT = "export the model again with skl2onnx or onnxmltools"
_CPU = "CPUExecutionProvider"
_CUDA = "CUDAExecutionProvider"


def choose_providers(setting: str, available: list[str]) -> list[str]:
    """onnxruntime's providers for the ``onnx.execution_provider`` setting, given what this
    onnxruntime offers (``onnxruntime.get_available_providers()``): ``cpu`` -> the CPU; ``cuda``
    -> CUDA, with the CPU for the operators CUDA lacks, or ``ConfigError`` when onnxruntime has
    no CUDA; ``auto`` -> as ``cuda`` when it has, else the CPU. (``OnnxFlavor.load`` also
    refuses a ``cuda`` session that onnxruntime started on the CPU, and lets ``auto`` run there.)"""
    if setting == "cpu":
        return [_CPU]
    if setting not in ("auto", "cuda"):
        raise ConfigError(
            f"onnx.execution_provider {setting!r} is unknown; use 'cpu', 'cuda' or 'auto'."
        )
    if _CUDA in available:
        return [_CUDA, _CPU]
    if setting == "auto":
        return [_CPU]
    raise ConfigError(
        "onnx.execution_provider is 'cuda' but this onnxruntime offers only "
        f"{', '.join(available) or 'no providers'}; install onnxruntime-gpu on a machine with "
        "an NVIDIA GPU, or set MODELYARD_ONNX__EXECUTION_PROVIDER=cpu."
    )


def new_session(
    graph: bytes, options: LoadOptions, *, name: str, hint: str
) -> onnxruntime.InferenceSession:
    """An onnxruntime session for ``graph`` with the options' threads and execution provider
    (``choose_providers``); ``ModelLoadError`` naming ``name`` with ``hint`` when onnxruntime
    refuses the graph, ``ConfigError`` when CUDA was asked for and does not start."""
    import onnxruntime as ort

    session_options = ort.SessionOptions()
    session_options.intra_op_num_threads = options.onnx_intra_op_threads
    session_options.inter_op_num_threads = options.onnx_inter_op_threads
    session_options.log_severity_level = 3  # errors only: no shape warnings on stderr
    providers = choose_providers(options.onnx_execution_provider, ort.get_available_providers())
    try:
        session = ort.InferenceSession(graph, sess_options=session_options, providers=providers)
    except _ort_errors() as exc:
        raise ModelLoadError(
            f"onnxruntime cannot load {name} ({first_line(exc)}); {hint}."
        ) from exc
    running = session.get_providers()[0]
    if running != providers[0]:
        # onnxruntime falls back to the CPU when CUDA fails to start (a driver mismatch): an
        # error when CUDA was asked for, the CPU when it was only preferred
        if options.onnx_execution_provider == "cuda":
            raise ConfigError(
                f"onnxruntime could not start {providers[0]} for {name} (it runs on "
                f"{running}); check the CUDA driver and onnxruntime-gpu, or set "
                "MODELYARD_ONNX__EXECUTION_PROVIDER=cpu."
            )
        logger.warning("onnxruntime could not start %s; %s runs on %s", providers[0], name, running)
    return session


class OnnxFlavor:
    """``onnx.ModelProto`` objects and ``.onnx`` files, stored as ``model.onnx``."""

    name: ClassVar[str] = "onnx"
    suffixes: ClassVar[tuple[str, ...]] = (".onnx",)

    def accepts(self, model: object) -> bool:
        onnx_module = sys.modules.get("onnx")
        return onnx_module is not None and isinstance(model, onnx_module.ModelProto)

    def check_header(self, path: Path, head: bytes) -> None:
        # A protobuf has no magic number: read_file parses the whole file instead.
        return None

    def dump(self, model: object) -> Artifact:
        import onnx

        if not isinstance(model, onnx.ModelProto):
            raise UnsupportedFormatError(
                f"The onnx flavor saves onnx.ModelProto objects, not {qualified_name(model)}; "
                "use flavor_for_object to pick a flavor."
            )
        return Artifact(files={_FILE: model.SerializeToString()}, meta=onnx_meta(model))

    def read_file(self, path: Path, options: LoadOptions) -> Artifact:
        data = read_model_file(path)
        model = _parse(data, f"'{path}'")
        return Artifact(files={_FILE: data}, meta=onnx_meta(model))

    def load(self, artifact: Artifact, options: LoadOptions) -> Predictor:
        name, data = artifact_file(artifact, self.name, (_FILE,))
        session = new_session(data, options, name=name, hint=_ONNX_ERRORS_HINT)
        kernel = None
        if options.onnx_tree_kernel:
            from modelyard.flavors._onnx_trees import tree_kernel

            kernel = tree_kernel(_parse(data, name), session, name=name)
        return OnnxPredictor(session, artifact.meta, data, kernel=kernel)


@dataclass(frozen=True, slots=True)
class _Input:
    name: str
    dtype: type[Any]
    rank: int


class OnnxPredictor:
    """Feeds ``X`` to an onnxruntime session in the model's input layout."""

    def __init__(
        self,
        session: onnxruntime.InferenceSession,
        meta: dict[str, Any],
        data: bytes,
        *,
        kernel: TreeKernel | None = None,
    ) -> None:
        self._session = session
        self._kernel = kernel
        self._data = data
        self._inputs = [_input(arg) for arg in session.get_inputs()]
        self._layout = "tensor" if len(self._inputs) == 1 else "columns"
        outputs = session.get_outputs()
        self._label_index, self._proba_index = _classifier_outputs([o.type for o in outputs])
        self._output_names = [o.name for o in outputs]
        self._has_proba = self._proba_index is not None and bool(meta.get("has_proba", True))
        self._classes: list[Any] | None = None
        if self._proba_index is not None:
            classes = meta.get("classes")
            if classes is None:
                classes = _graph_classes(_parse(data, "")) or _indexes(outputs[self._proba_index])
            self._classes = classes

    @property
    def layout(self) -> str:
        return self._layout

    @property
    def classes(self) -> list[Any] | None:
        return None if self._classes is None else list(self._classes)

    @property
    def has_proba(self) -> bool:
        return self._has_proba

    @property
    def provider(self) -> str:
        """The onnxruntime execution provider that runs the model (``CPUExecutionProvider``)."""
        return str(self._session.get_providers()[0])

    @property
    def engine(self) -> str:
        """What runs the model: ``onnxruntime``, or ``tree kernel`` (``_onnx_trees``)."""
        return "onnxruntime" if self._kernel is None else "tree kernel"

    def use_tree_kernel(self, name: str) -> bool:
        """Build the tree kernel and run the model on it from the next call, when the kernel
        covers the model and agrees with onnxruntime (``flavors._onnx_trees``); whether it runs
        on the kernel now. Safe while another thread predicts: a call takes the kernel or the
        session once, at its start."""
        if self._kernel is None:
            from modelyard.flavors._onnx_trees import tree_kernel

            self._kernel = tree_kernel(_parse(self._data, name), self._session, name=name)
        return self._kernel is not None

    def predict(self, X: Any) -> Array:
        index = 0 if self._label_index is None else self._label_index
        return as_array(self._run(X, index))

    def predict_proba(self, X: Any) -> Array:
        if not self._has_proba or self._proba_index is None:
            raise no_proba_error("ONNX")
        out = self._run(X, self._proba_index)
        if isinstance(out, list):
            return self._unzip(out)
        return np.asarray(out)

    def predict_with_proba(self, X: Any) -> tuple[Array, Array]:
        """Labels and probabilities from one run of the session (a classifier computes both;
        asking for them one at a time ran the whole tree ensemble twice)."""
        if not self._has_proba or self._proba_index is None or self._label_index is None:
            raise no_proba_error("ONNX")
        kernel = self._kernel
        if kernel is not None:
            labels, proba = kernel.run(self._matrix(X))
            return labels, proba
        names = [self._output_names[self._label_index], self._output_names[self._proba_index]]
        try:
            labels, proba = self._session.run(names, self._feed(X))
        except _ort_errors() as exc:
            raise rejected_input("ONNX", exc) from exc
        return as_array(labels), self._unzip(proba) if isinstance(proba, list) else np.asarray(
            proba
        )

    def _run(self, X: Any, index: int) -> Any:
        kernel = self._kernel
        if kernel is not None:
            outputs = kernel.run(self._matrix(X))
            if len(outputs) == 1:
                return outputs[0]
            return outputs[0] if index == self._label_index else outputs[1]
        feed = self._feed(X)
        try:
            return self._session.run([self._output_names[index]], feed)[0]
        except _ort_errors() as exc:
            raise rejected_input("ONNX", exc) from exc

    def _unzip(self, rows: list[dict[Any, float]]) -> Array:
        """A ZipMap's list of ``{class: probability}`` as an ``[n, k]`` array in class order."""
        if not rows:
            return np.zeros((0, len(self._classes or ())), dtype=np.float32)
        keys = self._classes if self._classes is not None else list(rows[0])
        try:
            return np.array([[row[k] for k in keys] for row in rows], dtype=np.float32)
        except KeyError as exc:
            raise ModelLoadError(
                f"The ONNX model's probabilities have no class {exc} (it gives "
                f"{sorted(rows[0])}); register it with its classes in the metadata."
            ) from exc

    def _matrix(self, X: Any) -> Array:
        """``X`` as the kernel's float32 matrix (the tensor layout's one input)."""
        (values,) = self._feed(X).values()
        return values

    def _feed(self, X: Any) -> dict[str, Array]:
        if self._layout == "tensor":
            spec = self._inputs[0]
            values = X.to_numpy() if is_frame(X) else np.asarray(X)
            if values.ndim != 2:
                raise InvalidInputError(
                    f"The ONNX model takes a 2-D input '{spec.name}', got {values.ndim}-D data; "
                    "pass one row per sample."
                )
            return {spec.name: _cast(values, spec)}
        return {spec.name: _cast(column, spec) for spec, column in self._columns(X)}

    def _columns(self, X: Any) -> list[tuple[_Input, Array]]:
        n = len(self._inputs)
        if is_frame(X):
            names = [spec.name for spec in self._inputs]
            if all(name in X.columns for name in names):
                return [(spec, X[spec.name].to_numpy()) for spec in self._inputs]
            if X.shape[1] == n:
                return [(spec, X.iloc[:, i].to_numpy()) for i, spec in enumerate(self._inputs)]
            missing = [name for name in names if name not in X.columns]
            raise InvalidInputError(
                f"The ONNX model takes the columns {names}; the data lacks {missing}."
            )
        values = np.asarray(X)
        if values.ndim != 2 or values.shape[1] != n:
            raise InvalidInputError(
                f"The ONNX model takes {n} columns, got data of shape {values.shape}; pass a "
                "DataFrame with its columns."
            )
        return [(spec, values[:, i]) for i, spec in enumerate(self._inputs)]


def onnx_meta(model: onnx.ModelProto) -> dict[str, Any]:
    """Input layout, input names/types/shapes, output names/types, opsets and class labels."""
    graph = model.graph
    initializers = {init.name for init in graph.initializer}
    inputs = [
        {"name": i.name, "type": _type_name(i.type), "shape": _shape(i.type)}
        for i in graph.input
        if i.name not in initializers
    ]
    meta: dict[str, Any] = {
        "model_class": "onnx.ModelProto",
        "layout": "tensor" if len(inputs) == 1 else "columns",
        "inputs": inputs,
        "outputs": [{"name": o.name, "type": _type_name(o.type)} for o in graph.output],
        "opsets": {op.domain or "ai.onnx": op.version for op in model.opset_import},
    }
    _, proba = _classifier_outputs([out["type"] for out in meta["outputs"]])
    meta["has_proba"] = proba is not None
    if proba is not None:
        meta["classes"] = _graph_classes(model)
    return meta


def _parse(data: bytes, source: str) -> onnx.ModelProto:
    import onnx
    from google.protobuf.message import DecodeError

    try:
        model = onnx.load_model_from_string(data)
    except DecodeError as exc:
        raise UnsupportedFormatError(
            f"{source} is not an ONNX model (it does not parse); {_ONNX_ERRORS_HINT}."
        ) from exc
    if not model.graph.input or not model.graph.output:
        raise UnsupportedFormatError(
            f"{source} is not an ONNX model (it has no graph inputs or outputs); "
            f"{_ONNX_ERRORS_HINT}."
        )
    return model


def _graph_classes(model: onnx.ModelProto) -> list[Any] | None:
    """The class labels of the last node that declares them (a classifier or a ZipMap)."""
    classes: list[Any] | None = None
    for node in model.graph.node:
        for attr in node.attribute:
            if attr.name == "classlabels_int64s" and attr.ints:
                classes = list(attr.ints)
            elif attr.name == "classlabels_strings" and attr.strings:
                classes = [s.decode() for s in attr.strings]
    return None if classes is None else json_classes(classes)


def _indexes(proba_output: Any) -> list[Any] | None:
    """``0..k-1`` for a probability tensor of static width ``k`` (a ZipMap names its keys)."""
    shape = getattr(proba_output, "shape", None) or []
    width = shape[-1] if len(shape) == 2 else None
    return list(range(width)) if isinstance(width, int) else None


def _classifier_outputs(types: list[str]) -> tuple[int | None, int | None]:
    """``(label index, probability index)`` when the outputs are those of a classifier."""
    if len(types) != 2:
        return None, None
    for label, proba in ((0, 1), (1, 0)):
        is_proba = types[proba].startswith("seq(map(") or types[proba] in (
            "tensor(float)",
            "tensor(double)",
        )
        if types[label] in _LABEL_TYPES and is_proba:
            return label, proba
    return None, None


def _type_name(type_proto: onnx.TypeProto) -> str:
    """onnxruntime's spelling of a type: ``tensor(float)``, ``seq(map(int64,tensor(float)))``."""
    import onnx

    kind = type_proto.WhichOneof("value")
    if kind == "tensor_type":
        elem = onnx.TensorProto.DataType.Name(type_proto.tensor_type.elem_type).lower()
        return f"tensor({elem})"
    if kind == "sequence_type":
        return f"seq({_type_name(type_proto.sequence_type.elem_type)})"
    if kind == "map_type":
        key = onnx.TensorProto.DataType.Name(type_proto.map_type.key_type).lower()
        return f"map({key},{_type_name(type_proto.map_type.value_type)})"
    return str(kind)


def _shape(type_proto: onnx.TypeProto) -> list[int | str | None] | None:
    if type_proto.WhichOneof("value") != "tensor_type":
        return None
    if not type_proto.tensor_type.HasField("shape"):
        return None
    dims: list[int | str | None] = []
    for dim in type_proto.tensor_type.shape.dim:
        kind = dim.WhichOneof("value")
        dims.append(
            dim.dim_value if kind == "dim_value" else dim.dim_param if kind == "dim_param" else None
        )
    return dims


def _input(arg: Any) -> _Input:
    dtype = _NUMPY_TYPES.get(arg.type)
    if dtype is None:
        raise ModelLoadError(
            f"The ONNX input '{arg.name}' has type {arg.type}; modelyard feeds "
            f"{', '.join(sorted(_NUMPY_TYPES))} inputs."
        )
    return _Input(name=arg.name, dtype=dtype, rank=len(arg.shape))


def _cast(values: Array, spec: _Input) -> Array:
    try:
        out = np.asarray(values).astype(spec.dtype, copy=False)
    except (TypeError, ValueError) as exc:
        raise InvalidInputError(
            f"The ONNX input '{spec.name}' takes {np.dtype(spec.dtype).name} values and the data "
            f"cannot be converted ({exc}); check its type."
        ) from exc
    if spec.rank == 2 and out.ndim == 1:
        return out.reshape(-1, 1)
    return out


def _ort_errors() -> tuple[type[Exception], ...]:
    from onnxruntime.capi import onnxruntime_pybind11_state as state

    names = (
        "Fail",
        "InvalidArgument",
        "InvalidGraph",
        "InvalidProtobuf",
        "NoSuchFile",
        "NotImplemented",
        "RuntimeException",
        "EPFail",
    )
    found = tuple(getattr(state, name) for name in names if hasattr(state, name))
    return (*found, RuntimeError)
