"""What the job queue holds and who works it (`fieldcase jobs status`), and the sweep's half that talks to Redis.

Status reads Redis and changes nothing: RQ's own counters clean up as they count (a "started" count re-queues the
abandoned jobs it meets), which would hide the very thing an operator asks about. So it reads the registries raw,
and says which workers have gone silent and which jobs are held by a worker that no longer beats.

The sweep is the path back for work Redis lost: the database says what is unfinished (an upload still
`verifying`, a verified photo never read, a periodic tree head never signed: each job kind's finder, in
`media.jobs.unfinished`), and `enqueue_missing` queues each unless the same job (its kind and ids: its RQ
description) is already waiting, running or being retried, so that a sweep every few minutes under a backlog adds
nothing twice. A job that used up its retries (a dead letter) is left for a person (`jobs requeue`), not queued
again every few minutes.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from backend.core.job_worker import DEAD_AFTER, SILENT_AFTER
from backend.core.jobs import RQRunner, describe


@dataclass
class SweepCount:
    queued: int = 0  # queued now
    waiting: int = 0  # already in Redis: queued, running, or waiting for a retry
    dead: int = 0  # a dead letter: left for `fieldcase jobs requeue`

    def spelled(self) -> str:
        return f"{self.queued} queued, {self.waiting} already waiting, {self.dead} dead letter(s)"


@dataclass
class QueueReport:
    queue: str
    queued: int
    running: int  # jobs whose worker still beats
    scheduled: int  # waiting for their time: retries, and the periodic jobs' next runs
    failed: int
    failed_jobs: list[dict[str, Any]] = field(default_factory=list)
    workers: list[dict[str, Any]] = field(default_factory=list)  # each: name, host, pid, state, silent, dead, job
    stuck: list[dict[str, Any]] = field(default_factory=list)  # each: id, job, worker, silent

    @property
    def dead_workers(self) -> list[dict[str, Any]]:
        return [w for w in self.workers if w["dead"]]


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value or "")


def _fields(conn: Any, job_ids: list[str], name: str) -> dict[str, str]:
    """One field of each job's hash in RQ (`description`, `worker_name`: the worker that last took it)."""
    from rq.job import Job as RQJob

    with conn.pipeline() as p:
        for job_id in job_ids:
            p.hget(RQJob.key_for(job_id), name)
        found = p.execute()
    return {job_id: _text(d) for job_id, d in zip(job_ids, found, strict=True)}


def queue_report(queue: Any, limit: int = 20) -> QueueReport:
    """Queue lengths, the workers (and which have gone silent), jobs held by a dead worker, the newest `limit` dead
    letters with the last line of their error. `queue`: the RQ queue (`RQRunner.queue`), read through its own
    connection."""
    from rq import Worker as RQWorker
    from rq.defaults import RQ_KEY_PREFIX
    from rq.job import Job as RQJob
    from rq.serializers import JSONSerializer
    from rq.utils import now

    conn = queue.connection
    at = now()
    clock = at.timestamp()
    # Running jobs, raw: `job_id:execution_id` → the time by which its worker must beat again.
    started = [(_text(m), score) for m, score in conn.zrange(queue.started_job_registry.key, 0, -1, withscores=True)]
    job_ids = [member.split(":", 1)[0] for member, _ in started]
    descriptions, takers = _fields(conn, job_ids, "description"), _fields(conn, job_ids, "worker_name")
    workers = []
    for w in RQWorker.all(queue=queue, serializer=JSONSerializer):
        silent = (at - w.last_heartbeat).total_seconds() if w.last_heartbeat else float("inf")
        executions = [_text(m) for m in conn.smembers(w.executions_key)]
        job = descriptions.get(executions[0].split(":", 1)[0], "") if executions else ""
        workers.append({"name": w.name, "host": w.hostname, "pid": w.pid, "state": str(w.get_state()),
                        "silent": silent, "dead": silent > SILENT_AFTER, "job": job})
    dead = {w["name"] for w in workers if w["dead"]}
    with conn.pipeline() as p:
        for member, _ in started:
            p.hmget(f"{RQ_KEY_PREFIX}:execution:{member}", "last_heartbeat", "worker_name")
        executions = p.execute()
    stuck, running = [], 0
    for (_member, deadline), job_id, (beat, owner) in zip(started, job_ids, executions, strict=True):
        owner = _text(owner) or takers.get(job_id, "")  # the execution's record expires with its heartbeat
        if deadline < clock or owner in dead:  # its worker stopped beating
            silent = clock - float(beat) if beat else clock - (deadline - DEAD_AFTER)
            stuck.append({"id": job_id, "job": descriptions.get(job_id, ""), "worker": owner, "silent": silent})
        else:
            running += 1
    failed_ids = queue.failed_job_registry.get_job_ids(cleanup=False)
    failed = []
    for job_id in failed_ids[-limit:] if limit > 0 else []:
        job = RQJob.fetch(job_id, connection=conn, serializer=JSONSerializer)
        result = job.latest_result()
        error = (result.exc_string if result else "") or ""
        failed.append({"id": job_id, "job": job.description, "ended_at": job.ended_at,
                       "error": error.strip().splitlines()[-1] if error.strip() else ""})
    return QueueReport(queue=queue.name, queued=queue.count, running=running,
                       scheduled=queue.scheduled_job_registry.get_job_count(cleanup=False), failed=len(failed_ids),
                       failed_jobs=failed, workers=workers, stuck=stuck)


def requeue_failed(runner: RQRunner) -> int:
    registry = runner.queue.failed_job_registry
    ids = registry.get_job_ids()
    for job_id in ids:
        registry.requeue(job_id)
    return len(ids)


def in_redis(runner: RQRunner) -> tuple[set[str], set[str]]:
    """The descriptions of the jobs Redis will still run (queued, being handed to a worker, running, waiting for a
    retry or their time), and of the dead letters."""
    queue, conn = runner.queue, runner.connection
    alive = list(queue.get_job_ids())
    alive += [_text(j) for j in conn.lrange(queue.intermediate_queue_key, 0, -1)]
    alive += [_text(m).split(":", 1)[0] for m in conn.zrange(queue.started_job_registry.key, 0, -1)]
    alive += [_text(m) for m in conn.zrange(queue.scheduled_job_registry.key, 0, -1)]
    dead = [_text(m) for m in conn.zrange(queue.failed_job_registry.key, 0, -1)]
    found = _fields(conn, alive + dead, "description")
    return {found[j] for j in alive if found[j]}, {found[j] for j in dead if found[j]}


def enqueue_missing(runner: RQRunner, work: Mapping[str, list[list[str | int]]]) -> dict[str, SweepCount]:
    """Queue each job of `work` (kind → the ids of each job) that Redis does not already hold; counts per kind."""
    alive, dead = in_redis(runner)
    counts: dict[str, SweepCount] = {}
    calls: list[tuple[str, list[str | int]]] = []
    for name, items in work.items():
        count = counts.setdefault(name, SweepCount())
        for args in items:
            description = describe(name, args)
            if description in alive:
                count.waiting += 1
            elif description in dead:
                count.dead += 1
            else:
                count.queued += 1
                calls.append((name, args))
                alive.add(description)
    runner.enqueue_many(calls)
    return counts
