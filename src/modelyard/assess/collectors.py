"""Evidence collectors, one per rubric section: each turns what the project folder and the store
show into a ``Finding`` per test (``automated`` or ``missing``, with the evidence either way).
Judgement tests (``RubricTest.judgement``) are never concluded here: their supporting evidence is
listed, and only an attestation (see ``scoring``) scores them."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING

from modelyard.assess.rubric import TESTS
from modelyard.assess.types import Evidence, Finding

if TYPE_CHECKING:
    from modelyard.assess.project import ProjectFacts
    from modelyard.assess.store import StoreFacts
    from modelyard.settings import AlertRule

__all__ = ["collect"]

_DRIFT = ("drift_share", "drift:")
_QUALITY = ("performance:", "estimated:", "outcome:")
_LATENCY = ("p50_latency_ms", "p99_latency_ms")
_STABILITY = ("error_rate", "output_drift:")


class _Facts:
    """Both fact sets and the evidence helpers the rules share."""

    def __init__(self, project: ProjectFacts, store: StoreFacts) -> None:
        self.p = project
        self.s = store
        self.version = store.version
        self.ref = store.version.ref if store.version is not None else None

    def reg(self, detail: str) -> Evidence:
        return Evidence(kind="registry", where=self.ref or "registry", detail=detail)

    def rules(self, prefixes: tuple[str, ...]) -> list[Evidence]:
        """The assessed deployment's rules on these metrics; without a deployment, every
        configured one (shown as evidence, never enough to score)."""
        rules = self.s.deployment_rules() if self.s.deployment is not None else self.s.rules
        return [
            Evidence(
                kind="alert_rule",
                where=f"{r.name} ({self.p.rule_line(r.name)})",
                detail=_rule_text(r),
            )
            for r in rules
            if r.metric.startswith(prefixes)
        ]

    def steps(self, *suffixes: str) -> list[Evidence]:
        return [
            Evidence(kind="run", where=f"run {s.run_id}", detail=f"step {s.name} ({s.function})")
            for s in self.s.steps
            if s.function.endswith(tuple(f":{x}" for x in suffixes))
        ]

    def deployed(self) -> Evidence | None:
        d = self.s.deployment
        if d is None:
            return None
        return Evidence(kind="deployment", where=d.name, detail=f"serves {d.stable_ref}")

    def ci_tests(self) -> list[Evidence]:
        return list(self.p.found("ci:tests"))


def _rule_text(rule: AlertRule) -> str:
    return (
        f"{rule.metric} {rule.op} {rule.threshold:g} over {rule.window} for {rule.hold} "
        f"on deployment {rule.deployment}"
    )


def _finding(test: str, ok: bool, evidence: Iterable[Evidence | None]) -> Finding:
    found = tuple(e for e in evidence if e is not None)
    return Finding(test=test, status="automated" if ok else "missing", evidence=found)


def _no_deployment(test: str, f: _Facts, evidence: Iterable[Evidence | None] = ()) -> Finding:
    found = [e for e in evidence if e is not None]
    if f.s.model is None:
        found.append(Evidence(kind="registry", where="registry", detail="no model registered"))
    else:
        found.append(
            Evidence(
                kind="deployment", where="registry", detail=f"no deployment serves {f.s.model}"
            )
        )
    return Finding(test=test, status="missing", evidence=tuple(found))


# -- Features and Data -----------------------------------------------------------------------


def _data_1(f: _Facts) -> Finding:
    v = f.version
    signature = (
        f.reg("signature: " + ", ".join(v.signature.column_names[:8]))
        if (v is not None and v.signature is not None and v.signature.kind == "columns")
        else (f.reg("signature (tensor input)") if v is not None and v.signature else None)
    )
    profile = (
        f.reg("reference profile of the training data")
        if (v is not None and v.file("profile") is not None)
        else None
    )
    validate = [*f.p.found("pipeline:validate"), *f.steps("validate")]
    ok = (signature is not None and profile is not None) or bool(validate)
    return _finding("data-1", ok, [signature, profile, *validate])


def _data_5(f: _Facts) -> Finding:
    privacy = [
        Evidence(
            kind="config",
            where=f.p.config_line(rf"^\s*{key}\s*="),
            detail=f"monitoring.{key}: {', '.join(columns)} (supporting; a judgement test)",
        )
        for key, columns in (("drop_columns", f.s.drop_columns), ("hash_columns", f.s.hash_columns))
        if columns
    ]
    return Finding(test="data-5", status="missing", evidence=tuple(privacy))


def _data_7(f: _Facts) -> Finding:
    tests = list(f.p.found("test:features"))
    return _finding("data-7", bool(tests) and bool(f.ci_tests()), [*tests, *f.ci_tests()])


# -- Model Development -----------------------------------------------------------------------


def _model_2(f: _Facts) -> Finding:
    if f.s.deployment is None:
        return _no_deployment("model-2", f)
    metrics = (
        f.reg("offline metrics: " + ", ".join(sorted(f.version.metrics)[:6]))
        if (f.version is not None and f.version.metrics)
        else None
    )
    online = f.rules(("performance:", "estimated:"))
    return _finding("model-2", metrics is not None and bool(online), [metrics, *online])


def _model_3(f: _Facts) -> Finding:
    params = (
        f.reg(f"{len(f.version.params)} params recorded")
        if (f.version is not None and f.version.params)
        else None
    )
    return _finding("model-3", False, [params])


def _model_4(f: _Facts) -> Finding:
    if f.s.deployment is None:
        return _no_deployment("model-4", f)
    drift = f.rules(_DRIFT)
    labels = (
        Evidence(kind="prediction_log", where=f.s.deployment.name, detail="labels ingested")
        if f.s.labels
        else None
    )
    return _finding("model-4", bool(drift) and labels is not None, [*drift, labels])


def _model_6(f: _Facts) -> Finding:
    slices = [*f.p.found("ci:slices"), *f.p.found("pipeline:slices")]
    slices += [
        Evidence(kind="run", where=f"run {s.run_id}", detail=f"step {s.name} scored slices")
        for s in f.s.steps
        if s.sliced
    ]
    return _finding("model-6", bool(slices), slices)


# -- ML Infrastructure -----------------------------------------------------------------------


def _infra_1(f: _Facts) -> Finding:
    v = f.version
    lineage = v.lineage if v is not None else None
    data = (
        f.reg(f"dataset sha256 {lineage.dataset.sha256[:12]}, {lineage.dataset.rows} rows")
        if (lineage is not None and lineage.dataset is not None)
        else None
    )
    packages = (
        f.reg(f"{len(lineage.packages)} package versions, Python {lineage.python}")
        if (lineage is not None and lineage.packages)
        else None
    )
    commit = (
        f.reg(f"git commit {lineage.git_commit[:12]}" + (" (dirty)" if lineage.git_dirty else ""))
        if (lineage is not None and lineage.git_commit)
        else None
    )
    ok = data is not None and packages is not None and bool(f.p.pinned)
    checked = [
        f.reg(
            f"files re-hashed by {c.actor} on {c.at:%Y-%m-%d}: "
            + ("all match" if c.ok else f"{len(c.failed)} failed")
        )
        for c in f.s.checks[:1]
    ]
    unpinned = [
        Evidence(kind="file", where=line.split(":")[0], detail=f"not pinned: {line}")
        for line in f.p.unpinned[:3]
    ]
    return _finding("infra-1", ok, [data, packages, commit, *f.p.pinned, *unpinned, *checked])


def _infra_2(f: _Facts) -> Finding:
    tests = list(f.p.found("test:model"))
    return _finding("infra-2", bool(tests) and bool(f.ci_tests()), [*tests, *f.ci_tests()])


def _infra_3(f: _Facts) -> Finding:
    found = [*f.p.found("ci:run"), *f.p.found("test:pipeline")]
    return _finding("infra-3", bool(found), found)


def _infra_4(f: _Facts) -> Finding:
    found = [*f.p.found("ci:gate"), *f.p.found("pipeline:gate"), *f.steps("gate")]
    loop = f.s.loop()
    if loop is not None and loop.gate.thresholds:
        found.append(
            Evidence(
                kind="loop",
                where=f"loops.{f.s.deployment.name}",  # type: ignore[union-attr]  # loop() implies a deployment
                detail="the retraining loop gates each candidate",
            )
        )
    return _finding("infra-4", bool(found), found)


def _infra_5(f: _Facts) -> Finding:
    example = (
        f.reg("input example stored")
        if (f.version is not None and f.version.input_example)
        else None
    )
    logged = None
    if f.s.predictions:
        logged = Evidence(
            kind="prediction_log",
            where=f.s.deployment.name,  # type: ignore[union-attr]  # predictions imply a deployment
            detail="predictions logged with request ids",
        )
    elif f.s.log_on:
        logged = Evidence(
            kind="config", where=f.p.config_line(r"^\s*log\s*="), detail="monitoring.log = true"
        )
    return _finding("infra-5", example is not None and logged is not None, [example, logged])


def _infra_6(f: _Facts) -> Finding:
    found = [
        Evidence(
            kind="deployment",
            where=f"{e.deployment} (revision {e.revision})",
            detail=f"canary {e.detail.get('candidate')} started, steps {e.detail.get('steps')}",
        )
        for e in f.s.deployment_events
        if e.action == "start" and e.detail.get("mode") == "canary"
    ][:3]
    loop = f.s.loop()
    if loop is not None and loop.rollout.mode == "canary":
        found.append(
            Evidence(
                kind="loop",
                where=f"loops.{f.s.deployment.name}",  # type: ignore[union-attr]  # loop() implies a deployment
                detail=f"retrained models roll out as canaries {loop.rollout.steps}",
            )
        )
    found += list(f.p.found("ci:canary")) + list(f.p.found("pipeline:canary"))
    return _finding("infra-6", bool(found), found)


def _infra_7(f: _Facts) -> Finding:
    found = [
        Evidence(
            kind="registry",
            where=f"{e.name}@{e.alias}",
            detail=f"rolled back {e.from_version} -> {e.to_version} by {e.actor} on "
            f"{e.at:%Y-%m-%d}",
        )
        for e in f.s.alias_events
        if e.undoes is not None
    ][:3]
    found += [
        Evidence(
            kind="deployment",
            where=f"{e.deployment} (revision {e.revision})",
            detail=f"candidate rolled back: {e.reason or e.summary}",
        )
        for e in f.s.deployment_events
        if e.action in ("rollback", "abort")
    ][:3]
    d = f.s.deployment
    if d is not None and d.auto and d.policy.on_breach == "rollback":
        found.append(
            Evidence(
                kind="deployment", where=d.name, detail="automatic rollout: a breach rolls back"
            )
        )
    if not found and f.s.alias_events:  # shown, not scored: the way back exists, untried
        moves = f.s.alias_events
        found_only = Evidence(
            kind="registry",
            where=f"{moves[0].name} alias history",
            detail=f"{len(moves)} alias moves recorded; no rollback done yet",
        )
        return Finding(test="infra-7", status="missing", evidence=(found_only,))
    return _finding("infra-7", bool(found), found)


# -- Monitoring ------------------------------------------------------------------------------


def _monitor_1(f: _Facts) -> Finding:
    packages = (
        f.reg("lineage records package versions")
        if (f.version is not None and f.version.lineage.packages)
        else None
    )
    bots = list(f.p.dependency_bot)
    return _finding("monitor-1", bool(bots), [*bots, packages])


def _monitor_2(f: _Facts) -> Finding:
    if f.s.deployment is None:
        return _no_deployment("monitor-2", f)
    signature = (
        f.reg("requests are validated against the signature")
        if (f.version is not None and f.version.signature is not None)
        else None
    )
    return _finding("monitor-2", signature is not None, [f.deployed(), signature])


def _monitor_3(f: _Facts) -> Finding:
    if f.s.deployment is None:
        return _no_deployment("monitor-3", f, f.rules(_DRIFT))
    drift = f.rules(_DRIFT)
    profile = (
        f.reg("reference profile to compare with")
        if (f.version is not None and f.version.file("profile") is not None)
        else None
    )
    logged = f.s.log_on or f.s.predictions
    log = (
        Evidence(
            kind="config", where=f.p.config_line(r"^\s*log\s*="), detail="predictions are logged"
        )
        if logged
        else None
    )
    return _finding(
        "monitor-3", bool(drift) and profile is not None and logged, [*drift, profile, log]
    )


def _monitor_4(f: _Facts) -> Finding:
    if f.s.deployment is None:
        return _no_deployment("monitor-4", f)
    loop = f.s.loop()
    found: list[Evidence | None] = []
    if loop is not None and (loop.trigger.max_age or loop.trigger.drift_share is not None):
        trigger = ", ".join(
            part
            for part in (
                f"max_age {loop.trigger.max_age}" if loop.trigger.max_age else "",
                f"drift_share >= {loop.trigger.drift_share:g}"
                if loop.trigger.drift_share is not None
                else "",
            )
            if part
        )
        name = f.s.deployment.name
        line = f.p.config_line(rf"^\s*\[loops\.{re.escape(name)}[\].]")
        found.append(
            Evidence(kind="loop", where=f"loops.{name} ({line})", detail=f"retrains on {trigger}")
        )
    ok = bool(found)
    if f.version is not None:
        found.append(f.reg(f"registered {f.version.created_at:%Y-%m-%d}"))
    return _finding("monitor-4", ok, found)


def _rules_test(test: str, prefixes: tuple[str, ...]) -> Callable[[_Facts], Finding]:
    def rule(f: _Facts) -> Finding:
        if f.s.deployment is None:
            return _no_deployment(test, f, f.rules(prefixes))
        found = f.rules(prefixes)
        return _finding(test, bool(found), found)

    return rule


def _monitor_6(f: _Facts) -> Finding:
    if f.s.deployment is None:
        return _no_deployment("monitor-6", f)
    found = f.rules(_LATENCY)
    canaries = [e for e in f.s.deployment_events if e.action == "start"]
    if canaries and f.s.deployment.policy.max_p99_ratio:
        found.append(
            Evidence(
                kind="deployment",
                where=f.s.deployment.name,
                detail=f"canary analysis: candidate p99 at most "
                f"{f.s.deployment.policy.max_p99_ratio:g}x stable's",
            )
        )
    return _finding("monitor-6", bool(found), found)


def _judgement(test: str) -> Callable[[_Facts], Finding]:
    def rule(f: _Facts) -> Finding:
        return Finding(test=test, status="missing")

    return rule


_RULES: dict[str, Callable[[_Facts], Finding]] = {
    "data-1": _data_1,
    "data-5": _data_5,
    "data-7": _data_7,
    "model-2": _model_2,
    "model-3": _model_3,
    "model-4": _model_4,
    "model-6": _model_6,
    "infra-1": _infra_1,
    "infra-2": _infra_2,
    "infra-3": _infra_3,
    "infra-4": _infra_4,
    "infra-5": _infra_5,
    "infra-6": _infra_6,
    "infra-7": _infra_7,
    "monitor-1": _monitor_1,
    "monitor-2": _monitor_2,
    "monitor-3": _monitor_3,
    "monitor-4": _monitor_4,
    "monitor-5": _rules_test("monitor-5", _STABILITY),
    "monitor-6": _monitor_6,
    "monitor-7": _rules_test("monitor-7", _QUALITY),
}


def collect(project: ProjectFacts, store: StoreFacts) -> dict[str, Finding]:
    """A finding for each of the 28 tests. A judgement test's finding is ``missing`` whatever
    its supporting evidence: only an attestation scores it."""
    facts = _Facts(project, store)
    out: dict[str, Finding] = {}
    for test in TESTS:
        finding = _RULES.get(test.id, _judgement(test.id))(facts)
        if test.judgement and finding.status == "automated":
            finding = Finding(test=test.id, status="missing", evidence=finding.evidence)
        out[test.id] = finding
    return out
