"""Slow work as jobs: run inline in the request (the embedded default) or by RQ workers (at scale).

The slow work is hashing uploaded files, reading photos (metadata and
thumbnails) and signing periodic custody tree heads. Its functions live in
`media.jobs`, in a table of real functions (`media.jobs.JOBS`) that the
composition root (`backend.bootstrap`) hands to the runner. Each is a plain
function of a context (what the job may use: the store, the media limits,
the signing key, the runner), a session, and ids: never ORM objects, so the
same call can be made now, in the request's own transaction, or later in
another process from a queue.

Code that has work to hand off is given the runner and calls
`runner.submit(session, "name", *ids)`, without knowing which runner it is:

- `InlineRunner` (FIELDCASE_JOBS=inline, no Redis): runs the function at once,
  in the caller's transaction, so its effects commit or roll back with it;
- `RQRunner` (FIELDCASE_JOBS=rq): queues the call on Redis **after** the
  transaction commits (a worker must find the rows the job is about, and a
  rolled-back request must queue nothing). Workers (`fieldcase worker`) run
  each job in a transaction of its own, retry a failing one with back-off,
  and leave one that keeps failing in RQ's failed-job registry (the dead
  letters: `fieldcase jobs status`, `fieldcase jobs requeue`).

Why RQ rather than Celery: the work is a handful of idempotent functions
called with ids; RQ needs nothing but Redis, has retries, a scheduler for
retry intervals and a failed-job registry built in, and its worker is one
small process to run and reason about. Celery's brokers, result backends and
canvas would be configuration to get right with nothing here that uses them.

Jobs travel as JSON (RQ's JSONSerializer, not pickle): what sits in Redis is
a job's name in the table and a few strings or numbers, and a worker runs
nothing that is not in its table.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

from sqlalchemy import event
from sqlalchemy.orm import Session

from backend.core import commit_queue, logs
from backend.core.observe import NO_OBSERVER, Observer

if TYPE_CHECKING:
    from backend.core.db import Database

log = logging.getLogger("fieldcase.jobs")

_PENDING = "fieldcase.pending_jobs"

# A job that fails is tried again after these many seconds (a store or database hiccup passes), then it is
# left in the failed-job registry for a person to look at. An hour is enough to hash the largest clips.
RETRY_INTERVALS = (5, 30, 120, 600)
JOB_TIMEOUT = 3600

Job = Callable[..., None]  # job(context, session, *args)


def lookup(table: Mapping[str, Job], name: str) -> Job:
    try:
        return table[name]
    except KeyError:
        raise ValueError(f"no job {name!r} (jobs: {', '.join(sorted(table))})") from None


class InlineRunner:
    """The embedded default: the work happens now, inside the caller's transaction."""

    deferred = False

    def __init__(self, table: Mapping[str, Job], context: Any = None, *, observer: Observer = NO_OBSERVER) -> None:
        self.table = table
        self.context = context  # set by the composition root once the context (which names this runner) exists
        self.observer = observer

    def submit(self, session: Session, name: str, *args: str | int) -> None:
        timed(self.observer, name, lambda: lookup(self.table, name)(self.context, session, *args))


class RQRunner:
    """Queues jobs on Redis for `fieldcase worker` processes, once the submitting transaction has committed."""

    deferred = True

    def __init__(self, redis_url: str, queue: str, table: Mapping[str, Job], *,
                 observer: Observer = NO_OBSERVER) -> None:
        from redis import Redis
        from rq import Queue
        from rq.serializers import JSONSerializer

        self.table = table
        self.observer = observer  # hears of jobs that could not be queued
        self.connection = Redis.from_url(redis_url)
        self.queue = Queue(queue, connection=self.connection, serializer=JSONSerializer)

    def submit(self, session: Session, name: str, *args: str | int) -> None:
        lookup(self.table, name)  # a wrong name fails in the request that made it, not later in a worker
        commit_queue.enqueue(session, _PENDING, (self, name, list(args)))

    def enqueue_now(self, name: str, args: list[str | int]) -> Any:
        from rq import Retry

        return self.queue.enqueue(perform, name, *args, retry=Retry(max=len(RETRY_INTERVALS),
                                                                    interval=list(RETRY_INTERVALS)),
                                  job_timeout=JOB_TIMEOUT, description=f"{name}{tuple(args)!r}")

    def enqueue_at(self, when: datetime, name: str, args: list[str | int], *, job_id: str) -> Any:
        """Run a job at `when` (RQ's scheduler, in every long-running worker, queues it then). A periodic job
        names each run by its time slot: the same `job_id` scheduled twice is still one run."""
        lookup(self.table, name)
        return self.queue.enqueue_at(when, perform, name, *args, job_id=job_id, job_timeout=JOB_TIMEOUT,
                                     description=f"{name}{tuple(args)!r}")


@event.listens_for(Session, "after_commit")
def _send_queued(session: Session) -> None:
    """Hand the committed transaction's jobs to Redis. A failure here must not turn a done request into an error:
    the rows say what is still to do (an upload stays `verifying`), and a phone's next `complete` or
    `fieldcase jobs sweep` queues it again."""
    if session.in_nested_transaction():
        return
    for runner, name, args in commit_queue.take(session, _PENDING):
        try:
            runner.enqueue_now(name, args)
        except Exception as exc:  # noqa: BLE001 - one line, not Redis's traceback: the rows keep what is to do
            log.warning("could not queue job %s; `fieldcase jobs sweep` queues unfinished work again", name,
                        extra={"job": name, "job_args": args, "error": logs.exception_summary(exc)})
            runner.observer.enqueue_failed(name)


# ---------------------------------------------------------------------------------------------- worker side


@dataclass
class Worker:
    """What one worker process runs jobs with, built once by the composition root (a worker runs many jobs)."""

    name: str
    context: Any
    db: Database
    runner: RQRunner
    observer: Observer = NO_OBSERVER  # hears how each job ended


_worker: Worker | None = None


def timed(observer: Observer, name: str, run: Callable[[], Any]) -> Any:
    """Run one job and tell `observer` how it ended (`done`, or `failed` when it raised) and how long it took."""
    started = time.perf_counter()
    try:
        result = run()
    except BaseException:
        observer.job_finished(name, "failed", time.perf_counter() - started)
        raise
    observer.job_finished(name, "done", time.perf_counter() - started)
    return result


def perform(name: str, *args: str | int) -> str:
    """What RQ runs: one job of the worker's table in one transaction of its own (committed, or rolled back and
    retried). RQ imports this function by its path, so the worker it runs for is this process's."""
    if _worker is None:
        raise RuntimeError("no worker in this process: jobs run under `fieldcase worker` (backend.core.jobs.work)")
    worker = _worker
    job = lookup(worker.runner.table, name)

    def run() -> None:
        with worker.db.transaction() as session:
            job(worker.context, session, *args)

    with logs.bound(job=name):  # every line the job logs says which job it was
        timed(worker.observer, name, run)
    return "done"


def work(worker: Worker, *, burst: bool = False, log_level: str = "INFO") -> bool:
    """Work the queue until stopped (SIGTERM: finish the current job, then exit) or, with `burst`, until empty.

    A SimpleWorker runs jobs in this process rather than forking one per job,
    so the database pool, the S3 client and the key are made once, not per job.
    A burst worker works what is queued now and exits: it starts no scheduler
    (a retry waiting for its time is left for a long-running worker), so it
    neither forks one nor waits, up to a minute, for it to stop.
    """
    from rq.serializers import JSONSerializer

    global _worker
    _worker = worker
    rq_worker = _worker_class()([worker.runner.queue], connection=worker.runner.connection, name=worker.name,
                                serializer=JSONSerializer)
    return rq_worker.work(burst=burst, with_scheduler=not burst, logging_level=log_level)


def _worker_class() -> type:
    """RQ's SimpleWorker, whose command listener wakes every second instead of every minute: a worker that is
    done closes that listener's connection, which waits for the listener, so with RQ's 60 s a burst worker could
    take a minute to exit after its last job."""
    from rq import SimpleWorker

    class Worker(SimpleWorker):
        def subscribe(self) -> None:
            self.log.info("Worker %s: subscribing to channel %s", self.name, self.pubsub_channel_name)
            self.pubsub = self.connection.pubsub()
            self.pubsub.subscribe(**{self.pubsub_channel_name: self.handle_payload})
            self.pubsub_thread = self.pubsub.run_in_thread(sleep_time=1, daemon=True,
                                                           exception_handler=self._pubsub_exception_handler)

        def handle_exception(self, job: Any, *exc_info: Any) -> None:
            """A failed job is one log line (its id, what it was, the exception as backend.core.logs gives it:
            class and one-field trace), not RQ's message with the whole traceback, whose text can quote a row.
            Then RQ's exception handlers, as RQ runs them (one returning a falsy value other than None stops)."""
            self.log.error("job failed", exc_info=exc_info, extra={"job_id": job.id, "job": job.description})
            for handler in self._exc_handlers:
                go_on = handler(job, *exc_info)
                if go_on is not None and not go_on:
                    break

    return Worker


def queue_report(runner: RQRunner, limit: int = 20) -> dict[str, Any]:
    """Queue lengths and the newest failed jobs (the dead letters) with the last line of their error."""
    from rq.job import Job as RQJob
    from rq.serializers import JSONSerializer

    queue = runner.queue
    failed_ids = queue.failed_job_registry.get_job_ids()
    failed = []
    for job_id in failed_ids[-limit:]:
        job = RQJob.fetch(job_id, connection=runner.connection, serializer=JSONSerializer)
        error = (job.latest_result().exc_string if job.latest_result() else "") or ""
        failed.append({"id": job_id, "job": job.description, "ended_at": job.ended_at,
                       "error": error.strip().splitlines()[-1] if error.strip() else ""})
    return {"queue": queue.name, "queued": queue.count, "started": queue.started_job_registry.count,
            "scheduled": queue.scheduled_job_registry.count, "failed": len(failed_ids), "failed_jobs": failed}


def requeue_failed(runner: RQRunner) -> int:
    registry = runner.queue.failed_job_registry
    ids = registry.get_job_ids()
    for job_id in ids:
        registry.requeue(job_id)
    return len(ids)
