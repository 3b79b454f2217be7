"""One public (一公开): the results of drawn inspections that have ended, for anyone to read.

Kept apart because it answers the public, not an officer: no viewer and no
jurisdiction, and only `PUBLIC_FIELDS` (the institution and what was found,
never who inspected).
"""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from backend.core.models import Campaign, Finding, Inspection, Institution, Task
from backend.core.reference import is_city_level
from backend.core.times import LOCAL_TZ

PUBLIC_FIELDS = ("institution_name", "credit_code", "region", "date", "outcome", "categories", "campaign")


def _local_bounds(day: date) -> datetime:
    return datetime.combine(day, time.min, LOCAL_TZ).astimezone(UTC)


def public_inspections(session: Session, *, region: str | None = None, date_from: date | None = None,
                       date_to: date | None = None, page: int = 1, page_size: int = 50) -> tuple[list[dict], int]:
    """Results of drawn inspections that have ended: the institution and what was found, never who inspected."""
    stmt = (select(Task, Inspection, Institution)
            .join(Inspection, Inspection.id == Task.inspection_id)
            .join(Institution, Institution.id == Task.institution_id)
            .where(Task.draw_id.is_not(None), Task.status == "done", Inspection.ended_at.is_not(None)))
    if region and not is_city_level(region):
        stmt = stmt.where(Task.region_code == region)
    if date_from:
        stmt = stmt.where(Inspection.started_at >= _local_bounds(date_from))
    if date_to:
        stmt = stmt.where(Inspection.started_at < _local_bounds(date_to + timedelta(days=1)))
    total = session.scalar(select(func.count()).select_from(stmt.with_only_columns(Task.id).subquery())) or 0
    rows = session.execute(stmt.order_by(Inspection.started_at.desc(), Task.id)
                           .limit(page_size).offset((page - 1) * page_size)).all()
    inspection_ids = [ins.id for _t, ins, _i in rows]
    categories: dict[str, set[str]] = {}
    if inspection_ids:
        for iid, category in session.execute(select(Finding.inspection_id, Finding.category)
                                             .where(Finding.inspection_id.in_(inspection_ids))):
            categories.setdefault(iid, set()).add(category)
    campaign_ids = sorted({t.campaign_id for t, _ins, _i in rows if t.campaign_id})
    campaigns = {c.id: c.name for c in session.scalars(select(Campaign).where(Campaign.id.in_(campaign_ids)))} \
        if campaign_ids else {}
    items = [{"institution_name": inst.name, "credit_code": inst.credit_code, "region": inst.region_code,
              "date": ins.started_at.astimezone(LOCAL_TZ).date().isoformat(), "outcome": ins.outcome,
              "categories": sorted(categories.get(ins.id, ())), "campaign": campaigns.get(t.campaign_id)}
             for t, ins, inst in rows]
    return items, total
