"""Issues about inspections: their recording (coverage), whether they ended, and who was there.

`coverage_gap` and `no_recording` judge an ended inspection's recording with
`media.coverage.analyse`, by `judge_coverage`, which the statistics share so
that their share of fully recorded inspections follows this same rule;
`inspection_not_ended` is an inspection open past `LONG_INSPECTION`;
`too_few_certified` and `expired_certificate` judge the crew's certificates on
the local day of the inspection.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Iterator, Sequence
from datetime import date, timedelta
from typing import Any

from sqlalchemy import Select, func, or_, select, tuple_
from sqlalchemy.orm import Session, load_only
from sqlalchemy.sql.elements import ColumnElement

from backend.casework.apply import LONG_INSPECTION
from backend.casework.audit.scan import (
    Issue,
    Scan,
    batches,
    chunks,
    device_links,
    duration,
    has_flag,
    link,
    officers_by_id,
    plural,
)
from backend.core.models import Case, Evidence, Inspection, Officer, RecordingInterruption
from backend.core.times import LOCAL_TZ, utc_iso
from media.coverage import Interruption, analyse, clip_of
from sync.certificate_history import CertificateBook
from sync.certificates import officer_certificate_fault


def _inspection_links(i: Inspection) -> list[dict[str, str]]:
    return [link("inspection", i.id, f"/api/v1/inspections/{i.id}"),
            link("coverage", i.id, f"/api/v1/inspections/{i.id}/coverage"),
            link("case", i.case_id, f"/api/v1/cases/{i.case_id}"),
            *device_links(i.device_id, i.started_by)]


def _inspections(scan: Scan, *conditions: ColumnElement[bool], at: ColumnElement[Any],
                 shift: timedelta = timedelta(0)) -> Select[Any]:
    stmt = select(Inspection, Case.department_code).join(Case, Case.id == Inspection.case_id).where(*conditions)
    stmt = scan.within(scan.place(stmt, Inspection.region_code, Case.department_code), at, shift)
    if scan.ident is not None:
        stmt = stmt.where(Inspection.id == scan.ident)
    return stmt


def coverage(scan: Scan) -> None:
    """Ended inspections only: an open one has no verdict yet (and shows up as not ended after 12 hours)."""
    stmt = _inspections(scan, Inspection.ended_at.is_not(None), at=Inspection.ended_at)
    for rows in batches(scan.session, stmt, Inspection.id, lambda row: row[0].id):
        departments = {inspection.id: department for inspection, department in rows}
        for inspection, result, declared in judge_coverage(scan.session, [row[0] for row in rows],
                                                           scan.settings.coverage_tolerance):
            _coverage_issue(scan, inspection, departments[inspection.id], result, declared)


def judge_coverage(session: Session, inspections: Sequence[Inspection], tolerance: timedelta
                   ) -> Iterator[tuple[Inspection, dict[str, Any], int]]:
    """`analyse` for a batch of inspections (at most BATCH) with three queries, not three per inspection.

    Yields each inspection with its coverage answer and the number of clips declared for it; shared with
    the statistics, so that the share of inspections with complete recording is judged by this same rule.
    """
    ids = [inspection.id for inspection in inspections]
    clips: dict[str, list] = defaultdict(list)
    for e in session.scalars(
            select(Evidence).options(load_only(Evidence.id, Evidence.inspection_id, Evidence.clip,
                                               Evidence.camera_serial, Evidence.clip_index, Evidence.sha256,
                                               Evidence.status, Evidence.verified_at))
            .where(Evidence.inspection_id.in_(ids), Evidence.camera_serial.is_not(None))):
        clips[e.inspection_id].append(clip_of(e))
    stops: dict[str, list[Interruption]] = defaultdict(list)
    for r in session.scalars(select(RecordingInterruption)
                             .where(RecordingInterruption.inspection_id.in_(ids))
                             .order_by(RecordingInterruption.id)):
        stops[r.inspection_id].append(Interruption(camera_serial=r.camera_serial, started_at=r.started_at,
                                                   ended_at=r.ended_at, reason=r.reason))
    # As inspection_coverage does: a previous clip is looked up elsewhere only when the inspection lacks it.
    owns = {iid: {(c.camera_serial, c.clip_index) for c in cs} for iid, cs in clips.items()}
    wanted = sorted({(c.camera_serial, c.clip_index - 1) for iid, cs in clips.items() for c in cs
                     if c.prev_sha256 is not None and c.clip_index > 0
                     and (c.camera_serial, c.clip_index - 1) not in owns[iid]})
    previous: dict[tuple[str, int], set[str]] = defaultdict(set)
    for chunk in chunks(wanted):
        for serial, index, sha in session.execute(
                select(Evidence.camera_serial, Evidence.clip_index, Evidence.sha256)
                .where(tuple_(Evidence.camera_serial, Evidence.clip_index).in_(list(chunk)))):
            previous[(serial, index)].add(sha)
    for inspection in inspections:
        result = analyse(inspection.started_at, inspection.ended_at, clips.get(inspection.id, []),
                         stops.get(inspection.id, []), tolerance=tolerance,
                         previous_clips=_elsewhere(owns.get(inspection.id, set()), previous))
        yield inspection, result, len(clips.get(inspection.id, []))


def _elsewhere(own: set[tuple[str, int]], previous: dict[tuple[str, int], set[str]]
               ) -> Callable[[str, int], set[str] | None]:
    return lambda serial, index: None if (serial, index) in own else previous.get((serial, index))


def _coverage_issue(scan: Scan, inspection: Inspection, department: str, result: dict[str, Any],
                    declared: int) -> None:
    details = {key: result[key] for key in ("status", "window", "covered_seconds", "ratio", "gaps",
                                            "clip_index_gaps", "clip_chain_breaks", "unverified_clips", "flags")}
    common = {"at": inspection.ended_at, "region_code": inspection.region_code, "department_code": department,
              "details": details, "links": _inspection_links(inspection)}
    if result["status"] == "none":
        if not declared:
            clips_note = "no clip declared"
        elif len(result["unverified_clips"]) == declared:
            clips_note = f"{plural(declared, 'clip')} declared, none verified"
        else:
            clips_note = f"{plural(declared, 'clip')} declared, none verified within the window"
        scan.add(Issue(key=f"no_recording:{inspection.id}", kind="no_recording",
                       summary=f"no verified recording covers the inspection ({clips_note})", **common))
        return
    unexplained = [g for g in result["gaps"] if not g["explained"]]
    missing = sum(g["missing_count"] for g in result["clip_index_gaps"])
    breaks = len(result["clip_chain_breaks"])
    if not (unexplained or missing or breaks):
        return
    parts = []
    if unexplained:
        total = sum(g["seconds"] for g in unexplained)
        parts.append(f"{plural(len(unexplained), 'unexplained gap')} in the recording ({duration(total)})")
    if missing:
        parts.append(f"{plural(missing, 'clip number')} never declared")
    if breaks:
        parts.append(f"{plural(breaks, 'break')} in a camera's clip chain")
    details["unexplained_seconds"] = round(sum(g["seconds"] for g in unexplained), 3)
    scan.add(Issue(key=f"coverage_gap:{inspection.id}", kind="coverage_gap", summary="; ".join(parts), **common))


def not_ended(scan: Scan) -> None:
    stmt = _inspections(scan, Inspection.ended_at.is_(None), Inspection.started_at < scan.now - LONG_INSPECTION,
                        at=Inspection.started_at, shift=LONG_INSPECTION)
    for rows in batches(scan.session, stmt, Inspection.id, lambda row: row[0].id):
        for inspection, department in rows:
            open_for = (scan.now - inspection.started_at).total_seconds()
            scan.add(Issue(
                key=f"inspection_not_ended:{inspection.id}", kind="inspection_not_ended",
                at=inspection.started_at + LONG_INSPECTION, region_code=inspection.region_code,
                department_code=department,
                summary=f"inspection started {duration(open_for)} ago and never ended: its recording cannot be judged",
                details={"started_at": utc_iso(inspection.started_at), "open_seconds": round(open_for),
                         "officers": list(inspection.officers or [])},
                links=_inspection_links(inspection)))


def _certificate(officer: Officer | None, officer_id: str, day: date, book: CertificateBook) -> dict[str, Any]:
    """The officer judged by the certificate held on the day (`sync.certificate_history`), not today's."""
    if officer is None:
        return {"id": officer_id, "name": None, "certificate": None, "valid": False, "reason": "unknown_officer"}
    held = book.held_on(officer, day)
    reason = officer_certificate_fault(held, day)
    valid = reason is None
    certificate = ({"number": held.cert_number, "valid_from": utc_iso(held.cert_valid_from),
                    "valid_until": utc_iso(held.cert_valid_until)} if held.cert_number else None)
    return {"id": officer.id, "name": officer.name, "certificate": certificate, "valid": valid, "reason": reason}


def _crew(scan: Scan, rows: list[Any]) -> Iterator[tuple[Inspection, str, date, list[dict[str, Any]]]]:
    known = officers_by_id(scan.session, (oid for row in rows for oid in (row[0].officers or [])))
    book = CertificateBook.load(scan.session, known.values())
    for inspection, department in rows:
        day = inspection.started_at.astimezone(LOCAL_TZ).date()
        yield inspection, department, day, [_certificate(known.get(oid), oid, day, book)
                                             for oid in dict.fromkeys(inspection.officers or [])]


def too_few_certified(scan: Scan) -> None:
    stmt = _inspections(scan, has_flag(Inspection.flags, "fewer_than_two_certified"), at=Inspection.started_at)
    for rows in batches(scan.session, stmt, Inspection.id, lambda row: row[0].id):
        rows = [row for row in rows if "fewer_than_two_certified" in (row[0].flags or [])]
        for inspection, department, day, crew in _crew(scan, rows):
            certified = sum(1 for c in crew if c["valid"])
            scan.add(Issue(
                key=f"too_few_certified:{inspection.id}", kind="too_few_certified", at=inspection.started_at,
                region_code=inspection.region_code, department_code=department,
                summary=f"{plural(certified, 'officer')} with a valid certificate present, at least 2 required",
                details={"day": day.isoformat(), "certified": certified, "officers": crew},
                links=_inspection_links(inspection)))


def expired_certificates(scan: Scan) -> None:
    """Officers judged against the local day of each inspection, by the certificate they held that day.

    Only officers whose certificate fails somewhere in the span of the
    matching inspections can matter, and there are few of them: the
    inspections naming one of them (or flagged with an unknown officer) are
    the only ones loaded.
    """
    base = _inspections(scan, at=Inspection.started_at)
    span = base.with_only_columns(func.min(Inspection.started_at), func.max(Inspection.started_at))
    first, last = scan.session.execute(span).one()
    if first is None:
        return
    first_day = first.astimezone(LOCAL_TZ).date()
    last_day = last.astimezone(LOCAL_TZ).date()
    officers = list(scan.session.scalars(select(Officer)))
    book = CertificateBook.load(scan.session, officers)
    suspects = [o.id for o in officers if not book.covers(o, first_day, last_day)]
    conditions = [has_flag(Inspection.flags, "unknown_officer")]
    conditions += [has_flag(Inspection.officers, oid) for oid in suspects]
    seen: set[str] = set()
    for chunk in chunks(conditions, 100):
        stmt = base.where(or_(*chunk))
        for rows in batches(scan.session, stmt, Inspection.id, lambda row: row[0].id):
            rows = [row for row in rows if row[0].id not in seen]
            seen.update(row[0].id for row in rows)
            for inspection, department, day, crew in _crew(scan, rows):
                invalid = [c for c in crew if not c["valid"]]
                if not invalid:
                    continue
                reasons = sorted({c["reason"] for c in invalid})
                scan.add(Issue(
                    key=f"expired_certificate:{inspection.id}", kind="expired_certificate",
                    at=inspection.started_at, region_code=inspection.region_code, department_code=department,
                    summary=(f"{plural(len(invalid), 'officer')} present without a certificate valid on "
                             f"{day.isoformat()} ({', '.join(reasons)})"),
                    details={"day": day.isoformat(), "officers": invalid},
                    links=_inspection_links(inspection)
                    + [link("officer", c["id"], f"/api/v1/officers/{c['id']}") for c in invalid
                       if c["reason"] != "unknown_officer" and c["id"] != inspection.started_by]))
