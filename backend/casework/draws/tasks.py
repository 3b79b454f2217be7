"""Tasks: planned inspections of an institution by a team, drawn or planned by hand, until one carries them out.

A task is announced only to its team (`emit_task`), read by its team and by
the desk roles of its region, needs at least `MIN_TEAM` officers certified on
the planned day, and is done when an `inspection.start` names it
(`link_inspection`, called from the record applier).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import date, datetime
from typing import Any

from sqlalchemy import String, cast, select
from sqlalchemy.orm import Session

from backend.casework.draws.campaigns import campaign_for
from backend.core.errors import Conflict, Forbidden, Invalid, NotFound
from backend.core.jurisdiction import get_scoped, may_see_region, scope
from backend.core.models import Institution, Officer, Task, new_id
from backend.core.paging import paginate
from sync import feed
from sync.certificates import certified_on

DESK_ROLES = ("admin", "reviewer", "legal_reviewer")
MIN_TEAM = 2


def emit_task(session: Session, task: Task) -> None:
    """One change per assigned officer, with no region: a drawn inspection is not announced to anyone else."""
    for officer_id in task.officers:
        feed.emit(session, "task", task, officer=officer_id)


def _may_see_task(viewer: Officer, task: Task) -> bool:
    return viewer.id in (task.officers or []) or (viewer.has_role(*DESK_ROLES)
                                                   and may_see_region(viewer, task.region_code))


def get_task(session: Session, viewer: Officer, task_id: str) -> dict[str, Any]:
    task = session.get(Task, task_id)
    if task is None or not _may_see_task(viewer, task):
        raise NotFound(f"no task {task_id!r}")
    return feed.task_data(task)


def _assigned_to(officer_id: str):
    escaped = officer_id.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return cast(Task.officers, String).like(f'%"{escaped}"%', escape="\\")


def list_tasks(session: Session, viewer: Officer, *, mine: bool | None = None, status: str | None = None,
               draw_id: str | None = None, campaign_id: str | None = None, institution_id: str | None = None,
               date_from: date | None = None, date_to: date | None = None, page: int = 1,
               page_size: int = 50) -> tuple[list[dict[str, Any]], int]:
    """The caller's own tasks; desk roles may list every task within their jurisdiction (mine=false)."""
    if mine is None:
        mine = not viewer.has_role(*DESK_ROLES)
    if not mine and not viewer.has_role(*DESK_ROLES):
        raise Forbidden("only admins and reviewers list other officers' tasks")
    stmt = select(Task).where(_assigned_to(viewer.id)) if mine else scope(select(Task), Task.region_code, viewer)
    for column, value in ((Task.status, status), (Task.draw_id, draw_id), (Task.campaign_id, campaign_id),
                          (Task.institution_id, institution_id)):
        if value:
            stmt = stmt.where(column == value)
    if date_from:
        stmt = stmt.where(Task.planned_date >= date_from)
    if date_to:
        stmt = stmt.where(Task.planned_date <= date_to)
    rows, total = paginate(session, stmt, Task.planned_date, Task.id, page=page, page_size=page_size)
    return [feed.task_data(t) for t in rows], total


def _certified_team(session: Session, actor: Officer, officer_ids: Sequence[str], day: date) -> list[Officer]:
    team = [session.get(Officer, oid) for oid in officer_ids]
    unknown = [oid for oid, o in zip(officer_ids, team, strict=True)
               if o is None or not o.active or not may_see_region(actor, o.region_code)]
    if unknown:
        raise Invalid("unknown or inactive officers: " + ", ".join(unknown),
                      errors={"officers": [f"no active officer {oid!r}" for oid in unknown]})
    certified = [o for o in team if o is not None and certified_on(o, day)]
    if len(certified) < MIN_TEAM:
        raise Invalid(f"a task needs at least {MIN_TEAM} officers whose certificates are valid on {day}",
                      errors={"officers": [f"{len(certified)} certified on {day}"]})
    return [o for o in team if o is not None]


def create_task(session: Session, actor: Officer, data: Mapping[str, Any], *, now: datetime) -> dict[str, Any]:
    """A planned inspection outside a draw (a campaign's targeted check); the same team rule applies."""
    inst = get_scoped(session, Institution, data["institution_id"], actor, what="institution")
    planned: date = data["planned_date"]
    officer_ids = list(dict.fromkeys(data["officers"]))
    team = _certified_team(session, actor, officer_ids, planned)
    campaign = campaign_for(session, actor, data.get("campaign_id"), inst.region_code, planned)
    task = Task(id=new_id("tsk"), draw_id=None, campaign_id=campaign.id if campaign else None,
                institution_id=inst.id, region_code=inst.region_code,
                departments=sorted({o.department_code for o in team}), officers=officer_ids, planned_date=planned,
                status="assigned", created_at=now)
    session.add(task)
    session.flush()
    emit_task(session, task)
    return feed.task_data(task)


def cancel_task(session: Session, actor: Officer, task_id: str) -> dict[str, Any]:
    task = session.get(Task, task_id, with_for_update=True)
    if task is None or not may_see_region(actor, task.region_code):
        raise NotFound(f"no task {task_id!r}")
    if task.status != "assigned":
        raise Conflict(f"task {task.id} is {task.status}; only an assigned task can be cancelled")
    task.status = "cancelled"
    session.flush()
    emit_task(session, task)
    return feed.task_data(task)


def link_inspection(session: Session, task_id: str, inspection_id: str, institution_id: str,
                    at: datetime) -> bool | None:
    """`inspection.start` naming a task: link it when it is this institution's assigned task.

    None when no such task exists (the id stays a plain string on the
    inspection), False when it exists but cannot be this inspection's.
    """
    task = session.get(Task, task_id, with_for_update=True)
    if task is None:
        return None
    if task.status != "assigned" or task.institution_id != institution_id:
        return False
    task.inspection_id, task.status, task.done_at = inspection_id, "done", at
    emit_task(session, task)
    return True
