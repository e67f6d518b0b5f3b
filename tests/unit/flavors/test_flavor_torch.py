"""PyTorch modules: exported to ONNX on the input example, checked against the eager module,
served by onnxruntime, the weights kept as safetensors."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from tests.unit.flavors._torch_modules import MLP, Embedded, Tied

import modelyard
from modelyard.errors import (
    InvalidInputError,
    InvalidSpecError,
    UnsupportedFormatError,
)
from modelyard.flavors import TorchFlavor, flavor_for_file, flavor_for_object, get_flavor
from modelyard.registry import Registry


class ExportOnly(torch.nn.Module):
    """Computes something else while being exported: the ONNX model differs from the module."""

    def __init__(self) -> None:
        super().__init__()
        self.linear = torch.nn.Linear(4, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.linear(x)
        if torch.onnx.is_in_onnx_export():
            return y * 1.01
        return y


class DataDependent(torch.nn.Module):
    """Branches on a value: torch.export cannot trace it."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.sum() > 0:
            return x
        return -x


class TwoOutputs(torch.nn.Module):
    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return x, x * 2


def _one_line(exc: BaseException) -> str:
    text = str(exc)
    assert "\n" not in text, text
    return text


def _untouched(registry: Registry, tmp_path: Path) -> None:
    assert registry.list_models().total == 0
    assert not [p for p in (tmp_path / "artifacts").rglob("*") if p.is_file()]


@pytest.fixture(scope="module")
def mlp() -> MLP:
    torch.manual_seed(0)
    return MLP(4, 3)


@pytest.fixture(scope="module")
def example() -> torch.Tensor:
    return torch.randn(8, 4, generator=torch.Generator().manual_seed(1))


def test_a_module_registers_as_onnx_with_its_weights_and_serves_its_numbers(
    sqlite_registry, mlp, example
):
    mlp.train()
    mlp.net[1].eval()  # a part the user froze
    version = sqlite_registry.register(mlp, name="mlp", input_example=example)

    # the module is exported in eval mode and given back as it was, part by part
    assert mlp.training and mlp.net[0].training and not mlp.net[1].training
    assert version.flavor == "torch"
    assert {(f.name, f.role) for f in version.files} == {
        ("model.onnx", "model"),
        ("weights/model.safetensors", "weights"),
    }
    meta = version.flavor_meta["model"]
    assert meta["import_path"] == "tests.unit.flavors._torch_modules:MLP"
    assert meta["n_features"] == 4 and meta["has_proba"] is False
    assert meta["parity"]["rows"] == 8 and meta["parity"]["max_abs_diff"] < 1e-5
    assert meta["inputs"][0]["shape"][0] == "batch"  # the batch axis is dynamic
    signature = version.signature
    assert signature is not None and signature.kind == "tensor"
    assert [(s.dtype, s.shape) for s in signature.inputs] == [("float32", (-1, 4))]
    assert [(s.name, s.shape) for s in signature.outputs] == [("predict", (-1, 3))]
    assert version.input_example is not None and len(version.input_example["data"]) == 5

    loaded = sqlite_registry.load("mlp/1")
    assert loaded.runtime == "onnx" and loaded.kernel == "onnxruntime"
    assert loaded.provider == "CPUExecutionProvider"
    assert not hasattr(loaded, "predict_proba")  # numbers, not an inferred classifier
    rng = np.random.default_rng(2)
    for rows in (1, 3, 50):  # batch sizes other than the example's
        X = rng.normal(size=(rows, 4)).astype(np.float32)
        with torch.no_grad():
            expected = mlp.eval()(torch.from_numpy(X)).numpy()
        np.testing.assert_allclose(loaded.predict(X), expected, rtol=1e-5, atol=1e-6)
    assert sqlite_registry.load("mlp/1", runtime="onnx").runtime == "onnx"


def test_a_single_output_column_serves_one_value_per_row(sqlite_registry):
    torch.manual_seed(3)
    module = MLP(4, 1)
    example = np.random.default_rng(0).normal(size=(1, 4))  # float64 numpy, one row
    version = sqlite_registry.register(module, name="score", input_example=example)

    assert [(s.dtype, s.shape) for s in version.signature.inputs] == [("float32", (-1, 4))]
    assert [s.shape for s in version.signature.outputs] == [(-1,)]
    X = np.random.default_rng(1).normal(size=(7, 4)).astype(np.float32)
    got = sqlite_registry.load("score/1").predict(X)
    with torch.no_grad():
        expected = module(torch.from_numpy(X)).numpy()[:, 0]
    assert got.shape == (7,)
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-6)


def test_integer_inputs_stay_integers(sqlite_registry):
    torch.manual_seed(7)
    module = Embedded()
    codes = np.random.default_rng(0).integers(0, 10, size=(6, 3))
    version = sqlite_registry.register(module, name="codes", input_example=codes)

    assert [s.dtype for s in version.signature.inputs] == ["int64"]
    got = sqlite_registry.load("codes/1").predict(codes[:4])
    with torch.no_grad():
        expected = module(torch.from_numpy(codes[:4])).numpy()[:, 0]
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-6)


def test_training_data_serves_as_the_example(sqlite_registry, mlp):
    rng = np.random.default_rng(4)
    frame = pd.DataFrame(rng.normal(size=(40, 4)), columns=["a", "b", "c", "d"])
    frame["label"] = rng.integers(0, 3, 40)
    version = sqlite_registry.register(mlp, name="from-data", data=frame, target="label")

    assert version.signature.kind == "columns"
    assert list(version.signature.column_names) == ["a", "b", "c", "d"]
    assert version.flavor_meta["model"]["parity"]["rows"] == 40
    assert sqlite_registry.read_file("from-data/1", "profile")  # the reference profile is kept
    got = sqlite_registry.load("from-data/1").predict(frame.drop(columns="label").head(5))
    with torch.no_grad():
        expected = mlp.eval()(torch.tensor(frame.iloc[:5, :4].to_numpy(), dtype=torch.float32))
    np.testing.assert_allclose(got, expected.numpy(), rtol=1e-5, atol=1e-6)


def test_an_export_that_differs_from_the_module_is_refused(sqlite_registry, tmp_path):
    torch.manual_seed(5)
    with pytest.raises(UnsupportedFormatError) as info:
        sqlite_registry.register(ExportOnly(), name="sneaky", input_example=torch.randn(16, 4))

    message = _one_line(info.value)
    assert message.startswith("Model 'sneaky': the ONNX export differs from the module")
    assert "max difference" in message and "register it again" in message
    _untouched(sqlite_registry, tmp_path)


def test_a_module_the_exporter_cannot_export_is_refused_with_its_reason(sqlite_registry, tmp_path):
    with pytest.raises(UnsupportedFormatError) as info:
        sqlite_registry.register(DataDependent(), name="branchy", input_example=torch.ones(4, 3))

    message = _one_line(info.value)
    assert message.startswith("Model 'branchy': torch.onnx.export cannot export the DataDependent")
    assert "data-dependent" in message  # the exporter's own summary, not its boilerplate
    assert "\x1b[" not in message
    _untouched(sqlite_registry, tmp_path)


def test_a_missing_example_says_to_pass_one(sqlite_registry, mlp, tmp_path):
    with pytest.raises(InvalidInputError) as info:
        sqlite_registry.register(mlp, name="mlp")

    message = _one_line(info.value)
    assert message.startswith("Model 'mlp' is a PyTorch module")
    assert "pass input_example=" in message
    _untouched(sqlite_registry, tmp_path)


@pytest.mark.parametrize(
    ("example", "words"),
    [
        (torch.ones(4), "must be 2-D (rows x features)"),
        (5.0, "must be 2-D (rows x features)"),
        (np.ones((2, 2, 4)), "must be 2-D (rows x features)"),
        (np.zeros((0, 4)), "at least one row"),
        (np.array([["a", "b", "c", "d"]]), "must be numeric"),
        (torch.ones(2, 4, dtype=torch.bool), "must be real numbers"),
    ],
    ids=["1-D", "scalar", "3-D", "no rows", "strings", "booleans"],
)
def test_an_example_that_is_not_a_numeric_matrix_is_refused(
    sqlite_registry, mlp, tmp_path, example, words
):
    with pytest.raises(InvalidInputError) as info:
        sqlite_registry.register(mlp, name="mlp", input_example=example)

    message = _one_line(info.value)
    assert message.startswith("Model 'mlp': the input example") and words in message
    _untouched(sqlite_registry, tmp_path)


def test_an_example_of_the_wrong_width_names_the_module_error(sqlite_registry, mlp, tmp_path):
    with pytest.raises(InvalidInputError) as info:
        sqlite_registry.register(mlp, name="mlp", input_example=torch.ones(3, 5))

    message = _one_line(info.value)
    assert "the module fails on the input example (RuntimeError: mat1 and mat2" in message
    _untouched(sqlite_registry, tmp_path)


def test_a_module_with_several_outputs_is_refused(sqlite_registry, tmp_path):
    with pytest.raises(UnsupportedFormatError) as info:
        sqlite_registry.register(TwoOutputs(), name="two", input_example=torch.ones(3, 2))

    assert "returns a tuple" in _one_line(info.value)
    _untouched(sqlite_registry, tmp_path)


def test_the_weights_load_into_a_module_the_user_builds(sqlite_registry, mlp, example):
    sqlite_registry.register(mlp, name="mlp", input_example=example)
    torch.manual_seed(99)
    fresh = MLP(4, 3)
    assert not torch.equal(fresh.net[0].weight, mlp.net[0].weight)

    assert sqlite_registry.load_weights("mlp/1", fresh) is fresh

    for key, value in mlp.state_dict().items():
        assert torch.equal(fresh.state_dict()[key], value), key
    modelyard.set_registry(sqlite_registry)  # the top-level function, on the same registry
    try:
        again = modelyard.load_weights("mlp", MLP(4, 3))
    finally:
        modelyard.set_registry(None)
    assert torch.equal(again.net[2].bias, mlp.net[2].bias)


def test_shared_weights_round_trip(sqlite_registry):
    torch.manual_seed(6)
    tied = Tied()
    sqlite_registry.register(tied, name="tied", input_example=torch.randn(4, 3))

    fresh = sqlite_registry.load_weights("tied/1", Tied())

    assert fresh.b.weight is fresh.a.weight
    assert torch.equal(fresh.a.weight, tied.a.weight) and torch.equal(fresh.b.bias, tied.b.bias)


def test_weights_that_do_not_fit_name_the_version_and_the_class(sqlite_registry, mlp, example):
    sqlite_registry.register(mlp, name="mlp", input_example=example)

    with pytest.raises(InvalidInputError) as info:
        sqlite_registry.load_weights("mlp/1", MLP(4, 2))
    message = _one_line(info.value)
    assert message.startswith("The weights of model mlp/1 do not fit the MLP given")
    assert "size mismatch" in message
    assert "tests.unit.flavors._torch_modules:MLP" in message

    with pytest.raises(InvalidInputError) as info:
        sqlite_registry.load_weights("mlp/1", {})
    assert "load into a torch.nn.Module, not builtins.dict" in str(info.value)


def test_only_torch_versions_have_weights(sqlite_registry, iris):
    from sklearn.linear_model import LogisticRegression

    model = LogisticRegression(max_iter=500).fit(iris.X_train, iris.y_train)
    sqlite_registry.register(model, name="logreg", data=iris.X_train)

    with pytest.raises(InvalidSpecError, match="logreg/1 has no weights file"):
        sqlite_registry.load_weights("logreg/1", MLP(4, 3))


def test_the_flavor_is_picked_for_modules_and_reads_no_files(tmp_path):
    assert isinstance(flavor_for_object(MLP(2, 1), trust_pickle=False), TorchFlavor)
    assert get_flavor("torch").name == "torch"
    saved = tmp_path / "model.pt"
    torch.save({"w": torch.ones(1)}, saved)
    with pytest.raises(UnsupportedFormatError) as info:
        flavor_for_file(saved, trust_pickle=True)
    assert "model.pt' is a PyTorch file, which torch saves as a pickle" in str(info.value)
    assert "modelyard.register(module, name=..., input_example=...)" in str(info.value)
    with pytest.raises(UnsupportedFormatError, match="torch saves pickles"):
        TorchFlavor().read_file(saved, options=None)  # type: ignore[arg-type]


def test_serving_a_torch_version_needs_no_torch(sqlite_registry, mlp, example, tmp_path):
    sqlite_registry.register(mlp, name="mlp", input_example=example)
    settings = sqlite_registry.settings
    code = (
        "import json, sys\n"
        "import numpy as np\n"
        "from modelyard.registry import Registry\n"
        f"registry = Registry(database_url={settings.resolved_database_url!r}, "
        f"artifact_root={settings.resolved_artifact_root!r})\n"
        "model = registry.load('mlp/1')\n"
        "out = model.predict(np.ones((2, 4), dtype=np.float32))\n"
        "print(json.dumps([out.shape, 'torch' in sys.modules, 'onnxruntime' in sys.modules]))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=False
    )

    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == [[2, 3], False, True]
