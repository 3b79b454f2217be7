"""Statistics for a period within the viewer's jurisdiction: the figures the enforcement plan asks departments for.

Everything countable is counted by the database (GROUP BY), and medians and
percentiles are read as order statistics (`ORDER BY ... OFFSET k LIMIT 2`) on
a duration computed in SQL, so a year of a whole city costs a fixed number of
small queries whatever the number of rows. The one figure SQL cannot judge is
whether an inspection's recording is complete: that is the audit's coverage
rule (`backend.casework.audit.judge_coverage`), run over the period's inspections in
keyset batches, a few queries per batch.

Figures describe the period's records as they stand when asked: a clue
received in March and turned into a case in April counts as converted when
March is asked for in May. docs/protocol.md ("Statistics, as built") defines
each figure.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta
from typing import Any

from sqlalchemy import Select, and_, case, distinct, exists, extract, func, select
from sqlalchemy.orm import Session, load_only
from sqlalchemy.sql.elements import ColumnElement

from backend.casework.audit import BATCH, ROUTINE_QUARANTINE_CODES, judge_coverage
from backend.core.errors import Forbidden, Invalid
from backend.core.jurisdiction import regions_of, scope
from backend.core.models import (
    CASE_STATUSES,
    CLOSED_STATUSES,
    Case,
    CaseTransition,
    Clue,
    Department,
    Device,
    Evidence,
    Finding,
    Inspection,
    LedgerRecord,
    Officer,
    QuarantinedRecord,
    Region,
    Upload,
)
from backend.core.times import LOCAL_TZ, utc_iso
from media.coverage import DEFAULT_TOLERANCE

STATS_ROLES = ("reviewer", "legal_reviewer", "admin")
CLUE_STATUSES = ("new", "triaged", "case", "closed", "duplicate", "transferred")
# Ended inspections only, so `open` never occurs.
RECORDING_STATUSES = ("complete", "explained", "gaps", "none")
RECORDED = ("complete", "explained")
DIGITS = 4  # rates and shares
PRECISION = 3  # durations


@dataclass(frozen=True)
class Period:
    """Whole calendar days in Hangzhou, both ends included: what a department means by "from 1 to 31 March"."""

    first: date
    last: date

    def __post_init__(self) -> None:
        if self.first > self.last:
            raise Invalid("the period ends before it starts", errors={"to": ["must not be before `from`"]})

    @property
    def start(self) -> datetime:
        return datetime.combine(self.first, time(0), LOCAL_TZ)

    @property
    def end(self) -> datetime:
        """Exclusive: midnight after the last day."""
        return datetime.combine(self.last + timedelta(days=1), time(0), LOCAL_TZ)


@dataclass
class _Ask:
    session: Session
    viewer: Officer
    period: Period
    region: str | None
    department: str | None
    regions: dict[str, dict[str, Any]] = field(default_factory=dict)

    def place(self, stmt: Select[Any], region: ColumnElement[Any], department: ColumnElement[Any]) -> Select[Any]:
        stmt = scope(stmt, region, self.viewer)
        if self.region is not None:
            stmt = stmt.where(region == self.region)
        if self.department is not None:
            stmt = stmt.where(department == self.department)
        return stmt

    def during(self, column: ColumnElement[Any]) -> ColumnElement[bool]:
        return and_(column >= self.period.start, column < self.period.end)

    def row(self, code: str) -> dict[str, Any]:
        """The region's line of the district table; a region outside the reference data still gets one."""
        if code not in self.regions:
            self.regions[code] = _region_row(code, None, None)
        return self.regions[code]


def _region_row(code: str, name_zh: str | None, name_en: str | None) -> dict[str, Any]:
    return {"region": code, "name_zh": name_zh, "name_en": name_en, "clues_received": 0, "clues_converted": 0,
            "conversion_rate": None, "cases_opened": 0, "cases_closed": 0, "inspections_ended": 0,
            "inspections_recorded": 0, "recording_share": None, "evidence_verified": 0, "evidence_mismatch": 0,
            "rejected_records": 0, "invalid_records": 0}


def _rate(part: int, whole: int) -> float | None:
    return round(part / whole, DIGITS) if whole else None


def _sorted(counts: Counter[str]) -> dict[str, int]:
    return {key: counts[key] for key in sorted(counts)}


def _all_of(keys: tuple[str, ...], counts: Counter[str]) -> dict[str, int]:
    """Every status of a fixed list, zeros included, so columns stay put from one period to the next."""
    out = {key: counts.get(key, 0) for key in keys}
    out.update((key, n) for key, n in sorted(counts.items()) if key not in out)
    return out


def _seconds(session: Session, later: ColumnElement[Any], earlier: ColumnElement[Any]) -> ColumnElement[Any]:
    if session.get_bind().dialect.name == "postgresql":
        return extract("epoch", later - earlier)
    return (func.julianday(later) - func.julianday(earlier)) * 86400.0


def _quantile(session: Session, column: ColumnElement[Any], count: int, q: float) -> float:
    """Linear interpolation between order statistics, as PostgreSQL's percentile_cont and numpy's default."""
    rank = q * (count - 1)
    low = math.floor(rank)
    values = [float(v) for v in session.scalars(select(column).order_by(column).offset(low).limit(2))]
    if len(values) == 1 or rank == low:
        return values[0]
    return values[0] + (values[1] - values[0]) * (rank - low)


def _distribution(session: Session, durations: Select[Any], unit: float, *, p90: bool = False) -> dict[str, Any]:
    """count, median and mean (and p90) of a one-column select of seconds, in `unit` seconds."""
    sub = durations.subquery()
    value = sub.c.seconds
    count, mean = session.execute(select(func.count(value), func.avg(value))).one()
    out: dict[str, Any] = {"count": count, "median": None, "mean": None}
    if p90:
        out["p90"] = None
    if not count:
        return out
    out["median"] = round(_quantile(session, value, count, 0.5) / unit, PRECISION)
    out["mean"] = round(float(mean) / unit, PRECISION)
    if p90:
        out["p90"] = round(_quantile(session, value, count, 0.9) / unit, PRECISION)
    return out


def _not_negative(seconds: ColumnElement[Any]) -> ColumnElement[Any]:
    """A phone's clock may put a step a little before the server learned of the case: that is no time at all."""
    return case((seconds < 0, 0.0), else_=seconds)


# ---------------------------------------------------------------------------------------------------- figures


def _clues(ask: _Ask) -> dict[str, Any]:
    s = ask.session
    linked = Clue.case_id.is_not(None)
    # A duplicate repeats a clue already counted and follows it (into its case too): received, but on neither
    # side of the rate. Triaging a duplicate on its own clears `duplicate_of`, and then it counts as any other.
    repeats = Clue.duplicate_of.is_not(None)
    stmt = (select(Clue.region_code, Clue.status, linked, repeats, func.count())
            .where(ask.during(Clue.reported_at)).group_by(Clue.region_code, Clue.status, linked, repeats))
    by_status: Counter[str] = Counter()
    duplicates: Counter[str] = Counter()
    for region, status, has_case, duplicate, n in s.execute(ask.place(stmt, Clue.region_code, Clue.department_code)):
        row = ask.row(region)
        by_status[status] += n
        row["clues_received"] += n
        if duplicate:
            duplicates[region] += n
        elif has_case:
            row["clues_converted"] += n
    for code, row in ask.regions.items():
        row["conversion_rate"] = _rate(row["clues_converted"], row["clues_received"] - duplicates[code])
    received = sum(by_status.values())
    converted = sum(row["clues_converted"] for row in ask.regions.values())
    became = and_(linked, ~repeats, ask.during(Clue.reported_at))
    seconds = _seconds(s, Case.created_at, Clue.reported_at)
    durations = ask.place(select(seconds.label("seconds")).select_from(Clue).join(Case, Case.id == Clue.case_id)
                          .where(became, Case.created_at >= Clue.reported_at), Clue.region_code, Clue.department_code)
    to_case = _distribution(s, durations, 3600.0)
    return {"received": received, "duplicates": duplicates.total(), "converted": converted,
            "conversion_rate": _rate(converted, received - duplicates.total()),
            "by_status": _all_of(CLUE_STATUSES, by_status), "to_case_hours": to_case,
            "linked_to_earlier_case": converted - to_case["count"]}


def _cases(ask: _Ask) -> dict[str, Any]:
    s = ask.session
    opened_in = ask.during(Case.created_at)
    stmt = (select(Case.region_code, Case.department_code, Case.status, func.count()).where(opened_in)
            .group_by(Case.region_code, Case.department_code, Case.status))
    by_status: Counter[str] = Counter()
    by_region: Counter[str] = Counter()
    by_department: Counter[str] = Counter()
    for region, department, status, n in s.execute(ask.place(stmt, Case.region_code, Case.department_code)):
        by_status[status] += n
        by_region[region] += n
        by_department[department] += n
        ask.row(region)["cases_opened"] += n
    with_findings = (select(Finding.category, func.count(distinct(Case.id)))
                     .join(Inspection, Inspection.id == Finding.inspection_id)
                     .join(Case, Case.id == Inspection.case_id).where(opened_in).group_by(Finding.category))
    by_category = Counter(dict(s.execute(ask.place(with_findings, Case.region_code, Case.department_code)).all()))
    has_finding = exists().where(Inspection.case_id == Case.id, Finding.inspection_id == Inspection.id)
    without = s.scalar(ask.place(select(func.count()).select_from(Case).where(opened_in, ~has_finding),
                                 Case.region_code, Case.department_code))

    closing = and_(CaseTransition.to_status.in_(CLOSED_STATUSES), ask.during(CaseTransition.at))
    stmt = (select(Case.region_code, CaseTransition.to_status, func.count())
            .join(Case, Case.id == CaseTransition.case_id).where(closing)
            .group_by(Case.region_code, CaseTransition.to_status))
    closed_by_status: Counter[str] = Counter()
    for region, status, n in s.execute(ask.place(stmt, Case.region_code, Case.department_code)):
        closed_by_status[status] += n
        ask.row(region)["cases_closed"] += n
    seconds = _not_negative(_seconds(s, CaseTransition.at, Case.created_at))
    durations = ask.place(select(seconds.label("seconds")).select_from(CaseTransition)
                          .join(Case, Case.id == CaseTransition.case_id).where(closing),
                          Case.region_code, Case.department_code)
    return {"opened": sum(by_status.values()), "by_status": _all_of(CASE_STATUSES, by_status),
            "by_category": _sorted(by_category), "without_findings": without, "by_region": _sorted(by_region),
            "by_department": _sorted(by_department), "closed": sum(closed_by_status.values()),
            "closed_by_status": _all_of(CLOSED_STATUSES, closed_by_status),
            "to_close_days": _distribution(s, durations, 86400.0)}


def _ended_inspections(ask: _Ask) -> Iterator[list[Inspection]]:
    """Keyset pages, so memory stays bounded however many inspections the period holds."""
    stmt = (select(Inspection).options(load_only(Inspection.id, Inspection.region_code, Inspection.started_at,
                                                 Inspection.ended_at))
            .join(Case, Case.id == Inspection.case_id).where(ask.during(Inspection.ended_at)))
    stmt = ask.place(stmt, Inspection.region_code, Case.department_code).order_by(Inspection.id).limit(BATCH)
    last: str | None = None
    while True:
        page = list(ask.session.scalars(stmt if last is None else stmt.where(Inspection.id > last)))
        if page:
            yield page
        if len(page) < BATCH:
            return
        last = page[-1].id


def _recording(ask: _Ask, tolerance: timedelta) -> dict[str, Any]:
    by_status: Counter[str] = Counter()
    for page in _ended_inspections(ask):
        for inspection, result, _declared in judge_coverage(ask.session, page, tolerance):
            row = ask.row(inspection.region_code)
            row["inspections_ended"] += 1
            by_status[result["status"]] += 1
            if result["status"] in RECORDED:
                row["inspections_recorded"] += 1
    for row in ask.regions.values():
        row["recording_share"] = _rate(row["inspections_recorded"], row["inspections_ended"])
    ended = sum(by_status.values())
    recorded = sum(by_status[s] for s in RECORDED)
    return {"inspections_ended": ended, "by_status": _all_of(RECORDING_STATUSES, by_status),
            "complete_or_explained": recorded, "share": _rate(recorded, ended)}


def _evidence(ask: _Ask) -> dict[str, Any]:
    s = ask.session
    department = func.coalesce(Case.department_code, Officer.department_code)

    def placed(stmt: Select[Any]) -> Select[Any]:
        stmt = stmt.outerjoin(Case, Case.id == Evidence.case_id).outerjoin(Officer, Officer.id == Evidence.officer_id)
        return ask.place(stmt, Evidence.region_code, department)

    verified_in = ask.during(Evidence.verified_at)
    verified = 0
    for region, n in s.execute(placed(select(Evidence.region_code, func.count()).select_from(Evidence)
                                      .where(verified_in)).group_by(Evidence.region_code)):
        ask.row(region)["evidence_verified"] += n
        verified += n
    seconds = _not_negative(_seconds(s, Evidence.verified_at, Evidence.declared_at))
    delay = _distribution(s, placed(select(seconds.label("seconds")).select_from(Evidence).where(verified_in)), 1.0,
                          p90=True)
    mismatched_in = exists().where(Upload.evidence_id == Evidence.id, Upload.status == "mismatch",
                                   ask.during(Upload.completed_at))
    mismatch = 0
    for region, n in s.execute(placed(select(Evidence.region_code, func.count()).select_from(Evidence)
                                      .where(Evidence.status == "mismatch", mismatched_in))
                               .group_by(Evidence.region_code)):
        ask.row(region)["evidence_mismatch"] += n
        mismatch += n
    return {"verified": verified, "verification_delay_seconds": delay, "mismatch": mismatch}


def _rejected(ask: _Ask) -> dict[str, Any]:
    s = ask.session
    # As the audit does: a record from an unknown device belongs to the officer who pushed it.
    owner = func.coalesce(Device.officer_id, QuarantinedRecord.officer_id)
    stmt = (select(Officer.region_code, QuarantinedRecord.code, func.count()).select_from(QuarantinedRecord)
            .outerjoin(Device, Device.id == QuarantinedRecord.device_id).join(Officer, Officer.id == owner)
            .where(ask.during(QuarantinedRecord.received_at), QuarantinedRecord.code.not_in(ROUTINE_QUARANTINE_CODES))
            .group_by(Officer.region_code, QuarantinedRecord.code))
    quarantined: Counter[str] = Counter()
    for region, code, n in s.execute(ask.place(stmt, Officer.region_code, Officer.department_code)):
        quarantined[code] += n
        ask.row(region)["rejected_records"] += n
    stmt = (select(Officer.region_code, LedgerRecord.code, func.count()).select_from(LedgerRecord)
            .join(Officer, Officer.id == LedgerRecord.officer_id)
            .where(LedgerRecord.status == "invalid", ask.during(LedgerRecord.received_at))
            .group_by(Officer.region_code, LedgerRecord.code))
    invalid: Counter[str] = Counter()
    for region, code, n in s.execute(ask.place(stmt, Officer.region_code, Officer.department_code)):
        invalid[code or "unknown"] += n
        ask.row(region)["invalid_records"] += n
    return {"quarantined": sum(quarantined.values()), "quarantined_by_code": _sorted(quarantined),
            "invalid": sum(invalid.values()), "invalid_by_code": _sorted(invalid)}


# ---------------------------------------------------------------------------------------------------- public


def _check(session: Session, viewer: Officer, region: str | None, department: str | None) -> None:
    if not viewer.has_role(*STATS_ROLES):
        raise Forbidden("statistics are for " + ", ".join(STATS_ROLES))
    errors: dict[str, list[str]] = {}
    if region is not None and session.get(Region, region) is None:
        errors["region"] = [f"not a region code: {region!r}"]
    if department is not None and session.get(Department, department) is None:
        errors["department"] = [f"not a department code: {department!r}"]
    if errors:
        raise Invalid("unknown code", errors=errors)


def _visible_regions(ask: _Ask) -> None:
    """Every region the viewer may see (or the one asked for), zeros included: a quiet district is a figure too."""
    visible = regions_of(ask.viewer)
    stmt = select(Region.code, Region.name_zh, Region.name_en).order_by(Region.sort, Region.code)
    if visible is not None:
        stmt = stmt.where(Region.code.in_(sorted(visible)))
    if ask.region is not None:
        stmt = stmt.where(Region.code == ask.region)
    for code, name_zh, name_en in ask.session.execute(stmt):
        ask.regions[code] = _region_row(code, name_zh, name_en)


def statistics(session: Session, viewer: Officer, period: Period, *, region: str | None = None,
               department: str | None = None, coverage_tolerance: timedelta = DEFAULT_TOLERANCE) -> dict[str, Any]:
    """The period's figures within the viewer's jurisdiction, optionally narrowed to one region or department.

    A region outside the viewer's jurisdiction is not an error: like any list, it answers nothing there.
    """
    _check(session, viewer, region, department)
    ask = _Ask(session=session, viewer=viewer, period=period, region=region, department=department)
    _visible_regions(ask)
    visible = regions_of(viewer)
    out = {
        "period": {"from": period.first.isoformat(), "to": period.last.isoformat(),
                   "start": utc_iso(period.start), "end": utc_iso(period.end), "timezone": str(LOCAL_TZ)},
        "scope": {"jurisdiction": sorted(visible) if visible is not None else None, "region": region,
                  "department": department},
        "clues": _clues(ask),
        "cases": _cases(ask),
        "recording": _recording(ask, coverage_tolerance),
        "evidence": _evidence(ask),
        "rejected": _rejected(ask),
    }
    out["regions"] = list(ask.regions.values())
    return out
