"""Settings come from the environment so one build runs embedded or at scale unchanged."""

from __future__ import annotations

import os
import secrets
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any


def _normalise_db_url(url: str) -> str:
    # Heroku-style URLs name no driver; we ship psycopg 3.
    for prefix in ("postgres://", "postgresql://"):
        if url.startswith(prefix):
            return "postgresql+psycopg://" + url[len(prefix):]
    return url


@dataclass(frozen=True)
class Settings:
    instance_dir: Path = Path("instance")
    database_url: str = ""
    access_token_ttl: int = 900
    refresh_token_ttl: int = 30 * 24 * 3600
    jwt_algorithm: str = "HS256"
    login_window_seconds: int = 900
    login_max_failures_per_user: int = 5
    login_max_failures_per_address: int = 30
    max_body_bytes: int = 9 * 1024 * 1024
    trust_proxy: bool = False
    gap_timeout_seconds: int = 7 * 24 * 3600
    quarantine_per_device: int = 1000
    s3_bucket: str = ""
    s3_endpoint_url: str = ""
    s3_region: str = "us-east-1"
    multipart_threshold: int = 64 * 1024 * 1024
    multipart_part_size: int = 16 * 1024 * 1024
    upload_deadline_hours: float = 24.0
    photo_time_tolerance_seconds: float = 120.0
    photo_distance_tolerance_m: float = 200.0
    coverage_tolerance_seconds: float = 5.0
    major_fine_yuan: int = 10_000
    retention_days: int = 183
    log_level: str = "INFO"
    extra: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_env(cls, env: dict[str, str] | None = None) -> Settings:
        env = dict(os.environ if env is None else env)
        instance = Path(env.get("FIELDCASE_INSTANCE_DIR", "instance")).resolve()
        s = cls(
            instance_dir=instance,
            database_url=env.get("DATABASE_URL", ""),
            access_token_ttl=int(env.get("FIELDCASE_ACCESS_TOKEN_TTL", cls.access_token_ttl)),
            refresh_token_ttl=int(env.get("FIELDCASE_REFRESH_TOKEN_TTL", cls.refresh_token_ttl)),
            login_window_seconds=int(env.get("FIELDCASE_LOGIN_WINDOW", cls.login_window_seconds)),
            login_max_failures_per_user=int(
                env.get("FIELDCASE_LOGIN_MAX_FAILURES", cls.login_max_failures_per_user)
            ),
            login_max_failures_per_address=int(
                env.get("FIELDCASE_LOGIN_MAX_FAILURES_PER_ADDRESS", cls.login_max_failures_per_address)
            ),
            gap_timeout_seconds=int(env.get("FIELDCASE_GAP_TIMEOUT", cls.gap_timeout_seconds)),
            quarantine_per_device=int(env.get("FIELDCASE_QUARANTINE_PER_DEVICE", cls.quarantine_per_device)),
            s3_bucket=env.get("FIELDCASE_S3_BUCKET", ""),
            s3_endpoint_url=env.get("FIELDCASE_S3_ENDPOINT_URL", ""),
            s3_region=env.get("FIELDCASE_S3_REGION", cls.s3_region),
            multipart_threshold=int(env.get("FIELDCASE_MULTIPART_THRESHOLD", cls.multipart_threshold)),
            multipart_part_size=int(env.get("FIELDCASE_MULTIPART_PART_SIZE", cls.multipart_part_size)),
            upload_deadline_hours=float(env.get("FIELDCASE_UPLOAD_DEADLINE_HOURS", cls.upload_deadline_hours)),
            photo_time_tolerance_seconds=float(
                env.get("FIELDCASE_PHOTO_TIME_TOLERANCE", cls.photo_time_tolerance_seconds)),
            photo_distance_tolerance_m=float(
                env.get("FIELDCASE_PHOTO_DISTANCE_TOLERANCE", cls.photo_distance_tolerance_m)),
            coverage_tolerance_seconds=float(
                env.get("FIELDCASE_COVERAGE_TOLERANCE", cls.coverage_tolerance_seconds)),
            major_fine_yuan=int(env.get("FIELDCASE_MAJOR_FINE_YUAN", cls.major_fine_yuan)),
            retention_days=int(env.get("FIELDCASE_RETENTION_DAYS", cls.retention_days)),
            trust_proxy=env.get("FIELDCASE_TRUST_PROXY", "0").lower() in ("1", "true", "yes"),
            log_level=env.get("FIELDCASE_LOG_LEVEL", "INFO"),
        )
        return s.resolved()

    def resolved(self) -> Settings:
        instance = Path(self.instance_dir).resolve()
        url = self.database_url or f"sqlite:///{instance / 'fieldcase.db'}"
        return replace(self, instance_dir=instance, database_url=_normalise_db_url(url))

    def with_overrides(self, overrides: dict[str, Any]) -> Settings:
        names = {f.name for f in fields(self)}
        known = {k: v for k, v in overrides.items() if k in names}
        extra = {**self.extra, **{k: v for k, v in overrides.items() if k not in names}}
        return replace(self, **known, extra=extra).resolved()


def instance_secret(instance_dir: Path, name: str, nbytes: int = 32) -> bytes:
    """Read a secret from the instance folder, creating it (0600) on first use.

    Secrets never live in the repository. The new file is written aside and
    hard-linked into place, so processes starting together all end up with
    the one secret that won, never a half-written one.
    """
    instance_dir.mkdir(parents=True, exist_ok=True)
    path = instance_dir / name
    if not path.exists():
        tmp = instance_dir / f".{name}.{os.getpid()}.{secrets.token_hex(4)}"
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as fh:
            fh.write(secrets.token_bytes(nbytes))
            fh.flush()
            os.fsync(fh.fileno())
        try:
            os.link(tmp, path)
        except FileExistsError:
            pass
        finally:
            tmp.unlink()
    data = path.read_bytes()
    if len(data) < nbytes:
        raise RuntimeError(f"secret file {path} is truncated; remove it to regenerate")
    return data
