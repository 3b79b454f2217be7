"""The composition root: the one place that builds the store, the signer, the job runner and the applier, and
wires them into the database, the web app and the job workers.

Everything below receives what it uses as an argument (a route gets them from the app state, a job from its
context, a commit's writers from the database's services); nothing is looked up from a session or a global.
"""

from __future__ import annotations

import logging
import os
import socket
from datetime import timedelta
from typing import Any

from flask import Flask

from backend.casework.apply import RecordApplier
from backend.casework.tokens import TokenIssuer
from backend.core import jobs
from backend.core.config import Settings, secret_file
from backend.core.db import Database
from backend.core.jobs import InlineRunner, RQRunner
from backend.core.uow import JobRunner, Services
from backend.web.admission import Admission
from backend.web.app import make_app
from backend.web.state import AppState
from media.custody.keys import signer_for
from media.jobs import JOBS, JobContext
from media.settings import MediaSettings
from media.store import LocalStore, S3Store, Store


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


def rq_runner(settings: Settings) -> RQRunner:
    return RQRunner(settings.redis_url, settings.job_queue, JOBS)


def database(settings: Settings, *, signing: bool = False, **pool: Any) -> Database:
    """A database for a script: with `signing`, its commits sign custody tree heads as the API's would."""
    services = Services(signer=signer_for(settings)) if signing else Services()
    return Database(settings.database_url, services=services, **pool)


def build_state(settings: Settings) -> AppState:
    """What one API process serves with."""
    secret = secret_file(settings.jwt_secret_path, 64)
    issuer = TokenIssuer(secret=secret, algorithm=settings.jwt_algorithm,
                         access_ttl=settings.access_token_ttl, refresh_ttl=settings.refresh_token_ttl)
    signer = signer_for(settings)
    store = make_store(settings)
    media = media_settings(settings)
    runner: JobRunner
    if settings.jobs == "rq":
        runner = rq_runner(settings)
    else:
        inline = InlineRunner(JOBS)
        inline.context = JobContext(store=store, media=media, signer=signer, runner=inline)
        runner = inline
    db = Database(settings.database_url, services=Services(jobs=runner, signer=signer),
                  pool_size=settings.db_pool_size, max_overflow=settings.db_max_overflow,
                  pool_timeout=settings.db_pool_timeout)
    return AppState(settings=settings, db=db, issuer=issuer, store=store, media=media, signer=signer, runner=runner,
                    applier=RecordApplier(),
                    admission=Admission.build(pushes=settings.max_concurrent_pushes,
                                              uploads=settings.max_concurrent_uploads,
                                              wait=settings.admission_wait, retry_after=settings.busy_retry_after))


def create_app(config: Settings | dict[str, Any] | None = None) -> Flask:
    """Build the WSGI app. `config` is Settings, or overrides applied on top of the environment."""
    base = config if isinstance(config, Settings) else Settings.from_env().with_overrides(config or {})
    settings = base.resolved()
    logging.basicConfig(level=settings.log_level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    return make_app(build_state(settings))


def worker(settings: Settings, name: str | None = None) -> jobs.Worker:
    """What one `fieldcase worker` process runs jobs with: its own pool, store client, key and runner."""
    if settings.jobs != "rq":
        raise RuntimeError("workers need FIELDCASE_JOBS=rq and FIELDCASE_REDIS_URL")
    name = name or f"{socket.gethostname()}.{os.getpid()}"
    signer = signer_for(settings)
    runner = rq_runner(settings)
    db = Database(settings.database_url, services=Services(jobs=runner, signer=signer), pool_size=2,
                  max_overflow=2, pool_timeout=30)
    context = JobContext(store=make_store(settings), media=media_settings(settings), signer=signer, runner=runner,
                         worker=f"rq:{name}")
    return jobs.Worker(name=name, context=context, db=db, runner=runner)
