"""The rubric is the 2017 paper's: its 28 test names and numbering (checked against the reference
data), its scoring (0.5 manual, 1 automated, sections capped at 7, the minimum of the four) and
its bands, with their boundaries."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from modelyard.assess.rubric import (
    BANDS,
    SECTIONS,
    TESTS,
    band_of,
    final_score,
    parse_test_id,
    points_of,
    rubric_test,
)
from modelyard.errors import InvalidInputError

REFERENCE = Path("/work/shared/reference/ml-test-score.md")
_TITLES = {
    "Features and Data": "data", "Model Development": "model", "ML Infrastructure": "infra",
    "Monitoring": "monitor",
}  # fmt: skip


def reference_names() -> dict[str, str]:
    """``{"data-1": "Feature expectations are captured in a schema.", ...}`` from the reference
    document (its sections and numbered lists)."""
    names: dict[str, str] = {}
    section = None
    for line in REFERENCE.read_text().splitlines():
        if line.startswith("## "):
            section = _TITLES.get(line[3:].strip())
        elif section and (match := re.match(r"(\d)\. (.+)", line)):
            names[f"{section}-{match.group(1)}"] = match.group(2).strip()
    return names


@pytest.mark.skipif(not REFERENCE.is_file(), reason="the shared reference data is not here")
def test_the_tests_are_the_papers_by_name_and_number() -> None:
    assert {t.id: t.name for t in TESTS} == reference_names()


def test_four_sections_of_seven_tests_each_with_evidence_a_step_and_an_effort() -> None:
    assert [s.label for s in SECTIONS] == ["Data", "Model", "Infra", "Monitor"]
    assert len(TESTS) == 28
    for section in SECTIONS:
        assert [t.number for t in TESTS if t.section == section.id] == list(range(1, 8))
    for test in TESTS:
        assert test.counts and test.raise_with and test.risk, test.id
        assert test.effort in (1, 2, 3)
        if test.judgement:  # scored from attestations only: the step says how to attest
            assert f"yard assess attest {test.id} --by NAME --note" in test.raise_with
    judged = {t.id for t in TESTS if t.judgement}
    assert {"data-2", "data-3", "data-5", "model-1", "model-7"} <= judged


@pytest.mark.parametrize(
    ("text", "expected"),
    [("Data 1", "data-1"), ("data-1", "data-1"), ("MONITOR7", "monitor-7"),
     (" infra_4 ", "infra-4"), ("Model  3", "model-3")],
)  # fmt: skip
def test_a_test_is_named_as_in_the_paper_or_by_its_id(text: str, expected: str) -> None:
    assert parse_test_id(text) == expected
    assert rubric_test(text).id == expected


@pytest.mark.parametrize("text", ["Data 8", "data-0", "Features 1", "", "data", "1"])
def test_an_unknown_test_is_one_line_naming_the_valid_forms(text: str) -> None:
    with pytest.raises(InvalidInputError) as caught:
        parse_test_id(text)
    message = str(caught.value)
    assert "'Data 1' or 'data-1'" in message and repr(text) in message and "\n" not in message


def test_points_and_the_final_score_follow_section_vi_a() -> None:
    assert (points_of("automated"), points_of("manual"), points_of("missing")) == (1, 0.5, 0)
    assert final_score({"data": 3, "model": 2.5, "infra": 7, "monitor": 4}) == 2.5
    assert final_score({"data": 9, "model": 8, "infra": 7.5, "monitor": 10}) == 7  # capped
    assert final_score({"data": 3}) == 0  # a section with nothing scores 0


@pytest.mark.parametrize(
    ("score", "band"),
    [(0, "0"), (0.5, "(0, 1]"), (1, "(0, 1]"), (1.5, "(1, 2]"), (2, "(1, 2]"), (2.5, "(2, 3]"),
     (3, "(2, 3]"), (3.5, "(3, 5]"), (5, "(3, 5]"), (5.5, "> 5"), (7, "> 5")],
)  # fmt: skip
def test_the_bands_are_the_papers(score: float, band: str) -> None:
    assert band_of(score).range == band
    assert band_of(0).reading == "More of a research project than a productionized system."
    assert len(BANDS) == 6
