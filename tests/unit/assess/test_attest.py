"""Attestations round-trip through the metadata store (SQLite and PostgreSQL): a manual test
scores 0.5 with who, when and the note as its evidence; an automated finding beats it; the latest
attestation of a test wins; bad input is refused with nothing written."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from modelyard.assess import assess, attest, list_attestations
from modelyard.errors import InvalidInputError, ModelNotFoundError
from modelyard.registry import Registry


def result(registry: Registry, project: Path, test: str):  # type: ignore[no-untyped-def]  # a TestResult
    a = assess(registry, registry.settings, project=project)
    return next(t for t in a.tests if t.id == test), a


def test_an_attestation_scores_half_a_point_with_who_when_and_the_note(
    registry: Registry, tmp_path: Path
) -> None:
    before, _ = result(registry, tmp_path, "model-7")
    assert (before.status, before.points) == ("missing", 0)
    done = attest(registry, "Model 7", by="Ada", note="fairness review: docs/inclusion.md")
    assert (done.test, done.kind, done.actor, done.model) == ("model-7", "manual", "Ada", None)
    assert datetime.now(UTC) - done.at < timedelta(minutes=1)
    after, a = result(registry, tmp_path, "model-7")
    assert (after.status, after.points) == ("manual", 0.5)
    assert after.next_step is not None and after.next_step.startswith("Nothing modelyard can")
    assert "model-7" not in {p.test for p in a.plan}  # as far as a judgement test goes
    [evidence] = after.evidence
    assert (
        evidence.kind == "attestation" and evidence.detail == "fairness review: docs/inclusion.md"
    )
    assert evidence.where == f"attested by Ada on {done.at:%Y-%m-%d}"
    assert next(s for s in a.sections if s.id == "model").points == 0.5
    assert [x.test for x in list_attestations(registry.db)] == ["model-7"]


def test_the_latest_attestation_wins_and_not_applicable_says_why(
    registry: Registry, tmp_path: Path
) -> None:
    attest(registry, "data-5", by="Ada", note="privacy review 2026-11")
    attest(registry, "data5", by="Bob", note="no personal data at all", not_applicable=True)
    data5, _ = result(registry, tmp_path, "data-5")
    assert (data5.status, data5.points, data5.reason) == (
        "not_applicable",
        0.5,
        "no personal data at all",
    )


def test_an_automated_finding_beats_an_attestation(registry: Registry, tmp_path: Path) -> None:
    workflows = tmp_path / ".github" / "workflows"
    workflows.mkdir(parents=True)
    (workflows / "ci.yml").write_text("jobs:\n  x:\n    steps:\n      - run: yard gate --x\n")
    attest(registry, "Infra 4", by="Ada", note="we look at the metrics by hand")
    infra4, _ = result(registry, tmp_path, "infra-4")
    assert (infra4.status, infra4.points) == ("automated", 1)
    assert [e.kind for e in infra4.evidence] == ["ci", "attestation"]


def test_an_attestation_for_one_model_does_not_score_another(
    registry: Registry, tmp_path: Path
) -> None:
    from sklearn.linear_model import LogisticRegression

    for name in ("a", "b"):
        registry.register(LogisticRegression().fit([[0.0], [1.0]], [0, 1]), name=name)
    attest(registry, "model-3", by="Ada", note="grid search, runs/42", model="a")
    for name, status in (("a", "manual"), ("b", "missing")):
        a = assess(registry, registry.settings, project=tmp_path, model=name)
        assert next(t for t in a.tests if t.id == "model-3").status == status, name


@pytest.mark.parametrize(
    ("test", "options", "error", "message"),
    [
        ("Data 9", {}, InvalidInputError, "'Data 1' or 'data-1'"),
        ("data-1", {"by": " "}, InvalidInputError, "--by NAME"),
        ("data-1", {"note": ""}, InvalidInputError, "--note TEXT"),
        ("data-1", {"note": "x" * 4001}, InvalidInputError, "at most 4000"),
        ("data-1", {"model": "nope"}, ModelNotFoundError, "No model named 'nope'"),
    ],
)
def test_bad_attestations_are_refused_and_nothing_is_written(
    registry: Registry, test: str, options: dict[str, str], error: type[Exception], message: str
) -> None:
    given = {"by": "Ada", "note": "done", **options}
    with pytest.raises(error, match=message):
        attest(registry, test, **given)  # type: ignore[arg-type]  # by, note, model
    assert list_attestations(registry.db) == []
