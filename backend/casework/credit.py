"""Credit and risk: an institution's integrity record, the risk score drawn from it, and discretion benchmarks.

The score is a published formula (docs: "Credit and risk, as built") rather than
a model, so an institution, a reviewer or a court can recompute it by hand from
the dated record this module lists.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from backend.core.bulk import among
from backend.core.errors import Forbidden, Invalid, NotFound
from backend.core.jurisdiction import get_scoped, scope
from backend.core.models import (
    Case,
    CaseTransition,
    Clue,
    DiscretionBenchmark,
    Finding,
    Inspection,
    Institution,
    Officer,
    ViolationCategory,
)
from backend.core.reference import is_city_level
from backend.core.times import LOCAL_TZ, utc_iso
from sync import feed

CHUNK = 500

# Clues that come from our own inspections already count as findings; every other source is a complaint.
NOT_COMPLAINTS = ("inspection", "random_check")

POINTS = {"complaint": 4, "finding": 10, "decision": 20, "major_decision": 30, "open_rectification": 10}
FULL_WEIGHT = timedelta(days=365)
HALF_WEIGHT = timedelta(days=730)
BAD_STANDING = {"unlicensed": 20, "revoked": 20, "suspended": 20, "expired": 20}
MAX_SCORE = 100
MEDIUM_FROM, HIGH_FROM = 20, 50
# The least often an institution of each level should be inspected; draw weights follow the same ratio.
INTERVAL_DAYS = {"low": 365, "medium": 180, "high": 90}


def recency_points(points: int, at: datetime, now: datetime) -> int:
    """Full points within a year, half (rounded down) in the second year, nothing after: old faults fade."""
    age = now - at
    if age <= FULL_WEIGHT:
        return points
    if age <= HALF_WEIGHT:
        return points // 2
    return 0


def level_for(score: int) -> str:
    if score >= HIGH_FROM:
        return "high"
    if score >= MEDIUM_FROM:
        return "medium"
    return "low"


def _chunks(ids: Sequence[str]) -> Iterable[Sequence[str]]:
    for start in range(0, len(ids), CHUNK):
        yield ids[start:start + CHUNK]


def integrity_records(session: Session, institution_ids: Sequence[str],
                      now: datetime) -> dict[str, list[dict[str, Any]]]:
    """Every dated event of each institution's record, newest first, each with the points it adds now.

    Four set queries per 500 institutions, so recomputing a whole district
    before a draw takes a handful of statements, not a handful per institution.
    """
    out: dict[str, list[dict[str, Any]]] = defaultdict(list)
    ids = sorted(set(institution_ids))
    for chunk in _chunks(ids):
        clues = session.execute(
            select(Clue.id, Clue.institution_id, Clue.reported_at, Clue.source, Clue.category, Clue.status)
            .where(among(session, Clue.institution_id, chunk), Clue.duplicate_of.is_(None),
                   Clue.source.not_in(NOT_COMPLAINTS)))
        for cid, iid, at, source, category, status in clues:
            out[iid].append({"kind": "complaint", "at": at, "id": cid, "source": source, "category": category,
                             "status": status, "points": recency_points(POINTS["complaint"], at, now)})

        inspections = session.execute(
            select(Inspection.id, Case.institution_id, Inspection.case_id, Inspection.started_at,
                   Inspection.ended_at, Inspection.outcome, Inspection.task_id)
            .join(Case, Case.id == Inspection.case_id)
            .where(among(session, Case.institution_id, chunk), Inspection.ended_at.is_not(None)))
        ended: dict[str, list[tuple]] = defaultdict(list)
        for row in inspections:
            ended[row[1]].append(tuple(row))
        for iid, rows in ended.items():
            cleared = sorted(r[4] for r in rows if r[5] == "no_violation")
            for ins_id, _i, case_id, _started, ended_at, outcome, task_id in rows:
                out[iid].append({"kind": "inspection", "at": ended_at, "id": ins_id, "case_id": case_id,
                                 "outcome": outcome, "task_id": task_id, "points": 0})
                if outcome != "rectification_ordered":
                    continue
                rectified = next((t for t in cleared if t > ended_at), None)
                points = 0 if rectified else recency_points(POINTS["open_rectification"], ended_at, now)
                out[iid].append({"kind": "rectification", "at": ended_at, "id": ins_id, "case_id": case_id,
                                 "rectified_at": rectified, "points": points})

        findings = session.execute(
            select(Finding.id, Case.institution_id, Finding.recorded_at, Finding.category, Finding.inspection_id,
                   Inspection.case_id)
            .join(Inspection, Inspection.id == Finding.inspection_id)
            .join(Case, Case.id == Inspection.case_id)
            .where(among(session, Case.institution_id, chunk)))
        for fid, iid, at, category, inspection_id, case_id in findings:
            out[iid].append({"kind": "finding", "at": at, "id": fid, "category": category,
                             "inspection_id": inspection_id, "case_id": case_id,
                             "points": recency_points(POINTS["finding"], at, now)})

        decisions = session.execute(
            select(CaseTransition.id, Case.institution_id, CaseTransition.at, CaseTransition.case_id,
                   CaseTransition.decision)
            .join(Case, Case.id == CaseTransition.case_id)
            .where(among(session, Case.institution_id, chunk), CaseTransition.to_status == "decided"))
        for tid, iid, at, case_id, decision in decisions:
            decision = decision or {}
            major = bool(decision.get("major"))
            out[iid].append({"kind": "decision", "at": at, "id": str(tid), "case_id": case_id,
                             "fine_yuan": decision.get("fine_yuan"),
                             "licence_revocation": bool(decision.get("licence_revocation")),
                             "ordered_closure": bool(decision.get("ordered_closure")), "major": major,
                             "points": recency_points(POINTS["major_decision" if major else "decision"], at, now)})
    for events in out.values():
        events.sort(key=lambda e: (e["at"], e["kind"], e["id"]), reverse=True)
    return out


@dataclass
class Assessment:
    score: int
    level: str
    standing: list[dict[str, Any]]
    complaints: int
    violations: int
    last_inspected_at: datetime | None

    def frequency(self, now: datetime) -> dict[str, Any]:
        """When the plan wants this institution inspected next, from its level and its last inspection."""
        interval = INTERVAL_DAYS[self.level]
        due: date | None = None
        if self.last_inspected_at is not None:
            due = self.last_inspected_at.astimezone(LOCAL_TZ).date() + timedelta(days=interval)
        today = now.astimezone(LOCAL_TZ).date()
        return {"interval_days": interval, "last_inspected_at": utc_iso(self.last_inspected_at),
                "next_due_on": due.isoformat() if due else None, "overdue": due is None or due < today}


def assess(inst: Institution, events: list[dict[str, Any]]) -> Assessment:
    standing = []
    if inst.licence_status in BAD_STANDING:
        standing.append({"kind": "licence_status", "value": inst.licence_status,
                         "points": BAD_STANDING[inst.licence_status]})
    total = sum(e["points"] for e in events) + sum(s["points"] for s in standing)
    score = max(0, min(MAX_SCORE, total))
    inspected = [e["at"] for e in events if e["kind"] == "inspection" and e.get("outcome") != "not_inspected"]
    return Assessment(score=score, level=level_for(score), standing=standing,
                      complaints=sum(1 for e in events if e["kind"] == "complaint"),
                      violations=sum(1 for e in events if e["kind"] == "finding"),
                      last_inspected_at=max(inspected, default=None))


def _event_out(event: dict[str, Any]) -> dict[str, Any]:
    return {k: (utc_iso(v) if isinstance(v, datetime) else v) for k, v in event.items()}


def integrity(session: Session, viewer: Officer, institution_id: str, *, now: datetime) -> dict[str, Any]:
    """The record with dates and the score it gives at `now`, next to the stored one (recomputed only on POST)."""
    inst = get_scoped(session, Institution, institution_id, viewer, what="institution")
    events = integrity_records(session, [inst.id], now).get(inst.id, [])
    found = assess(inst, events)
    return {"institution_id": inst.id, "name": inst.name, "region": inst.region_code,
            "risk": {"score": found.score, "level": found.level, "standing": found.standing,
                     "stored_score": inst.risk_score, "stored_level": inst.risk_level,
                     "updated_at": utc_iso(inst.risk_updated_at), **found.frequency(now)},
            "counts": {"complaints": found.complaints, "findings": found.violations,
                       "decisions": sum(1 for e in events if e["kind"] == "decision"),
                       "rectifications": sum(1 for e in events if e["kind"] == "rectification"),
                       "inspections": sum(1 for e in events if e["kind"] == "inspection")},
            "record": [_event_out(e) for e in events]}


def recompute(session: Session, institutions: Sequence[Institution], *, now: datetime) -> dict[str, Assessment]:
    """Store score, level and counts; phones hear of a changed level through the institution feed."""
    records = integrity_records(session, [i.id for i in institutions], now)
    found: dict[str, Assessment] = {}
    for inst in institutions:
        a = found[inst.id] = assess(inst, records.get(inst.id, []))
        moved = inst.risk_level != a.level
        inst.risk_score, inst.risk_level, inst.risk_updated_at = a.score, a.level, now
        inst.complaint_count, inst.violation_count = a.complaints, a.violations
        if moved:
            feed.emit(session, "institution", inst)
    session.flush()
    return found


def recompute_one(session: Session, actor: Officer, institution_id: str, *, now: datetime) -> dict[str, Any]:
    inst = get_scoped(session, Institution, institution_id, actor, what="institution")
    previous = inst.risk_level
    found = recompute(session, [inst], now=now)[inst.id]
    return {"institution_id": inst.id, "score": inst.risk_score, "level": inst.risk_level,
            "previous_level": previous, "updated_at": utc_iso(inst.risk_updated_at),
            "complaint_count": inst.complaint_count, "violation_count": inst.violation_count,
            **found.frequency(now)}


def recompute_region(session: Session, actor: Officer, region: str | None, *, now: datetime) -> dict[str, Any]:
    """Every institution within the actor's jurisdiction (optionally one region of it)."""
    stmt = scope(select(Institution), Institution.region_code, actor)
    if region:
        stmt = stmt.where(Institution.region_code == region)
    rows = list(session.scalars(stmt.order_by(Institution.id)))
    before = {i.id: i.risk_level for i in rows}
    recompute(session, rows, now=now)
    changed = sum(1 for i in rows if i.risk_level != before[i.id])
    levels = {level: sum(1 for i in rows if i.risk_level == level) for level in INTERVAL_DAYS}
    return {"institutions": len(rows), "changed": changed, "levels": levels}


# --- discretion benchmarks -----------------------------------------------------------------------------------

BENCHMARK_FIELDS = ("category", "first_offence", "rectified_in_time", "amount_min_yuan", "amount_max_yuan",
                    "fine_min_yuan", "fine_max_yuan", "measures", "basis")


def benchmark_data(b: DiscretionBenchmark) -> dict[str, Any]:
    return {"id": b.id, "category": b.category_code, "first_offence": b.first_offence,
            "rectified_in_time": b.rectified_in_time, "amount_min_yuan": b.amount_min_yuan,
            "amount_max_yuan": b.amount_max_yuan, "fine_min_yuan": b.fine_min_yuan,
            "fine_max_yuan": b.fine_max_yuan, "measures": b.measures, "basis": b.basis}


def _known_category(session: Session, code: str, field: str = "category") -> None:
    if session.get(ViolationCategory, code) is None:
        raise Invalid(f"no violation category {code!r}", errors={field: ["not a code of the violation catalogue"]})


def _city_admin(actor: Officer) -> None:
    """Benchmarks are one table for the whole city: only its level sets them."""
    if not (actor.has_role("admin") and is_city_level(actor.region_code)):
        raise Forbidden("discretion benchmarks are set by an admin at the city level")


def _check_ranges(values: Mapping[str, Any]) -> None:
    errors: dict[str, list[str]] = {}
    if values["fine_min_yuan"] > values["fine_max_yuan"]:
        errors["fine_max_yuan"] = ["must not be below fine_min_yuan"]
    lo, hi = values.get("amount_min_yuan"), values.get("amount_max_yuan")
    if lo is not None and hi is not None and lo > hi:
        errors["amount_max_yuan"] = ["must not be below amount_min_yuan"]
    if errors:
        raise Invalid("the benchmark's ranges are reversed", errors=errors)


def list_benchmarks(session: Session, category: str | None = None) -> list[DiscretionBenchmark]:
    stmt = select(DiscretionBenchmark)
    if category:
        stmt = stmt.where(DiscretionBenchmark.category_code == category)
    return list(session.scalars(stmt.order_by(DiscretionBenchmark.category_code, DiscretionBenchmark.id)))


def create_benchmark(session: Session, actor: Officer, data: Mapping[str, Any]) -> DiscretionBenchmark:
    _city_admin(actor)
    _known_category(session, data["category"])
    values = {"first_offence": None, "rectified_in_time": None, "amount_min_yuan": None, "amount_max_yuan": None,
              "measures": "", **data}
    _check_ranges(values)
    row = DiscretionBenchmark(category_code=values.pop("category"), **values)
    session.add(row)
    session.flush()
    return row


def update_benchmark(session: Session, actor: Officer, benchmark_id: int,
                     changes: Mapping[str, Any]) -> DiscretionBenchmark:
    _city_admin(actor)
    row = session.get(DiscretionBenchmark, benchmark_id)
    if row is None:
        raise NotFound(f"no discretion benchmark {benchmark_id}")
    if "category" in changes:
        _known_category(session, changes["category"])
    merged = {**benchmark_data(row), **changes}
    _check_ranges(merged)
    for key, value in changes.items():
        setattr(row, "category_code" if key == "category" else key, value)
    session.flush()
    return row


def _specificity(b: DiscretionBenchmark) -> int:
    return ((b.first_offence is not None) + (b.rectified_in_time is not None)
            + (b.amount_min_yuan is not None or b.amount_max_yuan is not None))


def match_benchmark(session: Session, category: str, *, first_offence: bool | None = None,
                    rectified_in_time: bool | None = None,
                    amount_involved_yuan: int | None = None) -> DiscretionBenchmark | None:
    """The most specific benchmark whose every stated circumstance holds (ties: the lowest id).

    A circumstance the decision does not state matches only rows that leave it
    open: a row for first offences cannot apply when we do not know it is one.
    """
    best: DiscretionBenchmark | None = None
    for b in list_benchmarks(session, category):
        if b.first_offence is not None and b.first_offence != first_offence:
            continue
        if b.rectified_in_time is not None and b.rectified_in_time != rectified_in_time:
            continue
        if b.amount_min_yuan is not None or b.amount_max_yuan is not None:
            if amount_involved_yuan is None:
                continue
            if b.amount_min_yuan is not None and amount_involved_yuan < b.amount_min_yuan:
                continue
            if b.amount_max_yuan is not None and amount_involved_yuan > b.amount_max_yuan:
                continue
        if best is None or _specificity(b) > _specificity(best):
            best = b
    return best


def suggest(session: Session, category: str, **circumstances: Any) -> dict[str, Any]:
    _known_category(session, category)
    b = match_benchmark(session, category, **circumstances)
    return {"category": category, **circumstances, "benchmark": benchmark_data(b) if b else None}


@dataclass
class DiscretionCheck:
    """What a decision's fine says against the benchmark: kept with the decision, and whether it needs review."""

    benchmark: dict[str, Any] | None
    within: bool | None

    @property
    def outside(self) -> bool:
        return self.within is False

    def reason(self) -> str:
        b = self.benchmark or {}
        return f"fine outside the discretion benchmark ({b.get('fine_min_yuan')}-{b.get('fine_max_yuan')} yuan)"

    def stored(self) -> dict[str, Any]:
        return {"benchmark": self.benchmark, "within_benchmark": self.within}


def check_decision(session: Session, decision: Mapping[str, Any]) -> DiscretionCheck | None:
    """None when the decision names no category (nothing to weigh it against).

    Raises Invalid for an unknown category, or for a fine outside the
    benchmark's range without a written `discretion_reason`; the caller then
    also requires a legal approval on record, as for a major decision.
    """
    category = decision.get("category")
    if not category:
        return None
    if session.get(ViolationCategory, category) is None:
        raise Invalid(f"no violation category {category!r}",
                      errors={"decision": {"category": ["not a code of the violation catalogue"]}})
    b = match_benchmark(session, category, first_offence=decision.get("first_offence"),
                        rectified_in_time=decision.get("rectified_in_time"),
                        amount_involved_yuan=decision.get("amount_involved_yuan"))
    fine = decision.get("fine_yuan")
    if b is None or fine is None:
        return DiscretionCheck(benchmark_data(b) if b else None, None)
    check = DiscretionCheck(benchmark_data(b), b.fine_min_yuan <= fine <= b.fine_max_yuan)
    if check.outside and not (decision.get("discretion_reason") or "").strip():
        raise Invalid(f"a fine of {fine} yuan is outside the discretion benchmark for {category} "
                      f"({b.fine_min_yuan}-{b.fine_max_yuan} yuan): give discretion_reason, and have it approved "
                      "in legal review", errors={"decision": {"discretion_reason": ["required outside the benchmark"]}})
    return check
