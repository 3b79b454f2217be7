"""The audit as periodic jobs: `system_audit` (the whole audit, its verdict stored) and `refresh_tree_head` (a
signed head for the log as it stands, so no leaf waits longer than FIELDCASE_HEAD_INTERVAL for one).

The table `AUDIT_JOBS` is merged with the evidence jobs (`media.jobs.JOBS`) by the composition root. How they
recur: with job workers (FIELDCASE_JOBS=rq) each run schedules the next one in RQ's scheduler, which every
long-running worker runs (`schedule_periodic` starts the series when a worker starts). A scheduled run's job id
is its time slot, so workers starting together, or a run and a worker, schedule the same run once. Without
workers, cron or a systemd timer runs `fieldcase verify --record` and `fieldcase custody refresh-head`
(docs/deployment.md).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy.orm import Session

from backend.casework.system_audit.report import AuditReport
from backend.casework.system_audit.run import AuditOptions, audit
from backend.casework.system_audit.runs import record_run
from backend.core.config import Settings
from backend.core.jobs import Job
from media.custody import heads
from media.custody.timestamps import load_trust
from media.jobs import JobContext

AUDIT_JOB = "system_audit"
REFRESH_HEAD_JOB = "refresh_tree_head"
WORKER_SIGNING_GRACE = timedelta(minutes=10)  # a periodic head a worker has not signed yet is not missing


def audit_and_record(session: Session, ctx: JobContext, options: AuditOptions, *, trigger: str) -> AuditReport:
    """Run the audit with what the context holds and store its verdict in the caller's transaction."""
    sm = getattr(ctx.signer, "sm", None)
    report = audit(session, store=ctx.store, keys=ctx.signer.verification_keys(), clock=ctx.clock, options=options,
                   sm_keys=sm.verification_keys() if sm is not None else None)
    record_run(session, report, trigger=trigger)
    return report


def options_for(settings: Settings, *, sample: int | None, seed: int | None = None) -> AuditOptions:
    """What `fieldcase verify` checks with: the deployment's head interval and TSA."""
    trust = load_trust(settings.tsa_cert_path.read_bytes()) if settings.tsa_cert_path else ()
    return AuditOptions(head_interval=timedelta(seconds=settings.head_interval_seconds), sample=sample, seed=seed,
                        tsa_required=bool(settings.tsa_url), tsa_trust=trust,
                        signing_grace=WORKER_SIGNING_GRACE if settings.jobs == "rq" else timedelta(0))


def system_audit(ctx: JobContext, session: Session, sample: int, head_interval: int, every: int = 0) -> None:
    """The whole audit, re-hashing `sample` files at random (0: every one); then, under a worker, the next run."""
    if every and not ctx.inline:
        schedule(ctx.runner, AUDIT_JOB, [sample, head_interval, every], every, ctx.clock())
    tsa = ctx.tsa
    options = AuditOptions(head_interval=timedelta(seconds=head_interval), sample=sample or None,
                           tsa_required=tsa is not None, tsa_trust=getattr(tsa, "trust", ()),
                           signing_grace=WORKER_SIGNING_GRACE if ctx.runner.deferred else timedelta(0))
    audit_and_record(session, ctx, options, trigger="job")


def refresh_tree_head(ctx: JobContext, session: Session, every: int = 0) -> None:
    """A signed head for the log as it stands, unless one covers it already (`media.custody.heads.latest_head`)."""
    if every and not ctx.inline:
        schedule(ctx.runner, REFRESH_HEAD_JOB, [every], every, ctx.clock())
    heads.latest_head(session, ctx.signer, now=ctx.clock())


AUDIT_JOBS: dict[str, Job] = {AUDIT_JOB: system_audit, REFRESH_HEAD_JOB: refresh_tree_head}


def refresh_every(settings: Settings) -> int:
    """A head is asked for four times per head interval: a leaf then waits at most a quarter of it, plus the queue."""
    return max(60, settings.head_interval_seconds // 4)


def schedule(runner: Any, name: str, args: list[Any], every: int, now: datetime) -> None:
    """Schedule `name` at the start of the next slot of `every` seconds; its job id is the slot, so scheduling it
    again (another worker, a restart) changes nothing."""
    slot = int(now.timestamp()) // every + 1
    when = datetime.fromtimestamp(slot * every, UTC)
    runner.enqueue_at(when, name, args, job_id=f"{runner.queue.name}-{name}-{every}-{slot}")


def schedule_periodic(runner: Any, settings: Settings, now: datetime) -> None:
    """Start the series when a worker starts (each run then schedules the next)."""
    every = refresh_every(settings)
    schedule(runner, REFRESH_HEAD_JOB, [every], every, now)
    if settings.audit_interval_seconds > 0:
        audit_every = settings.audit_interval_seconds
        schedule(runner, AUDIT_JOB, [settings.audit_sample, settings.head_interval_seconds, audit_every],
                 audit_every, now)
