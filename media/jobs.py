"""The slow work on evidence, as jobs: the table `JOBS` that backend.core.jobs runs inline or on RQ workers.

Each job is `name(context, session, *ids)` and is idempotent: run twice, or
again after a worker died half way, it finds the work done (or taken over by
retention) and does nothing. Each first locks the row it is about, so two
workers given the same job run it one after the other, the second as a no-op.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.orm import Session

from backend.core.db import Database
from backend.core.errors import DomainError
from backend.core.jobs import Job
from backend.core.models import Evidence, Upload
from backend.core.times import Clock
from backend.core.uow import JobRunner, Timestamper
from media import analysis, uploads
from media.custody import head_stamps
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


def analyse_evidence(ctx: JobContext, session: Session, evidence_id: str) -> None:
    """Photo metadata and thumbnail, once: an item already read (media_info set) is not read again."""
    evidence = session.get(Evidence, evidence_id, with_for_update=True, populate_existing=True)
    if evidence is None or evidence.status != "verified" or evidence.media_info is not None:
        return
    analysis.analyse_evidence(session, ctx.store, evidence, ctx.media, now=ctx.clock())


def issue_tree_head(ctx: JobContext, session: Session, tree_size: int) -> None:
    """The periodic signed tree head at `tree_size` (every HEAD_EVERY leaves); a head already there is kept."""
    custody.issue_head(session, ctx.signer, int(tree_size), now=ctx.clock())


def timestamp_head(ctx: JobContext, session: Session, tree_size: int) -> None:
    """The RFC 3161 timestamp of the head at `tree_size`, then of a few older heads still without one.

    `session` stays unused: the TSA is asked with no transaction open, and the token stored in a short one of
    its own (media.custody.head_stamps). A TSA that fails raises, so that RQ tries again later.
    """
    if ctx.tsa is None or ctx.database is None:
        return
    head_stamps.timestamp_head(ctx.database, ctx.tsa, int(tree_size))
    head_stamps.timestamp_pending(ctx.database, ctx.tsa, limit=head_stamps.CATCH_UP)


def stuck_verifications(session: Session) -> list[str]:
    """Uploads waiting for a verdict: what `fieldcase jobs sweep` queues again after a lost job."""
    return list(session.scalars(select(Upload.id).where(Upload.status == uploads.VERIFYING)
                                .order_by(Upload.created_at)))


JOBS: dict[str, Job] = {VERIFY: verify_upload, ANALYSE: analyse_evidence, ISSUE_HEAD: issue_tree_head,
                        TIMESTAMP_HEAD: timestamp_head}
# Jobs queued by releases before the table had short names stay runnable through an upgrade.
JOBS.update({f"media.jobs.{name}": job for name, job in list(JOBS.items())})
