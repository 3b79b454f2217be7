"""Settings come from the environment so one build runs embedded or at scale unchanged."""

from __future__ import annotations

import os
import secrets
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

from backend.core.passwords import PASSWORD_KDF, check_kdf


def _normalise_db_url(url: str) -> str:
    # Heroku-style URLs name no driver; we ship psycopg 3.
    for prefix in ("postgres://", "postgresql://"):
        if url.startswith(prefix):
            return "postgresql+psycopg://" + url[len(prefix):]
    return url


JOB_MODES = ("inline", "rq")


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
    db_pool_size: int = 10
    db_max_overflow: int = 10
    db_pool_timeout: float = 5.0
    max_concurrent_pushes: int = 3
    max_concurrent_uploads: int = 2
    admission_wait: float = 0.5
    busy_retry_after: int = 2
    log_level: str = "INFO"
    jobs: str = "inline"
    redis_url: str = ""
    job_queue: str = "fieldcase"
    jwt_secret_file: str = ""
    custody_key_file: str = ""
    custody_keyring_file: str = ""
    # The custody log's checkpoint origin (c2sp.org/tlog-checkpoint), also its note key name; empty: derived from
    # the custody key (media.custody.checkpoint.origin_for). Witnesses whose cosignatures are accepted: vkeys.
    password_kdf: str = PASSWORD_KDF  # backend.core.passwords
    custody_origin: str = ""
    witness_keys: tuple[str, ...] = ()
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
            db_pool_size=int(env.get("FIELDCASE_DB_POOL_SIZE", cls.db_pool_size)),
            db_max_overflow=int(env.get("FIELDCASE_DB_MAX_OVERFLOW", cls.db_max_overflow)),
            db_pool_timeout=float(env.get("FIELDCASE_DB_POOL_TIMEOUT", cls.db_pool_timeout)),
            max_concurrent_pushes=int(env.get("FIELDCASE_MAX_CONCURRENT_PUSHES", cls.max_concurrent_pushes)),
            max_concurrent_uploads=int(env.get("FIELDCASE_MAX_CONCURRENT_UPLOADS", cls.max_concurrent_uploads)),
            admission_wait=float(env.get("FIELDCASE_ADMISSION_WAIT", cls.admission_wait)),
            busy_retry_after=int(env.get("FIELDCASE_BUSY_RETRY_AFTER", cls.busy_retry_after)),
            log_level=env.get("FIELDCASE_LOG_LEVEL", "INFO"),
            # Slow work (hashing uploads, photo analysis, periodic tree heads) runs in the request unless a
            # Redis URL says there are RQ workers; FIELDCASE_JOBS can still force either way.
            jobs=env.get("FIELDCASE_JOBS") or ("rq" if env.get("FIELDCASE_REDIS_URL") else "inline"),
            redis_url=env.get("FIELDCASE_REDIS_URL", ""),
            job_queue=env.get("FIELDCASE_JOB_QUEUE", cls.job_queue),
            jwt_secret_file=env.get("FIELDCASE_JWT_SECRET_FILE", ""),
            custody_key_file=env.get("FIELDCASE_CUSTODY_KEY_FILE", ""),
            custody_keyring_file=env.get("FIELDCASE_CUSTODY_KEYRING", ""),
            custody_origin=env.get("FIELDCASE_CUSTODY_ORIGIN", "").strip(),
            witness_keys=tuple(k.strip() for k in env.get("FIELDCASE_WITNESS_KEYS", "").split(",") if k.strip()),
            password_kdf=env.get("FIELDCASE_PASSWORD_KDF", PASSWORD_KDF),
        )
        return s.resolved()

    def resolved(self) -> Settings:
        instance = Path(self.instance_dir).resolve()
        url = self.database_url or f"sqlite:///{instance / 'fieldcase.db'}"
        jobs = self.jobs.strip().lower()
        if jobs not in JOB_MODES:
            raise ValueError(f"FIELDCASE_JOBS must be one of {', '.join(JOB_MODES)}, not {self.jobs!r}")
        if jobs == "rq" and not self.redis_url:
            raise ValueError("FIELDCASE_JOBS=rq needs FIELDCASE_REDIS_URL (e.g. redis://127.0.0.1:6379/0)")
        check_kdf(self.password_kdf)
        return replace(self, instance_dir=instance, database_url=_normalise_db_url(url), jobs=jobs)

    @property
    def jwt_secret_path(self) -> Path:
        """The access-token key: every API process of a deployment must read the same one."""
        return Path(self.jwt_secret_file) if self.jwt_secret_file else self.instance_dir / "jwt-secret.key"

    @property
    def custody_key_path(self) -> Path:
        """The custody tree-head signing key (a 32-byte Ed25519 seed), shared by API processes and workers."""
        return Path(self.custody_key_file) if self.custody_key_file else self.instance_dir / "custody-signing.key"

    @property
    def custody_keyring_path(self) -> Path:
        """Public keys of retired custody signing keys, so heads they signed stay verifiable after a rotation."""
        if self.custody_keyring_file:
            return Path(self.custody_keyring_file)
        return self.instance_dir / "custody-keyring.json"

    def with_overrides(self, overrides: dict[str, Any]) -> Settings:
        names = {f.name for f in fields(self)}
        known = {k: v for k, v in overrides.items() if k in names}
        extra = {**self.extra, **{k: v for k, v in overrides.items() if k not in names}}
        return replace(self, **known, extra=extra).resolved()


def instance_secret(instance_dir: Path, name: str, nbytes: int = 32) -> bytes:
    """Read a secret from the instance folder, creating it (0600) on first use."""
    return secret_file(instance_dir / name, nbytes)


def secret_file(path: Path, nbytes: int = 32) -> bytes:
    """Read a secret file, creating it (0600) on first use.

    Secrets never live in the repository. The new file is written aside and
    hard-linked into place, so processes starting together all end up with
    the one secret that won, never a half-written one.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    name = path.name
    if not path.exists():
        tmp = path.parent / f".{name}.{os.getpid()}.{secrets.token_hex(4)}"
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
