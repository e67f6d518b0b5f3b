"""``assess``: the whole assessment of a project folder and the model and deployment it serves,
read from the folder and the store (nothing is written, nothing heavy is imported)."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

from modelyard.assess import scoring, strategy
from modelyard.assess.collectors import collect
from modelyard.assess.cost import collect_cost
from modelyard.assess.project import read_project
from modelyard.assess.store import read_store
from modelyard.assess.types import SCHEMA_VERSION, Assessment
from modelyard.errors import InvalidInputError

if TYPE_CHECKING:
    from modelyard.registry import Registry
    from modelyard.settings import Settings

__all__ = ["RUBRIC", "assess", "check_project"]

RUBRIC = "The ML Test Score (Breck, Cai, Nielsen, Salib, Sculley, IEEE Big Data 2017), 2017 scoring"


def assess(
    registry: Registry,
    settings: Settings,
    *,
    project: str | Path | None = None,
    model: str | None = None,
    deployment: str | None = None,
) -> Assessment:
    """Assess ``project`` (a folder; ``None``: the store alone) and the model and deployment
    (given, or found: see ``read_store``) against the ML Test Score."""
    root = check_project(project) if project is not None else None
    facts = read_project(root)
    store = read_store(registry, settings, model=model, deployment=deployment)
    results = scoring.score_tests(collect(facts, store), store.attestations)
    sections = scoring.score_sections(results)
    score, band = scoring.band(sections)
    return Assessment(
        version=SCHEMA_VERSION,
        rubric=RUBRIC,
        generated_at=datetime.now(UTC).isoformat(timespec="seconds"),
        project=str(root.resolve()) if root is not None else None,
        model=store.version.ref if store.version is not None else store.model,
        deployment=store.deployment.name if store.deployment is not None else None,
        score=score,
        band=band,
        sections=sections,
        tests=results,
        plan=scoring.plan(results, sections),
        architecture=strategy.architecture(store, facts),
        stack=strategy.stack(store, runtime=settings.serving.runtime),
        monitoring=strategy.monitoring(store, facts, drift=settings.monitoring.drift),
        deployment_strategy=strategy.deployment_strategy(store),
        maintenance=strategy.maintenance(store),
        risks=strategy.risks(results),
        cost=collect_cost(store, settings),
    )


def check_project(project: str | Path) -> Path:
    """``project`` as a ``Path`` when it is a folder, else a one-line ``InvalidInputError``."""
    root = Path(project)
    if not root.is_dir():
        raise InvalidInputError(
            f"Project folder {str(root)!r} does not exist or is not a folder; give the folder "
            "that holds modelyard.toml (default: the current one)."
        )
    return root
