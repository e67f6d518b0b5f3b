"""``yard assess``: production readiness against the ML Test Score, from evidence.

Evidence collectors per rubric section (``collectors``, reading ``project`` and ``store``),
scoring (``rubric``, ``scoring``), attestations for the tests done by hand (``attest``), the
report's plan sections (``strategy``, ``cost``) and its renderers (``report``).
"""

from modelyard.assess.assessment import RUBRIC, assess
from modelyard.assess.attest import Attestation, attest, list_attestations
from modelyard.assess.rubric import BANDS, SECTIONS, TESTS, parse_test_id
from modelyard.assess.types import SCHEMA_VERSION, Assessment

__all__ = [
    "BANDS",
    "RUBRIC",
    "SCHEMA_VERSION",
    "SECTIONS",
    "TESTS",
    "Assessment",
    "Attestation",
    "assess",
    "attest",
    "list_attestations",
    "parse_test_id",
]
