"""A registered PyTorch module served by a real ``yard serve`` over the v2 REST protocol: the
ONNX export answers with the module's numbers, on the execution provider the settings chose."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import numpy as np
import onnxruntime
import pytest
import torch

from modelyard.registry import Registry
from tests.integration._server import YARD, Server, free_port, server_env
from tests.unit.flavors._torch_modules import MLP


@dataclass
class TorchHome:
    home: Path
    module: MLP


@pytest.fixture(scope="module")
def torch_home(tmp_path_factory: pytest.TempPathFactory) -> TorchHome:
    home = tmp_path_factory.mktemp("torch")
    registry = Registry(
        database_url=f"sqlite:///{home / 'modelyard.db'}", artifact_root=str(home / "artifacts")
    )
    torch.manual_seed(0)
    module = MLP(4, 3)
    registry.register(module, name="mlp", input_example=torch.randn(8, 4))
    registry.close()
    return TorchHome(home, module.eval())


@pytest.fixture(scope="module")
def server(torch_home: TorchHome) -> Iterator[Server]:
    with Server(torch_home.home, "mlp/1") as s:
        yield s


def test_v2_infer_answers_with_the_modules_outputs(server: Server, torch_home: TorchHome) -> None:
    X = np.random.default_rng(0).normal(size=(5, 4)).astype(np.float32)
    body = {"inputs": [{"name": "input", "shape": list(X.shape), "datatype": "FP32",
                        "data": X.ravel().tolist()}]}  # fmt: skip
    response = httpx.post(f"{server.url}/v2/models/mlp/infer", json=body, timeout=30)

    assert response.status_code == 200, response.text
    (output,) = response.json()["outputs"]
    assert (output["name"], output["shape"], output["datatype"]) == ("predict", [5, 3], "FP32")
    with torch.no_grad():
        expected = torch_home.module(torch.from_numpy(X)).numpy()
    np.testing.assert_allclose(np.reshape(output["data"], (5, 3)), expected, rtol=1e-5, atol=1e-6)


def test_a_bad_width_is_a_400_naming_the_input(server: Server) -> None:
    body = {"inputs": [{"name": "input", "shape": [1, 3], "datatype": "FP32",
                        "data": [1.0, 2.0, 3.0]}]}  # fmt: skip
    response = httpx.post(f"{server.url}/v2/models/mlp/infer", json=body, timeout=30)

    assert response.status_code == 400
    assert "input" in response.json()["error"]


def test_the_metadata_and_the_start_report_the_runtime_and_provider(server: Server) -> None:
    meta = httpx.get(f"{server.url}/v2/models/mlp").json()
    assert meta["platform"] == "modelyard-torch-onnx"
    assert [(i["name"], i["datatype"], i["shape"]) for i in meta["inputs"]] == [
        ("input", "FP32", [-1, 4])
    ]
    (admin,) = httpx.get(f"{server.url}/admin/models").json()
    assert (admin["runtime"], admin["kernel"]) == ("onnx", "onnxruntime")
    assert admin["provider"] == "CPUExecutionProvider"
    assert "serving mlp/1 (onnx runtime on CPUExecutionProvider) ready in" in server.log.read_text()


@pytest.mark.skipif(
    "CUDAExecutionProvider" in onnxruntime.get_available_providers(),
    reason="this onnxruntime has CUDA: asking for it is not an error here",
)
def test_asking_for_cuda_without_it_stops_the_server(torch_home: TorchHome) -> None:
    env = server_env(torch_home.home, MODELYARD_ONNX__EXECUTION_PROVIDER="cuda")
    done = subprocess.run(
        [YARD, "serve", "mlp/1", "--port", str(free_port())], env=env,
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip

    assert done.returncode == 3, done.stdout + done.stderr  # uvicorn: the startup failed
    assert "ERROR:    onnx.execution_provider is 'cuda' but this onnxruntime offers only" in (
        done.stderr
    )
    assert "Application startup failed" in done.stderr


def test_models_show_names_the_module_and_the_parity_check(torch_home: TorchHome) -> None:
    done = subprocess.run(
        [YARD, "models", "show", "mlp/1"], env={**server_env(torch_home.home), "COLUMNS": "200"},
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip

    assert done.returncode == 0, done.stderr
    assert "tests.unit.flavors._torch_modules:MLP" in done.stdout
    assert "ONNX vs the module on 8 example rows: max difference" in done.stdout
    assert "weights/model.safetensors" in done.stdout
