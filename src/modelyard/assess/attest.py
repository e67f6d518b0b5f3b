"""Attestations: a person's record that a rubric test was done by hand, with documented results
(0.5 point in the ML Test Score). Kept in the metadata store (table ``attestations``) with who,
when and the note; scoped to one model or, without one, to every model of the project. The
latest attestation of a test wins; an automated finding beats any attestation."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import TYPE_CHECKING, Literal

import msgspec
import sqlalchemy as sa

from modelyard.assess.rubric import parse_test_id
from modelyard.errors import InvalidInputError
from modelyard.store.schema import attestations

if TYPE_CHECKING:
    from modelyard.registry import Registry
    from modelyard.store.db import Database

__all__ = ["Attestation", "attest", "list_attestations"]

_NOTE_MAX = 4000
AttestationKind = Literal["manual", "not_applicable"]


class Attestation(msgspec.Struct, frozen=True, kw_only=True):
    id: int
    test: str
    model: str | None
    kind: AttestationKind
    actor: str
    note: str
    at: datetime


def attest(
    registry: Registry,
    test: str,
    *,
    by: str,
    note: str,
    model: str | None = None,
    not_applicable: bool = False,
) -> Attestation:
    """Record that ``test`` (``Data 1``, ``data-1``) was done by hand by ``by``; ``note`` says
    what was done and where its results are. ``model``: the model it was done for (it must be
    registered); ``None`` for the whole project. ``not_applicable``: the test does not apply to
    this system, and ``note`` says why (scored like a manual test: a person vouches for it)."""
    test_id = parse_test_id(test)
    if not by.strip():
        raise InvalidInputError("The attestation needs a name (--by NAME): who did the test.")
    if not note.strip():
        raise InvalidInputError(
            "The attestation needs a note (--note TEXT): what was done and where the results are."
        )
    if len(note) > _NOTE_MAX:
        raise InvalidInputError(
            f"The note is {len(note)} characters long (at most {_NOTE_MAX}); link to the "
            "results instead of pasting them."
        )
    if model is not None:
        registry.get_model(model)  # ModelNotFoundError names the fix
    now = datetime.now(UTC)
    kind: AttestationKind = "not_applicable" if not_applicable else "manual"
    values = {
        "test": test_id,
        "model": model,
        "kind": kind,
        "actor": by.strip()[:256],
        "note": note.strip(),
        "at": now,
    }
    with registry.db.write() as conn:
        new_id = conn.execute(
            sa.insert(attestations).values(**values).returning(attestations.c.id)
        ).scalar_one()
    return Attestation(id=int(new_id), **values)  # type: ignore[arg-type]  # values' types match


def list_attestations(db: Database, *, model: str | None = None) -> list[Attestation]:
    """Attestations that apply to ``model`` (its own and the project-wide ones), newest first;
    every attestation when ``model`` is ``None``."""
    query = sa.select(attestations).order_by(attestations.c.id.desc())
    if model is not None:
        query = query.where(sa.or_(attestations.c.model.is_(None), attestations.c.model == model))
    with db.read() as conn:
        return [
            Attestation(
                id=row.id,
                test=row.test,
                model=row.model,
                kind=row.kind,
                actor=row.actor,
                note=row.note,
                at=row.at,
            )
            for row in conn.execute(query)
        ]
