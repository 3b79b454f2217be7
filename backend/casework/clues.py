"""Clues (线索): intake, routing by the violation catalogue, duplicates, and where each one ends.

A clue comes from a phone (`clue.report`) or the desk (hotline, grid workers,
social supervisors, other departments). It is routed to the department the
catalogue names first for its category, or to the lead department while its
category is unknown. A clue about an institution that already has an open
clue on the same matter is linked to the earliest one as a `duplicate` and
follows it, so no complaint is dropped and none is handled twice. A clue
ends as a case (through the phones' merge rule), closed with a reason, or
transferred to the judiciary (backend.casework.joint).

Complainants get a tracking code; `public_status` is all that code reveals.

What a complainant gives of themselves (name, phone, email, address) is sealed in their clue's row with SM4-GCM
under a data key of the key ring the caller passes (`COMPLAINANT`, backend.core.crypto), opened only for those who
handle the clue, and their phone number is findable by exact match through an HMAC-SM3 blind index
(`clues_by_complainant_phone`), never by reading it in clear. Those who handle the clue see it masked
(backend.casework.masking); in clear only through an unmasking with a purpose, which is recorded
(backend.casework.personal_data).
"""

from __future__ import annotations

import json
import secrets
import uuid
from collections.abc import Collection
from datetime import datetime
from typing import Any

from sqlalchemy import exists, or_, select
from sqlalchemy.orm import Session

from backend.casework.masking import mask_complainant
from backend.casework.merge import desk_case, resolve_institution
from backend.core.crypto.data_keys import INDEX, SEAL, KeyRing
from backend.core.crypto.sealed_fields import BlindIndex, SealedField, phone_digits
from backend.core.errors import Conflict, Forbidden, Invalid, NotFound
from backend.core.jurisdiction import get_scoped, may_see_region, scope
from backend.core.models import (
    Case,
    CategoryDepartment,
    Clue,
    Department,
    Evidence,
    Institution,
    Officer,
    Transfer,
    ViolationCategory,
)
from backend.core.paging import paginate
from backend.core.reference import is_city_level
from backend.core.times import utc_iso
from sync import feed
from sync.records import ContentError

CLUE_STATUSES = ("new", "triaged", "case", "closed", "duplicate", "transferred")
OPEN_CLUE_STATUSES = ("new", "triaged")
# How a clue ended, as the public page says it; the free-text reason stays inside.
CLOSING_OUTCOMES = ("no_violation", "rectified", "not_within_remit", "insufficient_information", "withdrawn",
                    "other")
CASE_OUTCOME = "case_opened"
JUDICIARY_OUTCOME = "transferred_to_judiciary"

# The complainant's personal data, sealed in the clue's row, and the blind index of their phone number.
COMPLAINANT = SealedField("clues", "complainant")
COMPLAINANT_PHONE = BlindIndex("clues", "complainant.phone", phone_digits)

# No 0/O, 1/I/L or U: read out over a hotline, a code survives. 30**12 is about 2**59.
CODE_ALPHABET = "23456789ABCDEFGHJKMNPQRSTVWXYZ"
CODE_GROUPS, CODE_GROUP_LEN = 3, 4


def new_tracking_code() -> str:
    symbols = "".join(secrets.choice(CODE_ALPHABET) for _ in range(CODE_GROUPS * CODE_GROUP_LEN))
    return "-".join(symbols[i:i + CODE_GROUP_LEN] for i in range(0, len(symbols), CODE_GROUP_LEN))


def normalise_tracking_code(text: str) -> str | None:
    """The stored form of what a complainant typed (any case, with or without spaces and dashes), or None."""
    symbols = "".join(ch for ch in text.upper() if ch not in " -")
    if len(symbols) != CODE_GROUPS * CODE_GROUP_LEN or any(ch not in CODE_ALPHABET for ch in symbols):
        return None
    return "-".join(symbols[i:i + CODE_GROUP_LEN] for i in range(0, len(symbols), CODE_GROUP_LEN))


def seal_complainant(session: Session, keys: KeyRing, clue: Clue, complainant: dict[str, Any] | None, *,
                     now: datetime) -> None:
    """Store what the complainant gave sealed to this clue's row (JSON, keys sorted), and its phone's blind index."""
    if not complainant:
        clue.complainant_sealed = clue.complainant_phone_index = None
        return
    clue.complainant_sealed = keys.seal(session, COMPLAINANT, clue.id, complainant_text(complainant), now=now)
    clue.complainant_phone_index = keys.index(session, COMPLAINANT_PHONE, complainant_phone(complainant), now=now)


def complainant_text(complainant: dict[str, Any]) -> bytes:
    """What is sealed: the complainant's fields as JSON, keys sorted (migration 0018 seals the old rows so too)."""
    return json.dumps(complainant, ensure_ascii=False, sort_keys=True, separators=(",", ":")).encode()


def complainant_phone(complainant: dict[str, Any]) -> str | None:
    phone = complainant.get("phone")
    return phone if isinstance(phone, str) else None


def complainant_of(session: Session, keys: KeyRing, clue: Clue) -> dict[str, Any] | None:
    """What the complainant gave, opened from the clue's row; the caller decides who may see it."""
    if clue.complainant_sealed is None:
        return None
    return json.loads(keys.open(session, COMPLAINANT, clue.id, clue.complainant_sealed))


def reseal_complainant(session: Session, keys: KeyRing, clue: Clue, *, purposes: Collection[str] = (SEAL, INDEX),
                       now: datetime) -> bool:
    """The clue's complainant moved to the newest data keys of `purposes` (`fieldcase keys reseal`): sealed anew if
    an older key sealed it, its phone's index recomputed; whether the row changed. Nothing is assigned until all is
    computed, so a value that does not open (SealBroken) leaves the row as it was. Not news for phones (they never
    see the complainant): no feed change, `updated_at` kept."""
    if clue.complainant_sealed is None:
        return False
    if SEAL in purposes:
        plaintext, sealed = keys.reseal(session, COMPLAINANT, clue.id, clue.complainant_sealed, now=now)
    else:
        plaintext, sealed = keys.open(session, COMPLAINANT, clue.id, clue.complainant_sealed), clue.complainant_sealed
    index = clue.complainant_phone_index
    if INDEX in purposes:
        index = keys.index(session, COMPLAINANT_PHONE, complainant_phone(json.loads(plaintext)), now=now)
    if (sealed, index) == (clue.complainant_sealed, clue.complainant_phone_index):
        return False
    clue.complainant_sealed, clue.complainant_phone_index = sealed, index
    return True


def sealed_clues(session: Session, *, after: str | None, limit: int) -> list[Clue]:
    """The next `limit` clues with a sealed complainant by id, after `after`, locked: one batch of a reseal."""
    stmt = select(Clue).where(Clue.complainant_sealed.is_not(None))
    if after is not None:
        stmt = stmt.where(Clue.id > after)
    return list(session.scalars(stmt.order_by(Clue.id).limit(limit).with_for_update()))


def lead_department(session: Session) -> str:
    return session.scalars(select(Department.code).where(Department.lead.is_(True)).order_by(Department.sort)).first() \
        or "education"


def responsible_departments(session: Session, category: str) -> list[str]:
    """The catalogue's departments for a category, the leading one first."""
    return list(session.scalars(select(CategoryDepartment.department_code)
                                .where(CategoryDepartment.category_code == category)
                                .order_by(CategoryDepartment.primary.desc(), CategoryDepartment.sort)))


def _route(session: Session, category: str | None) -> str:
    departments = responsible_departments(session, category) if category else []
    return departments[0] if departments else lead_department(session)


def _original(session: Session, clue: Clue) -> Clue | None:
    """The earliest open clue on the same institution and matter (a clue without a category matches any)."""
    stmt = select(Clue).where(Clue.institution_id == clue.institution_id, Clue.id != clue.id,
                              Clue.status.in_(OPEN_CLUE_STATUSES))
    if clue.category:
        stmt = stmt.where(or_(Clue.category == clue.category, Clue.category.is_(None)))
    return session.scalars(stmt.order_by(Clue.reported_at, Clue.id).limit(1)).first()


def file_clue(session: Session, clue: Clue, *, now: datetime) -> Clue:
    """Route a new clue, link it to the clue it duplicates, give it a tracking code; the caller adds it.

    Shared by the desk and by phones' `clue.report`, so both obey one rule.
    """
    session.flush()  # clues filed earlier in this transaction (a push) must be found
    clue.tracking_code = new_tracking_code()
    clue.updated_at = now
    original = _original(session, clue)
    if original is None:
        clue.status = "new"
        clue.department_code = _route(session, clue.category)
    else:
        clue.status, clue.duplicate_of = "duplicate", original.id
        clue.category = clue.category or original.category
        clue.department_code = original.department_code
    feed.emit(session, "clue", clue)
    return clue


def intake(session: Session, actor: Officer, *, source: str, institution: dict[str, Any], description: str,
           category: str | None = None, attachments: list[dict[str, Any]] | None = None,
           complainant: dict[str, Any] | None = None, reported_at: datetime | None = None, keys: KeyRing,
           now: datetime) -> Clue:
    """A clue taken at the desk; hotline staff are officers, so any officer or admin may take one."""
    if not actor.has_role("officer", "admin"):
        raise Forbidden("only officers and admins take clues")
    if "region" in institution and not may_see_region(actor, institution["region"]):
        raise Invalid(f"region {institution['region']} is outside your jurisdiction",
                      errors={"institution": ["region outside your jurisdiction"]})
    if category is not None and session.get(ViolationCategory, category) is None:
        raise Invalid(f"no violation category {category!r}", errors={"category": ["not in the catalogue"]})
    for item in attachments or []:
        evidence_id = item.get("evidence_id")
        if evidence_id is not None:
            found = session.get(Evidence, evidence_id)
            if found is None or not (may_see_region(actor, found.region_code) or found.officer_id == actor.id):
                raise Invalid(f"no evidence {evidence_id}", errors={"attachments": [f"no evidence {evidence_id}"]})
    try:
        inst = resolve_institution(session, actor, institution)
    except ContentError as exc:
        raise Invalid(exc.detail, errors={"institution": [exc.code]}) from None
    clue = Clue(id=str(uuid.uuid4()), source=source, institution_id=inst.id,
                region_code=inst.region_code, description=description, reported_by=actor.id,
                reported_at=reported_at or now, category=category, attachments=attachments or [])
    seal_complainant(session, keys, clue, complainant, now=now)
    file_clue(session, clue, now=now)
    session.add(clue)
    session.flush()
    return clue


# -- who may act on a clue

def city_handled(session: Session, clue: Clue) -> bool:
    """True once the city level accepted the clue: then only city-level staff act on it."""
    return bool(session.scalar(select(exists().where(
        Transfer.subject_kind == "clue", Transfer.subject_id == clue.id, Transfer.to_kind == "city",
        Transfer.status == "accepted"))))


def may_handle(session: Session, actor: Officer, clue: Clue) -> bool:
    """Admins, and officers of the department the clue is routed to (at the city, once the city took it)."""
    if city_handled(session, clue) and not is_city_level(actor.region_code):
        return False
    if actor.has_role("admin"):
        return True
    return actor.has_role("officer") and actor.department_code == clue.department_code


def pending_transfer(session: Session, kind: str, subject_id: str) -> Transfer | None:
    return session.scalars(select(Transfer).where(Transfer.subject_kind == kind, Transfer.subject_id == subject_id,
                                                  Transfer.status == "pending")).first()


def handling(session: Session, actor: Officer, clue_id: str, *, lock: bool = True) -> Clue:
    """The clue, locked, if the actor may act on it and it still waits for an answer."""
    clue = get_scoped(session, Clue, clue_id, actor, what="clue")
    if lock:
        session.refresh(clue, with_for_update=True)
    if not may_handle(session, actor, clue):
        raise Forbidden("only admins and officers of the department the clue is routed to act on it")
    if clue.status == "duplicate":
        raise Conflict(f"this clue is handled with the clue it duplicates, {clue.duplicate_of}; "
                       "triage it to handle it on its own")
    if clue.status not in OPEN_CLUE_STATUSES:
        raise Conflict(f"this clue is already {clue.status}")
    pending = pending_transfer(session, "clue", clue.id)
    if pending is not None:
        raise Conflict(f"transfer {pending.id} of this clue waits for an answer")
    return clue


def family(session: Session, clue: Clue) -> list[Clue]:
    """The clue and the duplicates that follow it."""
    return [clue, *session.scalars(select(Clue).where(Clue.duplicate_of == clue.id, Clue.status == "duplicate")
                                   .order_by(Clue.reported_at, Clue.id))]


def touch(session: Session, clues: list[Clue], now: datetime, **changes: Any) -> None:
    for c in clues:
        for name, value in changes.items():
            setattr(c, name, value)
        c.updated_at = now
        feed.emit(session, "clue", c)


# -- what happens to a clue

def triage(session: Session, actor: Officer, clue_id: str, *, category: str,
           department: str | None = None, now: datetime) -> Clue:
    """Set the category and route by the catalogue; its duplicates follow. A duplicate triaged goes its own way."""
    clue = get_scoped(session, Clue, clue_id, actor, what="clue")
    session.refresh(clue, with_for_update=True)
    if not may_handle(session, actor, clue):
        raise Forbidden("only admins and officers of the department the clue is routed to triage it")
    if clue.status not in (*OPEN_CLUE_STATUSES, "duplicate"):
        raise Conflict(f"this clue is already {clue.status}")
    pending = pending_transfer(session, "clue", clue.id)
    if pending is not None:
        raise Conflict(f"transfer {pending.id} of this clue waits for an answer")
    if session.get(ViolationCategory, category) is None:
        raise Invalid(f"no violation category {category!r}", errors={"category": ["not in the catalogue"]})
    responsible = responsible_departments(session, category)
    department = department or responsible[0]
    if department not in responsible:
        raise Invalid(f"department {department!r} does not handle {category!r}; the catalogue names "
                      + ", ".join(responsible) + " (send it elsewhere with a transfer)",
                      errors={"department": [f"one of {responsible}"]})
    followers = family(session, clue)[1:] if clue.status != "duplicate" else []
    touch(session, [clue], now, category=category, department_code=department, status="triaged", duplicate_of=None)
    touch(session, followers, now, category=category, department_code=department)
    return clue


def convert(session: Session, actor: Officer, clue_id: str, *, summary: str | None = None, keys: KeyRing,
            now: datetime) -> dict[str, Any]:
    """The clue becomes a case of its department, or joins that department's open case on the institution."""
    clue = handling(session, actor, clue_id)
    institution = session.get(Institution, clue.institution_id)
    assert institution is not None  # noqa: S101 - a foreign key
    case, existed = desk_case(session, institution, clue.department_code or lead_department(session), actor.id,
                              summary or f"线索 {clue.id}", now)
    touch(session, family(session, clue), now, status="case", case_id=case.id, outcome=CASE_OUTCOME)
    return {"clue": describe(session, actor, clue, keys=keys), "case": feed.case_data(case), "existing": existed}


def close(session: Session, actor: Officer, clue_id: str, *, outcome: str, reason: str, now: datetime) -> Clue:
    """Closed with an outcome the complainant sees and a reason that stays inside; its duplicates close with it."""
    clue = handling(session, actor, clue_id)
    if outcome not in CLOSING_OUTCOMES:
        raise Invalid(f"outcome must be one of {', '.join(CLOSING_OUTCOMES)}", errors={"outcome": ["unknown"]})
    touch(session, family(session, clue), now, status="closed", outcome=outcome, closed_reason=reason, closed_at=now)
    return clue


# -- reading

def list_clues(session: Session, viewer: Officer, *, status: str | None = None, department: str | None = None,
               category: str | None = None, source: str | None = None, institution_id: str | None = None,
               page: int = 1, page_size: int = 50) -> tuple[list[dict[str, Any]], int]:
    stmt = scope(select(Clue), Clue.region_code, viewer)
    for column, value in ((Clue.status, status), (Clue.department_code, department), (Clue.category, category),
                          (Clue.source, source), (Clue.institution_id, institution_id)):
        if value:
            stmt = stmt.where(column == value)
    rows, total = paginate(session, stmt, Clue.reported_at.desc(), Clue.id, page=page, page_size=page_size)
    return [feed.clue_data(c) for c in rows], total


def describe(session: Session, viewer: Officer, clue: Clue, *, keys: KeyRing) -> dict[str, Any]:
    """The clue with its duplicates and transfers; the complainant only for those who handle it, and masked
    (backend.casework.masking): seeing them in clear is an unmasking, with a purpose, on record."""
    duplicates = session.scalars(select(Clue.id).where(Clue.duplicate_of == clue.id)
                                 .order_by(Clue.reported_at, Clue.id))
    transfers = session.scalars(select(Transfer).where(Transfer.subject_kind == "clue",
                                                       Transfer.subject_id == clue.id)
                                .order_by(Transfer.requested_at, Transfer.id))
    return {**feed.clue_data(clue), "duplicates": list(duplicates),
            "transfers": [feed.transfer_data(t) for t in transfers],
            "complainant": mask_complainant(complainant_of(session, keys, clue))
            if may_handle(session, viewer, clue) else None}


def get_clue(session: Session, viewer: Officer, clue_id: str, *, keys: KeyRing) -> dict[str, Any]:
    return describe(session, viewer, get_scoped(session, Clue, clue_id, viewer, what="clue"), keys=keys)


def clues_by_complainant_phone(session: Session, viewer: Officer, phone: str, *, keys: KeyRing) -> list[dict[str, Any]]:
    """The clues, within the viewer's jurisdiction and that the viewer may handle, whose complainant gave this phone
    number (written any way: only its digits count), oldest first. An exact match through the blind index: the
    number is never compared, or stored, in clear."""
    wanted = keys.indexes(session, COMPLAINANT_PHONE, phone)  # every generation: rows not yet resealed count
    if not wanted:
        return []
    stmt = scope(select(Clue), Clue.region_code, viewer).where(Clue.complainant_phone_index.in_(wanted))
    found = session.scalars(stmt.order_by(Clue.reported_at, Clue.id))
    return [feed.clue_data(c) for c in found if may_handle(session, viewer, c)]


def public_status(session: Session, code: str) -> dict[str, Any]:
    """What a tracking code tells anyone who holds it: progress, never people or what they wrote.

    A malformed code takes the same query and answer as an unknown one.
    """
    normal = normalise_tracking_code(code) or "-"
    clue = session.scalars(select(Clue).where(Clue.tracking_code == normal)).first()
    if clue is None:
        raise NotFound("no clue with this tracking code")
    department = session.get(Department, clue.department_code) if clue.department_code else None
    case = session.get(Case, clue.case_id) if clue.case_id else None
    return {
        "tracking_code": clue.tracking_code,
        "status": clue.status,
        "reported_at": utc_iso(clue.reported_at),
        "updated_at": utc_iso(clue.updated_at or clue.reported_at),
        "closed_at": utc_iso(clue.closed_at),
        "department": None if department is None else {
            "code": department.code, "name_zh": department.name_zh, "name_en": department.name_en},
        "outcome": clue.outcome,
        "case_status": case.status if case is not None else None,
    }
