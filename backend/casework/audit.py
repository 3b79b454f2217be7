"""The reviewers' audit: recording and procedure problems, computed from the projections when asked.

Issues are not stored. Each is what the ledger's projections say at the moment
of asking (coverage, evidence status, procedure flags, quarantine, chain gaps,
conflicts), so the audit can never drift from the data, and a problem that is
put right (a clip uploaded, a conflict resolved) leaves the list by itself.
What is stored is the reviewers' judgement: `AuditReview` rows, append-only,
keyed by an issue key that is stable across requests (`<kind>:<object id>`),
so a mark stays attached to its issue and the marks are themselves an audit log.

Every kind is gathered by its own query, filtered in SQL by jurisdiction,
region, department and time wherever the database can decide; only what SQL
cannot judge (recording coverage, certificates against the day of an
inspection, clock skew in seconds) is finished in Python, over rows the
WHERE clause already narrowed, loaded in batches rather than one query per row.

Device-level issues (`rejected_records`, `fork`, `clock_skew`) sum up a
device's history; their `at` is the latest occurrence, and a review older than
that no longer counts as reviewed: a reviewer judged the device as it stood,
not what it did afterwards.
"""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from typing import Any

from sqlalchemy import Select, String, and_, cast, func, or_, select, tuple_
from sqlalchemy.orm import Session, load_only
from sqlalchemy.sql.elements import ColumnElement

from backend.casework.apply import LONG_INSPECTION
from backend.core.errors import Forbidden, Invalid, NotFound
from backend.core.jurisdiction import scope
from backend.core.models import (
    AuditReview,
    Case,
    CaseConflict,
    ChainGap,
    Device,
    Evidence,
    Inspection,
    LedgerRecord,
    Officer,
    QuarantinedRecord,
    RecordingInterruption,
    Upload,
    utcnow,
)
from backend.core.paging import paginate
from backend.core.times import LOCAL_TZ, utc_iso
from media.coverage import DEFAULT_TOLERANCE, Interruption, analyse, clip_of

KINDS = (
    "coverage_gap",
    "no_recording",
    "inspection_not_ended",
    "evidence_mismatch",
    "upload_overdue",
    "exif_disagreement",
    "too_few_certified",
    "expired_certificate",
    "clock_skew",
    "rejected_records",
    "fork",
    "chain_gap",
    "open_conflict",
)
REVIEWER_ROLES = ("reviewer", "legal_reviewer", "admin")
MAX_COMMENT = 2000
MAX_KEY = 200  # AuditReview.issue_key
# A re-signed record replacing a held one is the phone recovering as PROTOCOL §4 asks, not a rejection to audit.
ROUTINE_QUARANTINE_CODES = ("superseded",)
EXIF_FLAGS = ("exif_time_differs", "gps_differs")
# Rows per batch for the kinds finished in Python: bounded memory, and IN lists every database accepts.
BATCH = 500
# Long lists in details (seqs, inspections) are cut here; the counts next to them stay exact.
MAX_LISTED = 100


@dataclass(frozen=True)
class AuditSettings:
    upload_deadline: timedelta = timedelta(hours=24)
    coverage_tolerance: timedelta = DEFAULT_TOLERANCE


@dataclass(frozen=True)
class IssueFilter:
    """`since` is inclusive and `until` exclusive, both on the issue's `at`; `reviewed` None means both."""

    kinds: frozenset[str] = frozenset(KINDS)
    region: str | None = None
    department: str | None = None
    since: datetime | None = None
    until: datetime | None = None
    reviewed: bool | None = None


@dataclass
class Issue:
    key: str
    kind: str
    at: datetime
    region_code: str
    department_code: str | None
    summary: str
    details: dict[str, Any]
    links: list[dict[str, str]]
    # Set for issues that sum up a history: a review older than this is a review of an earlier state.
    changed_at: datetime | None = None

    def as_dict(self, review: AuditReview | None, names: dict[str, str]) -> dict[str, Any]:
        reviewed = review is not None and (self.changed_at is None or review.reviewed_at >= self.changed_at)
        return {"key": self.key, "kind": self.kind, "at": self.at, "region_code": self.region_code,
                "department_code": self.department_code, "summary": self.summary, "details": self.details,
                "links": self.links, "reviewed": reviewed,
                "review": _review_data(review, names) if review is not None else None}


@dataclass
class _Scan:
    """One request's view: who asks, which issues, and (for marking) the one object to look at."""

    session: Session
    viewer: Officer
    filter: IssueFilter
    settings: AuditSettings
    now: datetime
    ident: str | None = None
    issues: list[Issue] = field(default_factory=list)

    def wants(self, *kinds: str) -> bool:
        return any(k in self.filter.kinds for k in kinds)

    def place(self, stmt: Select[Any], region: ColumnElement[Any], department: ColumnElement[Any]) -> Select[Any]:
        stmt = scope(stmt, region, self.viewer)
        if self.filter.region:
            stmt = stmt.where(region == self.filter.region)
        if self.filter.department:
            stmt = stmt.where(department == self.filter.department)
        return stmt

    def within(self, stmt: Select[Any], column: ColumnElement[Any], shift: timedelta = timedelta(0)) -> Select[Any]:
        """Filter on `at`, where `at` is `column + shift`: the shift moves to the bounds so indexes still serve."""
        if self.filter.since is not None:
            stmt = stmt.where(column >= self.filter.since - shift)
        if self.filter.until is not None:
            stmt = stmt.where(column < self.filter.until - shift)
        return stmt

    def in_range(self, at: datetime) -> bool:
        return ((self.filter.since is None or at >= self.filter.since)
                and (self.filter.until is None or at < self.filter.until))

    def add(self, issue: Issue) -> None:
        if issue.kind in self.filter.kinds:
            self.issues.append(issue)


# ---------------------------------------------------------------------------------------------------- helpers


def _link(rel: str, ident: str, href: str | None) -> dict[str, str]:
    out = {"rel": rel, "id": ident}
    if href is not None:
        out["href"] = href
    return out


def _device_links(device_id: str | None, officer_id: str | None) -> list[dict[str, str]]:
    links = []
    if device_id:
        links.append(_link("device", device_id, f"/api/v1/devices/{device_id}"))
    if officer_id:
        links.append(_link("officer", officer_id, f"/api/v1/officers/{officer_id}"))
    return links


def _inspection_links(i: Inspection) -> list[dict[str, str]]:
    return [_link("inspection", i.id, f"/api/v1/inspections/{i.id}"),
            _link("coverage", i.id, f"/api/v1/inspections/{i.id}/coverage"),
            _link("case", i.case_id, f"/api/v1/cases/{i.case_id}"),
            *_device_links(i.device_id, i.started_by)]


def _evidence_links(e: Evidence) -> list[dict[str, str]]:
    links = [_link("evidence", e.id, f"/api/v1/evidence/{e.id}"),
             _link("custody", e.id, f"/api/v1/evidence/{e.id}/custody")]
    if e.inspection_id:
        links.append(_link("inspection", e.inspection_id, f"/api/v1/inspections/{e.inspection_id}"))
        if e.camera_serial is not None:
            links.append(_link("coverage", e.inspection_id, f"/api/v1/inspections/{e.inspection_id}/coverage"))
    if e.case_id:
        links.append(_link("case", e.case_id, f"/api/v1/cases/{e.case_id}"))
    return links + _device_links(e.device_id, e.officer_id)


def _has_flag(column: ColumnElement[Any], flag: str) -> ColumnElement[bool]:
    """A JSON list holding `flag`, as text: the same on SQLite and PostgreSQL. Callers re-check in Python."""
    return cast(column, String).contains(json.dumps(flag), autoescape=True)


def _chunks(items: Sequence[Any], size: int = BATCH) -> Iterator[Sequence[Any]]:
    for start in range(0, len(items), size):
        yield items[start:start + size]


def _batches(session: Session, stmt: Select[Any], id_column: ColumnElement[Any],
             id_of: Callable[[Any], Any]) -> Iterator[list[Any]]:
    """Keyset pages of `stmt` by id: memory stays bounded however many rows match."""
    last = None
    while True:
        page = stmt if last is None else stmt.where(id_column > last)
        rows = list(session.execute(page.order_by(id_column).limit(BATCH)))
        if rows:
            yield rows
        if len(rows) < BATCH:
            return
        last = id_of(rows[-1])


def _serial(ident: str) -> int | None:
    """A server-numbered id (chain gaps, conflicts), or None for text no such row can have: never a database error."""
    if not (ident.isascii() and ident.isdigit()) or len(ident) > 10:
        return None
    value = int(ident)
    return value if 0 < value < 2**31 else None


def _span(seconds: float) -> str:
    seconds = int(round(seconds))
    if seconds < 60:
        return f"{seconds} s"
    if seconds < 3600:
        return f"{seconds // 60} min {seconds % 60} s"
    return f"{seconds // 3600} h {seconds % 3600 // 60} min"


def _plural(n: int, word: str) -> str:
    return f"{n} {word}" if n == 1 else f"{n} {word}s"


# ---------------------------------------------------------------------------------------------------- inspections


def _inspections(scan: _Scan, *conditions: ColumnElement[bool], at: ColumnElement[Any],
                 shift: timedelta = timedelta(0)) -> Select[Any]:
    stmt = select(Inspection, Case.department_code).join(Case, Case.id == Inspection.case_id).where(*conditions)
    stmt = scan.within(scan.place(stmt, Inspection.region_code, Case.department_code), at, shift)
    if scan.ident is not None:
        stmt = stmt.where(Inspection.id == scan.ident)
    return stmt


def _coverage(scan: _Scan) -> None:
    """Ended inspections only: an open one has no verdict yet (and shows up as not ended after 12 hours)."""
    stmt = _inspections(scan, Inspection.ended_at.is_not(None), at=Inspection.ended_at)
    for rows in _batches(scan.session, stmt, Inspection.id, lambda row: row[0].id):
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
    for chunk in _chunks(wanted):
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


def _coverage_issue(scan: _Scan, inspection: Inspection, department: str, result: dict[str, Any],
                    declared: int) -> None:
    details = {key: result[key] for key in ("status", "window", "covered_seconds", "ratio", "gaps",
                                            "clip_index_gaps", "clip_chain_breaks", "unverified_clips", "flags")}
    common = {"at": inspection.ended_at, "region_code": inspection.region_code, "department_code": department,
              "details": details, "links": _inspection_links(inspection)}
    if result["status"] == "none":
        if not declared:
            clips_note = "no clip declared"
        elif len(result["unverified_clips"]) == declared:
            clips_note = f"{_plural(declared, 'clip')} declared, none verified"
        else:
            clips_note = f"{_plural(declared, 'clip')} declared, none verified within the window"
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
        parts.append(f"{_plural(len(unexplained), 'unexplained gap')} in the recording ({_span(total)})")
    if missing:
        parts.append(f"{_plural(missing, 'clip number')} never declared")
    if breaks:
        parts.append(f"{_plural(breaks, 'break')} in a camera's clip chain")
    details["unexplained_seconds"] = round(sum(g["seconds"] for g in unexplained), 3)
    scan.add(Issue(key=f"coverage_gap:{inspection.id}", kind="coverage_gap", summary="; ".join(parts), **common))


def _not_ended(scan: _Scan) -> None:
    stmt = _inspections(scan, Inspection.ended_at.is_(None), Inspection.started_at < scan.now - LONG_INSPECTION,
                        at=Inspection.started_at, shift=LONG_INSPECTION)
    for rows in _batches(scan.session, stmt, Inspection.id, lambda row: row[0].id):
        for inspection, department in rows:
            open_for = (scan.now - inspection.started_at).total_seconds()
            scan.add(Issue(
                key=f"inspection_not_ended:{inspection.id}", kind="inspection_not_ended",
                at=inspection.started_at + LONG_INSPECTION, region_code=inspection.region_code,
                department_code=department,
                summary=f"inspection started {_span(open_for)} ago and never ended: its recording cannot be judged",
                details={"started_at": utc_iso(inspection.started_at), "open_seconds": round(open_for),
                         "officers": list(inspection.officers or [])},
                links=_inspection_links(inspection)))


def _certificate(officer: Officer | None, officer_id: str, day: date) -> dict[str, Any]:
    if officer is None:
        return {"id": officer_id, "name": None, "certificate": None, "valid": False, "reason": "unknown_officer"}
    valid = officer.certificate_valid_on(day)
    if valid:
        reason = None
    elif not officer.cert_number or not officer.cert_valid_until:
        reason = "no_certificate"
    elif officer.cert_valid_from and day < officer.cert_valid_from:
        reason = "not_yet_valid"
    else:
        reason = "expired"
    certificate = ({"number": officer.cert_number, "valid_from": utc_iso(officer.cert_valid_from),
                    "valid_until": utc_iso(officer.cert_valid_until)} if officer.cert_number else None)
    return {"id": officer.id, "name": officer.name, "certificate": certificate, "valid": valid, "reason": reason}


def _officers(session: Session, ids: Iterable[str]) -> dict[str, Officer]:
    wanted = sorted(set(ids))
    found: dict[str, Officer] = {}
    for chunk in _chunks(wanted):
        found.update((o.id, o) for o in session.scalars(select(Officer).where(Officer.id.in_(list(chunk)))))
    return found


def _crew(scan: _Scan, rows: list[Any]) -> Iterator[tuple[Inspection, str, date, list[dict[str, Any]]]]:
    known = _officers(scan.session, (oid for row in rows for oid in (row[0].officers or [])))
    for inspection, department in rows:
        day = inspection.started_at.astimezone(LOCAL_TZ).date()
        yield inspection, department, day, [_certificate(known.get(oid), oid, day)
                                             for oid in dict.fromkeys(inspection.officers or [])]


def _too_few_certified(scan: _Scan) -> None:
    stmt = _inspections(scan, _has_flag(Inspection.flags, "fewer_than_two_certified"), at=Inspection.started_at)
    for rows in _batches(scan.session, stmt, Inspection.id, lambda row: row[0].id):
        rows = [row for row in rows if "fewer_than_two_certified" in (row[0].flags or [])]
        for inspection, department, day, crew in _crew(scan, rows):
            certified = sum(1 for c in crew if c["valid"])
            scan.add(Issue(
                key=f"too_few_certified:{inspection.id}", kind="too_few_certified", at=inspection.started_at,
                region_code=inspection.region_code, department_code=department,
                summary=f"{_plural(certified, 'officer')} with a valid certificate present, at least 2 required",
                details={"day": day.isoformat(), "certified": certified, "officers": crew},
                links=_inspection_links(inspection)))


def _expired_certificates(scan: _Scan) -> None:
    """Officers judged against the local day of each inspection, with today's certificate records.

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
    suspects = list(scan.session.scalars(select(Officer.id).where(or_(
        Officer.cert_number.is_(None), Officer.cert_valid_until.is_(None), Officer.cert_valid_until < last_day,
        Officer.cert_valid_from > first_day))))
    conditions = [_has_flag(Inspection.flags, "unknown_officer")]
    conditions += [_has_flag(Inspection.officers, oid) for oid in suspects]
    seen: set[str] = set()
    for chunk in _chunks(conditions, 100):
        stmt = base.where(or_(*chunk))
        for rows in _batches(scan.session, stmt, Inspection.id, lambda row: row[0].id):
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
                    summary=(f"{_plural(len(invalid), 'officer')} present without a certificate valid on "
                             f"{day.isoformat()} ({', '.join(reasons)})"),
                    details={"day": day.isoformat(), "officers": invalid},
                    links=_inspection_links(inspection)
                    + [_link("officer", c["id"], f"/api/v1/officers/{c['id']}") for c in invalid
                       if c["reason"] != "unknown_officer" and c["id"] != inspection.started_by]))


# ---------------------------------------------------------------------------------------------------- evidence


def _evidence(scan: _Scan, *conditions: ColumnElement[bool], at: ColumnElement[Any],
              shift: timedelta = timedelta(0)) -> Select[Any]:
    """Evidence with the department of its case, or of its officer when it belongs to no case."""
    department = func.coalesce(Case.department_code, Officer.department_code)
    stmt = (select(Evidence, department, at).outerjoin(Case, Case.id == Evidence.case_id)
            .outerjoin(Officer, Officer.id == Evidence.officer_id).where(*conditions))
    stmt = scan.within(scan.place(stmt, Evidence.region_code, department), at, shift)
    if scan.ident is not None:
        stmt = stmt.where(Evidence.id == scan.ident)
    return stmt


def _mismatches(scan: _Scan) -> None:
    mismatch_at = (select(func.max(Upload.completed_at))
                   .where(Upload.evidence_id == Evidence.id, Upload.status == "mismatch")
                   .correlate(Evidence).scalar_subquery())
    at = func.coalesce(mismatch_at, Evidence.declared_at)
    stmt = _evidence(scan, Evidence.status == "mismatch", at=at)
    for rows in _batches(scan.session, stmt, Evidence.id, lambda row: row[0].id):
        received: dict[str, list[dict[str, Any]]] = defaultdict(list)
        for u in scan.session.scalars(select(Upload).where(Upload.evidence_id.in_([row[0].id for row in rows]),
                                                           Upload.status == "mismatch")
                                      .order_by(Upload.completed_at, Upload.id)):
            received[u.evidence_id].append({"upload_id": u.id, "sha256": u.received_sha256,
                                            "size": u.received_size, "at": utc_iso(u.completed_at)})
        for e, department, when in rows:
            attempts = received.get(e.id, [])
            scan.add(Issue(
                key=f"evidence_mismatch:{e.id}", kind="evidence_mismatch", at=when, region_code=e.region_code,
                department_code=department,
                summary=(f"{e.kind} uploaded with other bytes than declared "
                         f"({_plural(len(attempts), 'mismatched upload')}, none verified)"),
                details={"kind": e.kind, "media_type": e.media_type, "captured_at": utc_iso(e.captured_at),
                         "declared": {"sha256": e.sha256, "size": e.size}, "received": attempts,
                         "clip": e.clip},
                links=_evidence_links(e)))


def _overdue(scan: _Scan) -> None:
    """Still not uploaded past the deadline, or uploaded only after it (flagged `late_upload` at verification)."""
    deadline = scan.settings.upload_deadline
    waiting = and_(Evidence.status == "declared", Evidence.captured_at < scan.now - deadline)
    stmt = _evidence(scan, or_(waiting, _has_flag(Evidence.flags, "late_upload")), at=Evidence.captured_at,
                     shift=deadline)
    hours = deadline.total_seconds() / 3600
    for rows in _batches(scan.session, stmt, Evidence.id, lambda row: row[0].id):
        attempts = dict(scan.session.execute(
            select(Upload.evidence_id, func.count()).where(Upload.evidence_id.in_([row[0].id for row in rows]))
            .group_by(Upload.evidence_id)).all())
        for e, department, captured in rows:
            due = captured + deadline
            late = e.status != "declared"
            if late and "late_upload" not in (e.flags or []):
                continue
            details: dict[str, Any] = {"status": e.status, "kind": e.kind, "captured_at": utc_iso(e.captured_at),
                                       "declared_at": utc_iso(e.declared_at), "deadline_hours": hours,
                                       "due_at": utc_iso(due), "uploaded": late,
                                       "upload_attempts": attempts.get(e.id, 0)}
            if late:
                # Judged late at verification, under the deadline then in force: that verdict is the record.
                after = (e.verified_at - captured).total_seconds() if e.verified_at else None
                details.update(verified_at=utc_iso(e.verified_at), uploaded_after_seconds=after and round(after))
                summary = (f"{e.kind} uploaded {_span(after)} after capture, past the upload deadline"
                           if after is not None else f"{e.kind} uploaded past the upload deadline")
            else:
                details["overdue_seconds"] = round((scan.now - due).total_seconds())
                summary = (f"{e.kind} declared but not uploaded {_span((scan.now - captured).total_seconds())} "
                           f"after capture (deadline {hours:g} h)")
            scan.add(Issue(key=f"upload_overdue:{e.id}", kind="upload_overdue", at=due, region_code=e.region_code,
                           department_code=department, summary=summary, details=details, links=_evidence_links(e)))


def _exif(scan: _Scan) -> None:
    stmt = _evidence(scan, or_(*(_has_flag(Evidence.flags, f) for f in EXIF_FLAGS)),
                     at=func.coalesce(Evidence.verified_at, Evidence.declared_at))
    for rows in _batches(scan.session, stmt, Evidence.id, lambda row: row[0].id):
        for e, department, when in rows:
            flags = [f for f in EXIF_FLAGS if f in (e.flags or [])]
            if not flags:
                continue
            info = e.media_info or {}
            parts = []
            if "exif_time_differs" in flags and info.get("time_difference_s") is not None:
                parts.append(f"EXIF time {_span(abs(info['time_difference_s']))} "
                             f"{'after' if info['time_difference_s'] > 0 else 'before'} the declared capture time")
            elif "exif_time_differs" in flags:
                parts.append("EXIF time differs from the declared capture time")
            if "gps_differs" in flags:
                distance = info.get("distance_m")
                parts.append(f"EXIF position {round(distance)} m from the declared one" if distance is not None
                             else "EXIF position differs from the declared one")
            scan.add(Issue(
                key=f"exif_disagreement:{e.id}", kind="exif_disagreement", at=when, region_code=e.region_code,
                department_code=department, summary="; ".join(parts),
                details={"flags": flags, "declared_captured_at": utc_iso(e.captured_at),
                         "exif_captured_at": info.get("exif_captured_at"),
                         "time_difference_s": info.get("time_difference_s"),
                         "declared_location": e.location, "exif_location": info.get("exif_location"),
                         "distance_m": info.get("distance_m"), "camera_make": info.get("camera_make"),
                         "camera_model": info.get("camera_model"),
                         "messages": [f for f in info.get("flags", []) if f.get("code") in flags]},
                links=_evidence_links(e)))


# ---------------------------------------------------------------------------------------------------- devices


def _quarantine(scan: _Scan) -> None:
    """Rejections per device, or per pushing officer when the device was not known at all."""
    owner = func.coalesce(Device.officer_id, QuarantinedRecord.officer_id)
    stmt = (select(QuarantinedRecord.device_id, QuarantinedRecord.officer_id, QuarantinedRecord.code, owner,
                   Officer.region_code, Officer.department_code, Device.status, Device.quarantined_total,
                   func.count(), func.min(QuarantinedRecord.received_at), func.max(QuarantinedRecord.received_at))
            .select_from(QuarantinedRecord).outerjoin(Device, Device.id == QuarantinedRecord.device_id)
            .join(Officer, Officer.id == owner)
            .where(QuarantinedRecord.code.not_in(ROUTINE_QUARANTINE_CODES))
            .group_by(QuarantinedRecord.device_id, QuarantinedRecord.officer_id, QuarantinedRecord.code, owner,
                      Officer.region_code, Officer.department_code, Device.status, Device.quarantined_total))
    stmt = scan.place(stmt, Officer.region_code, Officer.department_code)
    if not scan.wants("rejected_records"):
        stmt = stmt.where(QuarantinedRecord.code == "fork")
    elif not scan.wants("fork"):
        stmt = stmt.where(QuarantinedRecord.code != "fork")
    if scan.ident is not None and scan.ident.startswith("officer:"):
        stmt = stmt.where(QuarantinedRecord.device_id.is_(None),
                          QuarantinedRecord.officer_id == scan.ident.removeprefix("officer:"))
    elif scan.ident is not None:
        stmt = stmt.where(QuarantinedRecord.device_id == scan.ident)
    groups: dict[tuple[str, str], dict[str, Any]] = {}
    for device_id, pusher, code, owner_id, region, department, status, total, count, first, last in \
            scan.session.execute(stmt):
        kind = "fork" if code == "fork" else "rejected_records"
        ident = device_id or f"officer:{pusher}"
        group = groups.setdefault((kind, ident), {
            "device_id": device_id, "officer_id": owner_id, "region": region, "department": department,
            "device_status": status, "total": total, "codes": defaultdict(int), "pushed_by": set(),
            "first": first, "last": last})
        group["codes"][code] += count
        group["pushed_by"].add(pusher)
        group["first"], group["last"] = min(group["first"], first), max(group["last"], last)
    fork_devices = sorted({g["device_id"] for (kind, _), g in groups.items() if kind == "fork" and g["device_id"]})
    seqs: dict[str, list[int]] = defaultdict(list)
    for chunk in _chunks(fork_devices):
        for device_id, seq in scan.session.execute(
                select(QuarantinedRecord.device_id, QuarantinedRecord.seq).distinct()
                .where(QuarantinedRecord.code == "fork", QuarantinedRecord.device_id.in_(list(chunk)))
                .order_by(QuarantinedRecord.device_id, QuarantinedRecord.seq)):
            seqs[device_id].append(seq)
    for (kind, ident), g in sorted(groups.items()):
        if not scan.in_range(g["last"]):
            continue
        count = sum(g["codes"].values())
        details = {"device_id": g["device_id"], "officer_id": g["officer_id"], "count": count,
                   "codes": dict(sorted(g["codes"].items())), "first_at": utc_iso(g["first"]),
                   "last_at": utc_iso(g["last"]), "pushed_by": sorted(g["pushed_by"])}
        if g["device_id"]:
            details.update(device_status=g["device_status"], quarantined_ever=g["total"])
        if kind == "fork":
            forked = seqs.get(ident, [])
            details.update(seqs=forked[:MAX_LISTED], seq_count=len(forked))
            summary = (f"{_plural(count, 'record')} signed by the device for seq numbers it had already used "
                       f"({_plural(len(forked), 'seq')})")
        else:
            codes = ", ".join(f"{code} ×{n}" for code, n in details["codes"].items())
            whose = "the device" if g["device_id"] else "an unknown device of the officer"
            summary = f"{_plural(count, 'record')} from {whose} rejected: {codes}"
        scan.add(Issue(key=f"{kind}:{ident}", kind=kind, at=g["last"], region_code=g["region"],
                       department_code=g["department"], summary=summary, details=details,
                       links=_device_links(g["device_id"], g["officer_id"]), changed_at=g["last"]))


def _clock_skew(scan: _Scan) -> None:
    """Records whose `at` ran more than 10 minutes ahead of their receipt, summed up per device."""
    stmt = (select(LedgerRecord.device_id, LedgerRecord.seq, LedgerRecord.at, LedgerRecord.received_at,
                   LedgerRecord.refs, LedgerRecord.flags, Device.officer_id, Officer.region_code,
                   Officer.department_code)
            .join(Device, Device.id == LedgerRecord.device_id).join(Officer, Officer.id == Device.officer_id)
            .where(_has_flag(LedgerRecord.flags, "clock_ahead")))
    stmt = scan.place(stmt, Officer.region_code, Officer.department_code)
    if scan.ident is not None:
        stmt = stmt.where(LedgerRecord.device_id == scan.ident)
    devices: dict[str, dict[str, Any]] = {}
    for rows in _batches(scan.session, stmt.add_columns(LedgerRecord.id), LedgerRecord.id, lambda row: row[-1]):
        for device_id, seq, at, received, refs, flags, officer_id, region, department, _id in rows:
            if "clock_ahead" not in (flags or []) or at is None:
                continue
            d = devices.setdefault(device_id, {"officer_id": officer_id, "region": region, "department": department,
                                               "count": 0, "max": 0.0, "first": received, "last": received,
                                               "seqs": [], "inspections": {}})
            d["count"] += 1
            d["max"] = max(d["max"], (at - received).total_seconds())
            d["first"], d["last"] = min(d["first"], received), max(d["last"], received)
            if len(d["seqs"]) < MAX_LISTED:
                d["seqs"].append(seq)
            if isinstance(refs, dict) and refs.get("inspection_id"):
                d["inspections"][refs["inspection_id"]] = None
    for device_id, d in sorted(devices.items()):
        if not scan.in_range(d["last"]):
            continue
        inspections = list(d["inspections"])
        scan.add(Issue(
            key=f"clock_skew:{device_id}", kind="clock_skew", at=d["last"], region_code=d["region"],
            department_code=d["department"],
            summary=(f"device clock up to {_span(d['max'])} ahead of the server on "
                     f"{_plural(d['count'], 'record')}"),
            details={"device_id": device_id, "officer_id": d["officer_id"], "records": d["count"],
                     "max_ahead_seconds": round(d["max"], 3), "first_at": utc_iso(d["first"]),
                     "last_at": utc_iso(d["last"]), "seqs": sorted(d["seqs"]),
                     "inspections": inspections[:MAX_LISTED], "inspection_count": len(inspections)},
            links=_device_links(device_id, d["officer_id"])
            + [_link("inspection", i, f"/api/v1/inspections/{i}") for i in inspections[:MAX_LISTED]],
            changed_at=d["last"]))


def _chain_gaps(scan: _Scan) -> None:
    stmt = (select(ChainGap, Device.officer_id, Officer.region_code, Officer.department_code)
            .join(Device, Device.id == ChainGap.device_id).join(Officer, Officer.id == Device.officer_id))
    stmt = scan.within(scan.place(stmt, Officer.region_code, Officer.department_code), ChainGap.released_at)
    if scan.ident is not None:
        if (serial := _serial(scan.ident)) is None:
            return
        stmt = stmt.where(ChainGap.id == serial)
    for rows in _batches(scan.session, stmt, ChainGap.id, lambda row: row[0].id):
        for gap, officer_id, region, department in rows:
            missing = gap.last_seq - gap.first_seq + 1
            released = "by timeout" if gap.released_by is None and gap.reason == "timeout" else "by a reviewer"
            scan.add(Issue(
                key=f"chain_gap:{gap.id}", kind="chain_gap", at=gap.released_at, region_code=region,
                department_code=department,
                summary=(f"{_plural(missing, 'record')} (seq {gap.first_seq}–{gap.last_seq}) never delivered; "
                         f"released {released}: {gap.reason}"),
                details={"device_id": gap.device_id, "officer_id": officer_id, "first_seq": gap.first_seq,
                         "last_seq": gap.last_seq, "missing": missing, "released_by": gap.released_by,
                         "reason": gap.reason},
                links=_device_links(gap.device_id, officer_id)
                + ([_link("released_by", gap.released_by, f"/api/v1/officers/{gap.released_by}")]
                   if gap.released_by else [])))


# ---------------------------------------------------------------------------------------------------- cases


def _conflicts(scan: _Scan) -> None:
    stmt = (select(CaseConflict, Case.region_code, Case.department_code)
            .join(Case, Case.id == CaseConflict.case_id).where(CaseConflict.status == "open"))
    stmt = scan.within(scan.place(stmt, Case.region_code, Case.department_code), CaseConflict.created_at)
    if scan.ident is not None:
        if (serial := _serial(scan.ident)) is None:
            return
        stmt = stmt.where(CaseConflict.id == serial)
    for rows in _batches(scan.session, stmt, CaseConflict.id, lambda row: row[0].id):
        for c, region, department in rows:
            scan.add(Issue(
                key=f"open_conflict:{c.id}", kind="open_conflict", at=c.created_at, region_code=region,
                department_code=department,
                summary=f"case field {c.field!r} changed offline while the server's value moved on; unresolved",
                details={"conflict_id": str(c.id), "case_id": c.case_id, "field": c.field,
                         "base_version": c.base_version, "base_value": c.base_value,
                         "server_value": c.server_value, "phone_value": c.phone_value, "officer_id": c.officer_id},
                links=[_link("conflict", str(c.id), f"/api/v1/conflicts?case_id={c.case_id}"),
                       _link("resolve", str(c.id), f"/api/v1/conflicts/{c.id}/resolve"),
                       _link("case", c.case_id, f"/api/v1/cases/{c.case_id}"),
                       _link("officer", c.officer_id, f"/api/v1/officers/{c.officer_id}")]))


COLLECTORS: tuple[tuple[tuple[str, ...], Callable[[_Scan], None]], ...] = (
    (("coverage_gap", "no_recording"), _coverage),
    (("inspection_not_ended",), _not_ended),
    (("evidence_mismatch",), _mismatches),
    (("upload_overdue",), _overdue),
    (("exif_disagreement",), _exif),
    (("too_few_certified",), _too_few_certified),
    (("expired_certificate",), _expired_certificates),
    (("clock_skew",), _clock_skew),
    (("rejected_records", "fork"), _quarantine),
    (("chain_gap",), _chain_gaps),
    (("open_conflict",), _conflicts),
)


# ---------------------------------------------------------------------------------------------------- public


def _require_reviewer(viewer: Officer) -> None:
    if not viewer.has_role(*REVIEWER_ROLES):
        raise Forbidden("the audit is for reviewers: this needs one of the roles " + ", ".join(REVIEWER_ROLES))


def _collect(scan: _Scan) -> list[Issue]:
    for kinds, collector in COLLECTORS:
        if scan.wants(*kinds):
            collector(scan)
    return scan.issues


def _latest_reviews(session: Session, keys: Iterable[str]) -> dict[str, AuditReview]:
    latest: dict[str, AuditReview] = {}
    for chunk in _chunks(sorted(set(keys))):
        newest = (select(func.max(AuditReview.id)).where(AuditReview.issue_key.in_(list(chunk)))
                  .group_by(AuditReview.issue_key))
        latest.update((r.issue_key, r) for r in session.scalars(select(AuditReview).where(AuditReview.id.in_(newest))))
    return latest


def _names(session: Session, reviews: Iterable[AuditReview]) -> dict[str, str]:
    return {oid: o.name for oid, o in _officers(session, (r.reviewed_by for r in reviews)).items()}


def _review_data(review: AuditReview, names: dict[str, str]) -> dict[str, Any]:
    return {"id": str(review.id), "issue_key": review.issue_key, "kind": review.kind,
            "region_code": review.region_code, "by": review.reviewed_by, "by_name": names.get(review.reviewed_by),
            "at": review.reviewed_at, "comment": review.comment}


def _issues_with_reviews(session: Session, issues: list[Issue]) -> list[dict[str, Any]]:
    reviews = _latest_reviews(session, (i.key for i in issues))
    names = _names(session, reviews.values())
    return [i.as_dict(reviews.get(i.key), names) for i in issues]


def list_issues(session: Session, viewer: Officer, filters: IssueFilter, settings: AuditSettings, *,
                page: int = 1, page_size: int = 50, now: datetime | None = None
                ) -> tuple[list[dict[str, Any]], int]:
    """The issues within the viewer's jurisdiction that match, newest first (ties by key), and their total."""
    _require_reviewer(viewer)
    unknown = set(filters.kinds) - set(KINDS)
    if unknown:
        raise Invalid("unknown issue kind", errors={"kind": [f"not a kind: {', '.join(sorted(unknown))}"]})
    scan = _Scan(session=session, viewer=viewer, filter=filters, settings=settings, now=now or utcnow())
    issues = _issues_with_reviews(session, _collect(scan))
    if filters.reviewed is not None:
        issues = [i for i in issues if i["reviewed"] is filters.reviewed]
    issues.sort(key=lambda i: (i["at"], i["key"]), reverse=True)
    start = (page - 1) * page_size
    return issues[start:start + page_size], len(issues)


def _find(session: Session, viewer: Officer, key: str, settings: AuditSettings, now: datetime | None) -> Issue:
    kind, _, ident = key.partition(":")
    # NUL and other unprintable text can name no issue, and PostgreSQL would refuse it as a parameter.
    if kind not in KINDS or not ident or len(key) > MAX_KEY or not key.isprintable():
        raise NotFound(f"no audit issue {key!r}")
    scan = _Scan(session=session, viewer=viewer, filter=IssueFilter(kinds=frozenset({kind})), settings=settings,
                 now=now or utcnow(), ident=ident)
    for issue in _collect(scan):
        if issue.key == key:
            return issue
    raise NotFound(f"no audit issue {key!r}")


def get_issue(session: Session, viewer: Officer, key: str, settings: AuditSettings, *,
              now: datetime | None = None) -> dict[str, Any]:
    """One issue as it stands now; `NotFound` when it does not (or no longer) exist or lies outside jurisdiction."""
    _require_reviewer(viewer)
    return _issues_with_reviews(session, [_find(session, viewer, key, settings, now)])[0]


def mark_reviewed(session: Session, viewer: Officer, key: str, comment: str, settings: AuditSettings, *,
                  now: datetime | None = None) -> dict[str, Any]:
    """Append the viewer's review of an issue that exists now and that they may see; answer the issue with it.

    The issue is recomputed rather than trusted from the key, so nobody can
    mark (and so pre-empt) an issue that has not arisen or that belongs to
    another jurisdiction.
    """
    _require_reviewer(viewer)
    text = (comment or "").strip()
    if not text:
        raise Invalid("a review needs a comment", errors={"comment": ["must not be empty"]})
    if "\x00" in text:
        raise Invalid("a comment cannot hold NUL characters", errors={"comment": ["contains NUL"]})
    if len(text) > MAX_COMMENT:
        raise Invalid("comment too long", errors={"comment": [f"at most {MAX_COMMENT} characters"]})
    issue = _find(session, viewer, key, settings, now)
    review = AuditReview(issue_key=issue.key, kind=issue.kind, region_code=issue.region_code,
                         reviewed_by=viewer.id, reviewed_at=utcnow(), comment=text)
    session.add(review)
    session.flush()
    return issue.as_dict(review, {viewer.id: viewer.name})


def list_reviews(session: Session, viewer: Officer, *, issue_key: str | None = None, kind: str | None = None,
                 region: str | None = None, reviewed_by: str | None = None, since: datetime | None = None,
                 until: datetime | None = None, page: int = 1, page_size: int = 50
                 ) -> tuple[list[dict[str, Any]], int]:
    """The review log itself, newest first, within the viewer's jurisdiction (by the reviewed issue's region)."""
    _require_reviewer(viewer)
    stmt = scope(select(AuditReview), AuditReview.region_code, viewer)
    for column, value in ((AuditReview.issue_key, issue_key), (AuditReview.kind, kind),
                          (AuditReview.region_code, region), (AuditReview.reviewed_by, reviewed_by)):
        if value:
            stmt = stmt.where(column == value)
    if since is not None:
        stmt = stmt.where(AuditReview.reviewed_at >= since)
    if until is not None:
        stmt = stmt.where(AuditReview.reviewed_at < until)
    rows, total = paginate(session, stmt, AuditReview.id.desc(), page=page, page_size=page_size)
    names = _names(session, rows)
    return [_review_data(r, names) for r in rows], total
