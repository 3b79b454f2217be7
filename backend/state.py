"""What one running app holds: settings, database, token issuer. Built once per process."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from media.settings import MediaSettings
from media.store import LocalStore, S3Store, Store

from .config import Settings, instance_secret
from .db import Database
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

    @classmethod
    def build(cls, settings: Settings) -> AppState:
        secret = instance_secret(settings.instance_dir, "jwt-secret.key", 64)
        issuer = TokenIssuer(secret=secret, algorithm=settings.jwt_algorithm,
                             access_ttl=settings.access_token_ttl, refresh_ttl=settings.refresh_token_ttl)
        from media.custody import SIGNER, load_signer  # media imports backend: not at module level

        signer = load_signer(settings.instance_dir)
        db = Database(settings.database_url)
        db.sessionmaker.configure(info={SIGNER: signer})
        return cls(settings=settings, db=db, issuer=issuer, store=make_store(settings),
                   media=media_settings(settings), signer=signer)
