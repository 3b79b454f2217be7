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

Redis holds only the queue, so anything in it can be lost (a restart without
persistence, a job queued while Redis was down). Every kind of job therefore
has a path back from the database (`backend.core.job_status.enqueue_missing`,
driven by `fieldcase jobs sweep` and by the workers on a schedule), and the
worker process itself (`backend.core.job_worker`) survives Redis outages and
finds jobs whose worker died within seconds.
"""

from __future__ import annotations

import logging
import secrets
import socket
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

from sqlalchemy import event
from sqlalchemy.orm import Session

from backend.core import commit_queue, logs
from backend.core.observe import NO_OBSERVER, Observer
from backend.core.redis_client import bounded_redis

if TYPE_CHECKING:
    from backend.core.db import Database

log = logging.getLogger("fieldcase.jobs")

_PENDING = "fieldcase.pending_jobs"

# A job that fails is tried again after these many seconds (a store or database hiccup passes), then it is
# left in the failed-job registry for a person to look at. A job whose worker died is tried again the same way.
RETRY_INTERVALS = (5, 30, 120, 600)
# The time limit of a job that declares none (`limited`): RQ stops it then (SIGALRM) and it is retried. A dead
# worker's job is not waited for this long: workers' heartbeats show it dead in seconds (backend.core.job_worker).
JOB_TIMEOUT = 3600

Job = Callable[..., None]  # job(context, session, *args)


def limited(seconds: int) -> Callable[[Job], Job]:
    """Declare a job's time limit next to it: what the slowest honest run needs (the largest file hashed, a TSA's
    timeout), so that a run stuck on a dead connection is stopped and retried rather than held for an hour."""

    def declare(job: Job) -> Job:
        job.timeout_seconds = seconds  # type: ignore[attr-defined]
        return job

    return declare


def timeout_of(table: Mapping[str, Job], name: str) -> int:
    return int(getattr(lookup(table, name), "timeout_seconds", JOB_TIMEOUT))


def describe(name: str, args: list[str | int] | tuple[str | int, ...]) -> str:
    """A queued job's description in RQ, `name(args…)`: what `jobs status` shows, and how the sweep recognises work
    that is already waiting in Redis (the same kind with the same ids)."""
    return f"{name}{tuple(args)!r}"


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
        from rq import Queue
        from rq.serializers import JSONSerializer

        self.table = table
        self.observer = observer  # hears of jobs that could not be queued
        # Bounded waits: a Redis that is down, or unreachable, costs a committed request (or a worker) seconds and
        # one log line, never a thread hung on a connect (a worker raises the read timeout above its blocking pop).
        self.connection = bounded_redis(redis_url, connect_timeout=5, read_timeout=10)
        self.queue = Queue(queue, connection=self.connection, serializer=JSONSerializer)

    def submit(self, session: Session, name: str, *args: str | int) -> None:
        lookup(self.table, name)  # a wrong name fails in the request that made it, not later in a worker
        commit_queue.enqueue(session, _PENDING, (self, name, list(args)))

    def enqueue_now(self, name: str, args: list[str | int]) -> Any:
        return self.queue.enqueue(perform, name, *args, retry=_retry(), job_timeout=timeout_of(self.table, name),
                                  description=describe(name, args))

    def enqueue_many(self, calls: list[tuple[str, list[str | int]]]) -> int:
        """Queue many jobs in one round trip (a sweep's catch-up can be thousands)."""
        data = [self.queue.prepare_data(perform, args=(name, *args), timeout=timeout_of(self.table, name),
                                        retry=_retry(), description=describe(name, args)) for name, args in calls]
        for start in range(0, len(data), 500):
            self.queue.enqueue_many(data[start:start + 500])
        return len(data)

    def enqueue_at(self, when: datetime, name: str, args: list[str | int], *, job_id: str) -> Any:
        """Run a job at `when` (RQ's scheduler, in every long-running worker, queues it then). A periodic job
        names each run by its time slot: the same `job_id` scheduled twice is still one run."""
        return self.queue.enqueue_at(when, perform, name, *args, job_id=job_id,
                                     job_timeout=timeout_of(self.table, name), description=describe(name, args))


def _retry() -> Any:
    from rq import Retry

    return Retry(max=len(RETRY_INTERVALS), interval=list(RETRY_INTERVALS))


@event.listens_for(Session, "after_commit")
def _send_queued(session: Session) -> None:
    """Hand the committed transaction's jobs to Redis. A failure here must not turn a done request into an error:
    the rows say what is still to do (an upload stays `verifying`, a photo without its metadata), and the sweep
    (`media.jobs.unfinished`) or a phone's next `complete` queues it again."""
    if session.in_nested_transaction():
        return
    for runner, name, args in commit_queue.take(session, _PENDING):
        try:
            runner.enqueue_now(name, args)
        except Exception as exc:  # noqa: BLE001 - one line, not Redis's traceback: the rows keep what is to do
            log.warning("could not queue job %s; the next sweep queues it again (a worker's, within "
                        "FIELDCASE_SWEEP_INTERVAL, or `fieldcase jobs sweep`)", name,
                        extra={"job": name, "job_args": args, "error": logs.exception_summary(exc)})
            runner.observer.enqueue_failed(name)


# ---------------------------------------------------------------------------------------------- worker side


def default_worker_name() -> str:
    """`host.<8 hex>`: the host for people, and a random part so that a restart never meets its own previous
    registration (`host.pid` did: a container restarts as pid 1 every time, and RQ refused the name for up to an
    hour after a `kill -9`)."""
    return f"{socket.gethostname()}.{secrets.token_hex(4)}"


@dataclass
class Worker:
    """What one worker process runs jobs with, built once by the composition root (a worker runs many jobs)."""

    name: str
    context: Any
    db: Database
    runner: RQRunner
    observer: Observer = NO_OBSERVER  # hears how each job ended


_worker: Worker | None = None


def install(worker: Worker | None) -> None:
    """Make `worker` the one this process's `perform` runs jobs for (`backend.core.job_worker.work`; None: none)."""
    global _worker
    _worker = worker


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
        raise RuntimeError("no worker in this process: jobs run under `fieldcase worker` (job_worker.work)")
    worker = _worker
    job = lookup(worker.runner.table, name)

    def run() -> None:
        with worker.db.transaction() as session:
            job(worker.context, session, *args)

    with logs.bound(job=name):  # every line the job logs says which job it was
        timed(worker.observer, name, run)
    return "done"
