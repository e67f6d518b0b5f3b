"""Small PyTorch modules for the torch flavor's tests, in a module of their own so that their
import path (``tests.unit.flavors._torch_modules:MLP``) is the same however pytest imports."""

from __future__ import annotations

import torch


class MLP(torch.nn.Module):
    def __init__(self, features: int, outputs: int) -> None:
        super().__init__()
        self.net = torch.nn.Sequential(
            torch.nn.Linear(features, 8), torch.nn.ReLU(), torch.nn.Linear(8, outputs)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


class Tied(torch.nn.Module):
    """Two layers sharing one weight tensor (safetensors stores it once)."""

    def __init__(self) -> None:
        super().__init__()
        self.a = torch.nn.Linear(3, 3)
        self.b = torch.nn.Linear(3, 3)
        self.b.weight = self.a.weight

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.b(torch.relu(self.a(x)))


class Embedded(torch.nn.Module):
    """Integer codes in, one embedding per column, a score out."""

    def __init__(self, codes: int = 10, columns: int = 3) -> None:
        super().__init__()
        self.embed = torch.nn.Embedding(codes, 4)
        self.head = torch.nn.Linear(4 * columns, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.embed(x).flatten(1))
