"""Slow work as jobs: run inline in the request (the embedded default) or by RQ workers (at scale).

The slow work is hashing uploaded files, reading photos (metadata and
thumbnails) and signing periodic custody tree heads. Its functions live in
`media.jobs` and are plain functions of a `JobContext` (the store, the media
limits, the signing key, who runs them), a session, and ids: never ORM
objects, so the same call can be made now, in the request's own transaction,
or later in another process from a queue.

Code that has work to hand off calls `submit(session, "media.jobs.name", *ids)`
and does not know which runner the session carries:

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

Jobs travel as JSON (RQ's JSONSerializer, not pickle), so what sits in Redis
is an import path and a few strings or numbers, and a worker only runs
functions of `media.jobs`.
"""

from __future__ import annotations

import importlib
import logging
import os
import socket
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

from sqlalchemy import event
from sqlalchemy.orm import Session

from . import commit_queue

if TYPE_CHECKING:
    from media.custody import Signer
    from media.settings import MediaSettings
    from media.store import Store

    from .config import Settings
    from .db import Database

log = logging.getLogger("fieldcase.jobs")

RUNNER = "fieldcase.job_runner"
JOB_MODULE = "media.jobs"
_PENDING = "fieldcase.pending_jobs"

# A job that fails is tried again after these many seconds (a store or database hiccup passes), then it is
# left in the failed-job registry for a person to look at. An hour is enough to hash the largest clips.
RETRY_INTERVALS = (5, 30, 120, 600)
JOB_TIMEOUT = 3600


@dataclass(frozen=True)
class JobContext:
    """What a job function may use besides its session. `worker` is None when the caller waits for the result."""

    store: Store
    media: MediaSettings
    signer: Signer
    worker: str | None = None

    @property
    def inline(self) -> bool:
        return self.worker is None


class JobRunner(Protocol):
    deferred: bool  # True when the work happens after the caller's transaction, in another process

    def submit(self, session: Session, func: str, *args: str | int) -> None:
        """Run `func(context, session, *args)` now, or queue it to run once `session` commits."""


def runner_of(session: Session) -> JobRunner | None:
    return session.info.get(RUNNER)


def submit(session: Session, func: str, *args: str | int) -> None:
    runner = runner_of(session)
    if runner is None:
        raise RuntimeError("this session has no job runner (see backend.state.AppState)")
    runner.submit(session, func, *args)


def resolve(func: str) -> Callable[..., Any]:
    """The job function an import path names; only functions of media.jobs are jobs."""
    module, _, name = func.rpartition(".")
    if module != JOB_MODULE or name.startswith("_"):
        raise ValueError(f"{func!r} is not a job (jobs are public functions of {JOB_MODULE})")
    target = getattr(importlib.import_module(module), name, None)
    if not callable(target):
        raise ValueError(f"no job {func!r}")
    return target


class InlineRunner:
    """The embedded default: the work happens now, inside the caller's transaction."""

    deferred = False

    def __init__(self, context: JobContext) -> None:
        self.context = context

    def submit(self, session: Session, func: str, *args: str | int) -> None:
        resolve(func)(self.context, session, *args)


class RQRunner:
    """Queues jobs on Redis for `fieldcase worker` processes, once the submitting transaction has committed."""

    deferred = True

    def __init__(self, redis_url: str, queue: str) -> None:
        from redis import Redis
        from rq import Queue
        from rq.serializers import JSONSerializer

        self.connection = Redis.from_url(redis_url)
        self.queue = Queue(queue, connection=self.connection, serializer=JSONSerializer)

    def submit(self, session: Session, func: str, *args: str | int) -> None:
        resolve(func)  # a wrong name fails in the request that made it, not later in a worker
        commit_queue.enqueue(session, _PENDING, (func, list(args)))

    def enqueue_now(self, func: str, args: list[str | int]) -> Any:
        from rq import Retry

        return self.queue.enqueue(perform, func, *args, retry=Retry(max=len(RETRY_INTERVALS),
                                                                    interval=list(RETRY_INTERVALS)),
                                  job_timeout=JOB_TIMEOUT, description=f"{func}{tuple(args)!r}")


@event.listens_for(Session, "after_commit")
def _send_queued(session: Session) -> None:
    """Hand the committed transaction's jobs to Redis. A failure here must not turn a done request into an error:
    the rows say what is still to do (an upload stays `verifying`), and a phone's next `complete` or
    `fieldcase jobs sweep` queues it again."""
    if session.in_nested_transaction():
        return
    pending = commit_queue.take(session, _PENDING)
    runner = runner_of(session)
    if not pending or not isinstance(runner, RQRunner):
        return
    for func, args in pending:
        try:
            runner.enqueue_now(func, args)
        except Exception:
            log.exception("could not queue %s%r; `fieldcase jobs sweep` queues unfinished work again", func, args)


# ---------------------------------------------------------------------------------------------- worker side


@dataclass
class _Worker:
    context: JobContext
    db: Database
    runner: RQRunner


_worker: _Worker | None = None


def worker_state(settings: Settings, name: str | None = None) -> _Worker:
    """This process's database pool, store client, signing key and runner, built once (a worker runs many jobs)."""
    global _worker
    if _worker is None:
        from media.custody import SIGNER, signer_for

        from .db import Database
        from .state import make_store, media_settings

        if settings.jobs != "rq":
            raise RuntimeError("workers need FIELDCASE_JOBS=rq and FIELDCASE_REDIS_URL")
        signer = signer_for(settings)
        runner = RQRunner(settings.redis_url, settings.job_queue)
        db = Database(settings.database_url, pool_size=2, max_overflow=2, pool_timeout=30)
        db.sessionmaker.configure(info={SIGNER: signer, RUNNER: runner})
        worker = f"rq:{name or f'{socket.gethostname()}.{os.getpid()}'}"
        context = JobContext(store=make_store(settings), media=media_settings(settings), signer=signer, worker=worker)
        _worker = _Worker(context=context, db=db, runner=runner)
    return _worker


def perform(func: str, *args: str | int) -> str:
    """What RQ runs: one job function in one transaction of its own (committed, or rolled back and retried)."""
    from .config import Settings

    state = worker_state(Settings.from_env())
    target = resolve(func)
    with state.db.transaction() as session:
        target(state.context, session, *args)
    return "done"


def run_worker(settings: Settings, *, burst: bool = False, name: str | None = None) -> bool:
    """Work the queue until stopped (SIGTERM: finish the current job, then exit) or, with `burst`, until empty.

    A SimpleWorker runs jobs in this process rather than forking one per job,
    so the database pool, the S3 client and the key are made once, not per job.
    """
    from rq import SimpleWorker
    from rq.serializers import JSONSerializer

    name = name or f"{socket.gethostname()}.{os.getpid()}"
    state = worker_state(settings, name)
    worker = SimpleWorker([state.runner.queue], connection=state.runner.connection, name=name,
                          serializer=JSONSerializer)
    return worker.work(burst=burst, with_scheduler=True, logging_level=settings.log_level)


def queue_report(settings: Settings, limit: int = 20) -> dict[str, Any]:
    """Queue lengths and the newest failed jobs (the dead letters) with the last line of their error."""
    from rq.job import Job
    from rq.serializers import JSONSerializer

    runner = RQRunner(settings.redis_url, settings.job_queue)
    queue = runner.queue
    failed_ids = queue.failed_job_registry.get_job_ids()
    failed = []
    for job_id in failed_ids[-limit:]:
        job = Job.fetch(job_id, connection=runner.connection, serializer=JSONSerializer)
        error = (job.latest_result().exc_string if job.latest_result() else "") or ""
        failed.append({"id": job_id, "job": job.description, "ended_at": job.ended_at,
                       "error": error.strip().splitlines()[-1] if error.strip() else ""})
    return {"queue": queue.name, "queued": queue.count, "started": queue.started_job_registry.count,
            "scheduled": queue.scheduled_job_registry.count, "failed": len(failed_ids), "failed_jobs": failed}


def requeue_failed(settings: Settings) -> int:
    runner = RQRunner(settings.redis_url, settings.job_queue)
    registry = runner.queue.failed_job_registry
    ids = registry.get_job_ids()
    for job_id in ids:
        registry.requeue(job_id)
    return len(ids)
