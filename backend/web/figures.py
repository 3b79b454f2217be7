"""The figures that need a query: the job queue, uploads waiting for a verdict, devices held at a gap, the custody
log's heads. Computed at most every `INTERVAL` seconds (30) by the process that serves the metrics, whatever the
scrape rate, and served from that cache in between.

Why here and not in each gunicorn worker: these are facts about the deployment's database and queue, not about a
process. Computed once per serving process (gunicorn's master, `backend.web.metrics_export`), they cost one
set of queries per host per interval, only while something scrapes, and they are still served when every worker is
stuck. The queries go through an engine of their own, with no pool (`NullPool`), a connect timeout and a statement
timeout, so they never touch a worker's pool. What fails (the database down, Redis down) is said by
`fieldcase_figures_up` 0, with no stale figure beside it; it is not tried again before the interval is over.

Each figure is cheap: a maximum over a primary key, a count over a small table (deferred records, tree heads) or
over uploads that are `verifying`, a queue length in Redis.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import create_engine, func, select, text
from sqlalchemy.engine import make_url
from sqlalchemy.pool import NullPool

from backend.core.models import CustodyEvent, DeferredRecord, TreeHead, Upload
from backend.core.redis_client import bounded_redis
from backend.core.times import Clock, system_clock

log = logging.getLogger("fieldcase.figures")

INTERVAL = 30.0  # seconds a computation is reused
TIMEOUT = 5.0  # seconds a connection or a statement may take
VERIFYING = "verifying"  # media.uploads.VERIFYING (the web layer may not hold it as a rule; it only reads)


@dataclass(frozen=True)
class Figure:
    name: str
    help: str
    value: float
    labels: dict[str, str] = field(default_factory=dict)


def _instant(stamp: str) -> datetime:
    return datetime.fromisoformat(stamp.replace("Z", "+00:00"))


def database_figures(conn: Any, now: datetime) -> list[Figure]:
    """What the database says, read in one short transaction."""
    verifying, oldest = conn.execute(select(func.count(), func.min(Upload.created_at))
                                     .where(Upload.status == VERIFYING)).one()
    deferred, devices = conn.execute(select(func.count(), func.count(func.distinct(DeferredRecord.device_id)))).one()
    last_leaf = conn.execute(select(func.max(CustodyEvent.leaf_index))).scalar()
    head_size = conn.execute(select(func.max(TreeHead.tree_size))).scalar()
    size = 0 if last_leaf is None else last_leaf + 1
    figures = [
        Figure("fieldcase_uploads_verifying", "uploads completed and waiting for their verdict", verifying or 0),
        Figure("fieldcase_upload_verifying_oldest_seconds",
               "age of the oldest upload still verifying, from when its upload began (0: none)",
               max(0.0, (now - _utc(oldest)).total_seconds()) if oldest is not None else 0.0),
        Figure("fieldcase_deferred_records", "records held behind a gap in their device's chain", deferred or 0),
        Figure("fieldcase_devices_with_deferred_records", "devices with records held behind a gap", devices or 0),
        Figure("fieldcase_custody_leaves_count", "leaves in the custody log", size),
        Figure("fieldcase_custody_unsigned_leaves", "custody leaves not yet under a signed tree head",
               size - (head_size or 0)),
    ]
    if head_size is not None:
        stamp = conn.execute(select(TreeHead.timestamp).where(TreeHead.tree_size == head_size)).scalar()
        figures.append(Figure("fieldcase_custody_head_age_seconds", "seconds since the newest signed tree head",
                              max(0.0, (now - _instant(stamp)).total_seconds())))
    return figures


def _utc(value: datetime) -> datetime:
    return value if value.tzinfo else value.replace(tzinfo=UTC)


class DatabaseFigures:
    def __init__(self, url: str, *, timeout: float = TIMEOUT) -> None:
        self.timeout_ms = int(timeout * 1000)
        self.postgresql = make_url(url).get_backend_name() == "postgresql"
        args: dict[str, Any] = {"connect_timeout": max(1, round(timeout))} if self.postgresql else {"timeout": timeout}
        self.engine = create_engine(url, poolclass=NullPool, connect_args=args)

    def __call__(self, now: datetime) -> list[Figure]:
        with self.engine.connect() as conn:
            if self.postgresql:
                conn.execute(text(f"SET LOCAL statement_timeout = {self.timeout_ms}"))
            return database_figures(conn, now)


class QueueFigures:
    """The RQ queue's length and its registries (started, scheduled, failed: the dead letters), and who works it:
    the workers alive and dead, and the jobs a dead worker still holds. Read raw, as `fieldcase jobs status` reads
    them (`backend.core.job_status.queue_report`): RQ's own counts clean up as they count, and a scrape must
    change nothing, nor hide the stuck job it is there to show."""

    def __init__(self, redis_url: str, queue: str, *, timeout: float = TIMEOUT) -> None:
        from rq import Queue
        from rq.serializers import JSONSerializer

        self.queue = Queue(queue, connection=bounded_redis(redis_url, connect_timeout=timeout, read_timeout=timeout),
                           serializer=JSONSerializer)

    def __call__(self, now: datetime) -> list[Figure]:
        from backend.core.job_status import queue_report  # rq: only where the queue figures are served

        report = queue_report(self.queue, limit=0)
        name = {"queue": report.queue}
        what = "jobs in the RQ queue, by state (failed: the dead letters, `fieldcase jobs status`)"
        dead = len(report.dead_workers)
        return [
            *(Figure("fieldcase_job_queue_jobs", what, count, {**name, "state": state})
              for state, count in (("queued", report.queued), ("started", report.running + len(report.stuck)),
                                   ("scheduled", report.scheduled), ("failed", report.failed))),
            *(Figure("fieldcase_job_workers", "registered workers of the queue, by state (dead: silent past "
                     "its limit, its registration not yet expired: `fieldcase jobs status` names it)", count,
                     {**name, "state": state})
              for state, count in (("alive", len(report.workers) - dead), ("dead", dead))),
            Figure("fieldcase_jobs_stuck", "running jobs whose worker stopped beating, not yet handed back",
                   len(report.stuck), name),
        ]


Source = Callable[[datetime], list[Figure]]


class Figures:
    """A Prometheus collector of the figures `sources` compute, each source at most every `interval` seconds."""

    def __init__(self, sources: dict[str, Source], *, interval: float = INTERVAL, clock: Clock = system_clock,
                 monotonic: Callable[[], float] = time.monotonic) -> None:
        self.sources = sources
        self.interval = interval
        self.clock = clock
        self._monotonic = monotonic
        self._lock = threading.Lock()
        self._cache: dict[str, tuple[float, list[Figure] | None]] = {}

    def figures(self) -> dict[str, tuple[float, list[Figure] | None]]:
        """Per source: when it was computed (monotonic) and its figures, or None when it failed."""
        with self._lock:
            for name, source in self.sources.items():
                at, _ = self._cache.get(name, (None, None))
                if at is None or self._monotonic() - at >= self.interval:
                    try:
                        found: list[Figure] | None = source(self.clock())
                    except Exception:
                        log.warning("could not compute the %s figures", name, exc_info=True)
                        found = None
                    self._cache[name] = (self._monotonic(), found)
            return dict(self._cache)

    def collect(self) -> Iterator[Any]:
        from prometheus_client.core import GaugeMetricFamily

        families: dict[str, GaugeMetricFamily] = {}
        up = GaugeMetricFamily("fieldcase_figures_up", "1 when the source's figures could be computed",
                               labels=["source"])
        age = GaugeMetricFamily("fieldcase_figures_age_seconds", "how old the served figures of a source are",
                                labels=["source"])
        now = self._monotonic()
        for name, (at, found) in self.figures().items():
            up.add_metric([name], 0 if found is None else 1)
            age.add_metric([name], max(0.0, now - at))
            for figure in found or []:
                family = families.get(figure.name)
                if family is None:
                    family = families[figure.name] = GaugeMetricFamily(figure.name, figure.help,
                                                                       labels=sorted(figure.labels))
                family.add_metric([figure.labels[k] for k in sorted(figure.labels)], figure.value)
        yield up
        yield age
        yield from families.values()

    def describe(self) -> list[Any]:
        return []  # not known before computing; registering must not run the queries
