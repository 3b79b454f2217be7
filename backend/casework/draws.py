"""Double random, one public (双随机、一公开): campaigns, reproducible draws, tasks, and the published results.

A draw is a pure function of its seed and its stored inputs (docs: "Draws, as
built", algorithm `es-hmac-sha256-v1`). Nothing here uses Python's `random`:
anyone can re-implement the algorithm from the docs, run it on the seed and
inputs the server shows, and get the same institutions and teams.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from collections.abc import Mapping, Sequence
from datetime import UTC, date, datetime, time, timedelta
from functools import cmp_to_key
from typing import Any

from sqlalchemy import String, cast, func, select, text
from sqlalchemy.orm import Session

from backend.casework import credit
from backend.core.errors import Conflict, Forbidden, Invalid, NotFound
from backend.core.jurisdiction import get_scoped, may_see_region, regions_of, scope
from backend.core.models import (
    Campaign,
    Case,
    Department,
    Draw,
    Finding,
    Inspection,
    Institution,
    Officer,
    Region,
    Task,
    ViolationCategory,
    new_id,
    utcnow,
)
from backend.core.paging import paginate
from backend.core.reference import CITY, is_city_level
from backend.core.times import LOCAL_TZ, utc_iso
from sync import feed

ALGORITHM = "es-hmac-sha256-v1"
RISK_WEIGHTS = {"low": 1, "medium": 2, "high": 4}
FOCUS_FACTOR = 2
FOCUS_WINDOW = timedelta(days=730)
DESK_ROLES = ("admin", "reviewer", "legal_reviewer")
MIN_TEAM = 2

DRAW_LOCK_KEY = 0x6663_6472_6177  # "fcdraw"


# --- the algorithm: a pure function of (seed, inputs) ----------------------------------------------------------

def hmac_key(seed: str, message: str) -> int:
    """HMAC-SHA256 keyed with the seed's 32 bytes over the UTF-8 message, read as a big-endian integer."""
    return int.from_bytes(hmac.new(bytes.fromhex(seed), message.encode("utf-8"), hashlib.sha256).digest(), "big")


def institution_order(seed: str, institutions: Sequence[Mapping[str, Any]]) -> list[str]:
    """Efraimidis–Spirakis weighted order: key u^(1/w), largest first, compared exactly in integers.

    With u = U / 2^256, u_a^(1/w_a) > u_b^(1/w_b) exactly when
    U_a^w_b * 2^(256 w_a) > U_b^w_a * 2^(256 w_b): no floating point, so no
    implementation can round differently. Ties (practically impossible) go to the smaller id.
    """
    keyed = [(item["id"], int(item["weight"]), hmac_key(seed, "institution:" + item["id"])) for item in institutions]

    def compare(a: tuple[str, int, int], b: tuple[str, int, int]) -> int:
        left = a[2] ** b[1] << (256 * a[1])
        right = b[2] ** a[1] << (256 * b[1])
        if left != right:
            return -1 if left > right else 1
        return -1 if a[0] < b[0] else (1 if a[0] > b[0] else 0)

    return [item[0] for item in sorted(keyed, key=cmp_to_key(compare))]


def pick_team(seed: str, institution_id: str, officers: Sequence[Mapping[str, Any]], load: dict[str, int],
              team_size: int, joint: bool) -> list[str]:
    """Least-loaded first, then the largest HMAC key; a joint team takes a new department while one is left."""
    team: list[str] = []
    departments: set[str] = set()
    keys = {o["id"]: hmac_key(seed, f"officer:{institution_id}:{o['id']}") for o in officers}
    for _ in range(team_size):
        pool = [o for o in officers if o["id"] not in team]
        if joint:
            fresh = [o for o in pool if o["department"] not in departments]
            pool = fresh or pool
        best = min(pool, key=lambda o: (load[o["id"]], -keys[o["id"]], o["id"]))
        team.append(best["id"])
        departments.add(best["department"])
    return team


def run(seed: str, inputs: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The draw itself: institutions in weighted order, the first `count` of them, a team for each in turn."""
    officers = sorted(inputs["officers"], key=lambda o: o["id"])
    load = {o["id"]: int(o["load"]) for o in officers}
    chosen = institution_order(seed, inputs["institutions"])[: int(inputs["count"])]
    result = []
    for inst_id in chosen:
        team = pick_team(seed, inst_id, officers, load, int(inputs["team_size"]), bool(inputs["joint"]))
        for oid in team:
            load[oid] += 1
        result.append({"institution_id": inst_id, "officers": team})
    return result


# --- campaigns ---------------------------------------------------------------------------------------------------

def campaign_data(c: Campaign) -> dict[str, Any]:
    return {"id": c.id, "name": c.name, "region": c.region_code, "starts_on": c.starts_on.isoformat(),
            "ends_on": c.ends_on.isoformat(), "focus_categories": list(c.focus_categories or []),
            "description": c.description, "created_by": c.created_by, "created_at": utc_iso(c.created_at)}


def _campaign_visible(viewer: Officer, c: Campaign) -> bool:
    """A city campaign runs in every district, so every district sees it."""
    return is_city_level(c.region_code) or may_see_region(viewer, c.region_code)


def _region_in_jurisdiction(session: Session, actor: Officer, region: str) -> None:
    if session.get(Region, region) is None:
        raise Invalid(f"unknown region {region!r}", errors={"region": ["unknown region"]})
    if not may_see_region(actor, region):
        raise Invalid("region is outside your jurisdiction", errors={"region": ["outside your jurisdiction"]})


def create_campaign(session: Session, actor: Officer, data: Mapping[str, Any]) -> dict[str, Any]:
    region = data.get("region") or actor.region_code
    _region_in_jurisdiction(session, actor, region)
    if data["ends_on"] < data["starts_on"]:
        raise Invalid("a campaign ends on or after its start", errors={"ends_on": ["before starts_on"]})
    focus = list(dict.fromkeys(data.get("focus_categories") or []))
    unknown = [c for c in focus if session.get(ViolationCategory, c) is None]
    if unknown:
        raise Invalid("unknown violation categories: " + ", ".join(unknown),
                      errors={"focus_categories": [f"unknown category {c!r}" for c in unknown]})
    campaign = Campaign(id=new_id("cmp"), name=data["name"].strip(), region_code=region, starts_on=data["starts_on"],
                        ends_on=data["ends_on"], focus_categories=focus, description=data.get("description") or "",
                        created_by=actor.id, created_at=utcnow())
    session.add(campaign)
    session.flush()
    return campaign_data(campaign)


def _get_campaign(session: Session, viewer: Officer, campaign_id: str) -> Campaign:
    c = session.get(Campaign, campaign_id)
    if c is None or not _campaign_visible(viewer, c):
        raise NotFound(f"no campaign {campaign_id!r}")
    return c


def get_campaign(session: Session, viewer: Officer, campaign_id: str) -> dict[str, Any]:
    return campaign_data(_get_campaign(session, viewer, campaign_id))


def list_campaigns(session: Session, viewer: Officer, *, active_on: date | None = None, page: int = 1,
                   page_size: int = 50) -> tuple[list[dict[str, Any]], int]:
    stmt = select(Campaign)
    regions = regions_of(viewer)
    if regions is not None:
        stmt = stmt.where(Campaign.region_code.in_(sorted(regions | {CITY})))
    if active_on:
        stmt = stmt.where(Campaign.starts_on <= active_on, Campaign.ends_on >= active_on)
    rows, total = paginate(session, stmt, Campaign.starts_on.desc(), Campaign.id, page=page, page_size=page_size)
    return [campaign_data(c) for c in rows], total


def _campaign_for(session: Session, actor: Officer, campaign_id: str | None, region: str,
                  planned: date) -> Campaign | None:
    if not campaign_id:
        return None
    c = _get_campaign(session, actor, campaign_id)
    if not (c.region_code == region or is_city_level(c.region_code)):
        raise Invalid(f"campaign {c.id} runs in {c.region_code}, not in {region}",
                      errors={"campaign_id": ["the campaign does not cover this region"]})
    if not c.starts_on <= planned <= c.ends_on:
        raise Invalid(f"the planned date {planned} is outside the campaign ({c.starts_on} to {c.ends_on})",
                      errors={"planned_date": ["outside the campaign's dates"]})
    return c


# --- tasks -------------------------------------------------------------------------------------------------------

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
    certified = [o for o in team if o is not None and o.certificate_valid_on(day)]
    if len(certified) < MIN_TEAM:
        raise Invalid(f"a task needs at least {MIN_TEAM} officers whose certificates are valid on {day}",
                      errors={"officers": [f"{len(certified)} certified on {day}"]})
    return [o for o in team if o is not None]


def create_task(session: Session, actor: Officer, data: Mapping[str, Any]) -> dict[str, Any]:
    """A planned inspection outside a draw (a campaign's targeted check); the same team rule applies."""
    inst = get_scoped(session, Institution, data["institution_id"], actor, what="institution")
    planned: date = data["planned_date"]
    officer_ids = list(dict.fromkeys(data["officers"]))
    team = _certified_team(session, actor, officer_ids, planned)
    campaign = _campaign_for(session, actor, data.get("campaign_id"), inst.region_code, planned)
    task = Task(id=new_id("tsk"), draw_id=None, campaign_id=campaign.id if campaign else None,
                institution_id=inst.id, region_code=inst.region_code,
                departments=sorted({o.department_code for o in team}), officers=officer_ids, planned_date=planned,
                status="assigned", created_at=utcnow())
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


# --- draws -------------------------------------------------------------------------------------------------------

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
    eligible = [o for o in candidates if o.has_role("officer") and o.certificate_valid_on(day)]
    load = dict.fromkeys((o.id for o in eligible), 0)
    for crew in session.scalars(select(Task.officers).where(Task.planned_date == day, Task.status != "cancelled")):
        for oid in crew or []:
            if oid in load:
                load[oid] += 1
    return [{"id": o.id, "department": o.department_code, "load": load[o.id]} for o in eligible]


def create_draw(session: Session, actor: Officer, data: Mapping[str, Any], *,
                seed: str | None = None) -> dict[str, Any]:
    """Draw `count` institutions and a team for each, store seed, inputs and result, and assign the tasks."""
    region = data.get("region") or actor.region_code
    _region_in_jurisdiction(session, actor, region)
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
    campaign = _campaign_for(session, actor, data.get("campaign_id"), region, planned)
    if session.get_bind().dialect.name == "postgresql":
        # Two draws at once would both see an institution as not yet planned; SQLite serialises writers anyway.
        session.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": DRAW_LOCK_KEY})
    now = utcnow()

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


# --- one public ----------------------------------------------------------------------------------------------

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

