"""Which inputs drift compares as text, and the settings that say so: the drift options first,
then the version's flavor meta (``text_input``), then the look of the reference's values."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pandas as pd
import pytest

from modelyard.core.types import Lineage, ModelVersion
from modelyard.errors import InvalidInputError
from modelyard.monitoring.drift import ColumnRule, DriftDetector
from modelyard.monitoring.service import DriftOptions, _text_columns
from modelyard.settings import Settings
from tests._textdata import texts


def version(meta: dict[str, Any]) -> ModelVersion:
    return ModelVersion(
        name="m", version=1, flavor="transformers", files=(), signature=None,
        input_example=None, flavor_meta=meta, metrics={}, params={}, tags={}, description=None,
        lineage=Lineage(), run_id=None, created_by="test", created_at=datetime.now(UTC),
    )  # fmt: skip


ROWS = pd.DataFrame(
    {
        "query": pd.Series(["shoes", "red shoes", "shoes"] * 50, dtype="string"),  # repeats
        "review": texts(150, 1).to_numpy(),
        "city": pd.Series(["Rome", "New York"] * 75, dtype="string"),
    }
)
STRINGS = ["query", "review", "city"]


def test_the_look_of_the_values_decides_without_other_signal() -> None:
    assert _text_columns(STRINGS, ROWS, None, DriftOptions()) == ["review"]
    assert _text_columns(STRINGS, ROWS, version({"model": {}}), DriftOptions()) == ["review"]


def test_the_version_meta_names_its_text_input() -> None:
    meta = {"model": {"text_input": "query"}}
    assert _text_columns(STRINGS, ROWS, version(meta), DriftOptions()) == ["query", "review"]
    top_level = version({"text_input": "query"})
    assert _text_columns(STRINGS, ROWS, top_level, DriftOptions()) == ["query", "review"]


def test_the_options_override_both() -> None:
    named = DriftOptions(text_columns=frozenset({"city"}))
    meta = version({"model": {"text_input": "query"}})
    assert _text_columns(STRINGS, ROWS, meta, named) == ["city"]
    assert _text_columns(STRINGS, ROWS, meta, DriftOptions(text_columns=frozenset())) == []


def test_settings_name_text_columns_and_the_mmd_threshold(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("MODELYARD_MONITORING__DRIFT__TEXT_COLUMNS", '["review"]')
    monkeypatch.setenv("MODELYARD_MONITORING__DRIFT__THRESHOLDS", '{"mmd": 0.01}')
    options = DriftOptions.from_settings(Settings())
    assert options.text_columns == frozenset({"review"})
    assert options.thresholds == {"mmd": 0.01}
    monkeypatch.delenv("MODELYARD_MONITORING__DRIFT__TEXT_COLUMNS")
    assert DriftOptions.from_settings(Settings()).text_columns is None


def test_mmd_is_refused_for_a_tabular_column() -> None:
    frame = pd.DataFrame({"a": [1.0, 2.0, 3.0]})
    detector = DriftDetector(columns={"a": ColumnRule(method="mmd")}).fit(frame)
    with pytest.raises(InvalidInputError, match=r"Column 'a' asks for 'mmd', which compares"):
        detector.compare(frame)
    with pytest.raises(InvalidInputError, match=r"a p-value in \[0, 1\]"):
        DriftDetector(thresholds={"mmd": 2.0}).fit(frame)
