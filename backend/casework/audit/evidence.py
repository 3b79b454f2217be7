"""Issues about evidence items: bytes that are not the declared ones, uploads overdue or late, EXIF that disagrees.

`evidence_mismatch` is an item whose uploads all hashed to other bytes than
the signed declaration; `upload_overdue` one still not uploaded past the
deadline, or verified only after it; `exif_disagreement` a photo whose EXIF
time or position differs from what the phone declared.
"""

from __future__ import annotations

from collections import defaultdict
from datetime import timedelta
from typing import Any

from sqlalchemy import Select, and_, func, or_, select
from sqlalchemy.sql.elements import ColumnElement

from backend.casework.audit.scan import Issue, Scan, batches, device_links, duration, has_flag, link, plural
from backend.core.models import Case, Evidence, Officer, Upload
from backend.core.times import utc_iso
from media.coverage import clip_data

EXIF_FLAGS = ("exif_time_differs", "gps_differs")


def _evidence_links(e: Evidence) -> list[dict[str, str]]:
    links = [link("evidence", e.id, f"/api/v1/evidence/{e.id}"),
             link("custody", e.id, f"/api/v1/evidence/{e.id}/custody")]
    if e.inspection_id:
        links.append(link("inspection", e.inspection_id, f"/api/v1/inspections/{e.inspection_id}"))
        if e.camera_serial is not None:
            links.append(link("coverage", e.inspection_id, f"/api/v1/inspections/{e.inspection_id}/coverage"))
    if e.case_id:
        links.append(link("case", e.case_id, f"/api/v1/cases/{e.case_id}"))
    return links + device_links(e.device_id, e.officer_id)


def _evidence(scan: Scan, *conditions: ColumnElement[bool], at: ColumnElement[Any],
              shift: timedelta = timedelta(0)) -> Select[Any]:
    """Evidence with the department of its case, or of its officer when it belongs to no case."""
    department = func.coalesce(Case.department_code, Officer.department_code)
    stmt = (select(Evidence, department, at).outerjoin(Case, Case.id == Evidence.case_id)
            .outerjoin(Officer, Officer.id == Evidence.officer_id).where(*conditions))
    stmt = scan.within(scan.place(stmt, Evidence.region_code, department), at, shift)
    if scan.ident is not None:
        stmt = stmt.where(Evidence.id == scan.ident)
    return stmt


def mismatches(scan: Scan) -> None:
    mismatch_at = (select(func.max(Upload.completed_at))
                   .where(Upload.evidence_id == Evidence.id, Upload.status == "mismatch")
                   .correlate(Evidence).scalar_subquery())
    at = func.coalesce(mismatch_at, Evidence.declared_at)
    stmt = _evidence(scan, Evidence.status == "mismatch", at=at)
    for rows in batches(scan.session, stmt, Evidence.id, lambda row: row[0].id):
        received: dict[str, list[dict[str, Any]]] = defaultdict(list)
        for u in scan.session.scalars(select(Upload).where(Upload.evidence_id.in_([row[0].id for row in rows]),
                                                           Upload.status == "mismatch")
                                      .order_by(Upload.completed_at, Upload.id)):
            received[u.evidence_id].append({"upload_id": u.id, "sha256": u.received_sha256,
                                            **({"sm3": u.received_sm3} if u.received_sm3 else {}),
                                            "size": u.received_size, "at": utc_iso(u.completed_at)})
        for e, department, when in rows:
            attempts = received.get(e.id, [])
            scan.add(Issue(
                key=f"evidence_mismatch:{e.id}", kind="evidence_mismatch", at=when, region_code=e.region_code,
                department_code=department,
                summary=(f"{e.kind} uploaded with other bytes than declared "
                         f"({plural(len(attempts), 'mismatched upload')}, none verified)"),
                details={"kind": e.kind, "media_type": e.media_type, "captured_at": utc_iso(e.captured_at),
                         "declared": {"sha256": e.sha256, **({"sm3": e.sm3} if e.sm3 else {}), "size": e.size},
                         "received": attempts,
                         "clip": clip_data(e.clip)},
                links=_evidence_links(e)))


def overdue(scan: Scan) -> None:
    """Still not uploaded past the deadline, or uploaded only after it (flagged `late_upload` at verification)."""
    deadline = scan.settings.upload_deadline
    waiting = and_(Evidence.status == "declared", Evidence.captured_at < scan.now - deadline)
    stmt = _evidence(scan, or_(waiting, has_flag(Evidence.flags, "late_upload")), at=Evidence.captured_at,
                     shift=deadline)
    hours = deadline.total_seconds() / 3600
    for rows in batches(scan.session, stmt, Evidence.id, lambda row: row[0].id):
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
                summary = (f"{e.kind} uploaded {duration(after)} after capture, past the upload deadline"
                           if after is not None else f"{e.kind} uploaded past the upload deadline")
            else:
                details["overdue_seconds"] = round((scan.now - due).total_seconds())
                summary = (f"{e.kind} declared but not uploaded {duration((scan.now - captured).total_seconds())} "
                           f"after capture (deadline {hours:g} h)")
            scan.add(Issue(key=f"upload_overdue:{e.id}", kind="upload_overdue", at=due, region_code=e.region_code,
                           department_code=department, summary=summary, details=details, links=_evidence_links(e)))


def exif(scan: Scan) -> None:
    stmt = _evidence(scan, or_(*(has_flag(Evidence.flags, f) for f in EXIF_FLAGS)),
                     at=func.coalesce(Evidence.verified_at, Evidence.declared_at))
    for rows in batches(scan.session, stmt, Evidence.id, lambda row: row[0].id):
        for e, department, when in rows:
            flags = [f for f in EXIF_FLAGS if f in (e.flags or [])]
            if not flags:
                continue
            info = e.media_info or {}
            parts = []
            if "exif_time_differs" in flags and info.get("time_difference_s") is not None:
                parts.append(f"EXIF time {duration(abs(info['time_difference_s']))} "
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
