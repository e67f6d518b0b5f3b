"""The ML Test Score as data: the 28 tests of Breck, Cai, Nielsen, Salib and Sculley, "The ML Test
Score: A Rubric for ML Production Readiness and Technical Debt Reduction" (IEEE Big Data 2017),
with the paper's names and numbering, what modelyard counts as evidence for each, the command or
file change that raises it, an effort estimate and the risk its absence leaves; and the paper's
scoring (section VI.A): 0.5 point for a test done by hand with documented results, 1 point when
it runs automatically, each section summed (at most 7), the final score the minimum of the four.

``judgement`` marks the tests that need a person's judgement: they are scored from attestations
(``yard assess attest``) only, never from what the collectors guess.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal

from modelyard.errors import InvalidInputError

__all__ = [
    "BANDS",
    "SECTIONS",
    "TESTS",
    "Band",
    "RubricTest",
    "Section",
    "Status",
    "band_of",
    "final_score",
    "parse_test_id",
    "points_of",
    "rubric_test",
]

Status = Literal["automated", "manual", "missing", "not_applicable"]
Effort = Literal[1, 2, 3]
"""1: a command or a configuration line; 2: a test, a workflow step or a policy to write; 3: a
study or a process (people's time)."""


@dataclass(frozen=True, slots=True)
class Section:
    id: str  # data, model, infra, monitor
    label: str  # "Data", as in "Data 1"
    name: str  # the paper's title


@dataclass(frozen=True, slots=True)
class RubricTest:
    section: str
    number: int
    name: str
    counts: str  # what modelyard counts as evidence
    raise_with: str  # the command or file change that raises it
    effort: Effort
    risk: str  # what its absence leaves open
    judgement: bool = False

    @property
    def id(self) -> str:
        return f"{self.section}-{self.number}"

    @property
    def label(self) -> str:
        return f"{SECTION_BY_ID[self.section].label} {self.number}"


@dataclass(frozen=True, slots=True)
class Band:
    low: float  # exclusive, except for the first band (exactly 0)
    high: float | None  # inclusive; None: no upper bound
    range: str
    reading: str


SECTIONS = (
    Section("data", "Data", "Features and Data"),
    Section("model", "Model", "Model Development"),
    Section("infra", "Infra", "ML Infrastructure"),
    Section("monitor", "Monitor", "Monitoring"),
)
SECTION_BY_ID = {s.id: s for s in SECTIONS}

_ATTEST = "yard assess attest {id} --by NAME --note 'what was done, where the results are'"


def _t(  # noqa: PLR0917  # the table below reads as rows of positional fields
    section: str, number: int, name: str, counts: str, raise_with: str, effort: Effort, risk: str,
    *, judgement: bool = False,
) -> RubricTest:  # fmt: skip
    test_id = f"{section}-{number}"
    return RubricTest(
        section, number, name, counts, raise_with.replace("{attest}", _ATTEST).format(id=test_id),
        effort, risk, judgement,
    )  # fmt: skip


TESTS: tuple[RubricTest, ...] = (
    _t("data", 1, "Feature expectations are captured in a schema.",
       "The served version has a signature and a reference profile (types, ranges, categories, "
       "null rates), or the pipeline validates its input against a reference (validate step).",
       "Register with data (modelyard.register(..., data=X_train)) or add "
       "validate(table, reference=...) to the pipeline; then yard run pipeline.py.", 1,
       "Inputs of an unexpected type, range or category reach training and serving unnoticed."),
    _t("data", 2, "All features are beneficial.",
       "A documented feature-importance or ablation study (a person's judgement: attested).",
       "Measure each feature's contribution (e.g. permutation importance), then {attest}.", 3,
       "Features that add nothing still cost upkeep and can carry noise into the model.",
       judgement=True),
    _t("data", 3, "No feature's cost is too much.",
       "A documented review of each feature's latency, memory and upkeep cost (attested).",
       "Review what each feature costs to compute and keep, then {attest}.", 3,
       "An expensive feature slows serving or costs more than the quality it brings.",
       judgement=True),
    _t("data", 4, "Features adhere to meta-level requirements.",
       "A documented review of the features against the project's rules (allowed sources, "
       "licences, fields the model may not use) (attested).",
       "Write the rules down, check the features against them, then {attest}.", 3,
       "A feature the product may not use (a forbidden source or field) ships in the model.",
       judgement=True),
    _t("data", 5, "The data pipeline has appropriate privacy controls.",
       "A documented privacy review (attested); monitoring.drop_columns / hash_columns are shown "
       "as supporting evidence but appropriateness is a judgement.",
       "Set monitoring.drop_columns / hash_columns in modelyard.toml for personal data, review "
       "access to the data, then {attest}.", 2,
       "Personal data leaks into logs, artifacts or people's hands without control.",
       judgement=True),
    _t("data", 6, "New features can be added quickly.",
       "A documented time from a feature idea to production (attested).",
       "Time a feature addition through the pipeline (yard run uses cached steps), then "
       "{attest}.", 3,
       "Slow feature work delays fixes when the data changes.", judgement=True),
    _t("data", 7, "All input feature code is tested.",
       "Tests exercising the feature code (validation, loading, transforms) in tests/, run by "
       "the CI workflow (pytest).",
       "Add tests/test_features.py exercising the feature code and a 'pytest -q tests' step to "
       ".github/workflows/model-ci.yml.", 2,
       "A bug in feature code silently changes what the model sees."),
    _t("model", 1, "Model specs are reviewed and submitted.",
       "Code review of the model specification before it trains for production (attested).",
       "Review pipeline changes in pull requests, then {attest}.", 2,
       "An unreviewed model change reaches production.", judgement=True),
    _t("model", 2, "Offline and online metrics correlate.",
       "The version has offline metrics and the deployment watches the same quality online: a "
       "performance:<metric> or estimated:<metric> alert rule.",
       "Log predictions and labels (yard labels ingest) and add a [[monitoring.alerts.rules]] "
       "with metric = \"performance:<metric>\" for the deployment in modelyard.toml.", 1,
       "Offline gains that do not show online go unnoticed; the offline metric misleads."),
    _t("model", 3, "All hyperparameters have been tuned.",
       "A documented tuning study (attested); recorded params are supporting evidence.",
       "Tune the hyperparameters (record them as run params), then {attest}.", 3,
       "An untuned model leaves quality on the table or hides instability.", judgement=True),
    _t("model", 4, "The impact of model staleness is known.",
       "Drift is watched (a drift alert rule on the deployment) and labels arrive, so quality "
       "against model age is measured; or a documented staleness study (attested).",
       "Add a drift rule (metric = \"drift_share\") and ingest labels (yard labels ingest "
       "DEPLOYMENT FILE), or study quality by model age, then {attest}.", 2,
       "Nobody knows how fast the model decays, so retraining is too late or wasted."),
    _t("model", 5, "A simpler model is not better.",
       "A documented comparison with a simpler baseline (e.g. a linear model) (attested).",
       "Register a simple baseline and gate the model against it (yard gate --candidate M "
       "--baseline M/SIMPLE ...), then {attest}.", 2,
       "A complex model costs more to serve and maintain than a simple one that does as well.",
       judgement=True),
    _t("model", 6, "Model quality is sufficient on important data slices.",
       "A gate with slices: 'yard gate --slice COL' in the CI workflow or a pipeline "
       "gate/evaluate step with slices.",
       "Add --slice COLUMN (and --metric M:threshold=X,slice=COLUMN) to the workflow's "
       "yard gate step.", 1,
       "The model is good on average and bad for an important group of users."),
    _t("model", 7, "The model is tested for considerations of inclusion.",
       "A documented fairness / inclusion review (attested).",
       "Review quality across sensitive groups (yard gate --slice GROUP helps), then {attest}.",
       3, "The model serves some groups of people much worse than others.", judgement=True),
    _t("infra", 1, "Training is reproducible.",
       "The version's lineage has the dataset fingerprint and package versions, and the "
       "project pins its dependencies (requirements with ==, or a lock file).",
       "Register with data (lineage records its fingerprint) and pin dependencies: "
       "pip freeze > requirements.txt (or commit uv.lock).", 1,
       "A model cannot be rebuilt: a bug or an audit finds nothing to retrain from."),
    _t("infra", 2, "Model specs are unit tested.",
       "Tests in tests/ that train or fit the model specification, run by the CI workflow "
       "(pytest).",
       "Add a test that trains on a small sample (tests/test_pipeline.py from yard init) and "
       "a 'pytest -q tests' step to the workflow.", 2,
       "A broken model specification is found only when a full training fails."),
    _t("infra", 3, "The ML pipeline is Integration tested.",
       "The CI workflow runs the pipeline end to end ('yard run'), or a test runs it "
       "(modelyard.pipelines.run).",
       "Add a 'yard run pipeline.py' step to .github/workflows/model-ci.yml.", 1,
       "Steps that work alone fail together; a broken pipeline is found in production."),
    _t("infra", 4, "Model quality is validated before serving.",
       "A quality gate: 'yard gate' in the CI workflow, a gate step in the pipeline, or a "
       "retraining loop's gate.",
       "Add a 'yard gate --candidate M --baseline M@production --data HOLDOUT --target T "
       "--metric M:threshold=X' step to the workflow.", 1,
       "A worse model replaces a better one."),
    _t("infra", 5, "The model is debuggable.",
       "The version has an input example and predictions are logged (monitoring.log), so a "
       "single request can be found and replayed.",
       "Register with an input example (register(..., data=X)) and set [monitoring] log = true.",
       1, "A bad prediction cannot be traced back to its input and version."),
    _t("infra", 6, "Models are canaried before serving.",
       "A canary rollout with analysis: a deployment's candidate started in canary mode, or a "
       "retraining loop that rolls out as a canary.",
       "yard deploy DEPLOYMENT --canary MODEL/N --steps 10,50,100 --bake 10m --auto", 1,
       "A new version takes all the traffic at once; a bad one hurts every user."),
    _t("infra", 7, "Serving models can be rolled back.",
       "A rollback done (alias history: yard models rollback; a rolled back canary) or an "
       "automatic rollout that rolls back on breach.",
       "Rehearse one: yard models rollback MODEL production (then move it forward again), or "
       "roll out with --auto (policy on_breach = rollback).", 1,
       "When a release goes wrong nobody knows the way back under pressure."),
    _t("monitor", 1, "Dependency changes result in notification.",
       "Dependency updates are watched (.github/dependabot.yml or renovate.json) and the "
       "version's lineage records the packages it was built with.",
       "Add .github/dependabot.yml (package-ecosystem: pip) to the project.", 1,
       "An upstream package changes behaviour and nobody is told."),
    _t("monitor", 2, "Data invariants hold for inputs.",
       "A deployment serves a version with a signature: the server validates each request's "
       "types and columns (400/422 on a violation).",
       "Register with data (a signature) and deploy it: "
       "yard deploy DEPLOYMENT --model MODEL@production.",
       1, "Malformed inputs reach the model and produce garbage predictions."),
    _t("monitor", 3, "Training and serving are not skewed.",
       "A drift alert rule (drift_share or drift:<column>) on the deployment, with predictions "
       "logged and a reference profile on the served version.",
       "Add a [[monitoring.alerts.rules]] with metric = \"drift_share\" for the deployment and "
       "[monitoring] log = true in modelyard.toml.", 1,
       "Serving data drifts from training data and quality drops unseen."),
    _t("monitor", 4, "Models are not too stale.",
       "A retraining loop for the deployment triggered by model age (max_age) or drift "
       "(drift_share).",
       "Add [loops.DEPLOYMENT] with trigger.max_age = \"30d\" (or trigger.drift_share) and "
       "train.pipeline = \"pipeline.py\" to modelyard.toml; run yard loop run.", 2,
       "The model grows old while the world changes."),
    _t("monitor", 5, "Models are numerically stable.",
       "An alert rule on the deployment's error_rate or an output_drift:<output> rule (NaN, "
       "infinite or failed predictions, output distribution shifts).",
       "Add a [[monitoring.alerts.rules]] with metric = \"error_rate\", op = \">\", "
       "threshold = 0.01.", 1,
       "NaN or exploding outputs are served without anyone noticing."),
    _t("monitor", 6, "Computing performance has not regressed.",
       "A latency alert rule (p50_latency_ms / p99_latency_ms) on the deployment, or canary "
       "analysis comparing the candidate's p99 latency with the stable route's.",
       "Add a [[monitoring.alerts.rules]] with metric = \"p99_latency_ms\", op = \">\", "
       "threshold = 100 for the deployment.", 1,
       "A slower or costlier version ships and nobody sees the regression."),
    _t("monitor", 7, "Prediction quality has not regressed.",
       "An alert rule on performance:<metric> (labels) or estimated:<metric> (without labels) "
       "or a business outcome for the deployment.",
       "Add a [[monitoring.alerts.rules]] with metric = \"performance:roc_auc\" (or "
       "\"estimated:roc_auc\"), op = \"<\" and a threshold.", 1,
       "Quality falls in production and the first to notice are the users."),
)  # fmt: skip

_BY_ID = {t.id: t for t in TESTS}

BANDS = (
    Band(0.0, 0.0, "0", "More of a research project than a productionized system."),
    Band(0.0, 1.0, "(0, 1]", "Not totally untested, but it is worth considering the possibility "
         "of serious holes in reliability."),
    Band(1.0, 2.0, "(1, 2]", "There's been first pass at basic productionization, but "
         "additional investment may be needed."),
    Band(2.0, 3.0, "(2, 3]", "Reasonably tested, but it's possible that more of those tests and "
         "procedures may be automated."),
    Band(3.0, 5.0, "(3, 5]", "Strong levels of automated testing and monitoring, appropriate for "
         "mission-critical systems."),
    Band(5.0, None, "> 5", "Exceptional levels of automated testing and monitoring."),
)  # fmt: skip

_ID_FORMS = re.compile(r"\s*(data|model|infra|monitor)[\s_-]*([1-7])\s*", re.I)


def parse_test_id(text: str) -> str:
    """``Data 1``, ``data-1``, ``DATA1`` or ``infra_4`` as the canonical id (``data-1``)."""
    match = _ID_FORMS.fullmatch(text)
    if match is None:
        raise InvalidInputError(
            f"{text!r} is not a test of the ML Test Score; name one as 'Data 1' or 'data-1' "
            "(sections Data, Model, Infra, Monitor; numbers 1-7)."
        )
    return f"{match.group(1).lower()}-{match.group(2)}"


def rubric_test(test_id: str) -> RubricTest:
    return _BY_ID[parse_test_id(test_id)]


def points_of(status: Status) -> float:
    return {"automated": 1.0, "manual": 0.5}.get(status, 0.0)


def final_score(section_points: dict[str, float]) -> float:
    """The minimum of the four section sums (each capped at 7)."""
    return min(min(section_points.get(s.id, 0.0), 7.0) for s in SECTIONS)


def band_of(score: float) -> Band:
    for band in BANDS:
        if band.high is None or score <= band.high:
            return band
    return BANDS[-1]  # unreachable: the last band has no upper bound
