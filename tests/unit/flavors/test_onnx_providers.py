"""Where onnxruntime runs models: the ``onnx.execution_provider`` setting, the providers chosen
from it, and the provider each loaded model reports. These machines have no GPU: the choice is
tested with the provider lists a CUDA build reports, and loading with what this build offers."""

from __future__ import annotations

import numpy as np
import onnxruntime
import pytest
from sklearn.linear_model import LinearRegression

from modelyard.errors import ConfigError
from modelyard.flavors import choose_providers
from modelyard.registry import Registry
from modelyard.settings import Settings

CPU = "CPUExecutionProvider"
CUDA = "CUDAExecutionProvider"
CPU_BUILD = ["AzureExecutionProvider", CPU]
GPU_BUILD = ["TensorrtExecutionProvider", CUDA, CPU]


@pytest.mark.parametrize(
    ("setting", "available", "chosen"),
    [
        ("cpu", CPU_BUILD, [CPU]),
        ("cpu", GPU_BUILD, [CPU]),
        ("auto", CPU_BUILD, [CPU]),
        ("auto", GPU_BUILD, [CUDA, CPU]),
        ("cuda", GPU_BUILD, [CUDA, CPU]),
    ],
)
def test_the_setting_and_the_build_choose_the_providers(setting, available, chosen):
    assert choose_providers(setting, available) == chosen


def test_cuda_without_a_cuda_build_is_a_one_line_error():
    with pytest.raises(ConfigError) as info:
        choose_providers("cuda", CPU_BUILD)

    message = str(info.value)
    assert "\n" not in message
    offers = "offers only AzureExecutionProvider, CPUExecutionProvider"
    assert f"execution_provider is 'cuda' but this onnxruntime {offers}" in message
    assert "install onnxruntime-gpu" in message
    assert "MODELYARD_ONNX__EXECUTION_PROVIDER=cpu" in message


def test_an_unknown_setting_lists_the_choices():
    with pytest.raises(ConfigError, match="'tpu' is unknown; use 'cpu', 'cuda' or 'auto'"):
        choose_providers("tpu", GPU_BUILD)


def test_the_setting_defaults_to_the_cpu_and_reads_the_environment(monkeypatch):
    assert Settings().onnx.execution_provider == "cpu"
    monkeypatch.setenv("MODELYARD_ONNX__EXECUTION_PROVIDER", "auto")
    assert Settings().onnx.execution_provider == "auto"


def _with_provider(registry: Registry, provider: str) -> Registry:
    """A registry on the same database and artifacts with another ``execution_provider``."""
    onnx = registry.settings.onnx.model_copy(update={"execution_provider": provider})
    return Registry(registry.settings.model_copy(update={"onnx": onnx}))


@pytest.fixture
def twin(sqlite_registry) -> str:
    X = np.random.default_rng(0).normal(size=(50, 3))
    model = LinearRegression().fit(X, X @ [1.0, 2.0, 3.0])
    sqlite_registry.register(model, name="lin", data=X, convert="onnx")
    return "lin/1"


def test_a_loaded_model_reports_its_provider(sqlite_registry, twin):
    assert sqlite_registry.load(twin, runtime="onnx").provider == CPU
    assert sqlite_registry.load(twin, runtime="native").provider is None
    auto = _with_provider(sqlite_registry, "auto")
    expected = CUDA if CUDA in onnxruntime.get_available_providers() else CPU
    assert auto.load(twin, runtime="onnx").provider == expected
    auto.close()


def test_cuda_on_a_machine_without_it_fails_the_load(sqlite_registry, twin):
    cuda = _with_provider(sqlite_registry, "cuda")
    if CUDA in onnxruntime.get_available_providers():
        assert cuda.load(twin, runtime="onnx").provider == CUDA
    else:
        with pytest.raises(ConfigError, match="execution_provider is 'cuda'"):
            cuda.load(twin, runtime="onnx")
    assert cuda.load(twin, runtime="native").provider is None  # scikit-learn needs no provider
    cuda.close()
