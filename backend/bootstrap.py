"""The composition root: the one place that builds the store, the signer, the job runner, the applier and the
clock, and wires them into the database, the web app, the job workers and the command line.

Everything below receives what it uses as an argument (a route gets them from the app state, a job from its
context, a commit's writers from the database's services); nothing is looked up from a session or a global.
The clock is the wall clock unless a caller (a test) builds with its own.
"""

from __future__ import annotations

import functools
import logging
from datetime import timedelta
from typing import Any

from flask import Flask

from backend.casework.apply import RecordApplier
from backend.casework.system_audit.jobs import AUDIT_JOBS
from backend.casework.tokens import TokenIssuer, algorithm_for
from backend.core import jobs, logs
from backend.core.build import build_info
from backend.core.config import Settings
from backend.core.crypto.data_keys import KeyRing
from backend.core.db import Database
from backend.core.jobs import InlineRunner, RQRunner
from backend.core.observe import NO_OBSERVER, Observer
from backend.core.schema import head_revision, known_revisions
from backend.core.secret_files import kek_provider, read_secret, require_secrets
from backend.core.times import Clock, system_clock
from backend.core.uow import JobRunner, Services
from backend.web import metrics_export
from backend.web.admission import Admission
from backend.web.app import make_app
from backend.web.figures import DatabaseFigures, Figures, QueueFigures, Source
from backend.web.metrics import NO_METRICS, PrometheusObserver, WebObserver
from backend.web.readiness import Check, DatabaseProbe, Readiness, key_file_probe, redis_probe
from backend.web.state import AppState
from media.custody.keys import signer_for
from media.custody.timestamps import authority_for
from media.jobs import JOBS, JobContext
from media.s3_store import S3Store
from media.settings import MediaSettings
from media.store import LocalStore, Store
from media.store_probe import prober

# Every job a runner may be handed: the evidence jobs and the audit's periodic ones.
ALL_JOBS = {**JOBS, **AUDIT_JOBS}


def make_store(settings: Settings) -> Store:
    """S3 when a bucket is configured, else files in the instance folder."""
    if settings.s3_bucket:
        return S3Store(settings.s3_bucket, endpoint_url=settings.s3_endpoint_url or None, region=settings.s3_region,
                       multipart_threshold=settings.multipart_threshold, part_size=settings.multipart_part_size)
    return LocalStore(settings.instance_dir / "evidence")


def media_settings(settings: Settings) -> MediaSettings:
    return MediaSettings(upload_deadline=timedelta(hours=settings.upload_deadline_hours),
                         time_tolerance=timedelta(seconds=settings.photo_time_tolerance_seconds),
                         distance_tolerance_m=settings.photo_distance_tolerance_m)


def rq_runner(settings: Settings, observer: Observer = NO_OBSERVER) -> RQRunner:
    return RQRunner(settings.redis_url, settings.job_queue, ALL_JOBS, observer=observer)


@functools.cache
def _migrations_head() -> str | None:
    """The newest migration of this release (read from migrations/ once: it does not change while we run)."""
    return head_revision("sqlite://")


@functools.cache
def _migrations_known() -> frozenset[str]:
    """Every migration this release has: a schema at a revision outside them is a newer release's."""
    return known_revisions("sqlite://")


def readiness_for(settings: Settings, store: Store) -> Readiness:
    """What an API process needs to be given requests, each with its check (backend.web.readiness)."""
    database = DatabaseProbe(settings.database_url, _migrations_head(), known=_migrations_known())
    checks = [Check("database", database, database.ok_detail)]
    if settings.jobs == "rq":
        checks.append(Check("redis", redis_probe(settings.redis_url), "answers"))
    checks.append(Check("store", prober(store), f"{store.kind} store answers"))
    checks.append(Check("jwt_secret", key_file_probe(settings.jwt_secret_path, 64, "access-token key"), "readable"))
    checks.append(Check("custody_key", key_file_probe(settings.custody_key_path, 32, "custody signing key"),
                        "readable"))
    return Readiness(checks)


def api_observer(settings: Settings) -> WebObserver:
    """Prometheus metrics in a worker of `fieldcase serve` exporting them (FIELDCASE_METRICS_PORT), else none."""
    if settings.metrics_port and metrics_export.multiprocess():
        return PrometheusObserver()
    return NO_METRICS


def figures(settings: Settings) -> Figures:
    """The figures that need a query, for the process serving the metrics (backend.web.figures)."""
    sources: dict[str, Source] = {"database": DatabaseFigures(settings.database_url)}
    if settings.jobs == "rq":
        sources["queue"] = QueueFigures(settings.redis_url, settings.job_queue)
    return Figures(sources)


def database(settings: Settings, *, signing: bool = False, clock: Clock = system_clock, **pool: Any) -> Database:
    """A database for a script: with `signing`, its commits sign custody tree heads as the API's would, and have
    the TSA (FIELDCASE_TSA_URL) timestamp them once committed."""
    services = Services(signer=signer_for(settings) if signing else None, clock=clock,
                        tsa=authority_for(settings) if signing else None)
    return Database(settings.database_url, services=services, **pool)


def key_ring(settings: Settings) -> KeyRing:
    """The data keys personal data is sealed under, unwrapped by the KEK file (FIELDCASE_KEK_FILE). A hardware
    密码机 or a cloud KMS is given here instead of the file: any `backend.core.crypto.key_provider.KeyProvider`."""
    return KeyRing(kek_provider(settings))


def build_state(settings: Settings, *, clock: Clock = system_clock, observer: WebObserver | None = None) -> AppState:
    """What one API process serves with: every request, job and commit of it reads `clock`, and tells `observer`
    what it did (default: `api_observer`)."""
    require_secrets(settings)  # a shared database's hosts must be given their keys: none is made here
    observer = observer if observer is not None else api_observer(settings)
    secret = read_secret(settings, "jwt")
    issuer = TokenIssuer(secret=secret, algorithm=algorithm_for(settings.token_suite, settings.jwt_algorithm),
                         access_ttl=settings.access_token_ttl, refresh_ttl=settings.refresh_token_ttl)
    signer = signer_for(settings)
    store = make_store(settings)
    media = media_settings(settings)
    tsa = authority_for(settings)
    runner: JobRunner
    inline: InlineRunner | None = None
    if settings.jobs == "rq":
        runner = rq_runner(settings, observer)
    else:
        runner = inline = InlineRunner(ALL_JOBS, observer=observer)
    db = Database(settings.database_url,
                  services=Services(jobs=runner, signer=signer, clock=clock, tsa=tsa, observer=observer),
                  pool_size=settings.db_pool_size, max_overflow=settings.db_max_overflow,
                  pool_timeout=settings.db_pool_timeout)
    observer.watch_pool(db.engine, settings.db_pool_size + settings.db_max_overflow)
    build = build_info(settings.commit)
    observer.build(build)
    if inline is not None:
        inline.context = JobContext(store=store, media=media, signer=signer, runner=inline, clock=clock, tsa=tsa,
                                    database=db)
    return AppState(settings=settings, db=db, issuer=issuer, store=store, media=media, signer=signer, runner=runner,
                    applier=RecordApplier(), clock=clock, keys=key_ring(settings),
                    admission=Admission.build(pushes=settings.max_concurrent_pushes,
                                              uploads=settings.max_concurrent_uploads,
                                              wait=settings.admission_wait, retry_after=settings.busy_retry_after),
                    readiness=readiness_for(settings, store), observer=observer, build=build)


def create_app(config: Settings | dict[str, Any] | None = None, *, clock: Clock = system_clock,
               observer: WebObserver | None = None) -> Flask:
    """Build the WSGI app. `config` is Settings, or overrides applied on top of the environment; `clock` is what
    it reads the time from (a test's own, to make time pass without waiting); `observer` what hears of its work
    (a test's own `PrometheusObserver`, to read the metrics from its registry)."""
    base = config if isinstance(config, Settings) else Settings.from_env().with_overrides(config or {})
    settings = base.resolved()
    if not logs.configured():  # an entry point (the command line, `fieldcase serve`) usually has already
        logs.configure(settings.log_level, settings.log_format)
    return make_app(build_state(settings, clock=clock, observer=observer))


def worker(settings: Settings, name: str | None = None, *, clock: Clock = system_clock) -> jobs.Worker:
    """What one `fieldcase worker` process runs jobs with: its own pool, store client, key and runner."""
    if settings.jobs != "rq":
        raise RuntimeError("workers need FIELDCASE_JOBS=rq and FIELDCASE_REDIS_URL")
    name = name or jobs.default_worker_name()  # host.<random>: a restart never meets its own old name
    require_secrets(settings)
    signer = signer_for(settings)
    # Its own metrics (job outcomes, enqueue failures, custody leaves) on a port of its own, when one is given. A port
    # another worker on the host already took costs this one its metrics, not its work (the scrape target is down).
    observer: Observer = NO_OBSERVER
    if settings.worker_metrics_port:
        try:
            observer = metrics_export.serve_process(settings.metrics_host, settings.worker_metrics_port)
        except OSError as exc:
            logging.getLogger("fieldcase.worker").error(
                "no metrics: port %d is not free (%s); give each worker on a host its own "
                "FIELDCASE_WORKER_METRICS_PORT", settings.worker_metrics_port, exc.strerror or exc)
    runner = rq_runner(settings, observer)
    tsa = authority_for(settings)
    db = Database(settings.database_url,
                  services=Services(jobs=runner, signer=signer, clock=clock, tsa=tsa, observer=observer),
                  pool_size=2, max_overflow=2, pool_timeout=30)
    context = JobContext(store=make_store(settings), media=media_settings(settings), signer=signer, runner=runner,
                         clock=clock, worker=f"rq:{name}", tsa=tsa, database=db)
    return jobs.Worker(name=name, context=context, db=db, runner=runner, observer=observer)
