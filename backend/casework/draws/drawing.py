"""Draws: gathering the pools, running the algorithm on them, storing seed, inputs and result, and assigning tasks.

Everything a draw depends on is gathered here into its `inputs` (institutions
with their weights, officers with their load), so that the result follows
from the seed and those inputs alone (`algorithm.run`), and `verify_draw` can
re-run it on what was stored.
"""

from __future__ import annotations

import secrets
from collections.abc import Mapping, Sequence
from datetime import date, datetime, timedelta
from typing import Any

from sqlalchemy import select, text
from sqlalchemy.orm import Session

from backend.casework import credit
from backend.casework.draws.algorithm import ALGORITHM, run
from backend.casework.draws.campaigns import campaign_for, region_in_jurisdiction
from backend.casework.draws.tasks import DESK_ROLES, MIN_TEAM, emit_task
from backend.core.errors import Conflict, Forbidden, Invalid
from backend.core.jurisdiction import get_scoped, scope
from backend.core.models import Case, Department, Draw, Finding, Inspection, Institution, Officer, Task, new_id
from backend.core.paging import paginate
from backend.core.reference import is_city_level
from backend.core.times import utc_iso
from sync import feed
from sync.certificates import certified_on

RISK_WEIGHTS = {"low": 1, "medium": 2, "high": 4}
FOCUS_FACTOR = 2
FOCUS_WINDOW = timedelta(days=730)

DRAW_LOCK_KEY = 0x6663_6472_6177  # "fcdraw"


def draw_data(d: Draw, tasks: Sequence[Task] | None = None, *, full: bool = True) -> dict[str, Any]:
    out = {"id": d.id, "region": d.region_code, "period_start": d.period_start.isoformat(),
           "period_end": d.period_end.isoformat(), "planned_date": d.planned_date.isoformat(),
           "departments": list(d.departments), "count": d.count, "joint": d.joint,
           "team_size": (d.inputs or {}).get("team_size"), "campaign_id": d.campaign_id, "seed": d.seed,
           "algorithm": d.algorithm, "result": d.result, "created_by": d.created_by,
           "created_at": utc_iso(d.created_at)}
    if full:
        out["inputs"] = d.inputs
        out["tasks"] = [feed.task_data(t) for t in tasks or []]
    return out


def _institution_pool(session: Session, region: str, period_start: date, period_end: date) -> list[Institution]:
    """Registered institutions of the region (the whole city for a city draw) not already planned in the period."""
    planned = (select(Task.institution_id)
               .where(Task.status != "cancelled", Task.planned_date >= period_start, Task.planned_date <= period_end))
    stmt = select(Institution).where(Institution.provisional.is_(False), Institution.id.not_in(planned))
    if not is_city_level(region):
        stmt = stmt.where(Institution.region_code == region)
    return list(session.scalars(stmt.order_by(Institution.id)))


def _focus_ids(session: Session, pool: Sequence[Institution], categories: Sequence[str], now: datetime) -> set[str]:
    if not categories or not pool:
        return set()
    ids = {i.id for i in pool}
    rows = session.execute(
        select(Case.institution_id).join(Inspection, Inspection.case_id == Case.id)
        .join(Finding, Finding.inspection_id == Inspection.id)
        .where(Finding.category.in_(list(categories)), Finding.recorded_at >= now - FOCUS_WINDOW).distinct())
    return {iid for (iid,) in rows if iid in ids}


def _officer_pool(session: Session, region: str, departments: Sequence[str], day: date) -> list[dict[str, Any]]:
    """Active officers (role officer) of the draw's departments in its region, certified on the planned day.

    `load` is how many tasks each already has that day: the draw fills the least-loaded first.
    """
    candidates = session.scalars(select(Officer).where(
        Officer.active.is_(True), Officer.region_code == region, Officer.department_code.in_(list(departments)))
        .order_by(Officer.id))
    eligible = [o for o in candidates if o.has_role("officer") and certified_on(o, day)]
    load = dict.fromkeys((o.id for o in eligible), 0)
    for crew in session.scalars(select(Task.officers).where(Task.planned_date == day, Task.status != "cancelled")):
        for oid in crew or []:
            if oid in load:
                load[oid] += 1
    return [{"id": o.id, "department": o.department_code, "load": load[o.id]} for o in eligible]


def create_draw(session: Session, actor: Officer, data: Mapping[str, Any], *, now: datetime,
                seed: str | None = None) -> dict[str, Any]:
    """Draw `count` institutions and a team for each, store seed, inputs and result, and assign the tasks."""
    region = data.get("region") or actor.region_code
    region_in_jurisdiction(session, actor, region)
    departments = sorted(dict.fromkeys(data["departments"]))
    unknown = [d for d in departments if session.get(Department, d) is None]
    if unknown:
        raise Invalid("unknown departments: " + ", ".join(unknown),
                      errors={"departments": [f"unknown department {d!r}" for d in unknown]})
    if actor.department_code not in departments:
        raise Forbidden("an admin organises draws their own department takes part in")
    joint = data.get("joint")
    joint = len(departments) > 1 if joint is None else joint
    if joint and len(departments) < 2:
        raise Invalid("a joint draw needs at least two departments", errors={"departments": ["at least two"]})
    period_start, period_end, planned = data["period_start"], data["period_end"], data["planned_date"]
    if not period_start <= planned <= period_end:
        raise Invalid("the planned date must lie within the period", errors={"planned_date": ["outside the period"]})
    count, team_size = data["count"], data.get("team_size") or MIN_TEAM
    campaign = campaign_for(session, actor, data.get("campaign_id"), region, planned)
    if session.get_bind().dialect.name == "postgresql":
        # Two draws at once would both see an institution as not yet planned; SQLite serialises writers anyway.
        session.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": DRAW_LOCK_KEY})

    pool = _institution_pool(session, region, period_start, period_end)
    credit.recompute(session, pool, now=now)
    focus = _focus_ids(session, pool, campaign.focus_categories if campaign else [], now)
    institutions = [{"id": i.id, "risk_level": i.risk_level, "focus": i.id in focus,
                     "weight": RISK_WEIGHTS[i.risk_level] * (FOCUS_FACTOR if i.id in focus else 1)} for i in pool]
    officers = _officer_pool(session, region, departments, planned)
    _check_feasible(region, count, team_size, joint, institutions, officers, planned)

    inputs = {"version": 1, "count": count, "team_size": team_size, "joint": joint, "weights": RISK_WEIGHTS,
              "focus_factor": FOCUS_FACTOR, "focus_categories": list(campaign.focus_categories) if campaign else [],
              "institutions": institutions, "officers": officers}
    seed = seed or secrets.token_bytes(32).hex()
    result = run(seed, inputs)
    draw = Draw(id=new_id("drw"), region_code=region, period_start=period_start, period_end=period_end,
                planned_date=planned, departments=departments, count=count, joint=joint, seed=seed,
                algorithm=ALGORITHM, campaign_id=campaign.id if campaign else None, inputs=inputs, result=result,
                created_by=actor.id, created_at=now)
    session.add(draw)
    session.flush()
    by_id = {i.id: i for i in pool}
    department_of = {o["id"]: o["department"] for o in officers}
    tasks = []
    for item in result:
        task = Task(id=new_id("tsk"), draw_id=draw.id, campaign_id=draw.campaign_id,
                    institution_id=item["institution_id"], region_code=by_id[item["institution_id"]].region_code,
                    departments=sorted({department_of[o] for o in item["officers"]}), officers=item["officers"],
                    planned_date=planned, status="assigned", created_at=now)
        session.add(task)
        tasks.append(task)
    session.flush()
    for task in tasks:
        emit_task(session, task)
    return draw_data(draw, tasks)


def _check_feasible(region: str, count: int, team_size: int, joint: bool, institutions: list[dict[str, Any]],
                    officers: list[dict[str, Any]], planned: date) -> None:
    if len(institutions) < count:
        raise Conflict(f"only {len(institutions)} institutions in {region} can be drawn (registered, not already "
                       f"planned in the period); asked for {count}",
                       errors={"count": [f"at most {len(institutions)} eligible institutions"]})
    if len(officers) < team_size:
        raise Conflict(f"only {len(officers)} officers of these departments in {region} hold certificates valid on "
                       f"{planned}; a team needs {team_size}",
                       errors={"officers": [f"{len(officers)} eligible officers, a team needs {team_size}"]})
    staffed = {o["department"] for o in officers}
    if joint and len(staffed) < 2:
        raise Conflict("a joint draw needs eligible officers from at least two departments; only "
                       + (", ".join(sorted(staffed)) or "none") + " has any",
                       errors={"officers": ["eligible officers from fewer than two departments"]})


def _get_draw(session: Session, viewer: Officer, draw_id: str) -> Draw:
    if not viewer.has_role(*DESK_ROLES):
        raise Forbidden("draws are read by admins and reviewers")
    return get_scoped(session, Draw, draw_id, viewer, what="draw")


def get_draw(session: Session, viewer: Officer, draw_id: str) -> dict[str, Any]:
    draw = _get_draw(session, viewer, draw_id)
    tasks = session.scalars(select(Task).where(Task.draw_id == draw.id).order_by(Task.created_at, Task.id))
    order = {item["institution_id"]: n for n, item in enumerate(draw.result)}
    return draw_data(draw, sorted(tasks, key=lambda t: order.get(t.institution_id, len(order))))


def list_draws(session: Session, viewer: Officer, *, campaign_id: str | None = None, page: int = 1,
               page_size: int = 50) -> tuple[list[dict[str, Any]], int]:
    if not viewer.has_role(*DESK_ROLES):
        raise Forbidden("draws are read by admins and reviewers")
    stmt = scope(select(Draw), Draw.region_code, viewer)
    if campaign_id:
        stmt = stmt.where(Draw.campaign_id == campaign_id)
    rows, total = paginate(session, stmt, Draw.created_at.desc(), Draw.id, page=page, page_size=page_size)
    return [draw_data(d, full=False) for d in rows], total


def verify_draw(session: Session, viewer: Officer, draw_id: str) -> dict[str, Any]:
    """Run the algorithm again on the stored seed and inputs: the result must be the stored one."""
    draw = _get_draw(session, viewer, draw_id)
    if draw.algorithm != ALGORITHM:
        raise Conflict(f"draw {draw.id} used algorithm {draw.algorithm!r}, which this server cannot re-run")
    rerun = run(draw.seed, draw.inputs)
    return {"draw_id": draw.id, "algorithm": draw.algorithm, "seed": draw.seed, "matches": rerun == draw.result,
            "result": rerun}
