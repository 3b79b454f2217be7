"""Evidence upload (PROTOCOL §6): plans, resumable local uploads, and verification against the declaration.

`complete` marks the upload `verifying` and submits the `media.jobs.verify_upload`
job (backend.core.jobs): the embedded default runs it at once, in the request, and
answers the verdict; with RQ workers the request answers `202` and a worker
gives the verdict, which the phone reads from `GET /evidence/{id}` or the feed.
`verify_upload` itself stays a plain function of a session, a store and an
upload id.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any, BinaryIO

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from backend.core.errors import Conflict, DomainError, Gone, Invalid, LengthRequired, NotFound
from backend.core.errors import PayloadTooLarge as TooLarge
from backend.core.errors import RangeNotSatisfiable as RangeError
from backend.core.jurisdiction import get_scoped
from backend.core.models import Evidence, Officer, Upload, new_id
from backend.core.uow import JobRunner
from media import holders, retention
from media.coverage import clip_data
from media.custody import log as custody
from media.settings import MediaSettings
from media.store import Digest, LocalStore, Store, StoreError
from sync import feed
from sync.records import EVIDENCE_DIGESTS

__all__ = ["MediaSettings"]

VERIFYING = "verifying"  # upload status: every byte is in, the verdict is being worked out (maybe by a worker)
VERIFY_JOB = "verify_upload"


def _store_error(exc: StoreError) -> DomainError:
    """A store's refusal as the upload's answer; where the store says how much it holds, the answer says it too:
    `Upload-Offset`, and `offset` under `errors` (where a phone resumes)."""
    if exc.offset is not None:
        headers, errors = {"Upload-Offset": str(exc.offset)}, {"offset": exc.offset}
    else:
        headers, errors = None, None
    if exc.code == "too_long":
        return TooLarge(exc.message)
    if exc.code in ("busy", "offset"):
        return Conflict(exc.message, headers=headers, errors=errors)
    if exc.code in ("length", "content_digest", "repr_digest"):
        return Invalid(exc.message, headers=headers, errors=errors)
    return Invalid(exc.message)


def own_evidence(session: Session, officer: Officer, evidence_id: str) -> Evidence:
    """Only the officer who declared an item uploads it; anyone else gets the answer for a missing item.

    An item whose file retention deleted answers 410 on every upload path: its
    file is never re-created, and the phone learns it may drop its own copy.
    """
    evidence = session.get(Evidence, evidence_id)
    if evidence is None or evidence.officer_id != officer.id:
        raise NotFound(f"no evidence {evidence_id!r}")
    if evidence.status == "deleted":
        raise retention.gone(evidence)
    return evidence


def _open_upload(session: Session, evidence: Evidence) -> Upload | None:
    return session.scalars(select(Upload).where(Upload.open_key == evidence.id)).first()


def start_upload(session: Session, store: Store, officer: Officer, evidence_id: str, content_url: str, *,
                 now: datetime) -> dict[str, Any]:
    """A plan for a new upload, or the same plan again for the one in progress (so it can resume)."""
    evidence = own_evidence(session, officer, evidence_id)
    if evidence.status == "verified":
        raise Conflict("this evidence is already verified; nothing to upload")
    upload = _open_upload(session, evidence)
    if upload is not None:
        _not_verifying(upload)
        return store.plan(upload.id, evidence.size, evidence.sha256, content_url, upload.multipart_id)
    upload = Upload(id=new_id("upl"), evidence_id=evidence.id, officer_id=officer.id, store=store.kind,
                    staging_key="", method="put", status="open", open_key=evidence.id)
    plan = store.plan(upload.id, evidence.size, evidence.sha256, content_url)
    upload.staging_key = f"staging/{upload.id}"
    upload.method = "multipart" if plan["method"] == "multipart" else "put"
    upload.multipart_id = plan.get("upload_id")
    upload.part_size = plan.get("part_size")
    try:
        with session.begin_nested():
            session.add(upload)
    except IntegrityError:
        store.abort(upload.id, upload.multipart_id)
        raise Conflict("another upload of this evidence has just started") from None
    custody.record(session, "upload_started", evidence.id, officer.id, at=now, upload=upload.id,
                   method=upload.method, store=store.kind)
    return plan


def _not_verifying(upload: Upload) -> None:
    """Bytes of an upload being verified must not change under the hash: no new plan, no more bytes."""
    if upload.status == VERIFYING:
        raise Conflict("this upload is complete and being verified; the verdict comes with GET "
                       "/evidence/{id} or the feed")


def verification_pending(session: Session, evidence: Evidence) -> bool:
    """Whether a verdict on this item is still to come (a worker has it)."""
    upload = _open_upload(session, evidence)
    return upload is not None and upload.status == VERIFYING


def _local(store: Store) -> LocalStore:
    if not isinstance(store, LocalStore):
        raise NotFound("this server's store takes uploads at presigned URLs, not here")
    return store


def upload_offset(session: Session, store: Store, officer: Officer, evidence_id: str) -> int:
    evidence = own_evidence(session, officer, evidence_id)
    upload = _open_upload(session, evidence)
    if upload is None:
        return evidence.size if evidence.status == "verified" else 0
    return _local(store).offset(upload.id)


@dataclass(frozen=True)
class ByteRange:
    """Where a PUT's bytes go: `start`..`end` (inclusive) of a file of `total` bytes (the web layer parses
    `Content-Range` into it)."""

    start: int
    end: int
    total: int


@dataclass(frozen=True)
class ContentWrite:
    """Where one PUT's bytes go, once checked: the upload, and `length` bytes at `start` of a file of `total`.

    `restart`: a PUT of the whole file (no range), which starts the upload over. `content_sha256` and
    `repr_sha256`: what the sender stated these bytes and the whole file hash to (RFC 9530), checked as they
    arrive."""

    upload_id: str
    start: int
    length: int
    total: int
    restart: bool = False
    content_sha256: str | None = None
    repr_sha256: str | None = None


def content_target(session: Session, store: Store, officer: Officer, evidence_id: str,
                   byte_range: ByteRange | None, content_length: int | None, *, content_sha256: str | None = None,
                   repr_sha256: str | None = None) -> ContentWrite:
    """Check one PUT against the open upload. Only reads: the bytes may take minutes to arrive over a phone's
    network, so the edge ends this transaction before `write_content`, and the upload holds no pooled connection
    (and, on SQLite, not the database's write lock) while it reads them."""
    _local(store)
    evidence = own_evidence(session, officer, evidence_id)
    upload = _open_upload(session, evidence)
    if upload is None:
        if evidence.status == "verified":
            raise Conflict("this evidence is already verified")
        raise Conflict("no upload in progress: ask for a plan with POST .../uploads first")
    _not_verifying(upload)
    total = evidence.size
    if byte_range is not None:
        start, end, declared_total = byte_range.start, byte_range.end, byte_range.total
        if declared_total != total:
            raise RangeError(f"TOTAL must be the declared size, {total}")
        if end < start or end >= total:
            raise RangeError(f"the range must lie within 0-{total - 1}")
        length = end - start + 1
        if content_length is not None and content_length != length:
            raise Invalid("Content-Length does not match Content-Range")
    else:
        if content_length is None:
            raise LengthRequired("send Content-Length (or Content-Range) with the bytes")
        start, length = 0, content_length
        if length > total:
            raise TooLarge(f"{length} bytes is more than the declared {total}")
    return ContentWrite(upload_id=upload.id, start=start, length=length, total=total, restart=byte_range is None,
                        content_sha256=content_sha256, repr_sha256=repr_sha256)


def write_content(store: Store, target: ContentWrite, stream: BinaryIO) -> int:
    """Write a checked PUT's bytes at its range, outside any transaction; returns how many bytes the upload now
    holds."""
    try:
        return _local(store).write(target.upload_id, stream, target.start, target.length, target.total,
                                   restart=target.restart, content_sha256=target.content_sha256,
                                   repr_sha256=target.repr_sha256)
    except StoreError as exc:
        raise _store_error(exc) from None


def complete(session: Session, store: Store, officer: Officer, evidence_id: str, parts: list[dict[str, Any]] | None,
             settings: MediaSettings, runner: JobRunner) -> Evidence:
    """Close the upload and have it verified: now (inline runner) or by a worker (`verification_pending` is then
    true)."""
    try:
        evidence = own_evidence(session, officer, evidence_id)
    except Gone:
        # A presigned URL outlives the upload retention closed: drop whatever it still delivered.
        for closed in session.scalars(select(Upload).where(Upload.evidence_id == evidence_id,
                                                           Upload.status == "failed")):
            retention.drop_staged(store, closed)
        raise
    upload = _open_upload(session, evidence)
    if upload is not None:
        # One complete at a time per upload (a phone retrying, two processes behind a load balancer): the second
        # sees what the first did, and never puts a verdict back to `verifying`.
        session.refresh(upload, with_for_update=True)
        if upload.open_key is None:
            session.refresh(evidence)
            upload = None
    if upload is None:
        if evidence.status in ("verified", "mismatch"):
            return evidence  # the verdict was given; asking again changes nothing
        raise Conflict("no upload in progress: ask for a plan with POST .../uploads first")
    if upload.status == VERIFYING:
        # Completing again while a worker has it: queue the check again (a job lost with the queue is then
        # recovered by the phone itself); the check is idempotent, so a duplicate only finds the work done.
        runner.submit(session, VERIFY_JOB, upload.id)
        return evidence
    if upload.method == "multipart":
        if not parts:
            raise Invalid("a multipart upload completes with its parts and their ETags",
                          errors={"parts": ["required"]})
        try:
            store.finish_multipart(upload.id, upload.multipart_id, parts)
        except StoreError as exc:
            raise _store_error(exc) from None
    elif isinstance(store, LocalStore):
        held = store.offset(upload.id)
        if held < evidence.size:
            raise Conflict(f"only {held} of {evidence.size} bytes have arrived", headers={"Upload-Offset": str(held)},
                           errors={"offset": held})
    upload.status = VERIFYING
    session.flush()
    runner.submit(session, VERIFY_JOB, upload.id)
    return evidence  # the same object the job updated, when it ran inline


def matches(evidence: Evidence, digest: Digest) -> bool:
    """Whether bytes that hashed to `digest` are the declared file: its size, and every digest the phone declared
    (`sha256`, `sm3` or both; docs/protocol.md §6). A digest not declared is not compared: the server only keeps
    what the bytes hashed to. Before the bytes are verified, the item's digests are the declared ones."""
    declared = {name: getattr(evidence, name) for name in EVIDENCE_DIGESTS if getattr(evidence, name) is not None}
    received = digest.digests()
    return bool(declared) and digest.size == evidence.size and all(
        received[name] == value for name, value in declared.items())


def verify_upload(session: Session, store: Store, upload_id: str, settings: MediaSettings, *, now: datetime,
                  verifier: str | None = None) -> Evidence:
    """Hash the stored bytes and give the verdict: `verified`, or `mismatch` with the bytes set apart.

    `verifier` names the job worker doing it; it goes into the custody event (absent when the request did it).
    """
    upload = session.get(Upload, upload_id, with_for_update=True, populate_existing=True)
    evidence = session.get(Evidence, upload.evidence_id, populate_existing=True) if upload is not None else None
    if evidence is not None and evidence.status == "deleted":
        raise retention.gone(evidence)  # retention closed this upload meanwhile: a late verdict must not revive it
    if upload is None or upload.status not in ("open", VERIFYING):
        raise Conflict("this upload is not open")
    assert evidence is not None
    try:
        digest = store.staged_digest(upload.id)
    except StoreError as exc:
        raise _store_error(exc) from None
    upload.received_sha256, upload.received_size, upload.completed_at = digest.sha256, digest.size, now
    upload.received_sm3 = digest.sm3
    upload.open_key = None
    if matches(evidence, digest):
        upload.status = "verified"
        retention.lock_object(session, digest.sha256)  # a purge must not drop the object we are about to share
        evidence.object_key = store.promote(upload.id, digest.sha256)
        evidence.status, evidence.verified_at = "verified", now
        evidence.sha256, evidence.sm3 = digest.sha256, digest.sm3  # both kept, the declared and the other
        flags = list(evidence.flags or [])
        if now - evidence.captured_at > settings.upload_deadline and "late_upload" not in flags:
            flags.append("late_upload")
        evidence.flags = flags
        custody.record(session, "verified", evidence.id, upload.officer_id, at=now, upload=upload.id,
                       sha256=digest.sha256, sm3=digest.sm3, size=digest.size, object_key=evidence.object_key,
                       verifier=verifier)
        holders.take_first_custody(session, evidence, upload.officer_id, now=now)
    else:
        upload.status = "mismatch"
        upload.mismatch_key = store.set_apart(upload.id)
        if evidence.status != "verified":
            evidence.status = "mismatch"
        custody.record(session, "mismatch", evidence.id, upload.officer_id, at=now, upload=upload.id,
                       received_sha256=digest.sha256, received_sm3=digest.sm3, received_size=digest.size,
                       kept_at=upload.mismatch_key,
                       verifier=verifier)
    feed.emit(session, "evidence", evidence)
    session.flush()
    return evidence


def describe(session: Session, evidence: Evidence) -> dict[str, Any]:
    uploads = list(session.scalars(select(Upload).where(Upload.evidence_id == evidence.id)
                                   .order_by(Upload.created_at)))
    return {
        **feed.evidence_data(evidence),
        "media_type": evidence.media_type, "captured_at": evidence.captured_at, "location": evidence.location,
        "clip": clip_data(evidence.clip), "officer_id": evidence.officer_id, "device_id": evidence.device_id,
        "declared_at": evidence.declared_at, "verified_at": evidence.verified_at,
        "deleted_at": evidence.deleted_at, "deleted_by": evidence.deleted_by,
        "media_info": evidence.media_info, "flags": evidence.flags or [],
        "has_thumbnail": evidence.thumbnail_key is not None,
        "uploads": [{"id": u.id, "status": u.status, "method": u.method, "received_sha256": u.received_sha256,
                     "received_sm3": u.received_sm3, "received_size": u.received_size, "created_at": u.created_at,
                     "completed_at": u.completed_at}
                    for u in uploads],
    }


def readable_evidence(session: Session, viewer: Officer, evidence_id: str) -> Evidence:
    """Within jurisdiction, or the officer's own."""
    evidence = session.get(Evidence, evidence_id)
    if evidence is not None and evidence.officer_id == viewer.id:
        return evidence
    return get_scoped(session, Evidence, evidence_id, viewer, what="evidence")


def custody_history(session: Session, viewer: Officer, evidence_id: str) -> dict[str, Any]:
    """The item's custody events, for whoever may read the item."""
    readable_evidence(session, viewer, evidence_id)
    return {"events": custody.events_for(session, evidence_id)}


def open_original(session: Session, store: Store, viewer: Officer, evidence_id: str,
                  purpose: str | None = None, *, now: datetime) -> tuple[Evidence, BinaryIO]:
    """Every read of an original is a custody event: who, when, and the stated purpose."""
    evidence = readable_evidence(session, viewer, evidence_id)
    if evidence.status == "deleted":
        raise retention.gone(evidence)
    if evidence.status != "verified" or not evidence.object_key:
        raise Conflict("only verified evidence has content to read")
    stream = store.open(evidence.object_key)
    custody.record(session, "read", evidence.id, viewer.id, at=now, purpose=purpose)
    return evidence, stream


def open_thumbnail(session: Session, store: Store, viewer: Officer, evidence_id: str) -> BinaryIO:
    evidence = readable_evidence(session, viewer, evidence_id)
    if evidence.status == "deleted":
        raise retention.gone(evidence)
    if not evidence.thumbnail_key:
        raise NotFound("this evidence has no thumbnail")
    return store.open(evidence.thumbnail_key)
