"""Changing deployments: the stable route, candidates, weights, promotion and rollback.

Each function checks everything it was given first, then makes its change in one transaction
together with its audit event, so a bad request changes nothing. ``actor`` defaults to the
registry's identity. Reading deployments back is in ``modelyard.rollout.queries``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import msgspec
import sqlalchemy as sa
from sqlalchemy.engine import Connection, Row

from modelyard.core.refs import parse_ref
from modelyard.core.types import ModelVersion
from modelyard.errors import (
    ConcurrentUpdateError,
    ConfigError,
    ConflictError,
    InvalidSpecError,
    SignatureMismatchError,
)
from modelyard.registry import aliases
from modelyard.rollout import specs
from modelyard.rollout._rows import (
    NO_CANDIDATE,
    apply_change,
    deployment_record,
    deployment_row,
    record_event,
)
from modelyard.rollout.compatibility import input_differences
from modelyard.rollout.queries import get_deployment
from modelyard.rollout.types import ACTIVE_STATES, Deployment, Policy
from modelyard.store.schema import deployments

if TYPE_CHECKING:
    from modelyard.registry import Registry


def deploy(
    registry: Registry,
    name: str,
    *,
    model_ref: str,
    actor: str | None = None,
    reason: str | None = None,
) -> Deployment:
    """Create deployment ``name`` or change its stable route to the version ``model_ref`` names.

    The reference is resolved now; when it names an alias (``churn@production``) the deployment
    remembers it, and promoting a candidate later moves that alias.
    """
    specs.check_deployment_name(name)
    parsed = parse_ref(model_ref)
    version = _usable_version(registry, model_ref)
    now = datetime.now(UTC)
    who = actor or registry.identity
    values = {
        **NO_CANDIDATE,
        "stable_model": version.name,
        "stable_version": version.version,
        "stable_alias": parsed.alias,
        "state": "stable",
    }
    detail = {"stable": version.ref, "alias": parsed.alias}
    try:
        with registry.db.write() as conn:
            row = conn.execute(
                sa.select(deployments).where(deployments.c.name == name).with_for_update()
            ).first()
            if row is None:
                return _create(conn, name, values, detail=detail, actor=who, reason=reason, now=now)
            if row.state in ACTIVE_STATES:
                raise _busy(row)
            detail["from"] = f"{row.stable_model}/{row.stable_version}"
            return apply_change(
                conn, row, values, action="deploy", detail=detail, actor=who, reason=reason,
                now=now,
            )  # fmt: skip
    except sa.exc.IntegrityError as exc:
        raise ConcurrentUpdateError(
            f"Deployment {name!r} was created by someone else at the same time; run the command "
            "again."
        ) from exc


def start_candidate(
    registry: Registry,
    name: str,
    *,
    ref: str,
    mode: str,
    weight: float | None = None,
    sticky_header: str | None = None,
    sticky_field: str | None = None,
    sample: float = 1.0,
    steps: Sequence[float] | None = None,
    bake_s: float | str | None = None,
    policy: Policy | Mapping[str, Any] | None = None,
    auto: bool = False,
    retry_on_stable: bool = True,
    force: bool = False,
    actor: str | None = None,
    reason: str | None = None,
    prediction_log: bool | None = None,
) -> Deployment:
    """Put the version ``ref`` names beside the stable route as a canary, A/B or shadow candidate.

    ``weight`` is the candidate's percentage (canary, ab); with ``steps`` it defaults to the
    first step. ``sample`` is the share of requests shadowed. ``bake_s`` is how long each step
    must pass before the controller advances it (``auto``); at the last step it promotes.
    A candidate that may reject inputs the stable route takes (other columns, dtypes or input
    kind; see ``compatibility``) is refused with ``SignatureMismatchError`` unless ``force``.
    ``prediction_log``: whether the servers log predictions (``monitoring.log``); ``False``
    refuses a policy that judges business outcomes (``min_outcomes``), which need the log.
    """
    checked = specs.candidate_values(
        mode=mode, weight=weight, sticky_header=sticky_header, sticky_field=sticky_field,
        sample=sample, steps=steps, bake_s=bake_s, policy=policy,
    )  # fmt: skip
    needed = checked["policy"].get("min_outcomes")
    if needed is not None and prediction_log is False:
        raise ConfigError(
            f"The rollout policy of deployment {name!r} judges business outcomes "
            f"(min_outcomes={needed}), which need the prediction log, and monitoring.log is "
            "off; set it (MODELYARD_MONITORING__LOG=true, 'yard serve --log-predictions') or "
            "drop min_outcomes."
        )
    version = _usable_version(registry, ref)
    stable = get_deployment(registry.db, name)
    differences = _input_differences(registry, stable, version, force=force)
    now = datetime.now(UTC)
    with registry.db.write() as conn:
        row = deployment_row(conn, name, lock=True)
        if row.state in ACTIVE_STATES:
            raise _busy(row)
        _expect(row, stable.revision)
        if (row.stable_model, row.stable_version) == (version.name, version.version):
            raise ConflictError(
                f"Version {version.ref} is already the stable route of deployment {name!r}; "
                "give another version as the candidate."
            )
        values = {
            **checked,
            "candidate_model": version.name,
            "candidate_version": version.version,
            "retry_on_stable": retry_on_stable,
            "step_started_at": now,
            "auto": auto,
            "state": "rolling",
        }
        detail = {
            "candidate": version.ref,
            **{k: checked[k] for k in ("mode", "weight", "steps", "bake_s")},
            "auto": auto,
        }
        if checked["mode"] == "shadow":
            detail["sample"] = checked["shadow_sample"]
        if checked["mode"] == "ab":
            detail["sticky"] = checked["sticky_header"] or checked["sticky_field"]
        if differences:
            detail["forced"] = differences
        return apply_change(
            conn, row, values, action="start", detail=detail, actor=actor or registry.identity,
            reason=reason, now=now,
        )  # fmt: skip


def promote(
    registry: Registry,
    name: str,
    *,
    actor: str | None = None,
    reason: str | None = None,
    expected_revision: int | None = None,
    now: datetime | None = None,
) -> Deployment:
    """Make the candidate the stable route; the remembered stable alias moves to it (audited).

    The deployment change, its event, the alias move and the alias's audit row are one
    transaction: all happen or none. ``expected_revision``: refuse
    (``ConcurrentUpdateError``) if the deployment changed since.
    """
    who = actor or registry.identity
    with registry.db.read() as conn:
        row = deployment_row(conn, name)
        _expect(row, expected_revision)
        current = deployment_record(row)
    if not current.active or current.candidate_ref is None:
        raise ConflictError(
            f"Deployment {name!r} has no candidate to promote (state {current.state}); start "
            f"one with 'yard deploy {name} --canary REF'."
        )
    target = _usable_version(registry, current.candidate_ref)
    alias = current.stable_alias if target.name == current.stable_model else None
    with registry.db.write() as conn:
        if alias is not None:  # the model's row first, as every alias move locks it
            aliases.lock_model(conn, target.name)
        row = deployment_row(conn, name, lock=True)
        _expect(row, current.revision)
        values = {
            **NO_CANDIDATE,
            "stable_model": target.name,
            "stable_version": target.version,
            "stable_alias": alias,
            "state": "promoted",
        }
        detail = {"from": current.stable_ref, "to": target.ref, "alias": alias}
        if current.stable_alias and alias is None:
            detail["alias_left"] = f"{current.stable_model}@{current.stable_alias}"
        result = apply_change(
            conn, row, values, action="promote", detail=detail, actor=who, reason=reason,
            now=now or datetime.now(UTC),
        )  # fmt: skip
        if alias is not None:
            note = f"deployment {name} promoted {target.ref} ({who})"
            aliases.set_alias_in(
                conn, target.name, target.version, alias, actor=registry.identity,
                reason=note + (f": {reason}" if reason else ""),
            )  # fmt: skip
    return result


def abort(
    registry: Registry,
    name: str,
    *,
    actor: str | None = None,
    reason: str | None = None,
    expected_revision: int | None = None,
) -> Deployment:
    """Drop the candidate: all traffic goes back to the stable route (state ``rolled_back``).
    ``expected_revision``: refuse (``ConcurrentUpdateError``) if the deployment changed since."""
    return end_candidate(
        registry, name, action="abort", actor=actor, reason=reason,
        expected_revision=expected_revision,
    )  # fmt: skip


def end_candidate(
    registry: Registry,
    name: str,
    *,
    action: str,
    actor: str | None,
    reason: str | None,
    detail: dict[str, Any] | None = None,
    expected_revision: int | None = None,
    now: datetime | None = None,
) -> Deployment:
    """Drop the candidate and record ``action`` (``abort`` by hand, ``rollback`` on a breach)."""
    with registry.db.write() as conn:
        row = deployment_row(conn, name, lock=True)
        _expect(row, expected_revision)
        _require_candidate(row, "abort")
        full = {"candidate": f"{row.candidate_model}/{row.candidate_version}", **(detail or {})}
        return apply_change(
            conn, row, {**NO_CANDIDATE, "state": "rolled_back"}, action=action, detail=full,
            actor=actor or registry.identity, reason=reason, now=now or datetime.now(UTC),
        )  # fmt: skip


def set_weight(
    registry: Registry,
    name: str,
    *,
    weight: float,
    actor: str | None = None,
    reason: str | None = None,
    action: str = "weight",
    expected_revision: int | None = None,
    now: datetime | None = None,
) -> Deployment:
    """Give the canary or A/B candidate ``weight`` percent of requests; its bake starts again."""
    specs.check_weight(weight)
    when = now or datetime.now(UTC)
    with registry.db.write() as conn:
        row = deployment_row(conn, name, lock=True)
        _expect(row, expected_revision)
        _require_candidate(row, "reweight")
        if row.mode == "shadow":
            raise InvalidSpecError(
                f"Deployment {name!r} shadows its candidate, which has no weight; change the "
                "sample with a new rollout or promote it."
            )
        values = {
            "weight": float(weight),
            "step_index": specs.step_index(row.steps, weight),
            "step_started_at": when,
        }
        detail = {"from": row.weight, "to": float(weight)}
        return apply_change(
            conn, row, values, action=action, detail=detail, actor=actor or registry.identity,
            reason=reason, now=when,
        )  # fmt: skip


def pause(
    registry: Registry,
    name: str,
    *,
    actor: str | None = None,
    reason: str | None = None,
    detail: dict[str, Any] | None = None,
    expected_revision: int | None = None,
) -> Deployment:
    """Hold the rollout: traffic stays as it is and the controller stops acting until resumed."""
    return _set_state(
        registry, name, "paused", actor=actor, reason=reason, detail=detail,
        expected_revision=expected_revision,
    )  # fmt: skip


def resume(
    registry: Registry, name: str, *, actor: str | None = None, reason: str | None = None
) -> Deployment:
    """Let the controller act again on a paused rollout; the current step's bake starts again."""
    return _set_state(registry, name, "rolling", actor=actor, reason=reason)


# -- helpers ----------------------------------------------------------------------------------


def _usable_version(registry: Registry, ref: str) -> ModelVersion:
    version = registry.get_version(ref)
    if version.archived:
        raise ConflictError(
            f"Version {version.ref} is archived and cannot serve traffic; unarchive it with "
            f"'yard models unarchive {version.ref}'."
        )
    return version


def _input_differences(
    registry: Registry, deployment: Deployment, candidate: ModelVersion, *, force: bool
) -> list[str]:
    """How ``candidate``'s inputs differ from the stable route's; refused unless ``force``."""
    stable = registry.get_version(deployment.stable_ref)
    differences = input_differences(stable.signature, candidate.signature)
    if differences and not force:
        raise SignatureMismatchError(
            f"Candidate {candidate.ref} may reject inputs that stable {stable.ref} of deployment "
            f"{deployment.name!r} accepts: it {'; it '.join(differences)}; register a candidate "
            "with the stable's inputs, or pass --force (force=True) to start it anyway."
        )
    return differences


def _create(
    conn: Connection,
    name: str,
    values: dict[str, Any],
    *,
    detail: dict[str, Any],
    actor: str,
    reason: str | None,
    now: datetime,
) -> Deployment:
    row = {
        "name": name, **values, "retry_on_stable": True, "revision": 1,
        "policy": msgspec.to_builtins(Policy()), "created_at": now, "updated_at": now,
    }  # fmt: skip
    new_id = conn.execute(
        sa.insert(deployments).values(**row).returning(deployments.c.id)
    ).scalar_one()
    record_event(
        conn, new_id, 1, action="deploy", detail=detail, actor=actor, reason=reason, now=now
    )
    return deployment_record(deployment_row(conn, name))


def _set_state(
    registry: Registry,
    name: str,
    state: str,
    *,
    actor: str | None,
    reason: str | None,
    detail: dict[str, Any] | None = None,
    expected_revision: int | None = None,
) -> Deployment:
    now = datetime.now(UTC)
    action = "pause" if state == "paused" else "resume"
    with registry.db.write() as conn:
        row = deployment_row(conn, name, lock=True)
        _expect(row, expected_revision)
        wanted = "rolling" if state == "paused" else "paused"
        if row.state != wanted:
            raise ConflictError(
                f"Deployment {name!r} is {row.state}, not {wanted}, so it cannot {action}; see "
                f"'yard rollout status {name}'."
            )
        values: dict[str, Any] = {"state": state}
        if state == "rolling":
            values["step_started_at"] = now
        return apply_change(
            conn, row, values, action=action, detail=detail or {},
            actor=actor or registry.identity, reason=reason, now=now,
        )  # fmt: skip


def _expect(row: Row[Any], revision: int | None) -> None:
    if revision is not None and row.revision != revision:
        raise ConcurrentUpdateError(
            f"Deployment {row.name!r} changed while this change was prepared (revision "
            f"{revision} became {row.revision}); check 'yard rollout status {row.name}' and "
            "try again."
        )


def _require_candidate(row: Row[Any], verb: str) -> None:
    if row.state not in ACTIVE_STATES:
        raise ConflictError(
            f"Deployment {row.name!r} has no candidate to {verb} (state {row.state}); start one "
            f"with 'yard deploy {row.name} --canary REF'."
        )


def _busy(row: Row[Any]) -> ConflictError:
    return ConflictError(
        f"Deployment {row.name!r} already has candidate {row.candidate_model}/"
        f"{row.candidate_version} ({row.mode}, {row.state}); promote it with 'yard rollout "
        f"promote {row.name}' or abort it with 'yard rollout abort {row.name} --reason ...' first."
    )
