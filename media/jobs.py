"""The slow work on evidence, as jobs: the table `JOBS` that backend.core.jobs runs inline or on RQ workers.

Each job is `name(context, session, *ids)` and is idempotent: run twice, or
again after a worker died half way, it finds the work done (or taken over by
retention) and does nothing. Each first locks the row it is about, so two
workers given the same job run it one after the other, the second as a no-op.

Each also has a path back: a query that finds, from the database alone, the
work whose result is missing (`unfinished`), because Redis holds only the
queue and can lose it (a restart without persistence, a job handed to a Redis
that was down). `fieldcase jobs sweep`, and the workers every
FIELDCASE_SWEEP_INTERVAL, queue what it finds. Each declares its time limit
(`limited`): a run stuck on a dead connection is stopped and retried.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from backend.core.db import Database
from backend.core.errors import DomainError
from backend.core.jobs import Job, limited
from backend.core.models import CustodyEvent, Evidence, TreeHead, Upload
from backend.core.times import Clock
from backend.core.uow import JobRunner, Timestamper
from media import analysis, uploads
from media.custody import head_stamps, heads
from media.custody import log as custody
from media.custody.keys import Signer
from media.settings import MediaSettings
from media.store import Store

log = logging.getLogger("fieldcase.media.jobs")

VERIFY = uploads.VERIFY_JOB
ANALYSE = "analyse_evidence"
ISSUE_HEAD = custody.ISSUE_HEAD_JOB
TIMESTAMP_HEAD = head_stamps.TIMESTAMP_JOB


@dataclass(frozen=True)
class JobContext:
    """What a job may use besides its session. `worker` is None when the caller waits for the result. A job reads
    `clock` once and passes the instant down."""

    store: Store
    media: MediaSettings
    signer: Signer
    runner: JobRunner
    clock: Clock
    worker: str | None = None
    # A job that waits on the network (the TSA) opens short transactions of its own on `database` instead of
    # holding its session's across the wait. Both None when no TSA is configured (FIELDCASE_TSA_URL).
    tsa: Timestamper | None = None
    database: Database | None = None

    @property
    def inline(self) -> bool:
        return self.worker is None


@limited(1800)  # hashing the largest clip (SHA-256 and SM3) read back from the bucket
def verify_upload(ctx: JobContext, session: Session, upload_id: str) -> None:
    """Hash a completed upload and give the verdict; then have the photo read, as a job of its own.

    Only an upload `verifying` is checked: one already verified, set apart,
    or closed by retention is left alone. In a worker, a refusal (the staged
    bytes are gone, say) hands the upload back to the phone (`open` again: it
    sends the bytes anew) instead of failing forever; inline, the refusal is
    the request's answer, as it always was.
    """
    upload = session.get(Upload, upload_id, with_for_update=True, populate_existing=True)
    if upload is None or upload.status != uploads.VERIFYING:
        return
    now = ctx.clock()
    if ctx.inline:
        evidence = uploads.verify_upload(session, ctx.store, upload_id, ctx.media, now=now)
    else:
        try:
            with session.begin_nested():
                evidence = uploads.verify_upload(session, ctx.store, upload_id, ctx.media, now=now,
                                                 verifier=ctx.worker)
        except DomainError as exc:
            upload = session.get(Upload, upload_id, populate_existing=True)
            if upload is not None and upload.status == uploads.VERIFYING:
                upload.status = "open"
            log.warning("upload %s could not be verified (%s); it is open again for the phone", upload_id,
                        exc.message)
            return
    if evidence.status == "verified":
        ctx.runner.submit(session, ANALYSE, evidence.id)


@limited(600)  # decoding a photo of at most `max_pixels`, or walking a clip's boxes
def analyse_evidence(ctx: JobContext, session: Session, evidence_id: str) -> None:
    """Photo metadata and thumbnail, once: an item already read (media_info set) is not read again."""
    evidence = session.get(Evidence, evidence_id, with_for_update=True, populate_existing=True)
    if evidence is None or evidence.status != "verified" or evidence.media_info is not None:
        return
    analysis.analyse_evidence(session, ctx.store, evidence, ctx.media, now=ctx.clock())


@limited(300)
def issue_tree_head(ctx: JobContext, session: Session, tree_size: int) -> None:
    """The periodic signed tree head at `tree_size` (every HEAD_EVERY leaves); a head already there is kept."""
    heads.issue_head(session, ctx.signer, int(tree_size), now=ctx.clock())


@limited(300)  # a few TSA round trips, each bounded by FIELDCASE_TSA_TIMEOUT
def timestamp_head(ctx: JobContext, session: Session, tree_size: int) -> None:
    """The RFC 3161 timestamp of the head at `tree_size` (and of the SM tree's head there, where it is kept), then
    of a few older heads still without one.

    `session` stays unused: the TSA is asked with no transaction open, and the token stored in a short one of
    its own (media.custody.head_stamps). A TSA that fails raises, so that RQ tries again later.
    """
    if ctx.tsa is None or ctx.database is None:
        return
    head_stamps.timestamp_heads(ctx.database, ctx.tsa, int(tree_size))
    head_stamps.timestamp_pending(ctx.database, ctx.tsa, limit=head_stamps.CATCH_UP)


def stuck_verifications(session: Session) -> list[str]:
    """Uploads waiting for a verdict: what `fieldcase jobs sweep` queues again after a lost job."""
    return list(session.scalars(select(Upload.id).where(Upload.status == uploads.VERIFYING)
                                .order_by(Upload.created_at)))


def unanalysed(session: Session) -> list[str]:
    """Verified photos and clips never read (no `media_info`: no EXIF checks, no thumbnail): the analysis job was
    lost, or queued while Redis was down, after its verification committed."""
    return list(session.scalars(select(Evidence.id).where(
        Evidence.status == "verified", Evidence.kind.in_(("photo", "video")), Evidence.object_key.is_not(None),
        Evidence.media_info.is_(None)).order_by(Evidence.verified_at)))


def unsigned_periodic_heads(session: Session) -> list[int]:
    """Multiples of HEAD_EVERY the log has reached above its newest signed head, with no head: their
    `issue_tree_head` jobs were lost. Signing them now vouches for nothing the periodic `refresh_tree_head` would
    not sign within a quarter of FIELDCASE_HEAD_INTERVAL anyway: no head covers those leaves yet. One missing
    *under* a signed head is not signed again: a head made now over older leaves would vouch for whatever they hold
    now, and hide a deleted head; that gap is the audit's to report (`fieldcase verify`)."""
    last = session.scalar(select(func.max(CustodyEvent.leaf_index)))
    size = 0 if last is None else last + 1
    newest = session.scalar(select(func.max(TreeHead.tree_size))) or 0
    return list(range((newest // custody.HEAD_EVERY + 1) * custody.HEAD_EVERY, size + 1, custody.HEAD_EVERY))


def unfinished(session: Session, *, tsa: bool) -> dict[str, list[list[str | int]]]:
    """Every kind of job in `JOBS` with the ids of each job whose result the database says is missing: what the
    sweep queues again (unless Redis still holds it). `tsa`: a Time-Stamping Authority is configured."""
    return {VERIFY: [[upload_id] for upload_id in stuck_verifications(session)],
            ANALYSE: [[evidence_id] for evidence_id in unanalysed(session)],
            ISSUE_HEAD: [[size] for size in unsigned_periodic_heads(session)],
            TIMESTAMP_HEAD: [[size] for size in head_stamps.sizes_without_token(session)] if tsa else []}


JOBS: dict[str, Job] = {VERIFY: verify_upload, ANALYSE: analyse_evidence, ISSUE_HEAD: issue_tree_head,
                        TIMESTAMP_HEAD: timestamp_head}
# Jobs queued by releases before the table had short names stay runnable through an upgrade.
JOBS.update({f"media.jobs.{name}": job for name, job in list(JOBS.items())})
