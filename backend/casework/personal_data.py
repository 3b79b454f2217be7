"""A complainant's personal data as officers reach it: masked by default, in clear only through an unmasking that
states its purpose and is recorded, and the record of those unmaskings (COMPLIANCE §3, PIPL).

§3 asks three things, each kept here:

- *mask on screens by default*: every answer that shows a complainant shows them masked (the rule is
  backend.casework.masking's), the look-up by phone number (`lookup_by_phone`) included;
- *unmasking is a logged action with a stated purpose*: `unmask_complainant` refuses without a purpose, and
  writes its `ComplainantUnmasking` row in the same transaction as the answer is made, so the edge commits the
  record before any clear value leaves;
- *log who viewed which personal data*: that row names the officer, the clue, the fields shown in clear, the
  purpose and the time; `list_unmaskings` is the log, for reviewers and admins, within their jurisdiction.

Who may unmask is who sees the masked complainant: those who handle the clue (`clues.may_handle`); a clue outside
the viewer's jurisdiction is not found, exactly like an unknown one. Nothing here writes a log line: clear values
travel in the answer alone.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from backend.casework.audit import REVIEWER_ROLES
from backend.casework.audit.scan import officers_by_id
from backend.casework.clues import clues_by_complainant_phone, complainant_of, may_handle
from backend.casework.masking import PERSONAL_FIELDS, mask_complainant, reveal
from backend.core.crypto.data_keys import KeyRing
from backend.core.crypto.sealed_fields import phone_digits
from backend.core.errors import Forbidden, Invalid, NotFound
from backend.core.jurisdiction import get_scoped, scope
from backend.core.models import Clue, ComplainantUnmasking, Officer
from backend.core.models.personal_data import MAX_PURPOSE
from backend.core.paging import paginate

MAX_PHONE = 40  # the longest phone number a complainant gives, and so the longest worth looking up


def lookup_by_phone(session: Session, viewer: Officer, phone: str, *, keys: KeyRing) -> list[dict[str, Any]]:
    """The clues the viewer handles whose complainant gave this phone number (`clues_by_complainant_phone`), each
    with its complainant masked. A number without a digit cannot match anything: it is refused, not answered empty."""
    if not phone_digits(phone or ""):
        raise Invalid("a phone number needs digits (spaces, dashes and brackets are ignored)",
                      errors={"complainant_phone": ["no digits"]})
    found = clues_by_complainant_phone(session, viewer, phone, keys=keys)
    # The look-up loaded these clues in this session: `get` finds them there, without a query.
    return [{**c, "complainant": mask_complainant(complainant_of(session, keys, session.get(Clue, c["id"])))}
            for c in found]


def _purpose(text: str | None) -> str:
    stated = (text or "").strip()
    if not stated:
        raise Invalid("an unmasking needs its purpose", errors={"purpose": ["must not be empty"]})
    if len(stated) > MAX_PURPOSE:
        raise Invalid("purpose too long", errors={"purpose": [f"at most {MAX_PURPOSE} characters"]})
    if "\x00" in stated:
        raise Invalid("a purpose cannot hold NUL characters", errors={"purpose": ["contains NUL"]})
    return stated


def _fields(fields: Iterable[str] | None) -> list[str]:
    if fields is None:
        return list(PERSONAL_FIELDS)
    asked = set(fields)
    unknown = sorted(asked - set(PERSONAL_FIELDS))
    if unknown or not asked:
        raise Invalid("fields must be some of " + ", ".join(PERSONAL_FIELDS),
                      errors={"fields": [f"unknown: {', '.join(unknown)}" if unknown else "must not be empty"]})
    return [f for f in PERSONAL_FIELDS if f in asked]


def unmask_complainant(session: Session, viewer: Officer, clue_id: str, *, purpose: str,
                       fields: Iterable[str] | None = None, keys: KeyRing, now: datetime) -> dict[str, Any]:
    """The clue's complainant with `fields` (default: all they gave) in clear, and the record that says so.

    Only the fields the complainant gave are shown and recorded; the record is flushed, and the caller commits it
    before answering.
    """
    clue = get_scoped(session, Clue, clue_id, viewer, what="clue")
    if not may_handle(session, viewer, clue):
        raise Forbidden("only admins and officers of the department the clue is routed to see its complainant")
    stated, wanted = _purpose(purpose), _fields(fields)
    complainant = complainant_of(session, keys, clue)
    if complainant is None:
        raise NotFound(f"clue {clue_id!r} has no complainant")
    shown = [f for f in wanted if complainant.get(f) not in (None, "")]
    if not shown:
        raise NotFound(f"the complainant of clue {clue_id!r} gave none of " + ", ".join(wanted))
    record = ComplainantUnmasking(clue_id=clue.id, region_code=clue.region_code, fields=shown, purpose=stated,
                                  viewed_by=viewer.id, viewed_at=now)
    session.add(record)
    session.flush()
    return {**record_data(record, {viewer.id: viewer.name}), "complainant": reveal(complainant, shown)}


def record_data(record: ComplainantUnmasking, names: dict[str, str]) -> dict[str, Any]:
    return {"id": str(record.id), "clue_id": record.clue_id, "region": record.region_code,
            "fields": list(record.fields), "purpose": record.purpose, "by": record.viewed_by,
            "by_name": names.get(record.viewed_by), "at": record.viewed_at}


def list_unmaskings(session: Session, viewer: Officer, *, clue_id: str | None = None, by: str | None = None,
                    since: datetime | None = None, until: datetime | None = None, page: int = 1,
                    page_size: int = 50) -> tuple[list[dict[str, Any]], int]:
    """The log of unmaskings, newest first, within the viewer's jurisdiction (by the clue's region): for reviewers,
    legal reviewers and admins, who audit who viewed which personal data."""
    if not viewer.has_role(*REVIEWER_ROLES):
        raise Forbidden("the log of unmaskings is for the roles " + ", ".join(REVIEWER_ROLES))
    stmt = scope(select(ComplainantUnmasking), ComplainantUnmasking.region_code, viewer)
    for column, value in ((ComplainantUnmasking.clue_id, clue_id), (ComplainantUnmasking.viewed_by, by)):
        if value:
            stmt = stmt.where(column == value)
    if since is not None:
        stmt = stmt.where(ComplainantUnmasking.viewed_at >= since)
    if until is not None:
        stmt = stmt.where(ComplainantUnmasking.viewed_at < until)
    rows, total = paginate(session, stmt, ComplainantUnmasking.id.desc(), page=page, page_size=page_size)
    names = {oid: o.name for oid, o in officers_by_id(session, (r.viewed_by for r in rows)).items()}
    return [record_data(r, names) for r in rows], total
