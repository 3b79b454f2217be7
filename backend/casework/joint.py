"""Joint, cross-department and cross-level enforcement: participating departments, and transfers with answers.

**Participating departments.** A case has one lead department (its own) and
any number of participating ones; officers of those, within jurisdiction,
work on the case as its own officers do (backend.casework.conflicts.works_on).

**Transfers** (移送) hand a clue or case to another department, up to the
city level, or to the judiciary, and wait for the answer. What was handed
over is kept on the transfer as sent. The rule for what an answer does:

- accepted: the receiver has the matter. A case closes as `transferred`
  through the lifecycle (if it was not closed when sent) and the receiver
  gets a *successor* case by the phones' merge rule (its open case on the
  institution, else a new one opened by the accepting officer); a clue is
  routed to the receiver. The judiciary is not a fieldcase user: the
  sending department records its answer, and a case sent to it closed when
  it was sent.
- refused: the sender keeps the matter. An open case simply goes on; a case
  that already closed when it was sent (to the judiciary, or at once through
  the lifecycle step) comes back as a successor case of the sending
  department, opened by the officer who sent it.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import func, or_, select
from sqlalchemy.orm import Session

from backend.casework import clues
from backend.casework.conflicts import works_on
from backend.casework.lifecycle import check_step, move
from backend.casework.merge import desk_case
from backend.core.errors import Conflict, Forbidden, Invalid, NotFound
from backend.core.jurisdiction import get_scoped, may_see_region, scope
from backend.core.models import (
    CLOSED_STATUSES,
    Case,
    CaseDepartment,
    CaseTransition,
    Clue,
    CustodyEvent,
    Department,
    Evidence,
    Finding,
    Inspection,
    Institution,
    Officer,
    Transfer,
    new_id,
)
from backend.core.paging import paginate
from backend.core.reference import is_city_level
from backend.core.times import utc_iso
from sync import feed

# -- participating departments

def _may_lead(session: Session, actor: Officer, case: Case) -> bool:
    """Who shapes the team: an admin, or an officer of the lead department working on the case."""
    return actor.has_role("admin") or (actor.department_code == case.department_code
                                       and works_on(session, actor, case))


def _participant_rows(session: Session, case_id: str) -> list[CaseDepartment]:
    return list(session.scalars(select(CaseDepartment).where(CaseDepartment.case_id == case_id)
                                .order_by(CaseDepartment.added_at, CaseDepartment.department_code)))


def participants(session: Session, viewer: Officer, case_id: str) -> dict[str, Any]:
    case = get_scoped(session, Case, case_id, viewer, what="case")
    return {"case_id": case.id, "lead": case.department_code,
            "participants": [feed.participant_data(d) for d in _participant_rows(session, case.id)]}


def add_participant(session: Session, actor: Officer, case_id: str, *, department: str,
                    reason: str, now: datetime) -> dict[str, Any]:
    case = get_scoped(session, Case, case_id, actor, what="case")
    session.refresh(case, with_for_update=True)
    if not _may_lead(session, actor, case):
        raise Forbidden("only an admin or the lead department's officers on the case add departments to it")
    if case.status in CLOSED_STATUSES:
        raise Conflict(f"the case is {case.status}: no department joins it any more")
    if session.get(Department, department) is None:
        raise Invalid(f"no department {department!r}", errors={"department": ["unknown"]})
    if department == case.department_code:
        raise Invalid(f"{department} leads this case", errors={"department": ["the lead department"]})
    if session.get(CaseDepartment, (case.id, department)) is not None:
        raise Conflict(f"{department} already takes part in this case")
    row = CaseDepartment(case_id=case.id, department_code=department, added_by=actor.id, added_at=now,
                         reason=reason)
    session.add(row)
    session.flush()
    feed.emit(session, "case_department", row, region=case.region_code)
    return feed.participant_data(row)


def remove_participant(session: Session, actor: Officer, case_id: str, department: str) -> None:
    case = get_scoped(session, Case, case_id, actor, what="case")
    session.refresh(case, with_for_update=True)
    if not _may_lead(session, actor, case):
        raise Forbidden("only an admin or the lead department's officers on the case remove departments from it")
    row = session.get(CaseDepartment, (case.id, department))
    if row is None:
        raise NotFound(f"{department} does not take part in this case")
    feed.emit(session, "case_department", row, op="delete", region=case.region_code)
    session.delete(row)
    session.flush()


# -- what is handed over

def _check_package(session: Session, evidence_ids: list[str], package_id: str) -> None:
    """A package id is recorded only if the custody log shows that package exported for this case."""
    needle = f'"package":"{package_id}"'
    exported = evidence_ids and session.scalar(
        select(func.count()).select_from(CustodyEvent).where(
            CustodyEvent.action == "exported", CustodyEvent.evidence_id.in_(evidence_ids),
            CustodyEvent.leaf.contains(needle)))
    if not exported:
        raise Invalid(f"no evidence package {package_id} was exported for this case",
                      errors={"package_id": ["not a package of this case"]})


def case_handover(session: Session, case: Case, package_id: str | None = None, *, now: datetime) -> dict[str, Any]:
    """The case file as sent (`now`): the case, its inspections, findings and evidence list with SHA-256s."""
    institution = session.get(Institution, case.institution_id)
    inspections = list(session.scalars(select(Inspection).where(Inspection.case_id == case.id)
                                       .order_by(Inspection.started_at, Inspection.id)))
    ids = [i.id for i in inspections]
    findings = list(session.scalars(select(Finding).where(Finding.inspection_id.in_(ids))
                                    .order_by(Finding.recorded_at, Finding.id))) if ids else []
    where = Evidence.case_id == case.id
    if ids:
        where = or_(where, Evidence.inspection_id.in_(ids))
    evidence = list(session.scalars(select(Evidence).where(where).order_by(Evidence.captured_at, Evidence.id)))
    if package_id is not None:
        _check_package(session, [e.id for e in evidence], package_id)
    return {
        "case": {**feed.case_data(case), "institution": None if institution is None else {
            "id": institution.id, "name": institution.name, "credit_code": institution.credit_code,
            "address": institution.address, "region": institution.region_code}},
        "inspections": [{"id": i.id, "started_at": utc_iso(i.started_at), "ended_at": utc_iso(i.ended_at),
                         "officers": list(i.officers or []), "outcome": i.outcome, "flags": list(i.flags or [])}
                        for i in inspections],
        "findings": [{"id": f.id, "inspection_id": f.inspection_id, "category": f.category,
                      "description": f.description, "evidence": list(f.evidence or [])} for f in findings],
        "evidence": [{"id": e.id, "kind": e.kind, "media_type": e.media_type, "sha256": e.sha256, "size": e.size,
                      "captured_at": utc_iso(e.captured_at), "status": e.status, "inspection_id": e.inspection_id,
                      "officer_id": e.officer_id} for e in evidence],
        "clues": list(session.scalars(select(Clue.id).where(Clue.case_id == case.id).order_by(Clue.id))),
        "package_id": package_id,
        "taken_at": utc_iso(now),
    }


def clue_handover(session: Session, clue: Clue, *, now: datetime) -> dict[str, Any]:
    """The clue as sent; the complainant's personal data is not part of it (the receiver asks the sender)."""
    institution = session.get(Institution, clue.institution_id)
    return {"clue": {"id": clue.id, "source": clue.source, "category": clue.category,
                     "description": clue.description, "attachments": list(clue.attachments or []),
                     "reported_at": utc_iso(clue.reported_at),
                     "institution": None if institution is None else {
                         "id": institution.id, "name": institution.name, "credit_code": institution.credit_code,
                         "address": institution.address, "region": institution.region_code}},
            "taken_at": utc_iso(now)}


# -- asking

def _target(session: Session, from_department: str, to: str, department: str | None) -> str | None:
    """The receiving department: named for a department, the sender's own by default at the city, none for courts."""
    if to == "judiciary":
        if department is not None:
            raise Invalid("a transfer to the judiciary names no department", errors={"department": ["not allowed"]})
        return None
    if to == "city":
        department = department or from_department
    elif department is None:
        raise Invalid("a transfer to a department names it", errors={"department": ["required"]})
    if session.get(Department, department) is None:
        raise Invalid(f"no department {department!r}", errors={"department": ["unknown"]})
    if to == "department" and department == from_department:
        raise Invalid(f"it is already with {department}", errors={"department": ["must differ from the sender"]})
    return department


def _no_pending(session: Session, kind: str, subject_id: str) -> None:
    pending = clues.pending_transfer(session, kind, subject_id)
    if pending is not None:
        raise Conflict(f"transfer {pending.id} of this {kind} waits for an answer; it is answered first")


def _new_transfer(session: Session, actor: Officer, *, kind: str, subject_id: str, region: str, from_department: str,
                  to: str, to_department: str | None, reason: str, sent: dict[str, Any],
                  at: datetime) -> Transfer:
    transfer = Transfer(id=new_id("trf"), subject_kind=kind, subject_id=subject_id, region_code=region,
                        from_department=from_department, to_kind=to, to_department=to_department, reason=reason,
                        status="pending", requested_by=actor.id, requested_at=at, sent=sent)
    session.add(transfer)
    session.flush()
    feed.emit(session, "transfer", transfer)
    return transfer


def request_case_transfer(session: Session, actor: Officer, case_id: str, *, to: str, reason: str,
                          department: str | None = None, package_id: str | None = None,
                          now: datetime) -> dict[str, Any]:
    """Ask for a case to move; it stays open until answered, except to the judiciary, where it closes now."""
    case = get_scoped(session, Case, case_id, actor, what="case")
    session.refresh(case, with_for_update=True)
    check_step(session, actor, case, "transferred")
    _no_pending(session, "case", case.id)
    to_department = _target(session, case.department_code, to, department)
    sent = case_handover(session, case, package_id, now=now)
    transfer = _new_transfer(session, actor, kind="case", subject_id=case.id, region=case.region_code,
                             from_department=case.department_code, to=to, to_department=to_department,
                             reason=reason, sent=sent, at=now)
    if to == "judiciary":
        move(session, actor, case, to="transferred", transfer_to="judiciary", reason=reason, at=now)
    return describe(transfer)


def record_lifecycle_transfer(session: Session, actor: Officer, case: Case, row: CaseTransition) -> Transfer:
    """The lifecycle step `transferred` is a transfer made at once: it is recorded, and waits for its answer."""
    _no_pending(session, "case", case.id)
    target = row.transfer_to or ""
    to = target if target in ("city", "judiciary") else "department"
    to_department = None if to == "judiciary" else (case.department_code if to == "city" else target)
    return _new_transfer(session, actor, kind="case", subject_id=case.id, region=case.region_code,
                         from_department=case.department_code, to=to, to_department=to_department,
                         reason=row.reason, sent=case_handover(session, case, now=row.at), at=row.at)


def request_clue_transfer(session: Session, actor: Officer, clue_id: str, *, to: str, reason: str,
                          department: str | None = None, now: datetime) -> dict[str, Any]:
    """Ask for a clue to move: to another department or the city (answered there), or to the judiciary (at once)."""
    clue = clues.handling(session, actor, clue_id)
    if to == "city" and clues.city_handled(session, clue):
        raise Conflict("the city level already handles this clue")
    from_department = clue.department_code or clues.lead_department(session)
    to_department = _target(session, from_department, to, department)
    transfer = _new_transfer(session, actor, kind="clue", subject_id=clue.id, region=clue.region_code,
                             from_department=from_department, to=to, to_department=to_department, reason=reason,
                             sent=clue_handover(session, clue, now=now), at=now)
    if to == "judiciary":
        clues.touch(session, clues.family(session, clue), now, status="transferred", outcome=clues.JUDICIARY_OUTCOME)
    return describe(transfer)


# -- answering

def _may_answer(actor: Officer, transfer: Transfer) -> bool:
    if not actor.has_role("officer", "admin") or not may_see_region(actor, transfer.region_code):
        return False
    if transfer.to_kind == "judiciary":
        return actor.department_code == transfer.from_department  # the sender records the judiciary's answer
    if transfer.to_kind == "city" and not is_city_level(actor.region_code):
        return False
    return actor.department_code == transfer.to_department


def _waiting(session: Session, actor: Officer, transfer_id: str) -> Transfer:
    transfer = get_scoped(session, Transfer, transfer_id, actor, what="transfer")
    session.refresh(transfer, with_for_update=True)  # one answer per transfer (PostgreSQL)
    if not _may_answer(actor, transfer):
        raise Forbidden({"judiciary": "the sending department records the judiciary's answer",
                         "city": "a transfer to the city is answered by the receiving department at the city level",
                         }.get(transfer.to_kind, "a transfer is answered by the receiving department"))
    if transfer.status != "pending":
        raise Conflict(f"this transfer was already {transfer.status}")
    return transfer


def _successor(session: Session, transfer: Transfer, case: Case, department: str, officer_id: str,
               at: datetime) -> Case:
    """The case that carries the matter on; clues that had become the old case follow it."""
    institution = session.get(Institution, case.institution_id)
    assert institution is not None  # noqa: S101 - a foreign key
    successor, _existed = desk_case(session, institution, department, officer_id, case.summary, at)
    transfer.sent = {**(transfer.sent or {}), "successor_case_id": successor.id}
    for clue in session.scalars(select(Clue).where(Clue.case_id == case.id)):
        clues.touch(session, [clue], at, case_id=successor.id, department_code=department)
    have = {d.department_code for d in _participant_rows(session, successor.id)} | {successor.department_code}
    for row in _participant_rows(session, case.id):  # the joint team goes on with the matter
        if row.department_code not in have:
            carried = CaseDepartment(case_id=successor.id, department_code=row.department_code,
                                     added_by=officer_id, added_at=at, reason=f"carried over from case {case.id}")
            session.add(carried)
            session.flush()
            feed.emit(session, "case_department", carried, region=successor.region_code)
    return successor


def _decide(session: Session, transfer: Transfer, actor: Officer, status: str, reason: str | None,
            at: datetime) -> dict[str, Any]:
    transfer.status, transfer.decided_by, transfer.decided_at, transfer.decision_reason = status, actor.id, at, reason
    feed.emit(session, "transfer", transfer)
    session.flush()
    return describe(transfer)


def accept(session: Session, actor: Officer, transfer_id: str, *, reason: str | None = None,
           now: datetime) -> dict[str, Any]:
    transfer = _waiting(session, actor, transfer_id)
    if transfer.to_kind != "judiciary":
        if transfer.subject_kind == "case":
            case = session.get(Case, transfer.subject_id)
            assert case is not None  # noqa: S101 - cases are never deleted
            session.refresh(case, with_for_update=True)
            if case.status != "transferred":
                move(session, actor, case, to="transferred", role_checked=True,
                     transfer_to="city" if transfer.to_kind == "city" else transfer.to_department,
                     reason=f"transfer {transfer.id} accepted" + (f": {reason}" if reason else ""), at=now)
            _successor(session, transfer, case, transfer.to_department or case.department_code, actor.id, now)
        else:
            clue = session.get(Clue, transfer.subject_id)
            assert clue is not None  # noqa: S101 - clues are never deleted
            clues.touch(session, clues.family(session, clue), now, department_code=transfer.to_department)
    return _decide(session, transfer, actor, "accepted", reason, now)


def refuse(session: Session, actor: Officer, transfer_id: str, *, reason: str, now: datetime) -> dict[str, Any]:
    transfer = _waiting(session, actor, transfer_id)
    if transfer.subject_kind == "case":
        case = session.get(Case, transfer.subject_id)
        assert case is not None  # noqa: S101 - cases are never deleted
        if case.status == "transferred":
            _successor(session, transfer, case, transfer.from_department, transfer.requested_by, now)
    elif transfer.to_kind == "judiciary":
        clue = session.get(Clue, transfer.subject_id)
        assert clue is not None  # noqa: S101 - clues are never deleted
        followers = list(session.scalars(select(Clue).where(Clue.duplicate_of == clue.id,
                                                            Clue.status == "transferred")))
        clues.touch(session, [clue], now, status="triaged" if clue.category else "new", outcome=None)
        clues.touch(session, followers, now, status="duplicate", outcome=None)
    return _decide(session, transfer, actor, "refused", reason, now)


# -- reading

def describe(transfer: Transfer) -> dict[str, Any]:
    return {**feed.transfer_data(transfer), "sent": transfer.sent}


def get_transfer(session: Session, viewer: Officer, transfer_id: str) -> dict[str, Any]:
    return describe(get_scoped(session, Transfer, transfer_id, viewer, what="transfer"))


def list_transfers(session: Session, viewer: Officer, *, status: str | None = None, subject_kind: str | None = None,
                   subject_id: str | None = None, direction: str | None = None, page: int = 1,
                   page_size: int = 50) -> tuple[list[dict[str, Any]], int]:
    """Transfers within jurisdiction; `incoming` are those the viewer's department answers, `outgoing` it sent."""
    stmt = scope(select(Transfer), Transfer.region_code, viewer)
    if direction == "incoming":
        kinds = ("department", "city") if is_city_level(viewer.region_code) else ("department",)
        stmt = stmt.where(Transfer.to_department == viewer.department_code, Transfer.to_kind.in_(kinds))
    elif direction == "outgoing":
        stmt = stmt.where(Transfer.from_department == viewer.department_code)
    for column, value in ((Transfer.status, status), (Transfer.subject_kind, subject_kind),
                          (Transfer.subject_id, subject_id)):
        if value:
            stmt = stmt.where(column == value)
    rows, total = paginate(session, stmt, Transfer.requested_at.desc(), Transfer.id, page=page, page_size=page_size)
    return [feed.transfer_data(t) for t in rows], total
