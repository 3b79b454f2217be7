"""Evidence retention: which stored files have outlived the retention period, and deleting them under custody.

The rule (issue 5, PROTOCOL "Retention, as built"): recordings are kept at
least `retention_days` (legal minimum 180, about six months) and evidence
linked to a case is kept for good. An item is *expired and unlinked* when:

- it has a stored file (`verified`, or `mismatch` with the received bytes set apart);
- both its capture time and its arrival at the server are older than the
  period: a phone whose clock was wrong cannot shorten it;
- no finding cites it, and nothing ties it to a case that may still need it:
  no case at all, or a case closed without a decision (`dismissed`,
  `not_penalised`). Open cases, `closed` (after a decision) and `transferred`
  keep their evidence; so does an inspection the server has not seen yet,
  since it may belong to any case;
- no custody hand-over of it is waiting for its receiver.

Deleting removes the bytes (the original unless another live item shares the
content-addressed object, the thumbnail, mismatch copies, staged bytes of an
open upload) and keeps everything else: the evidence row with its hash, its
ledger record, its custody history, plus a `deleted` custody event. The item
is then `deleted` and the upload paths answer 410 Gone, so a file once
deleted is never re-created for it.

A purge is planned (`plan_purge`), then each item is deleted in its own
short transaction (`purge_item`), which the edge commits once its bytes are
gone (`backend.core.uow.commit_each`): a store failure costs that item only
(`purge_failed`), and the custody event is durable the moment the file is.
The bytes are removed after the database changes are flushed and before they
commit; a failure then rolls the item back, and since the original is removed
last, an item reported `failed` still has its original (a removed thumbnail
or mismatch copy can be left gone; a rerun finishes the job, deletes being
idempotent). `finish_purge` then counts what is left.

Races: on PostgreSQL the evidence row and its open uploads are locked in the
order upload verification takes them, and a transaction-level advisory lock
per content address serialises "is this object still used?" against a
concurrent verification promoting the same bytes (`lock_object`, also taken
by media.uploads). SQLite runs one writer at a time (BEGIN IMMEDIATE).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import ColumnElement, Select, and_, exists, func, or_, select, text, true
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session, aliased

from backend.core import variables
from backend.core.errors import Forbidden, Gone, Invalid, RetentionMisconfigured
from backend.core.jurisdiction import may_see_region, scope
from backend.core.models import Case, CustodyHolder, Evidence, Finding, Inspection, Officer, Upload
from backend.core.paging import paginate
from backend.core.times import utc_millis
from media.custody import log as custody
from media.store import Store, StoreError
from sync import feed

log = logging.getLogger("fieldcase.retention")

# The legal minimum lives with its setting (refused at start); a purge refuses it too, for settings made in code.
MIN_RETENTION_DAYS = variables.MIN_RETENTION_DAYS
# Closed without a decision: nothing left that the evidence could prove.
RELEASED_CASE_STATUSES = ("dismissed", "not_penalised")
STORED_STATUSES = ("verified", "mismatch")
OBJECT_LOCK_NAMESPACE = 0x6663_6F62  # "fcob"
PURGE_ERRORS = (StoreError, SQLAlchemyError)  # what fails one item of a purge (`purge_failed`), not the purge


def check_retention_days(retention_days: int) -> timedelta:
    if retention_days < MIN_RETENTION_DAYS:
        raise RetentionMisconfigured(
            f"FIELDCASE_RETENTION_DAYS is {retention_days}, below the legal minimum of {MIN_RETENTION_DAYS} days "
            "(six months); nothing is deleted until it is raised",
            errors={"retention_days": [f"must be at least {MIN_RETENTION_DAYS}"]})
    return timedelta(days=retention_days)


def cutoff(now: datetime, retention_days: int) -> datetime:
    """Items captured and received before this instant have outlived the period."""
    return now - check_retention_days(retention_days)


def lock_object(session: Session, sha256: str) -> None:
    """Serialise work on one content-addressed object until commit (PostgreSQL; SQLite has one writer)."""
    if session.get_bind().dialect.name == "postgresql":
        session.execute(text("SELECT pg_advisory_xact_lock(:ns, :key)"),
                        {"ns": OBJECT_LOCK_NAMESPACE, "key": int(sha256[:8], 16) - 2**31})


def gone(evidence: Evidence) -> Gone:
    """What every upload or read of a deleted item answers: the phone stops and may drop its copy."""
    when = utc_millis(evidence.deleted_at) if evidence.deleted_at else "an earlier date"
    return Gone(f"evidence {evidence.id} was deleted under the retention policy on {when}; its file is neither "
                "accepted nor served again (its record, hash and custody history are kept), and the phone may "
                "delete its own copy", errors={"evidence_id": ["deleted under the retention policy"]})


def _cited(session: Session) -> ColumnElement[bool]:
    """Some finding lists the item among its evidence (a JSON array of ids), in each dialect's own JSON terms."""
    if session.get_bind().dialect.name == "postgresql":
        ids = func.json_array_elements_text(Finding.evidence).table_valued("value").lateral()
        return exists(select(1).select_from(Finding).join(ids, true()).where(ids.c.value == Evidence.id))
    ids = func.json_each(Finding.evidence).table_valued("value", "type")
    # NOT IN over an uncorrelated subquery: SQLite builds it once; a JSON null would make NOT IN unknown, hence type.
    return Evidence.id.in_(select(ids.c.value).select_from(Finding).join(ids, true()).where(ids.c.type == "text"))


def _expired(session: Session, viewer: Officer, cut: datetime) -> Select[Any]:
    own_case, inspection, inspection_case = aliased(Case), aliased(Inspection), aliased(Case)
    pending = exists(select(1).where(CustodyHolder.evidence_id == Evidence.id, CustodyHolder.pending_to.is_not(None)))
    stmt = (select(Evidence)
            .outerjoin(own_case, own_case.id == Evidence.case_id)
            .outerjoin(inspection, inspection.id == Evidence.inspection_id)
            .outerjoin(inspection_case, inspection_case.id == inspection.case_id)
            .where(Evidence.status.in_(STORED_STATUSES), Evidence.deleted_at.is_(None),
                   Evidence.captured_at < cut, Evidence.declared_at < cut,
                   or_(Evidence.case_id.is_(None), own_case.status.in_(RELEASED_CASE_STATUSES)),
                   or_(Evidence.inspection_id.is_(None), inspection_case.status.in_(RELEASED_CASE_STATUSES)),
                   ~pending, ~_cited(session)))
    return scope(stmt, Evidence.region_code, viewer)


def _case_status(session: Session, items: list[Evidence]) -> dict[str, str | None]:
    inspections = {e.inspection_id for e in items if e.inspection_id and not e.case_id}
    via = dict(session.execute(select(Inspection.id, Inspection.case_id).where(Inspection.id.in_(inspections))).all()
               ) if inspections else {}
    case_of = {e.id: e.case_id or via.get(e.inspection_id or "") for e in items}
    wanted = {c for c in case_of.values() if c}
    statuses = dict(session.execute(select(Case.id, Case.status).where(Case.id.in_(wanted))).all()) if wanted else {}
    return {eid: statuses.get(cid) if cid else None for eid, cid in case_of.items()}


def candidate(evidence: Evidence, case_status: str | None, period: timedelta) -> dict[str, Any]:
    return {"evidence_id": evidence.id, "kind": evidence.kind, "media_type": evidence.media_type,
            "sha256": evidence.sha256, "size": evidence.size, "status": evidence.status,
            "captured_at": evidence.captured_at, "declared_at": evidence.declared_at,
            "expired_at": max(evidence.captured_at, evidence.declared_at) + period,
            "case_id": evidence.case_id, "case_status": case_status, "inspection_id": evidence.inspection_id,
            "officer_id": evidence.officer_id, "region_code": evidence.region_code,
            "has_thumbnail": evidence.thumbnail_key is not None}


def expired_candidates(session: Session, viewer: Officer, now: datetime, retention_days: int, *, page: int = 1,
                       page_size: int = 50) -> tuple[list[dict[str, Any]], int]:
    """A page of the items a purge at `now` would delete, oldest first, within the viewer's jurisdiction."""
    period = check_retention_days(retention_days)
    rows, total = paginate(session, _expired(session, viewer, now - period), Evidence.captured_at, Evidence.id,
                           page=page, page_size=page_size)
    statuses = _case_status(session, rows)
    return [candidate(e, statuses[e.id], period) for e in rows], total


@dataclass
class PurgeItem:
    evidence_id: str
    result: str  # deleted, would_delete, skipped, failed
    reason: str | None = None
    sha256: str | None = None
    size: int | None = None
    removed: list[str] = field(default_factory=list)
    kept: list[str] = field(default_factory=list)
    error: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return {"evidence_id": self.evidence_id, "result": self.result, "reason": self.reason,
                "sha256": self.sha256, "size": self.size, "removed": self.removed, "kept": self.kept,
                "error": self.error}


@dataclass
class PurgeReport:
    dry_run: bool
    retention_days: int
    cutoff: datetime
    reason: str = ""
    items: list[PurgeItem] = field(default_factory=list)
    remaining: int = 0
    pending: list[str] = field(default_factory=list)  # the items still to delete, each by `purge_item`
    order: list[str] = field(default_factory=list)  # the ids as the caller listed them

    def count(self, result: str) -> int:
        return sum(1 for i in self.items if i.result == result)

    @property
    def ok(self) -> bool:
        return not self.count("failed")

    def as_dict(self) -> dict[str, Any]:
        return {"dry_run": self.dry_run, "retention_days": self.retention_days, "cutoff": self.cutoff,
                "deleted": self.count("deleted"), "would_delete": self.count("would_delete"),
                "skipped": self.count("skipped"), "failed": self.count("failed"), "remaining": self.remaining,
                "items": [i.as_dict() for i in self.items]}


def plan_purge(session: Session, custodian: Officer, reason: str, retention_days: int, *, now: datetime,
               dry_run: bool = False, evidence_ids: list[str] | None = None, limit: int | None = None) -> PurgeReport:
    """Which files of expired, unlinked items within the custodian's jurisdiction a purge deletes (`pending`).

    `now` is the instant expiry is judged at. Without `evidence_ids` every
    candidate is taken (the oldest `limit` of them when given); with them,
    each listed id is either pending or skipped with the reason it is kept.
    Only reads: the edge ends this transaction, then deletes each pending item
    in one of its own (`purge_item`), then calls `finish_purge`.
    """
    cut = cutoff(now, retention_days)
    if not custodian.active or not custodian.has_role("custodian"):
        raise Forbidden("only an active custodian deletes evidence files")
    reason = (reason or "").strip()
    if not reason:
        raise Invalid("say why the files are deleted", errors={"reason": ["required"]})
    report = PurgeReport(dry_run=dry_run, retention_days=retention_days, cutoff=cut, reason=reason,
                         order=list(evidence_ids or []))
    expired = _expired(session, custodian, cut).with_only_columns(Evidence.id)
    if evidence_ids is None:
        stmt = expired.order_by(Evidence.captured_at, Evidence.id)
        ids = list(session.scalars(stmt.limit(limit) if limit else stmt))
    else:
        ids = list(dict.fromkeys(evidence_ids))
        eligible = {i for start in range(0, len(ids), 500)
                    for i in session.scalars(expired.where(Evidence.id.in_(ids[start:start + 500])))}
        for eid in ids:
            if eid not in eligible:
                report.items.append(PurgeItem(eid, "skipped", reason=why_kept(session, custodian, eid, cut)))
        ids = [eid for eid in ids if eid in eligible]
    report.pending = ids
    return report


def purge_item(session: Session, store: Store, custodian: Officer, report: PurgeReport, evidence_id: str, *,
               now: datetime) -> PurgeItem:
    """Delete one pending item's files in the caller's transaction, stamped `now`; the edge commits it before the
    next item. Raises one of `PURGE_ERRORS` when the store or the database fails: the edge rolls the item back."""
    return _delete(session, store, custodian, evidence_id, report.reason, report.cutoff, report.retention_days,
                   report.dry_run, now)


def purge_failed(evidence_id: str, exc: Exception) -> PurgeItem:
    """How an item that `purge_item` could not delete is reported (it was rolled back: its original is still there)."""
    if isinstance(exc, StoreError):
        log.warning("retention: could not delete the files of %s: %s", evidence_id, exc.message)
        return PurgeItem(evidence_id, "failed", error=exc.message)
    log.warning("retention: database error on %s: %s", evidence_id, exc)
    return PurgeItem(evidence_id, "failed", error="database error; nothing of this item was changed")


def finish_purge(session: Session, custodian: Officer, report: PurgeReport, items: list[PurgeItem]) -> PurgeReport:
    """The report with each item's result, in the order the ids were listed, and how many candidates are left."""
    report.items.extend(items)
    order = {eid: n for n, eid in enumerate(report.order)}
    report.items.sort(key=lambda i: order.get(i.evidence_id, 0))
    stmt = _expired(session, custodian, report.cutoff).with_only_columns(Evidence.id)
    report.remaining = session.scalar(select(func.count()).select_from(stmt.subquery())) or 0
    return report


def why_kept(session: Session, viewer: Officer, evidence_id: str, cut: datetime) -> str:
    """The first rule that keeps an item, in words a custodian can act on."""
    evidence = session.get(Evidence, evidence_id)
    if evidence is None or not may_see_region(viewer, evidence.region_code):
        return "no such evidence within your jurisdiction"
    if evidence.status == "deleted":
        return "its file was already deleted"
    if evidence.status not in STORED_STATUSES:
        return f"no file is stored for it (status {evidence.status})"
    if evidence.captured_at >= cut or evidence.declared_at >= cut:
        return "it is younger than the retention period"
    if session.scalar(select(_cited(session)).where(Evidence.id == evidence_id)):
        return "a finding cites it: kept for good"
    holder = session.get(CustodyHolder, evidence_id)
    if holder is not None and holder.pending_to:
        return "a custody hand-over of it is waiting for its receiver"
    case_id = evidence.case_id
    if evidence.inspection_id:
        inspection = session.get(Inspection, evidence.inspection_id)
        if inspection is None:
            return "its inspection has not reached the server, so its case is not known"
        for cid in (case_id, inspection.case_id):
            status = session.scalar(select(Case.status).where(Case.id == cid)) if cid else None
            if status and status not in RELEASED_CASE_STATUSES:
                return _case_reason(status)
    elif case_id:
        status = session.scalar(select(Case.status).where(Case.id == case_id))
        if status not in RELEASED_CASE_STATUSES:
            return _case_reason(status)
    return "it does not meet the retention rules"


def _case_reason(status: str | None) -> str:
    if status in ("closed", "transferred"):
        return f"its case is {status}: evidence of a decided or transferred case is kept for good"
    return f"its case is still open ({status})"


def _delete(session: Session, store: Store, custodian: Officer, evidence_id: str, reason: str, cut: datetime,
            retention_days: int, dry_run: bool, now: datetime) -> PurgeItem:
    open_uploads = list(session.scalars(
        select(Upload).where(Upload.evidence_id == evidence_id, Upload.status.in_(("open", "verifying")))
        .order_by(Upload.id).with_for_update().execution_options(populate_existing=True)))
    evidence = session.scalars(select(Evidence).where(Evidence.id == evidence_id).with_for_update()
                               .execution_options(populate_existing=True)).one()
    still = session.scalar(_expired(session, custodian, cut).with_only_columns(Evidence.id)
                           .where(Evidence.id == evidence_id))
    if still is None:
        kept = why_kept(session, custodian, evidence_id, cut)
        return PurgeItem(evidence_id, "skipped", reason=f"no longer expired and unlinked: {kept}")
    if evidence.sha256 is not None:  # None: declared with SM3 only and never verified, so there is no object
        lock_object(session, evidence.sha256)
    original, kept = evidence.object_key, []
    if original and session.scalar(select(exists().where(
            and_(Evidence.object_key == original, Evidence.id != evidence.id, Evidence.status == "verified")))):
        kept.append(original)  # identical bytes are stored once: another item still stands on this object
        original = None
    secondary = [k for k in session.scalars(select(Upload.mismatch_key).where(
        Upload.evidence_id == evidence.id, Upload.mismatch_key.is_not(None)).order_by(Upload.created_at))]
    if evidence.thumbnail_key:
        secondary.append(evidence.thumbnail_key)
    removed = secondary + ([original] if original else [])
    staged = [u.staging_key for u in open_uploads]
    item = PurgeItem(evidence.id, "would_delete" if dry_run else "deleted", reason=reason, sha256=evidence.sha256,
                     size=evidence.size, removed=removed + staged, kept=kept)
    if dry_run:
        return item  # nothing was changed: the edge's commit only ends the transaction

    evidence.status, evidence.deleted_at, evidence.deleted_by = "deleted", now, custodian.id
    evidence.object_key = evidence.thumbnail_key = None
    for upload in open_uploads:
        upload.status, upload.open_key, upload.completed_at = "failed", None, now
    custody.record(session, "deleted", evidence.id, custodian.id, at=now, reason=reason, sha256=evidence.sha256,
                   sm3=evidence.sm3, size=evidence.size, retention_days=retention_days, removed=item.removed,
                   kept=kept or None)
    feed.emit(session, "evidence", evidence)
    session.flush()
    for upload in open_uploads:
        drop_staged(store, upload)
    for key in removed:  # the original last: a failure before it leaves the evidence itself intact
        store.remove(key)
    log.info("retention: deleted the files of %s for %s", evidence.id, custodian.id)  # the reason is free text
    return item


def drop_staged(store: Store, upload: Upload) -> None:
    """Staged bytes were never evidence: failing to drop them (an S3 multipart already gone) must not keep the item."""
    try:
        store.abort(upload.id, upload.multipart_id)
    except Exception as exc:  # noqa: BLE001 - any store client's error; the upload is closed either way
        log.warning("retention: staged bytes of upload %s were not dropped: %s", upload.id, exc)
