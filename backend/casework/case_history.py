"""A case's per-field history: every change bumps the version once and keeps each field's old value.

What conflicts are judged by (PROTOCOL §4, case.update): a phone's edit made against an older version of a
field that has since changed at the server is a conflict, not an overwrite. The push, the desk's lifecycle
steps and conflict resolutions all change a case through `record_case_change`.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from backend.core.models import CLOSED_STATUSES, Case, CaseHistory
from media.custody import log as custody
from sync import feed


def witness_opened(session: Session, case: Case, by: str, at: datetime) -> None:
    """A new case's facts, as its first custody leaf."""
    custody.case_facts(session, custody.CASE_OPENED, by, case.id, case.version, custody.case_fact_values(case), at=at)


def value_at(session: Session, case: Case, name: str, version: int) -> Any:
    """The field's value as of `version`: the base a phone's edit is judged against."""
    row = session.scalars(select(CaseHistory).where(
        CaseHistory.case_id == case.id, CaseHistory.field == name, CaseHistory.version <= version)
        .order_by(CaseHistory.version.desc()).limit(1)).first()
    return row.value if row else None


def record_case_change(session: Session, case: Case, changes: dict[str, Any], by: str, op: str | None,
                       at: datetime) -> None:
    """Bump the version once, remember each field's version and old value: what conflicts are judged by. A change
    to a fact a package presents is bound in the custody log as it happens (`media.custody.log.CASE_FACTS`)."""
    if not changes:
        return
    for name in changes:
        if not session.scalar(select(CaseHistory.id).where(CaseHistory.case_id == case.id,
                                                            CaseHistory.field == name).limit(1)):
            session.add(CaseHistory(case_id=case.id, field=name, version=0, value=getattr(case, name),
                                    changed_by=case.created_by, op=None, changed_at=case.created_at))
    case.version += 1
    versions = dict(case.field_versions or {})
    for name, value in changes.items():
        setattr(case, name, value)
        versions[name] = case.version
        session.add(CaseHistory(case_id=case.id, field=name, version=case.version, value=value, changed_by=by,
                                op=op, changed_at=at))
    case.field_versions = versions
    case.updated_at = at
    custody.case_facts(session, custody.CASE_CHANGED, by, case.id, case.version,
                       custody.case_fact_values(case, tuple(changes)), at=at)
    if case.status in CLOSED_STATUSES:
        case.open_key = None
    feed.emit(session, "case", case)
