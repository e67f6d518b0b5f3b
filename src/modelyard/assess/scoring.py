"""Findings and attestations to scores: each test's status and points, the section sums, the
final score and its band, and the implementation plan (what is short of automated, ordered by
points gained per unit of effort)."""

from __future__ import annotations

from collections.abc import Sequence

from modelyard.assess.attest import Attestation
from modelyard.assess.rubric import (
    SECTIONS,
    TESTS,
    band_of,
    final_score,
    points_of,
)
from modelyard.assess.types import (
    BandResult,
    Evidence,
    Finding,
    PlanItem,
    SectionScore,
    TestResult,
)

__all__ = ["band", "plan", "score_sections", "score_tests"]


def score_tests(
    findings: dict[str, Finding], attestations: Sequence[Attestation]
) -> tuple[TestResult, ...]:
    """Each test's result: an automated finding wins; otherwise the latest attestation of the
    test (``attestations`` newest first) makes it ``manual`` or ``not_applicable``."""
    latest: dict[str, Attestation] = {}
    for item in attestations:
        latest.setdefault(item.test, item)
    out = []
    for test in TESTS:
        finding = findings[test.id]
        status = finding.status
        evidence = list(finding.evidence)
        reason = finding.reason
        attested = latest.get(test.id)
        if attested is not None:
            scope = f" for {attested.model}" if attested.model else ""
            evidence.append(
                Evidence(
                    kind="attestation",
                    where=f"attested by {attested.actor} on {attested.at:%Y-%m-%d}{scope}",
                    detail=attested.note,
                )
            )
            if status != "automated":
                status = attested.kind
                if attested.kind == "not_applicable":
                    reason = attested.note
        points = 0.5 if status == "not_applicable" else points_of(status)
        next_step = None
        if status == "missing" or (status == "manual" and not test.judgement):
            next_step = test.raise_with
        elif status == "manual":  # a judgement: as far as evidence goes; keep it current
            next_step = (
                f"Nothing modelyard can automate: attest again (yard assess attest {test.id} "
                "...) when the model or its data change."
            )
        out.append(
            TestResult(
                id=test.id,
                label=test.label,
                section=test.section,
                number=test.number,
                name=test.name,
                status=status,
                points=points,
                judgement=test.judgement,
                counts=test.counts,
                evidence=tuple(evidence),
                reason=reason,
                next_step=next_step,
                effort=test.effort,
            )
        )
    return tuple(out)


def score_sections(results: Sequence[TestResult]) -> tuple[SectionScore, ...]:
    out = []
    for section in SECTIONS:
        mine = [r for r in results if r.section == section.id]
        out.append(
            SectionScore(
                id=section.id,
                name=section.name,
                points=min(7.0, sum(r.points for r in mine)),
                automated=sum(r.status == "automated" for r in mine),
                manual=sum(r.status in ("manual", "not_applicable") for r in mine),
            )
        )
    return tuple(out)


def band(sections: Sequence[SectionScore]) -> tuple[float, BandResult]:
    score = final_score({s.id: s.points for s in sections})
    found = band_of(score)
    return score, BandResult(range=found.range, reading=found.reading)


def plan(results: Sequence[TestResult], sections: Sequence[SectionScore]) -> tuple[PlanItem, ...]:
    """Tests short of what they can reach (automated; 0.5 for judgement tests), by points gained
    per effort, then the weakest section first (it sets the final score), then rubric order."""
    weakest = {s.id: s.points for s in sections}
    items = []
    for index, r in enumerate(results):
        ceiling = 0.5 if r.judgement else 1.0
        gain = ceiling - r.points
        if gain <= 0 or r.next_step is None:
            continue
        item = PlanItem(
            test=r.id, label=r.label, name=r.name, gain=gain, effort=r.effort, next_step=r.next_step
        )
        items.append((-gain / r.effort, weakest[r.section], index, item))
    return tuple(entry[-1] for entry in sorted(items, key=lambda e: e[:3]))
