"""What one running app holds: settings, database, token issuer. Built once per process."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from media.settings import MediaSettings
from media.store import LocalStore, S3Store, Store

from .admission import Admission
from .config import Settings, secret_file
from .db import Database
from .jobs import RUNNER, InlineRunner, JobContext, JobRunner, RQRunner
from .tokens import TokenIssuer


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


@dataclass
class AppState:
    settings: Settings
    db: Database
    issuer: TokenIssuer
    store: Store
    media: MediaSettings
    signer: Any
    admission: Admission
    runner: JobRunner

    @classmethod
    def build(cls, settings: Settings) -> AppState:
        secret = secret_file(settings.jwt_secret_path, 64)
        issuer = TokenIssuer(secret=secret, algorithm=settings.jwt_algorithm,
                             access_ttl=settings.access_token_ttl, refresh_ttl=settings.refresh_token_ttl)
        from media.custody import SIGNER, signer_for  # media imports backend: not at module level

        signer = signer_for(settings)
        store = make_store(settings)
        media = media_settings(settings)
        runner: JobRunner = (RQRunner(settings.redis_url, settings.job_queue) if settings.jobs == "rq"
                             else InlineRunner(JobContext(store=store, media=media, signer=signer)))
        db = Database(settings.database_url, pool_size=settings.db_pool_size,
                      max_overflow=settings.db_max_overflow, pool_timeout=settings.db_pool_timeout)
        db.sessionmaker.configure(info={SIGNER: signer, RUNNER: runner})
        return cls(settings=settings, db=db, issuer=issuer, store=store, media=media, signer=signer, runner=runner,
                   admission=Admission.build(pushes=settings.max_concurrent_pushes,
                                             uploads=settings.max_concurrent_uploads,
                                             wait=settings.admission_wait, retry_after=settings.busy_retry_after))
