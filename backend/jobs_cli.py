"""The `fieldcase` commands of the job queue (FIELDCASE_JOBS=rq): a worker, and the queue's state, failed jobs
and lost work (`jobs status|requeue|sweep`).

The sweep is composed here, at the top, because it spans the layers: the evidence jobs' finders
(`media.jobs.unfinished`), the audit's periodic series (`backend.casework.system_audit.jobs`), and the queue
(`backend.core.job_status`). Workers run the same function on a schedule (FIELDCASE_SWEEP_INTERVAL).
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from typing import Any

import click

from backend.core.config import Settings
from backend.core.db import Database
from backend.core.times import Clock
from backend.settings_cli import command_database, fail

log = logging.getLogger("fieldcase.jobs")


def sweep(settings: Settings, runner: Any, database: Database, now: datetime) -> dict[str, str]:
    """Queue every job whose result is missing and that Redis does not hold, and schedule the periodic jobs' next
    runs; log one line saying what was queued, per kind, and return the same per kind, spelled for a person."""
    from backend.casework.system_audit.jobs import AUDIT_JOB, REFRESH_HEAD_JOB, schedule_periodic
    from backend.core.job_status import enqueue_missing
    from media.jobs import unfinished

    with database.session() as session:
        work = unfinished(session, tsa=bool(settings.tsa_url))
    counts = enqueue_missing(runner, work)
    schedule_periodic(runner, settings, now)  # a run per time slot: scheduling it again changes nothing
    periodic = {REFRESH_HEAD_JOB: "next run scheduled",
                AUDIT_JOB: "next run scheduled" if settings.audit_interval_seconds > 0
                else "off (FIELDCASE_AUDIT_INTERVAL=0)"}
    log.info("sweep", extra={"queued": {k: c.queued for k, c in counts.items()},
                             "already_waiting": {k: c.waiting for k, c in counts.items()},
                             "dead_letters": {k: c.dead for k, c in counts.items()}, "periodic": periodic})
    return {**{name: count.spelled() for name, count in counts.items()}, **periodic}


@click.command()
@click.option("--burst", is_flag=True, help="work until the queue is empty, then exit (tests, cron)")
@click.option("--name", help="this worker's name in Redis and in custody events (default host.<random>); a name "
                             "still registered by a process that is gone is taken over")
@click.pass_obj
def worker(clock: Clock, burst: bool, name: str | None) -> None:
    """Run an RQ worker for the slow work (FIELDCASE_JOBS=rq): verifying uploads, photos, tree heads, the sweep."""
    from backend.bootstrap import worker as build_worker
    from backend.core.job_worker import wait_for_redis, work
    from backend.core.jobs import default_worker_name

    settings = Settings.from_env()
    if settings.jobs != "rq":
        fail("workers need FIELDCASE_JOBS=rq and FIELDCASE_REDIS_URL (the embedded default runs jobs inline)")
    built = build_worker(settings, name or default_worker_name(), clock=clock)
    if not burst:  # a long-running worker runs RQ's scheduler: the audit's periodic jobs are scheduled there
        from backend.casework.system_audit.jobs import schedule_periodic

        wait_for_redis(built.runner.connection)
        schedule_periodic(built.runner, settings, built.context.clock())
    done = work(built, burst=burst, log_level=settings.log_level,
                sweep=lambda: sweep(settings, built.runner, built.db, built.context.clock()),
                sweep_every=settings.sweep_interval_seconds)
    if burst and done.lost_redis:
        fail("Redis was lost: this burst worker stopped; what it did not finish is retried or swept")


@click.group()
def jobs() -> None:
    """The job queue (FIELDCASE_JOBS=rq): its state, its failed jobs, and work to queue again."""


def _rq_settings() -> Settings:
    settings = Settings.from_env()
    if settings.jobs != "rq":
        fail("FIELDCASE_JOBS is not rq: jobs run inline, there is no queue")
    return settings


@contextmanager
def _redis_answers() -> Iterator[None]:
    """A Redis that does not answer is one line and exit 1, not a traceback."""
    from redis.exceptions import ConnectionError as RedisDown
    from redis.exceptions import TimeoutError as RedisSlow

    try:
        yield
    except (RedisDown, RedisSlow) as exc:
        fail(f"Redis does not answer (FIELDCASE_REDIS_URL): {exc}")


def _ago(seconds: float) -> str:
    return "never" if seconds == float("inf") else f"{seconds:.0f} s ago"


@jobs.command("status")
def jobs_status() -> None:
    """Queue lengths, the workers (dead ones named), jobs held by a dead worker, and the failed jobs (retries used
    up), newest last. Exit 1 when any job failed."""
    from backend.bootstrap import rq_runner
    from backend.core.job_status import queue_report
    from backend.core.job_worker import DEAD_AFTER, MAINTENANCE_EVERY

    with _redis_answers():
        report = queue_report(rq_runner(_rq_settings()).queue)
    click.echo(f"queue {report.queue}: {report.queued} queued, {report.running} running, "
               f"{report.scheduled} scheduled (retries, periodic runs), {report.failed} failed")
    alive = [w for w in report.workers if not w["dead"]]
    click.echo(f"workers: {len(alive)} alive, {len(report.dead_workers)} dead")
    for w in report.workers:
        doing = f"busy on {w['job']}" if w["job"] else w["state"]
        if w["dead"]:
            click.echo(f"DEAD WORKER {w['name']} (host {w['host']}, pid {w['pid']}): last heard {_ago(w['silent'])}"
                       + (f", held {w['job']}" if w["job"] else "") + "; its registration expires by itself")
        else:
            click.echo(f"worker {w['name']} (host {w['host']}, pid {w['pid']}): {doing}, "
                       f"heard {_ago(w['silent'])}")
    for job in report.stuck:
        then = ("by the next maintenance of a live worker (every "
                f"{MAINTENANCE_EVERY} s)") if alive else "once a worker runs: START ONE"
        click.echo(f"STUCK {job['id']} {job['job']} on worker {job['worker'] or '?'}: no heartbeat for "
                   f"{job['silent']:.0f} s (dead after {DEAD_AFTER} s); retried {then}")
    for job in report.failed_jobs:
        click.echo(f"FAILED {job['id']} {job['job']} at {job['ended_at']}: {job['error']}")
    sys.exit(1 if report.failed else 0)


@jobs.command("requeue")
def jobs_requeue() -> None:
    """Queue every failed job again (after fixing what made it fail)."""
    from backend.bootstrap import rq_runner
    from backend.core.job_status import requeue_failed

    with _redis_answers():
        click.echo(f"requeued {requeue_failed(rq_runner(_rq_settings()))} failed job(s)")


@jobs.command("sweep")
@click.pass_obj
def jobs_sweep(clock: Clock) -> None:
    """Queue again every job whose result is missing (lost with Redis, or never queued because Redis was down):
    uploads still `verifying`, verified photos and clips never read, periodic tree heads never signed, heads without
    their timestamp (with FIELDCASE_TSA_URL); and schedule the periodic jobs' next runs. Work Redis still holds is
    not queued twice, and dead letters are left for `jobs requeue`. Harmless twice; workers also run it every
    FIELDCASE_SWEEP_INTERVAL."""
    from backend.bootstrap import rq_runner

    settings = _rq_settings()
    with _redis_answers():
        said = sweep(settings, rq_runner(settings), command_database(), clock())
    for name, what in said.items():
        click.echo(f"{name}: {what}")
