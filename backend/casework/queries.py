"""Read side of the projections for the API: cases with their inspections, inspections with flags."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from backend.casework.apply import LONG_INSPECTION
from backend.casework.needs import FLAG, corrections_of, outstanding
from backend.casework.overrides import overrides
from backend.core.jurisdiction import get_scoped, scope
from backend.core.models import (
    Case,
    CaseAlias,
    CaseConflict,
    Evidence,
    Finding,
    Inspection,
    Institution,
    Officer,
)
from backend.core.paging import paginate
from sync.feed import case_data, evidence_data, institution_data


def list_cases(session: Session, viewer: Officer, *, status: str | None = None, region: str | None = None,
               department: str | None = None, institution_id: str | None = None, page: int = 1,
               page_size: int = 50) -> tuple[list[dict[str, Any]], int]:
    stmt = scope(select(Case), Case.region_code, viewer)
    for column, value in ((Case.status, status), (Case.region_code, region), (Case.department_code, department),
                          (Case.institution_id, institution_id)):
        if value:
            stmt = stmt.where(column == value)
    rows, total = paginate(session, stmt, Case.created_at.desc(), Case.id, page=page, page_size=page_size)
    return [case_data(c) for c in rows], total


def inspection_flags(inspection: Inspection, *, now: datetime) -> list[str]:
    """Stored flags plus those that depend on the time: started but never ended after 12 hours (at `now`)."""
    flags = list(inspection.flags or [])
    if inspection.ended_at is None and now - inspection.started_at > LONG_INSPECTION:
        flags.append("not_ended_after_12h")
    return flags


def inspection_summary(inspection: Inspection, *, now: datetime) -> dict[str, Any]:
    return {"id": inspection.id, "case_id": inspection.case_id, "started_at": inspection.started_at,
            "ended_at": inspection.ended_at, "officers": inspection.officers, "location": inspection.location,
            "task_id": inspection.task_id, "outcome": inspection.outcome, "notes": inspection.notes,
            "flags": inspection_flags(inspection, now=now), "started_by": inspection.started_by}


def _finding(f: Finding, overridden: set[str], needs: list[dict[str, Any]]) -> dict[str, Any]:
    mine = [n for n in needs if n["subject"] == "finding" and n["subject_id"] == f.id]
    return {"id": f.id, "inspection_id": f.inspection_id, "category": f.category, "description": f.description,
            "evidence": f.evidence, "recorded_by": f.recorded_by, "recorded_at": f.recorded_at,
            "flags": (["override"] if f.op in overridden else []) + ([FLAG] if mine else []),
            "needs_correction": mine}


def get_case(session: Session, viewer: Officer, case_id: str, *, now: datetime) -> dict[str, Any]:
    case = get_scoped(session, Case, case_id, viewer, what="case")
    inspections = list(session.scalars(select(Inspection).where(Inspection.case_id == case.id)
                                       .order_by(Inspection.started_at)))
    ids = [i.id for i in inspections]
    findings = list(session.scalars(select(Finding).where(Finding.inspection_id.in_(ids))
                                    .order_by(Finding.recorded_at))) if ids else []
    evidence = list(session.scalars(select(Evidence).where(Evidence.case_id == case.id)
                                    .order_by(Evidence.captured_at)))
    signed_over = overrides(session, case_id=case.id, inspection_ids=ids, ops=[f.op for f in findings])
    overridden = {o["op"] for o in signed_over}
    needs = outstanding(session, case.id, [f.op for f in findings])
    return {
        **case_data(case),
        "flags": [FLAG] if any(n["subject"] == "case" for n in needs) else [],
        "needs_correction": needs,
        "corrections": corrections_of(session, case.id),
        "institution": institution_data(session.get(Institution, case.institution_id)),
        "aliases": [{"client_case_id": a.client_case_id, "merged": a.merged, "device_id": a.device_id}
                    for a in session.scalars(select(CaseAlias).where(CaseAlias.case_id == case.id)
                                             .order_by(CaseAlias.created_at))],
        "inspections": [{**inspection_summary(i, now=now), "findings": [_finding(f, overridden, needs)
                                                                          for f in findings
                                                                          if f.inspection_id == i.id]}
                        for i in inspections],
        "evidence": [evidence_data(e) for e in evidence],
        "open_conflicts": session.scalar(select(func.count()).where(
            CaseConflict.case_id == case.id, CaseConflict.status == "open")) or 0,
        "overrides": signed_over,
    }


def get_inspection(session: Session, viewer: Officer, inspection_id: str, *, now: datetime) -> dict[str, Any]:
    inspection = get_scoped(session, Inspection, inspection_id, viewer, what="inspection")
    findings = list(session.scalars(select(Finding).where(Finding.inspection_id == inspection.id)
                                    .order_by(Finding.recorded_at)))
    signed_over = overrides(session, inspection_ids=[inspection.id], ops=[f.op for f in findings])
    overridden = {o["op"] for o in signed_over}
    needs = outstanding(session, inspection.case_id, [f.op for f in findings])
    return {
        **inspection_summary(inspection, now=now),
        "findings": [_finding(f, overridden, needs) for f in findings],
        "overrides": signed_over,
        "evidence": [evidence_data(e) for e in session.scalars(
            select(Evidence).where(Evidence.inspection_id == inspection.id).order_by(Evidence.captured_at))],
    }
