"""The audit's verdicts, kept: what `fieldcase verify --record` and the `system_audit` job store and the console
shows. A run keeps the first problems only (`STORED_PROBLEMS`); their number is kept whole."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from backend.casework.system_audit.report import AuditReport
from backend.core.errors import Forbidden
from backend.core.jurisdiction import regions_of
from backend.core.models import AuditRun, Officer

STORED_PROBLEMS = 100
TRIGGERS = ("command", "job")
VIEWER_ROLES = ("admin", "custodian")


def record_run(session: Session, report: AuditReport, *, trigger: str) -> AuditRun:
    assert trigger in TRIGGERS
    run = AuditRun(started_at=report.started_at, finished_at=report.finished_at or report.started_at, ok=report.ok,
                   trigger=trigger, sample=report.sample, counts=dict(report.counts),
                   problem_counts=report.problem_counts(), problem_total=len(report.problems),
                   problems=[p.as_dict() for p in report.problems[:STORED_PROBLEMS]])
    session.add(run)
    session.flush()
    return run


def latest_run(session: Session) -> AuditRun | None:
    return session.scalars(select(AuditRun).order_by(AuditRun.started_at.desc(), AuditRun.id.desc()).limit(1)).first()


def verdicts(session: Session, viewer: Officer, *, limit: int = 10) -> dict[str, Any]:
    """The newest runs, for admins and custodians. Problems name objects of every district by id, so their list is
    for viewers whose jurisdiction is the whole city; the others see the verdict and the counts."""
    if not viewer.has_role(*VIEWER_ROLES):
        raise Forbidden("the system audit's verdict is for admins and custodians")
    runs = list(session.scalars(select(AuditRun).order_by(AuditRun.started_at.desc(), AuditRun.id.desc())
                                .limit(limit)))
    return {"latest": runs[0] if runs else None, "earlier": runs[1:], "details": regions_of(viewer) is None}
