"""What a build or a manifest serves: one model reference or one deployment, resolved now."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import TYPE_CHECKING

from modelyard.core.refs import parse_ref
from modelyard.errors import InvalidInputError

if TYPE_CHECKING:
    from modelyard.core.types import ModelVersion
    from modelyard.registry import Registry

_DNS_LABEL = re.compile(r"[^a-z0-9-]+")


@dataclass(frozen=True)
class Target:
    """``ref`` (as the user wrote it: ``churn@production`` stays followed) or ``deployment``;
    ``versions`` are the versions it serves today (a deployment's stable, then its candidate)."""

    name: str
    ref: str | None
    deployment: str | None
    versions: tuple[ModelVersion, ...]

    @property
    def serve_args(self) -> list[str]:
        """The arguments ``yard serve`` needs to serve this target."""
        if self.deployment is not None:
            return ["--deployment", self.deployment]
        assert self.ref is not None
        return [self.ref]

    @property
    def follows(self) -> bool:
        """Whether what it serves can change after the build (an alias, or a deployment)."""
        return self.deployment is not None or (self.ref is not None and "@" in self.ref)

    @property
    def slug(self) -> str:
        """``name`` as a Kubernetes object name (RFC 1123 label, at most 63 characters)."""
        slug = _DNS_LABEL.sub("-", self.name.lower()).strip("-")[:63].rstrip("-")
        return slug or "model"

    @property
    def image_tag(self) -> str:
        """The image ``yard build`` tags and ``yard k8s`` deploys unless told otherwise: ``slug``
        and the served versions (``churn:3``; a deployment with a candidate ``web:3-4``)."""
        return f"{self.slug}:{'-'.join(str(v.version) for v in self.versions)}"

    @property
    def packages(self) -> dict[str, str]:
        """The package versions the served versions were registered with (the first version's
        pin wins where two differ: it is the stable route's)."""
        merged: dict[str, str] = {}
        for version in self.versions:
            for package, pin in version.lineage.packages.items():
                merged.setdefault(package, pin)
        return merged


def resolve_target(registry: Registry, ref: str | None, deployment: str | None) -> Target:
    """The target of ``yard build`` / ``yard k8s``: exactly one of ``ref`` and ``deployment``."""
    if (ref is None) == (deployment is None):
        raise InvalidInputError(
            "Give a model reference (NAME@ALIAS or NAME/VERSION) or --deployment NAME, not both."
        )
    if deployment is not None:
        from modelyard.rollout import get_deployment

        dep = get_deployment(registry.db, deployment)
        refs = [dep.stable_ref] + ([dep.candidate_ref] if dep.candidate_ref else [])
        versions = tuple(registry.get_version(r) for r in refs)
        return Target(name=dep.name, ref=None, deployment=dep.name, versions=versions)
    assert ref is not None
    version = registry.get_version(ref)
    return Target(name=parse_ref(ref).name, ref=ref, deployment=None, versions=(version,))
