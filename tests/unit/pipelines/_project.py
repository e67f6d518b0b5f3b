"""A throw-away project of pipeline files in a folder: write, import fresh, clean up."""

from __future__ import annotations

import shutil
import sys
import textwrap
from pathlib import Path
from types import ModuleType
from typing import Any

from modelyard.pipelines.worker import load_module_from_path


class Project:
    def __init__(self, root: Path) -> None:
        self.root = root
        root.mkdir(parents=True, exist_ok=True)

    def write(self, name: str, source: str) -> Path:
        path = self.root / name
        path.write_text(textwrap.dedent(source))
        # Helpers are imported the normal way, which trusts a .pyc whose mtime (whole seconds)
        # and size match: an edit that keeps the size within one second would not be seen.
        shutil.rmtree(self.root / "__pycache__", ignore_errors=True)
        return path

    def load(self, name: str) -> ModuleType:
        """Import ``name`` from the project afresh (its project imports re-imported too)."""
        self.forget()
        if str(self.root) not in sys.path:
            sys.path.insert(0, str(self.root))
        return load_module_from_path(self.root / name)

    def step(self, module: str, name: str) -> Any:
        return getattr(self.load(module), name)

    def forget(self) -> None:
        for key, module in list(sys.modules.items()):
            file = getattr(module, "__file__", None) or ""
            if file.startswith(str(self.root)):
                del sys.modules[key]

    def close(self) -> None:
        self.forget()
        while str(self.root) in sys.path:
            sys.path.remove(str(self.root))
