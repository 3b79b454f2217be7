"""Settings come from the environment so one build runs embedded or at scale unchanged."""

from __future__ import annotations

import os
import secrets
from collections.abc import Callable, Mapping
from dataclasses import MISSING, dataclass, field, fields, replace
from pathlib import Path
from typing import Any

from backend.core.crypto.passwords import PASSWORD_KDF, check_kdf
from backend.core.variables import SettingsError, combination_problems, custody_suites, read


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
    # The suite access tokens are signed in: intl (HMAC-SHA-256, `jwt_algorithm`) or sm (HMAC-SM3, "HSM3":
    # backend.core.crypto.jwt_sm3).
    token_suite: str = "intl"  # noqa: S105 - a suite's name, not a secret
    # The login throttle (backend.web.auth): per username and address, free failures, then a wait of
    # delay·2^k after each further one (capped), for failures remembered `login_memory_seconds`; per address,
    # across usernames, a ceiling of failures in `login_window_seconds`.
    login_window_seconds: int = 900
    login_free_failures: int = 5
    login_delay_seconds: int = 30
    login_delay_max_seconds: int = 900
    login_memory_seconds: int = 24 * 3600
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
    log_format: str = "auto"  # json, text, or auto: text on a terminal, else json (backend.core.logs)
    jobs: str = "inline"
    redis_url: str = ""
    job_queue: str = "fieldcase"
    jwt_secret_file: str = ""
    kek_file: str = ""  # the key-encryption key of sealed personal data (backend.core.crypto.key_provider)
    custody_key_file: str = ""
    custody_keyring_file: str = ""
    # The custody log's checkpoint origin (c2sp.org/tlog-checkpoint), also its note key name; empty: derived from
    # the custody key (media.custody.checkpoint.origin_for). Witnesses whose cosignatures are accepted: vkeys.
    password_kdf: str = PASSWORD_KDF  # backend.core.crypto.passwords
    custody_origin: str = ""
    witness_keys: tuple[str, ...] = ()
    # The suites the custody log is kept in (backend.core.variables.custody_suites): ("intl",), or ("intl", "sm")
    # for a second tree in SM3 with SM2-signed heads, whose key and keyring are these (empty: in the instance folder).
    custody_suites: tuple[str, ...] = ("intl",)
    custody_sm_key_file: str = ""
    custody_sm_keyring_file: str = ""
    # The RFC 3161 Time-Stamping Authority that timestamps every signed tree head (empty: none), the PEM
    # certificate its signing certificate must chain to (empty: tokens are checked but not anchored), and how long
    # to wait for its answer (media.custody.timestamps).
    tsa_url: str = ""
    tsa_cert_file: str = ""
    tsa_timeout: float = 10.0
    # The whole-system audit (`fieldcase verify`): no custody leaf waits longer than `head_interval_seconds` for a
    # signed tree head (the `refresh_tree_head` job issues one); workers run the audit every
    # `audit_interval_seconds` (0: only when `fieldcase verify --record` runs), re-hashing `audit_sample` files
    # chosen at random (0: every file).
    head_interval_seconds: int = 3600
    audit_interval_seconds: int = 24 * 3600
    audit_sample: int = 1000
    # The job workers' sweep (backend.core.job_worker): every `sweep_interval_seconds` one worker queues again the
    # work whose result the database says is missing and Redis does not hold (0: only `fieldcase jobs sweep`).
    sweep_interval_seconds: int = 300
    # Prometheus metrics (backend/web/metrics.py, docs/operations.md): `fieldcase serve` exports them on
    # `metrics_port` of `metrics_host` (0: no metrics at all; never on the API port), its gunicorn workers sharing
    # `metrics_dir` (empty: a fresh private folder); each `fieldcase worker` on `worker_metrics_port` (0: none).
    metrics_port: int = 0
    metrics_host: str = "127.0.0.1"
    metrics_dir: str = ""
    worker_metrics_port: int = 0
    # The git commit this build was made from, set at build or deploy time (`GET /api/v1/version`; empty: looked
    # up in the installed package's metadata, then with `git rev-parse`, at startup: backend/core/build.py).
    commit: str = ""
    extra: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        """The settings the environment gives. Every variable (its type, its range, the setting it fills) is
        declared once, in `backend.core.variables.VARIABLES`: add a new one there. A wrong value raises
        SettingsError, one line per problem, each naming its variable, before anything has started."""
        reading = read(os.environ if env is None else env, defaults())
        reading.raise_problems()
        return cls(**reading.values).resolved()

    def resolved(self) -> Settings:
        instance = Path(self.instance_dir).resolve()
        url = self.database_url or f"sqlite:///{instance / 'fieldcase.db'}"
        jobs = self.jobs.strip().lower()
        problems = combination_problems({**vars(self), "jobs": jobs})
        if problems:
            raise SettingsError(problems)
        check_kdf(self.password_kdf)
        suites = self.custody_suites
        suites = custody_suites(suites if isinstance(suites, str) else ",".join(suites))  # checked just above
        return replace(self, instance_dir=instance, database_url=_normalise_db_url(url), jobs=jobs,
                       custody_suites=suites)

    @property
    def jwt_secret_path(self) -> Path:
        """The access-token key: every API process of a deployment must read the same one."""
        return Path(self.jwt_secret_file) if self.jwt_secret_file else self.instance_dir / "jwt-secret.key"

    @property
    def kek_path(self) -> Path:
        """The key-encryption key (16 bytes, mode 0600) that wraps the data keys personal data is sealed under."""
        return Path(self.kek_file) if self.kek_file else self.instance_dir / "data-kek.key"

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

    @property
    def custody_sm_key_path(self) -> Path:
        """The SM tree's head signing key (FIELDCASE_CUSTODY_SUITES=intl,sm): an SM2 key pair, private then public
        (media.custody.keys.SmSigner), shared by API processes and workers like the Ed25519 one."""
        if self.custody_sm_key_file:
            return Path(self.custody_sm_key_file)
        return self.instance_dir / "custody-sm2-signing.key"

    @property
    def custody_sm_keyring_path(self) -> Path:
        """Public keys of retired SM2 custody keys, so SM heads they signed stay verifiable after a rotation."""
        if self.custody_sm_keyring_file:
            return Path(self.custody_sm_keyring_file)
        return self.instance_dir / "custody-sm2-keyring.json"

    @property
    def tsa_cert_path(self) -> Path | None:
        """The trust anchor of the TSA's tokens (PEM), checked at receipt and by `fieldcase custody verify`."""
        return Path(self.tsa_cert_file) if self.tsa_cert_file else None

    def with_overrides(self, overrides: dict[str, Any]) -> Settings:
        names = {f.name for f in fields(self)}
        known = {k: v for k, v in overrides.items() if k in names}
        extra = {**self.extra, **{k: v for k, v in overrides.items() if k not in names}}
        return replace(self, **known, extra=extra).resolved()


def defaults() -> dict[str, Any]:
    """Each setting's default, by field name."""
    return {f.name: f.default for f in fields(Settings) if f.default is not MISSING}


def instance_secret(instance_dir: Path, name: str, nbytes: int = 32, *, create: bool = True) -> bytes:
    """Read a secret from the instance folder, creating it (0600) on first use when `create`."""
    return secret_file(instance_dir / name, nbytes, create=create)


def secret_file(path: Path, nbytes: int = 32, *, create: bool = True,
                make: Callable[[], bytes] | None = None) -> bytes:
    """Read a secret file, creating it (0600) on first use when `create` (who may: backend.core.secret_files).

    Secrets never live in the repository. The new file is written aside and
    hard-linked into place, so processes starting together all end up with
    the one secret that won, never a half-written one. Its bytes are `nbytes`
    random ones, or what `make` gives (a key pair that is not just random
    bytes: the SM2 custody key).
    """
    path = Path(path)
    if not create and not path.exists():
        raise SettingsError([f"{path}: no such secret file; `fieldcase init-secrets` makes the missing ones"])
    path.parent.mkdir(parents=True, exist_ok=True)
    name = path.name
    if not path.exists():
        tmp = path.parent / f".{name}.{os.getpid()}.{secrets.token_hex(4)}"
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as fh:
            fh.write(make() if make is not None else secrets.token_bytes(nbytes))
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
