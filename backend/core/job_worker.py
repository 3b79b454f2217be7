"""The `fieldcase worker` process: RQ's SimpleWorker, made to keep the queue's promises when things fail.

A worker was run under faults (docs/reliability.md; issue 24) and RQ's defaults broke them in four ways, each
answered here:

- **A dead worker's job waited an hour.** A SimpleWorker runs the job in its own thread and so sends no heartbeat
  while it works: RQ kept the job "started" for its whole timeout (3,600 s) plus a minute. Here a thread beats
  every `HEARTBEAT_EVERY` seconds while a job runs, and each beat gives the job `DEAD_AFTER` more seconds: once a
  worker is killed its job is found abandoned within `DEAD_AFTER`, and the next maintenance of any worker (every
  `MAINTENANCE_EVERY` seconds) hands it back to the queue with RQ's retry (`backend.core.jobs.RETRY_INTERVALS`).
- **A worker busy when Redis went away exited**, and its queue's scheduler with it; the idle ones survived but were
  not registered again once Redis came back, so monitoring saw none. Here every Redis call of the work loop that
  fails makes the worker wait for Redis (backing off from 1 s to `MAX_RECONNECT_WAIT`), register again, and go on;
  the job it was finishing is retried by RQ if Redis kept it, or found by the sweep from the database if Redis
  came back empty. The scheduler process waits for Redis the same way instead of dying.
- **A name could not be reused for up to an hour** after a `kill -9` (`There exists an active worker named …`),
  and the default `host.pid` collided in containers, which restart as pid 1. Names are now `host.<random>`
  (`backend.core.jobs.default_worker_name`), and a registration of the same name whose process is gone (same
  host and that pid is dead or is this very process, or silent for `SILENT_AFTER`) is cleared on start, its
  running jobs handed back.
- **No scheduler ran while a dead worker held its lock.** A lock whose scheduler has been silent for
  `SCHEDULER_SILENT` is released at the next maintenance, and a live worker's scheduler takes over.

And the sweep (`backend.core.job_status.enqueue_missing`, composed by the command line) runs inside the system:
at most once per FIELDCASE_SWEEP_INTERVAL across all workers (a Redis key with that expiry elects the one that
runs it), so work lost with Redis comes back without cron; after Redis restarts empty the key is gone with
everything else and the first worker's maintenance sweeps at once.
"""

from __future__ import annotations

import contextlib
import logging
import os
import socket
import threading
import time
from collections.abc import Callable
from datetime import datetime
from typing import Any

import redis.exceptions
from rq import SimpleWorker, worker_registration
from rq.exceptions import StopRequested
from rq.group import Group
from rq.registry import clean_registries
from rq.scheduler import SCHEDULER_KEY_TEMPLATE, RQScheduler
from rq.serializers import JSONSerializer
from rq.utils import now, utcparse
from rq.worker import WorkerStatus

from backend.core import jobs, logs

log = logging.getLogger("fieldcase.worker")

HEARTBEAT_EVERY = 2  # seconds between a busy worker's heartbeats
DEAD_AFTER = 10  # a running job not heard from for this long has lost its worker
SCHEDULER_SILENT = 5  # a scheduler (it beats every second) not heard from for this long is dead
SILENT_AFTER = 15  # a worker registration not heard from for this long is a dead worker (idle ones beat every 5 s)
WORKER_TTL = 20  # RQ's worker TTL: an idle worker blocks on the queue for WORKER_TTL - 15 s between heartbeats
MAINTENANCE_EVERY = 5  # seconds between a worker's maintenance: abandoned jobs re-queued, the scheduler checked
MAINTENANCE_LOCK = 60  # RQ holds its cleaning lock 15 min if its holder dies mid-way; ours expires in a minute
MAX_RECONNECT_WAIT = 10.0
REDIS_ERRORS = (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError)

Sweep = Callable[[], Any]  # queues what the database says is unfinished and logs what it queued

# Delete a lock only if it still names the holder we found silent (a scheduler that took it since keeps it).
_RELEASE_IF_HELD_BY = "if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('del', KEYS[1]) end return 0"


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # someone else's process
    return True


def _silent_for(heard: datetime | None) -> float:
    return float("inf") if heard is None else (now() - heard).total_seconds()


def _spelled(seconds: float) -> str:
    return "ever (no heartbeat on record)" if seconds == float("inf") else f"{seconds:.0f} s"


class _Scheduler(RQScheduler):
    """RQ's scheduler process, which waits for Redis when it is lost instead of exiting with a traceback. Each
    new round registers it again, and its heartbeat takes its lock back if Redis came back empty."""

    def work(self) -> None:
        wait = 1.0
        while not self._stop_requested:
            try:
                super().work()
                return
            except REDIS_ERRORS as exc:
                log.warning("the scheduler lost Redis; trying again in %.0f s", wait,
                            extra={"error": logs.exception_summary(exc)})
                time.sleep(wait)
                wait = min(wait * 2, MAX_RECONNECT_WAIT)


class FieldcaseWorker(SimpleWorker):
    """RQ's SimpleWorker (jobs run in this process, so the database pool, the store client and the key are made
    once) with heartbeats while a job runs, a work loop that outlives Redis, names that can be reused, a scheduler
    that can be taken over, and the sweep."""

    max_connection_wait_time = MAX_RECONNECT_WAIT  # RQ's own back-off while it waits for a job

    def __init__(self, *args: Any, sweep: Sweep | None = None, sweep_every: int = 0, **kwargs: Any) -> None:
        kwargs.setdefault("worker_ttl", WORKER_TTL)
        kwargs.setdefault("maintenance_interval", MAINTENANCE_EVERY)
        kwargs.setdefault("job_monitoring_interval", HEARTBEAT_EVERY)
        super().__init__(*args, **kwargs)
        self.sweep, self.sweep_every = sweep, sweep_every
        self.burst = False
        self.lost_redis = False

    def work(self, burst: bool = False, *args: Any, **kwargs: Any) -> bool:
        self.burst = burst
        return super().work(burst, *args, **kwargs)

    # ------------------------------------------------------------------------------ logging and the listener

    def subscribe(self) -> None:
        """RQ's command listener, waking every second instead of every minute: a worker that is done closes that
        listener's connection, which waits for the listener, so with RQ's 60 s a burst worker could take a minute
        to exit after its last job."""
        self.pubsub = self.connection.pubsub()
        self.pubsub.subscribe(**{self.pubsub_channel_name: self.handle_payload})
        self.pubsub_thread = self.pubsub.run_in_thread(sleep_time=1, daemon=True,
                                                       exception_handler=self._pubsub_exception_handler)

    def _pubsub_exception_handler(self, exc: Exception, pubsub: Any, pubsub_thread: Any) -> None:
        """The command listener's thread, as RQ has it (it waits and tries again on a lost connection; redis-py
        subscribes again), with a warning rather than an error: the work loop reports the outage itself."""
        if not isinstance(exc, redis.exceptions.ConnectionError):
            raise exc
        log.warning("worker %s: the command listener lost Redis; trying again in 2 s", self.name,
                    extra={"error": logs.exception_summary(exc)})
        time.sleep(2.0)

    def handle_exception(self, job: Any, *exc_info: Any) -> None:
        """A failed job is one log line (its id, what it was, the exception as backend.core.logs gives it: class
        and one-field trace), not RQ's message with the whole traceback, whose text can quote a row. Then RQ's
        exception handlers, as RQ runs them (one returning a falsy value other than None stops)."""
        self.log.error("job failed", exc_info=exc_info, extra={"job_id": job.id, "job": job.description})
        for handler in self._exc_handlers:
            go_on = handler(job, *exc_info)
            if go_on is not None and not go_on:
                break

    # ------------------------------------------------------------------------------ heartbeats while a job runs

    def get_heartbeat_ttl(self, job: Any, working_time: float = 0.0) -> int:
        """How long a running job stays "started" without news from its worker: the beats renew it."""
        return DEAD_AFTER

    def execute_job(self, job: Any, queue: Any) -> None:
        stop = threading.Event()
        beat = threading.Thread(target=self._beat, args=(job, stop), name="job-heartbeat", daemon=True)
        beat.start()
        try:
            super().execute_job(job, queue)
        except REDIS_ERRORS as exc:
            self._lost(exc, f"finishing job {job.id}")
        finally:
            stop.set()
            beat.join()

    def _beat(self, job: Any, stop: threading.Event) -> None:
        while not stop.wait(HEARTBEAT_EVERY):
            execution = next((e for e in list(self.executions.values()) if e.job_id == job.id), None)
            if execution is None:
                continue
            try:
                self.maintain_heartbeats(job, execution)
            except REDIS_ERRORS:
                pass  # the job goes on; the work loop meets the outage when the job ends
            except Exception as exc:  # noqa: BLE001 - a beat that fails must not end the job
                log.warning("heartbeat failed", extra={"job_id": job.id, "error": logs.exception_summary(exc)})

    # ------------------------------------------------------------------------------ Redis outages

    def heartbeat(self, timeout: int | None = None, pipeline: Any = None) -> None:
        """RQ's heartbeat; on its own (not part of a pipeline) it also notices a registration Redis no longer holds
        (Redis restarted empty, or the key expired) and registers again, so monitoring sees every live worker."""
        # Never shorter than an idle worker's: a busy worker's beat is about its job, and a worker killed busy must
        # stay listed (silent, so `jobs status` names it dead) rather than vanish with its job's short TTL.
        timeout = max(timeout or 0, self.worker_ttl + 60)
        if pipeline is not None:
            super().heartbeat(timeout, pipeline)
            return
        try:
            with self.connection.pipeline() as p:
                p.exists(self.key)
                super().heartbeat(timeout, p)
                known = p.execute()[0]
            if not known:
                log.warning("worker %s was not registered in Redis (it restarted empty?): registered again", self.name)
                self._register_again()
        except REDIS_ERRORS as exc:
            self._lost(exc, "sending its heartbeat")

    def dequeue_job_and_maintain_ttl(self, timeout: int | None, max_idle_time: int | None = None) -> Any:
        while True:
            try:
                return super().dequeue_job_and_maintain_ttl(timeout, max_idle_time)
            except REDIS_ERRORS as exc:
                self._lost(exc, "waiting for jobs")

    def check_for_suspension(self, burst: bool) -> None:
        try:
            super().check_for_suspension(burst)
        except REDIS_ERRORS as exc:
            self._lost(exc, "checking for suspension")

    def run_maintenance_tasks(self) -> None:
        try:
            self._take_over_scheduler()
            super().run_maintenance_tasks()
            self._sweep_when_due()
        except REDIS_ERRORS as exc:
            self._lost(exc, "maintenance")

    def teardown(self) -> None:
        try:
            super().teardown()
        except REDIS_ERRORS as exc:
            log.warning("worker %s stopped without Redis: its registration expires by itself", self.name,
                        extra={"error": logs.exception_summary(exc)})

    def _lost(self, exc: BaseException, doing: str) -> None:
        """Redis failed while the worker was `doing` something: wait for it (a burst worker gives up instead)."""
        self.lost_redis = True
        self._state = WorkerStatus.IDLE  # a stop signal while we wait ends the loop (RQ raises StopRequested)
        self.executions.clear()  # Redis keeps (or lost) their records; a dead execution is found by its TTL
        log.warning("worker %s lost Redis while %s; it waits for Redis, and the job is retried (or swept) then",
                    self.name, doing, extra={"error": logs.exception_summary(exc)})
        if self.burst:
            raise StopRequested
        wait = 1.0
        while True:
            time.sleep(wait)
            try:
                self._register_again()  # the first command that works: Redis is back
                break
            except REDIS_ERRORS:
                wait = min(wait * 2, MAX_RECONNECT_WAIT)
        self.last_cleaned_at = None  # maintenance (and the sweep, if its key went with Redis) before the next job
        log.info("worker %s: Redis answers again; registered again", self.name)

    def _register_again(self) -> None:
        self.last_heartbeat = now()
        with self.connection.pipeline() as p:
            p.hset(self.key, mapping={**self.serialize(), "state": self._state})
            worker_registration.register(self, p)
            p.expire(self.key, self.worker_ttl + 60)
            p.execute()

    # ------------------------------------------------------------------------------ names, maintenance, scheduler

    def register_birth(self) -> None:
        try:
            super().register_birth()
        except ValueError:  # RQ: "There exists an active worker named …"
            if not self._clear_stale_registration():
                raise
            super().register_birth()

    def _clear_stale_registration(self) -> bool:
        """Clear a registration of this name whose process is gone, handing back the jobs it held; False when it
        is alive (it keeps beating for SILENT_AFTER seconds): then two processes were given one name."""
        deadline = time.monotonic() + SILENT_AFTER + 1
        while True:
            data = {k.decode(): v.decode() for k, v in self.connection.hgetall(self.key).items()}
            heard = utcparse(data["last_heartbeat"]) if data.get("last_heartbeat") else None
            pid = int(data.get("pid") or 0)
            here = data.get("hostname") == socket.gethostname()
            gone = not data or "death" in data or (here and (pid == os.getpid() or not _pid_alive(pid)))
            if gone or _silent_for(heard) > SILENT_AFTER:
                break
            if time.monotonic() > deadline:
                return False
            time.sleep(1)
        held = [m.decode() for m in self.connection.smembers(self.executions_key)]
        with self.connection.pipeline() as p:
            for queue in self.queues:  # expired now: the first maintenance (at start) re-queues them
                for member in held:
                    p.zadd(queue.started_job_registry.key, {member: 0}, xx=True)
            p.delete(self.key, self.executions_key)
            worker_registration.unregister(self, p)
            p.execute()
        log.warning("worker name %s was still registered by a process that is gone (host %s, pid %s, silent for "
                    "%s): registration cleared, %d running job(s) handed back", self.name, data.get("hostname"), pid,
                    _spelled(_silent_for(heard)), len(held))
        return True

    def clean_registries(self) -> None:
        """RQ's cleaning (abandoned jobs retried, expired entries dropped), under a lock that outlives a worker
        killed mid-way by a minute rather than RQ's 15."""
        for queue in self.queues:
            if self.connection.set(queue.registry_cleaning_key, self.name, nx=True, ex=MAINTENANCE_LOCK):
                try:
                    clean_registries(queue, self._exc_handlers)
                    worker_registration.clean_worker_registry(queue)
                    queue.intermediate_queue.cleanup(self, queue)
                finally:
                    queue.release_maintenance_lock()
        self.last_cleaned_at = now()

    def clean_group_registries(self) -> None:
        """RQ's, without its log line: maintenance runs every few seconds here."""
        if Group.acquire_maintenance_lock(self.connection, max(int(self.maintenance_interval) - 1, 1)):
            Group.clean_registries(connection=self.connection)

    def _start_scheduler(self, burst: bool = False, logging_level: Any = "INFO", date_format: Any = None,
                         log_format: Any = None) -> None:
        self.scheduler = _Scheduler(self.queues, connection=self.connection, logging_level=logging_level or "INFO",
                                    serializer=self.serializer)
        self.scheduler.acquire_locks()
        if self.scheduler.acquired_locks and not burst:
            self.scheduler.start()

    def _take_over_scheduler(self) -> None:
        """Without a scheduler of its own running, release a lock whose scheduler has been silent for
        SCHEDULER_SILENT (killed with its worker: RQ would wait for the lock to expire), and start ours when the
        lock can be had. A scheduler beats every second; retries of abandoned jobs wait on it."""
        if self.scheduler is None or (self.scheduler._process is not None and self.scheduler._process.is_alive()):
            return
        for name in self.queue_names():
            key = RQScheduler.get_locking_key(name)
            holder = self.connection.get(key)
            if holder is None:
                continue
            beat = self.connection.hget(SCHEDULER_KEY_TEMPLATE % holder.decode(), "last_heartbeat")
            silent = _silent_for(utcparse(beat.decode()) if beat else None)
            if silent > SCHEDULER_SILENT and self.connection.eval(_RELEASE_IF_HELD_BY, 1, key, holder):
                log.warning("the scheduler of queue %s was silent for %s: its lock is released", name,
                            _spelled(silent))
        self.scheduler.acquire_locks(auto_start=True)

    def _sweep_when_due(self) -> None:
        """Run the sweep if no worker has within FIELDCASE_SWEEP_INTERVAL (the key's expiry is the schedule)."""
        if self.sweep is None or self.sweep_every <= 0 or self.burst:
            return
        if not self.connection.set(sweep_key(self.queues[0].name), self.name, nx=True, ex=self.sweep_every):
            return
        try:
            self.sweep()
        except REDIS_ERRORS:
            raise
        except Exception as exc:  # noqa: BLE001 - the database may be down: the next interval tries again
            log.error("the sweep failed; it runs again in %d s", self.sweep_every,
                      extra={"error": logs.exception_summary(exc)})


def sweep_key(queue: str) -> str:
    """The Redis key that spaces the sweeps: set, with FIELDCASE_SWEEP_INTERVAL to live, by the worker that sweeps."""
    return f"rq:fieldcase-sweep:{queue}"


def wait_for_redis(connection: Any) -> None:
    """Until Redis answers: a worker started during an outage waits rather than exits (and is restarted in a
    loop by its supervisor)."""
    wait = 1.0
    while True:
        try:
            connection.ping()
            return
        except REDIS_ERRORS as exc:
            log.warning("Redis does not answer; the worker waits %.0f s", wait,
                        extra={"error": logs.exception_summary(exc)})
            time.sleep(wait)
            wait = min(wait * 2, MAX_RECONNECT_WAIT)


def work(worker: jobs.Worker, *, burst: bool = False, log_level: str = "INFO", sweep: Sweep | None = None,
         sweep_every: int = 0) -> FieldcaseWorker:
    """Work the queue until stopped (SIGTERM: finish the current job, then exit) or, with `burst`, until empty.

    A burst worker works what is queued now and exits: it starts no scheduler (a retry waiting for its time is
    left for a long-running worker), so it neither forks one nor waits, up to a minute, for it to stop; it runs
    no sweep, and gives up when Redis fails (`lost_redis` on the worker returned).
    """
    jobs.install(worker)
    if not burst:
        wait_for_redis(worker.runner.connection)
    rq_worker = FieldcaseWorker([worker.runner.queue], connection=worker.runner.connection, name=worker.name,
                                serializer=JSONSerializer, sweep=sweep, sweep_every=sweep_every)
    with contextlib.suppress(StopRequested):
        rq_worker.work(burst=burst, with_scheduler=not burst, logging_level=log_level)
    return rq_worker
