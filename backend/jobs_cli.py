"""The `fieldcase` commands of the job queue (FIELDCASE_JOBS=rq): a worker, and the queue's state, failed jobs
and lost work (`jobs status|requeue|sweep`)."""

from __future__ import annotations

import sys

import click

from backend.core.config import Settings
from backend.core.times import Clock
from backend.settings_cli import command_database, fail


@click.command()
@click.option("--burst", is_flag=True, help="work until the queue is empty, then exit (tests, cron)")
@click.option("--name", help="this worker's name in Redis and in custody events (default host.pid)")
@click.pass_obj
def worker(clock: Clock, burst: bool, name: str | None) -> None:
    """Run an RQ worker for the slow work (FIELDCASE_JOBS=rq): verifying uploads, photos, tree heads."""
    from backend.bootstrap import worker as build_worker
    from backend.core.jobs import work

    settings = Settings.from_env()
    if settings.jobs != "rq":
        fail("workers need FIELDCASE_JOBS=rq and FIELDCASE_REDIS_URL (the embedded default runs jobs inline)")
    built = build_worker(settings, name, clock=clock)
    if not burst:  # a long-running worker runs RQ's scheduler: the audit's periodic jobs are scheduled there
        from backend.casework.system_audit.jobs import schedule_periodic

        schedule_periodic(built.runner, settings, built.context.clock())
    work(built, burst=burst, log_level=settings.log_level)


@click.group()
def jobs() -> None:
    """The job queue (FIELDCASE_JOBS=rq): its state, its failed jobs, and work to queue again."""


def _rq_settings() -> Settings:
    settings = Settings.from_env()
    if settings.jobs != "rq":
        fail("FIELDCASE_JOBS is not rq: jobs run inline, there is no queue")
    return settings


@jobs.command("status")
def jobs_status() -> None:
    """Queue lengths and the failed jobs (retries used up), newest last. Exit 1 when any job failed."""
    from backend.bootstrap import rq_runner
    from backend.core.jobs import queue_report

    report = queue_report(rq_runner(_rq_settings()))
    click.echo(f"queue {report['queue']}: {report['queued']} queued, {report['started']} running, "
               f"{report['scheduled']} waiting to retry, {report['failed']} failed")
    for job in report["failed_jobs"]:
        click.echo(f"FAILED {job['id']} {job['job']} at {job['ended_at']}: {job['error']}")
    sys.exit(1 if report["failed"] else 0)


@jobs.command("requeue")
def jobs_requeue() -> None:
    """Queue every failed job again (after fixing what made it fail)."""
    from backend.bootstrap import rq_runner
    from backend.core.jobs import requeue_failed

    click.echo(f"requeued {requeue_failed(rq_runner(_rq_settings()))} failed job(s)")


@jobs.command("sweep")
def jobs_sweep() -> None:
    """Queue again the verification of every upload still `verifying` (a job lost with Redis), and the timestamp
    of every tree head still without one (when FIELDCASE_TSA_URL is set); harmless twice."""
    from backend.bootstrap import rq_runner
    from media.custody.head_stamps import heads_without_token
    from media.jobs import TIMESTAMP_HEAD, VERIFY, stuck_verifications

    settings = _rq_settings()
    runner = rq_runner(settings)
    database = command_database()
    with database.session() as session:
        ids = stuck_verifications(session)
        heads = heads_without_token(session) if settings.tsa_url else []
    for upload_id in ids:
        runner.enqueue_now(VERIFY, [upload_id])
    for size in heads:
        runner.enqueue_now(TIMESTAMP_HEAD, [size])
    click.echo(f"queued {len(ids)} verification(s) again" + (f", {len(heads)} tree head timestamp(s)" if heads else ""))
