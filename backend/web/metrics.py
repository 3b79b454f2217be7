"""Metrics for on-call: what the server does, counted where it happens, exported for Prometheus.

The figures are recorded at the edges only. The web layer times every request by its route rule (never the raw
path, whose ids would make a series per object) and counts, from the answer it sends, what a push did to each
record, every `503` by its cause, and failed logins; the job runners, the queueing of jobs after a commit and the
custody log's commit follower call the `backend.core.observe.Observer` they were handed. This module is that
observer (`PrometheusObserver`), built by the composition root when metrics are on; without them every process
gets the do-nothing one and never imports prometheus-client. What needs a query (queue depth, uploads waiting,
the custody log's heads) is not here: `backend.web.figures` computes it in the process that serves the metrics.

Under gunicorn each worker is a process of its own; prometheus-client's multiprocess mode has each write its
values to files in one folder, which `backend.web.metrics_export` (in gunicorn's master) adds up when scraped.
Each metric therefore says how it adds up across processes: counters and histograms are summed; the pool gauge
is `livesum` (connections in use now, by the workers alive now); build info is `livemax`.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from typing import Any, Protocol

from flask import Flask, Response, current_app, g, request
from sqlalchemy import Engine, event

from backend.core.build import BuildInfo
from backend.core.observe import NullObserver, Observer

METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
# Where a failed login is answered: 401 is a wrong username or password, 429 the throttle refusing to check.
LOGIN_ENDPOINTS = {"auth.token": "api", "console.login_post": "console"}
LOGIN_REASONS = {401: "bad_credentials", 429: "throttled"}

DURATION_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)
PUSH_RECORD_BUCKETS = (1, 5, 10, 25, 50, 100, 250, 500)
PUSH_BYTE_BUCKETS = (1024, 10 * 1024, 100 * 1024, 512 * 1024, 1024 * 1024, 4 * 1024 * 1024, 8 * 1024 * 1024)
JOB_BUCKETS = (0.01, 0.05, 0.1, 0.5, 1.0, 5.0, 15.0, 60.0, 300.0, 1800.0, 3600.0)

_START = "fieldcase_metrics_start"
_CAUSE = "fieldcase_unavailable_cause"
_PUSH = "fieldcase_push_outcome"


class WebObserver(Observer, Protocol):
    """What the web layer tells an observer, besides what the layers below do (`Observer`)."""

    def request_finished(self, method: str, route: str, status: int, seconds: float) -> None: ...

    def pushed(self, results: Sequence[Mapping[str, Any]], records: int, size: int) -> None: ...

    def unavailable(self, cause: str, route: str) -> None: ...

    def login_failed(self, surface: str, reason: str) -> None: ...

    def watch_pool(self, engine: Engine, capacity: int) -> None: ...

    def build(self, info: BuildInfo) -> None: ...


class NullWebObserver(NullObserver):
    """Metrics are off: nothing is recorded, nothing is imported."""

    def request_finished(self, method: str, route: str, status: int, seconds: float) -> None:
        return None

    def pushed(self, results: Sequence[Mapping[str, Any]], records: int, size: int) -> None:
        return None

    def unavailable(self, cause: str, route: str) -> None:
        return None

    def login_failed(self, surface: str, reason: str) -> None:
        return None

    def watch_pool(self, engine: Engine, capacity: int) -> None:
        return None

    def build(self, info: BuildInfo) -> None:
        return None


NO_METRICS: WebObserver = NullWebObserver()


class PrometheusObserver:
    """The metrics of one process. `registry` None: unregistered, for gunicorn workers in multiprocess mode (their
    values go to files that the master's collector reads); a `CollectorRegistry`: a process of its own (a job
    worker, a test), read from that registry."""

    def __init__(self, registry: Any = None) -> None:
        from prometheus_client import Counter, Gauge, Histogram

        r = {"registry": registry}
        self.registry = registry
        self.requests = Counter("fieldcase_http_requests", "HTTP requests answered, by route rule and status",
                                ["method", "route", "status"], **r)
        self.duration = Histogram("fieldcase_http_request_duration_seconds",
                                  "time to answer a request (until the response object exists), by route rule",
                                  ["method", "route"], buckets=DURATION_BUCKETS, **r)
        self.push_records = Counter("fieldcase_push_records",
                                    "records answered by committed pushes, by result status and code",
                                    ["status", "code"], **r)
        self.push_size_records = Histogram("fieldcase_push_size_records", "records sent in one committed push",
                                           buckets=PUSH_RECORD_BUCKETS, **r)
        self.push_size_bytes = Histogram("fieldcase_push_size_bytes", "bytes of one committed push's body",
                                         buckets=PUSH_BYTE_BUCKETS, **r)
        self.unavailable_answers = Counter("fieldcase_unavailable",
                                           "503 answers, by cause: admission (too many pushes or uploads at once), "
                                           "pool (no database connection free), database (unreachable or "
                                           "failing), not_ready (readiness), other", ["cause", "route"], **r)
        self.login_failures = Counter("fieldcase_login_failures", "failed logins, by surface and reason",
                                      ["surface", "reason"], **r)
        self.enqueue_failures = Counter("fieldcase_job_enqueue_failures",
                                        "jobs a committed transaction could not queue on Redis", ["job"], **r)
        self.leaves = Counter("fieldcase_custody_leaves", "custody leaves appended by committed transactions", **r)
        self.jobs = Counter("fieldcase_jobs", "jobs run, by outcome (done, or failed: this attempt raised)",
                            ["job", "outcome"], **r)
        self.job_duration = Histogram("fieldcase_job_duration_seconds", "time a job ran", ["job"],
                                      buckets=JOB_BUCKETS, **r)
        self.pool_in_use = Gauge("fieldcase_db_pool_connections_in_use",
                                 "database connections checked out of the API processes' pools",
                                 multiprocess_mode="livesum", **r)
        self.pool_capacity = Gauge("fieldcase_db_pool_connections_max",
                                   "connections the API processes' pools may open (pool size + overflow)",
                                   multiprocess_mode="livesum", **r)
        self.build_info = Gauge("fieldcase_build_info", "the running build (value 1)", ["version", "commit"],
                                multiprocess_mode="livemax", **r)

    # what the layers below tell (backend.core.observe.Observer)

    def custody_leaves(self, count: int) -> None:
        if count:
            self.leaves.inc(count)

    def enqueue_failed(self, job: str) -> None:
        self.enqueue_failures.labels(job).inc()

    def job_finished(self, job: str, outcome: str, seconds: float) -> None:
        self.jobs.labels(job, outcome).inc()
        self.job_duration.labels(job).observe(seconds)

    # what the web layer tells

    def request_finished(self, method: str, route: str, status: int, seconds: float) -> None:
        method = method if method in METHODS else "other"
        self.requests.labels(method, route, str(status)).inc()
        self.duration.labels(method, route).observe(seconds)

    def pushed(self, results: Sequence[Mapping[str, Any]], records: int, size: int) -> None:
        counts: dict[tuple[str, str], int] = {}
        for result in results:
            key = (str(result.get("status") or "unknown"), str(result.get("code") or ""))
            counts[key] = counts.get(key, 0) + 1
        for (status, code), n in counts.items():
            self.push_records.labels(status, code).inc(n)
        self.push_size_records.observe(records)
        self.push_size_bytes.observe(size)

    def unavailable(self, cause: str, route: str) -> None:
        self.unavailable_answers.labels(cause, route).inc()

    def login_failed(self, surface: str, reason: str) -> None:
        self.login_failures.labels(surface, reason).inc()

    def watch_pool(self, engine: Engine, capacity: int) -> None:
        """Keep the in-use gauge at the pool's own count, on every checkout and checkin: it cannot drift."""
        pool = engine.pool
        gauge = self.pool_in_use
        self.pool_capacity.set(capacity)
        counted = getattr(pool, "checkedout", None)
        if counted is None:  # a pool that does not count (SQLite in memory): count the events
            event.listen(engine, "checkout", lambda *_: gauge.inc())
            event.listen(engine, "checkin", lambda *_: gauge.dec())
            return
        event.listen(engine, "checkout", lambda *_: gauge.set(counted()))
        # fired before the connection is back in the pool, so the pool still counts it
        event.listen(engine, "checkin", lambda *_: gauge.set(max(0, counted() - 1)))

    def build(self, info: BuildInfo) -> None:
        self.build_info.labels(info.version, info.commit or "unknown").set(1)


# ------------------------------------------------------------------------------------------- the flask edge


def note_push(result: Mapping[str, Any], records: int, size: int) -> None:
    """The push route's answer, counted once the request has answered 200 (a push that loses a race runs again
    whole, and a push whose commit fails answers an error: neither is counted twice, or at all)."""
    setattr(g, _PUSH, (result.get("results") or [], records, size))


def note_unavailable(cause: str) -> None:
    """Why this request is about to answer 503 (`backend.web.api.errors`, `backend.web.admission`)."""
    setattr(g, _CAUSE, cause)


def _observer() -> WebObserver:
    return current_app.extensions["fieldcase"].observer


def _start() -> None:
    setattr(g, _START, time.perf_counter())


def _finish(response: Response) -> Response:
    observer = _observer()
    route = request.url_rule.rule if request.url_rule is not None else "unmatched"
    status = response.status_code
    started = g.get(_START)
    if started is not None:
        observer.request_finished(request.method, route, status, time.perf_counter() - started)
    if status == 503:
        observer.unavailable(g.get(_CAUSE) or "other", route)
    surface = LOGIN_ENDPOINTS.get(request.endpoint or "")
    if surface is not None and status in LOGIN_REASONS:
        observer.login_failed(surface, LOGIN_REASONS[status])
    pushed = g.get(_PUSH)
    if pushed is not None and status == 200:
        observer.pushed(*pushed)
    return response


def install(app: Flask) -> None:
    """Time every request from before anything else looks at it, and count what it answered."""
    app.before_request_funcs.setdefault(None, []).insert(0, _start)
    app.after_request(_finish)
