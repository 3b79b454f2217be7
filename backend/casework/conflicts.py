"""Listing and resolving case conflicts: nothing is lost, whichever value wins."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from marshmallow import ValidationError
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from backend.casework.case_history import record_case_change
from backend.core.errors import Conflict, Forbidden, Invalid, NotFound
from backend.core.jurisdiction import may_see_region, scope
from backend.core.models import Case, CaseAlias, CaseConflict, CaseDepartment, Device, Inspection, Officer
from backend.core.paging import paginate
from sync import feed
from sync.records import UPDATABLE_CASE_FIELDS


def list_conflicts(session: Session, viewer: Officer, *, case_id: str | None = None, status: str | None = "open",
                   page: int = 1, page_size: int = 50) -> tuple[list[CaseConflict], int]:
    stmt = scope(select(CaseConflict).join(Case, Case.id == CaseConflict.case_id), Case.region_code, viewer)
    if case_id:
        stmt = stmt.where(CaseConflict.case_id == case_id)
    if status:
        stmt = stmt.where(CaseConflict.status == status)
    return paginate(session, stmt, CaseConflict.id, page=page, page_size=page_size)


def works_on(session: Session, officer: Officer, case: Case) -> bool:
    """The case's opener, an officer whose phone opened it offline (merged), one present at an inspection,
    or an officer of a department taking part in it (joint enforcement) whose jurisdiction covers it."""
    if case.created_by == officer.id:
        return True
    if may_see_region(officer, case.region_code) and session.scalar(
            select(func.count()).select_from(CaseDepartment).where(
                CaseDepartment.case_id == case.id, CaseDepartment.department_code == officer.department_code)):
        return True
    if session.scalar(select(func.count()).select_from(CaseAlias).join(Device, Device.id == CaseAlias.device_id)
                      .where(CaseAlias.case_id == case.id, Device.officer_id == officer.id)):
        return True
    crews = session.scalars(select(Inspection.officers).where(Inspection.case_id == case.id))
    return any(officer.id in (crew or []) for crew in crews)


def resolve(session: Session, actor: Officer, conflict_id: int, choice: str, reason: str,
            value: Any = None, *, now: datetime) -> CaseConflict:
    """Choose `server`, `phone` or a `custom` value for the field, with a reason; the others stay on record."""
    conflict = session.get(CaseConflict, conflict_id)
    case = session.get(Case, conflict.case_id) if conflict else None
    if conflict is None or case is None or not (may_see_region(actor, case.region_code) or case.created_by == actor.id):
        raise NotFound(f"no conflict {conflict_id}")
    if not (actor.has_role("reviewer", "legal_reviewer", "admin") or works_on(session, actor, case)):
        raise Forbidden("only the case's officers or a reviewer may resolve its conflicts")
    if conflict.status != "open":
        raise Conflict("this conflict is already resolved")
    if choice == "server":
        chosen = getattr(case, conflict.field)
    elif choice == "phone":
        chosen = conflict.phone_value
    elif choice == "custom":
        field = UPDATABLE_CASE_FIELDS[conflict.field]
        try:
            field.deserialize(value)
        except ValidationError as exc:
            raise Invalid(f"value is not valid for {conflict.field}", errors={"value": [str(exc)]}) from None
        chosen = value
    else:
        raise Invalid("choice must be server, phone or custom")
    if getattr(case, conflict.field) != chosen:
        record_case_change(session, case, {conflict.field: chosen}, actor.id, None, now)
    conflict.status, conflict.resolved_value = "resolved", chosen
    conflict.resolution_reason, conflict.resolved_by, conflict.resolved_at = reason, actor.id, now
    feed.emit(session, "conflict", conflict, region=case.region_code)
    session.flush()
    return conflict


def describe(conflict: CaseConflict) -> dict[str, Any]:
    return {**feed.conflict_data(conflict), "reason": conflict.resolution_reason,
            "resolved_by": conflict.resolved_by, "resolved_at": conflict.resolved_at,
            "created_at": conflict.created_at, "officer_id": conflict.officer_id}
