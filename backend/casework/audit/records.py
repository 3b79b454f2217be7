"""Issues about devices and the records they pushed: rejections, forks, clock skew, chain gaps, open conflicts,
records applied with a slip that still need correction.

Device-level issues (`rejected_records`, `fork`, `clock_skew`) sum up a
device's history; their `at` is the latest occurrence, and a review older than
that no longer counts as reviewed: a reviewer judged the device as it stood,
not what it did afterwards. A `chain_gap` is a run of seq numbers released
without ever arriving; an `open_conflict` a case field a record changed offline
while the server's value moved on. Gaps and conflicts are numbered by the
server, hence `_serial`.
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any

from sqlalchemy import func, select

from backend.casework.audit.scan import Issue, Scan, batches, chunks, device_links, duration, has_flag, link, plural
from backend.core.models import (
    Case,
    CaseConflict,
    ChainGap,
    Correction,
    Device,
    Finding,
    Inspection,
    LedgerRecord,
    Officer,
    QuarantinedRecord,
)
from backend.core.times import utc_iso
from sync.quarantine import NOT_REJECTIONS

# A re-signed record replacing a held one is the phone recovering as PROTOCOL §4 asks, not a rejection to audit
# (the rule's home is sync.quarantine, which keeps a device's `quarantined` count by it too).
ROUTINE_QUARANTINE_CODES = NOT_REJECTIONS
# Long lists in details (seqs, inspections) are cut here; the counts next to them stay exact.
MAX_LISTED = 100


def _serial(ident: str) -> int | None:
    """A server-numbered id (chain gaps, conflicts), or None for text no such row can have: never a database error."""
    if not (ident.isascii() and ident.isdigit()) or len(ident) > 10:
        return None
    value = int(ident)
    return value if 0 < value < 2**31 else None


# ---------------------------------------------------------------------------------------------------- devices


def quarantine(scan: Scan) -> None:
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
    for chunk in chunks(fork_devices):
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
            summary = (f"{plural(count, 'record')} signed by the device for seq numbers it had already used "
                       f"({plural(len(forked), 'seq')})")
        else:
            codes = ", ".join(f"{code} ×{n}" for code, n in details["codes"].items())
            whose = "the device" if g["device_id"] else "an unknown device of the officer"
            summary = f"{plural(count, 'record')} from {whose} rejected: {codes}"
        scan.add(Issue(key=f"{kind}:{ident}", kind=kind, at=g["last"], region_code=g["region"],
                       department_code=g["department"], summary=summary, details=details,
                       links=device_links(g["device_id"], g["officer_id"]), changed_at=g["last"]))


def clock_skew(scan: Scan) -> None:
    """Records whose `at` ran more than 10 minutes ahead of their receipt, summed up per device."""
    stmt = (select(LedgerRecord.device_id, LedgerRecord.seq, LedgerRecord.at, LedgerRecord.received_at,
                   LedgerRecord.refs, LedgerRecord.flags, Device.officer_id, Officer.region_code,
                   Officer.department_code)
            .join(Device, Device.id == LedgerRecord.device_id).join(Officer, Officer.id == Device.officer_id)
            .where(has_flag(LedgerRecord.flags, "clock_ahead")))
    stmt = scan.place(stmt, Officer.region_code, Officer.department_code)
    if scan.ident is not None:
        stmt = stmt.where(LedgerRecord.device_id == scan.ident)
    devices: dict[str, dict[str, Any]] = {}
    for rows in batches(scan.session, stmt.add_columns(LedgerRecord.id), LedgerRecord.id, lambda row: row[-1]):
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
            summary=(f"device clock up to {duration(d['max'])} ahead of the server on "
                     f"{plural(d['count'], 'record')}"),
            details={"device_id": device_id, "officer_id": d["officer_id"], "records": d["count"],
                     "max_ahead_seconds": round(d["max"], 3), "first_at": utc_iso(d["first"]),
                     "last_at": utc_iso(d["last"]), "seqs": sorted(d["seqs"]),
                     "inspections": inspections[:MAX_LISTED], "inspection_count": len(inspections)},
            links=device_links(device_id, d["officer_id"])
            + [link("inspection", i, f"/api/v1/inspections/{i}") for i in inspections[:MAX_LISTED]],
            changed_at=d["last"]))


def chain_gaps(scan: Scan) -> None:
    stmt = (select(ChainGap, Device.officer_id, Officer.region_code, Officer.department_code)
            .join(Device, Device.id == ChainGap.device_id).join(Officer, Officer.id == Device.officer_id))
    stmt = scan.within(scan.place(stmt, Officer.region_code, Officer.department_code), ChainGap.released_at)
    if scan.ident is not None:
        if (serial := _serial(scan.ident)) is None:
            return
        stmt = stmt.where(ChainGap.id == serial)
    for rows in batches(scan.session, stmt, ChainGap.id, lambda row: row[0].id):
        for gap, officer_id, region, department in rows:
            missing = gap.last_seq - gap.first_seq + 1
            released = "by timeout" if gap.released_by is None and gap.reason == "timeout" else "by a reviewer"
            scan.add(Issue(
                key=f"chain_gap:{gap.id}", kind="chain_gap", at=gap.released_at, region_code=region,
                department_code=department,
                summary=(f"{plural(missing, 'record')} (seq {gap.first_seq}–{gap.last_seq}) never delivered; "
                         f"released {released}: {gap.reason}"),
                details={"device_id": gap.device_id, "officer_id": officer_id, "first_seq": gap.first_seq,
                         "last_seq": gap.last_seq, "missing": missing, "released_by": gap.released_by,
                         "reason": gap.reason},
                links=device_links(gap.device_id, officer_id)
                + ([link("released_by", gap.released_by, f"/api/v1/officers/{gap.released_by}")]
                   if gap.released_by else [])))


# ---------------------------------------------------------------------------------------------------- cases


def conflicts(scan: Scan) -> None:
    stmt = (select(CaseConflict, Case.region_code, Case.department_code)
            .join(Case, Case.id == CaseConflict.case_id).where(CaseConflict.status == "open"))
    stmt = scan.within(scan.place(stmt, Case.region_code, Case.department_code), CaseConflict.created_at)
    if scan.ident is not None:
        if (serial := _serial(scan.ident)) is None:
            return
        stmt = stmt.where(CaseConflict.id == serial)
    for rows in batches(scan.session, stmt, CaseConflict.id, lambda row: row[0].id):
        for c, region, department in rows:
            scan.add(Issue(
                key=f"open_conflict:{c.id}", kind="open_conflict", at=c.created_at, region_code=region,
                department_code=department,
                summary=f"case field {c.field!r} changed offline while the server's value moved on; unresolved",
                details={"conflict_id": str(c.id), "case_id": c.case_id, "field": c.field,
                         "base_version": c.base_version, "base_value": c.base_value,
                         "server_value": c.server_value, "phone_value": c.phone_value, "officer_id": c.officer_id},
                links=[link("conflict", str(c.id), f"/api/v1/conflicts?case_id={c.case_id}"),
                       link("resolve", str(c.id), f"/api/v1/conflicts/{c.id}/resolve"),
                       link("case", c.case_id, f"/api/v1/cases/{c.case_id}"),
                       link("officer", c.officer_id, f"/api/v1/officers/{c.officer_id}")]))


def needs_correction(scan: Scan) -> None:
    """A case.open on an unmatched institution, or a finding with a category the catalogue lacks, whose flagged
    field no correction has set yet (docs/protocol.md, "Corrections"); a finding of an inspection not known yet has
    no case, hence no place, and waits for it."""
    columns = (LedgerRecord.id, LedgerRecord.op, LedgerRecord.type, LedgerRecord.refs, LedgerRecord.flags,
               LedgerRecord.received_at, LedgerRecord.device_id, LedgerRecord.officer_id, Case.id.label("case_id"),
               Case.region_code, Case.department_code)
    flagged = (has_flag(LedgerRecord.flags, "needs_correction"), LedgerRecord.status == "applied")
    opens = select(*columns).join(Case, Case.id == LedgerRecord.refs["case_id"].as_string()).where(
        LedgerRecord.type == "case.open", *flagged)
    findings = (select(*columns).join(Finding, Finding.op == LedgerRecord.op)
                .join(Inspection, Inspection.id == Finding.inspection_id).join(Case, Case.id == Inspection.case_id)
                .where(LedgerRecord.type == "inspection.finding", *flagged))
    for stmt in (opens, findings):
        stmt = scan.within(scan.place(stmt, Case.region_code, Case.department_code), LedgerRecord.received_at)
        if scan.ident is not None:
            stmt = stmt.where(LedgerRecord.op == scan.ident)
        for rows in batches(scan.session, stmt, LedgerRecord.id, lambda row: row.id):
            _needing(scan, rows)


def _needing(scan: Scan, rows: list[Any]) -> None:
    subjects = {("case", row.case_id) if row.type == "case.open" else ("finding", (row.refs or {}).get("finding_id"))
                for row in rows}
    corrected = {(c.subject, c.subject_id, name) for chunk in chunks(sorted({i for _s, i in subjects}))
                 for c in scan.session.scalars(select(Correction).where(Correction.subject_id.in_(list(chunk))))
                 for name in c.fields}
    for row in rows:
        if "needs_correction" not in (row.flags or []):
            continue
        subject, subject_id = (("case", row.case_id) if row.type == "case.open"
                               else ("finding", (row.refs or {}).get("finding_id")))
        needs = [n for n in (row.refs or {}).get("needs_correction") or []
                 if (subject, subject_id, n.get("field")) not in corrected]
        if not needs:
            continue
        codes = ", ".join(str(n.get("code")) for n in needs)
        scan.add(Issue(
            key=f"needs_correction:{row.op}", kind="needs_correction", at=row.received_at,
            region_code=row.region_code, department_code=row.department_code,
            summary=f"{row.type} applied with a slip ({codes}): its {subject} needs correction",
            details={"op": row.op, "type": row.type, "case_id": row.case_id, "subject": subject,
                     "subject_id": subject_id, "needs": needs},
            links=[link("case", row.case_id, f"/api/v1/cases/{row.case_id}"),
                   link("correct", row.case_id, f"/api/v1/cases/{row.case_id}/corrections"),
                   *device_links(row.device_id, row.officer_id)]))
