"""The assessment's records: evidence, findings and the report ``yard assess --json`` prints.

The JSON shape is versioned (``SCHEMA_VERSION``): fields are only added within a version; a
rename or removal bumps it. README's "yard assess" section documents it.
"""

from __future__ import annotations

from typing import Literal

import msgspec

from modelyard.assess.rubric import Status

__all__ = [
    "SCHEMA_VERSION",
    "Assessment",
    "BandResult",
    "CostReport",
    "Evidence",
    "Finding",
    "PlanItem",
    "Risk",
    "SectionScore",
    "StackItem",
    "TestResult",
]

SCHEMA_VERSION = 1

EvidenceKind = Literal[
    "file", "ci", "test", "pipeline", "config", "registry", "deployment", "alert_rule",
    "prediction_log", "loop", "attestation", "run",
]  # fmt: skip


class Evidence(msgspec.Struct, frozen=True, kw_only=True):
    """One thing found: ``where`` is ``path:line``, a registry reference (``churn/2``), a
    deployment, a rule name or a run id; ``detail`` says what it shows."""

    kind: EvidenceKind
    where: str
    detail: str


class Finding(msgspec.Struct, frozen=True, kw_only=True):
    """What a collector concluded for one test: ``automated`` or ``missing`` (``manual`` comes
    from attestations only), ``not_applicable`` with the ``reason``."""

    test: str
    status: Status
    evidence: tuple[Evidence, ...] = ()
    reason: str | None = None


class TestResult(msgspec.Struct, frozen=True, kw_only=True):
    __test__ = False  # not a pytest class

    id: str  # data-1
    label: str  # Data 1
    section: str
    number: int
    name: str
    status: Status
    points: float
    judgement: bool
    counts: str
    evidence: tuple[Evidence, ...]
    reason: str | None
    next_step: str | None
    effort: int


class SectionScore(msgspec.Struct, frozen=True, kw_only=True):
    id: str
    name: str
    points: float
    max: float = 7.0
    automated: int = 0
    manual: int = 0


class BandResult(msgspec.Struct, frozen=True, kw_only=True):
    range: str
    reading: str


class PlanItem(msgspec.Struct, frozen=True, kw_only=True):
    """A test short of automated: ``gain`` points for ``effort`` (1 to 3)."""

    test: str
    label: str
    name: str
    gain: float
    effort: int
    next_step: str


class StackItem(msgspec.Struct, frozen=True, kw_only=True):
    name: str
    version: str
    source: str


class Risk(msgspec.Struct, frozen=True, kw_only=True):
    test: str
    risk: str
    finding: str
    mitigation: str


class CostReport(msgspec.Struct, frozen=True, kw_only=True):
    """Cost and resource use per model: filled by ``modelyard.assess.cost.collect_cost``.
    ``status`` is ``not_measured`` until the server measures CPU-seconds and memory per model."""

    status: Literal["not_measured", "measured"] = "not_measured"
    detail: str = "cost and resource use per model are not measured yet"
    currency: str | None = None
    models: tuple[dict[str, object], ...] = ()


class Assessment(msgspec.Struct, frozen=True, kw_only=True):
    version: int
    rubric: str
    generated_at: str
    project: str | None
    model: str | None  # the assessed version, e.g. churn/2
    deployment: str | None
    score: float
    band: BandResult
    sections: tuple[SectionScore, ...]
    tests: tuple[TestResult, ...]
    plan: tuple[PlanItem, ...]
    architecture: str  # Mermaid
    stack: tuple[StackItem, ...]
    monitoring: dict[str, object]
    deployment_strategy: dict[str, object]
    maintenance: dict[str, object]
    risks: tuple[Risk, ...]
    cost: CostReport
