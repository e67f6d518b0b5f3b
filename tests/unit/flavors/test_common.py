"""Helpers shared by the flavors."""

from __future__ import annotations

import pytest


def test_is_frame_does_not_touch_a_half_imported_pandas(monkeypatch: pytest.MonkeyPatch) -> None:
    """The prediction log's writer thread may be importing pandas while a model thread asks;
    a half-imported module has no DataFrame yet (this failed batches with 500 once)."""
    import sys
    import types

    import numpy as np
    import pandas as pd

    from modelyard.flavors._common import is_frame

    class Frame(pd.DataFrame):
        pass

    frame, subclassed = pd.DataFrame({"a": [1]}), Frame({"a": [1]})
    monkeypatch.setitem(sys.modules, "pandas", types.ModuleType("pandas"))
    assert is_frame(frame) and is_frame(subclassed)
    assert not is_frame(np.zeros((1, 1))) and not is_frame({"a": [1]})
