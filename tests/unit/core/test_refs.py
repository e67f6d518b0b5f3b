from __future__ import annotations

import pytest

from modelyard.core.refs import ModelRef, check_alias, check_name, parse_ref
from modelyard.errors import InvalidReferenceError


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("churn", ModelRef("churn")),
        ("churn/3", ModelRef("churn", version=3)),
        ("churn/latest", ModelRef("churn")),
        ("churn@production", ModelRef("churn", alias="production")),
        ("models:/churn/12", ModelRef("churn", version=12)),
        ("models:/churn@champion", ModelRef("churn", alias="champion")),
        ("models:/churn/latest", ModelRef("churn")),
        ("team.churn-v2_x", ModelRef("team.churn-v2_x")),
        ("  churn/1 ", ModelRef("churn", version=1)),
    ],
)
def test_accepted_forms(text: str, expected: ModelRef) -> None:
    assert parse_ref(text) == expected


@pytest.mark.parametrize(
    "text",
    ["", "/1", "churn/", "churn/x", "churn/0", "churn@", "churn@1x", "churn/1@prod", "a b",
     "models:/", "-churn", "churn//1", "models:churn/1", "x" * 129],
)  # fmt: skip
def test_malformed_references_name_the_forms(text: str) -> None:
    with pytest.raises(InvalidReferenceError, match=r"NAME@ALIAS"):
        parse_ref(text)


def test_str_round_trips() -> None:
    for text in ("churn", "churn/3", "churn@production"):
        assert str(parse_ref(text)) == text


def test_names_and_aliases() -> None:
    assert check_name("churn") == "churn"
    assert check_alias("production") == "production"
    for bad in ("7", "latest", "a b", ""):
        with pytest.raises(InvalidReferenceError, match="Invalid alias"):
            check_alias(bad)
    with pytest.raises(InvalidReferenceError, match="Invalid model name"):
        check_name("a/b")
