"""Every environment variable fieldcase reads, declared once: the setting it fills, its type and its range.

Why a table rather than `int(env.get(...))` per setting: a wrong value must stop the process before anything
starts, with one line that names the variable and says what is wrong (`FIELDCASE_DB_POOL_SIZE=abc: not an
integer`), not a traceback from a gunicorn worker at its first request, or a purge refused months later; a
misspelt name (`FIELDCASE_DB_POOLSIZE`) must be noticed rather than silently ignored; and `fieldcase config check`
and the README's table need the same list. `backend.core.config.Settings.from_env` reads through `read` here.

Why not pydantic-settings: `Settings` is a frozen dataclass that code builds, copies (`dataclasses.replace`) and
overrides field by field; its checks are a few ranges and choices, and the message of each is ours to word. A
table of plain parsers keeps that class and its API as they are, with no dependency for it.

The values of settings that may hold a password (the database and Redis URLs) are masked wherever they are shown.
"""

from __future__ import annotations

import difflib
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from backend.core.crypto.passwords import check_kdf

PREFIX = "FIELDCASE_"
# FIELDCASE_* names read by the test suite and the benches, not by the server: never reported as unknown.
TOOLING_PREFIXES = ("FIELDCASE_TEST_", "FIELDCASE_BENCH_", "FIELDCASE_FUZZ_")

# Evidence files are kept at least six months (the rules on administrative enforcement records); a setting below
# this is refused when the process starts, and `media.retention` refuses to purge under it.
MIN_RETENTION_DAYS = 180

MIB = 1024 * 1024
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")
LOG_FORMATS = ("auto", "json", "text")
JOB_MODES = ("inline", "rq")
TOKEN_SUITES = ("intl", "sm")  # access tokens signed with HMAC-SHA-256 (HS256) or HMAC-SM3 (HSM3)


class SettingsError(ValueError):
    """Settings that cannot start a process: one line per problem, each naming its variable."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = list(problems)
        super().__init__("\n".join(self.problems))


# ------------------------------------------------------------------------------------------------ parsers
# Each takes the variable's text (never empty; stripped unless its Variable says not) and returns the value, or
# raises ValueError saying what is wrong with it, in words that follow `NAME=value: `.


def integer(text: str) -> int:
    try:
        return int(text, 10)
    except ValueError:
        raise ValueError("not an integer") from None


def number(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise ValueError("not a number") from None
    if not math.isfinite(value):
        raise ValueError("not a finite number")
    return value


_TRUE, _FALSE = ("1", "true", "yes", "on"), ("0", "false", "no", "off")


def boolean(text: str) -> bool:
    if text.lower() in _TRUE:
        return True
    if text.lower() in _FALSE:
        return False
    raise ValueError("not a boolean (1 or 0, true or false, yes or no)")


def text(value: str) -> str:
    return value


def directory(value: str) -> Path:
    return Path(value)


def words(value: str) -> tuple[str, ...]:
    return tuple(w.strip() for w in value.split(",") if w.strip())


CUSTODY_SUITES = ("intl", "sm")  # the algorithm suites a custody log can be kept in (backend.core.crypto)


def custody_suites(value: str) -> tuple[str, ...]:
    """FIELDCASE_CUSTODY_SUITES: `intl` (always: the SHA-256 tree with Ed25519 heads every package and phone
    relies on), and `sm` for a second tree in SM3 with SM2 heads; in that order, each once."""
    named = tuple(w.strip().lower() for w in value.split(",") if w.strip())
    unknown = [w for w in named if w not in CUSTODY_SUITES]
    if unknown:
        raise ValueError(f"unknown suite {unknown[0]!r}: the suites are " + ", ".join(CUSTODY_SUITES))
    if "intl" not in named:
        raise ValueError("must include intl (the SHA-256 tree with Ed25519 heads is always kept): intl or intl,sm")
    return tuple(suite for suite in CUSTODY_SUITES if suite in named)


def choice(*options: str, upper: bool = False) -> Callable[[str], str]:
    def parse(value: str) -> str:
        spelled = value.upper() if upper else value.lower()
        if spelled not in options:
            raise ValueError("must be one of " + ", ".join(options))
        return spelled

    return parse


def url(*schemes: str) -> Callable[[str], str]:
    def parse(value: str) -> str:
        parts = urlsplit(value)
        if parts.scheme.lower() not in schemes or not (parts.netloc or parts.scheme == "unix"):
            raise ValueError("not a URL of " + ", ".join(f"{s}://" for s in schemes))
        return value

    return parse


def database_url(value: str) -> str:
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError

    try:
        backend = make_url(value).get_backend_name()
    except ArgumentError:
        raise ValueError("not a database URL (postgresql://user@host:5432/name, or sqlite:///path)") from None
    if backend not in ("postgresql", "postgres", "sqlite"):
        raise ValueError(f"{backend} is not supported: PostgreSQL or SQLite")
    return value


def password_kdf(value: str) -> str:
    try:
        return check_kdf(value)
    except ValueError:
        raise ValueError("must be scrypt:N:r:p (N a power of two) or pbkdf2:sha256:ITERATIONS") from None


def s3_bucket(value: str) -> str:
    if not (3 <= len(value) <= 63) or not all(c.islower() or c.isdigit() or c in ".-" for c in value) \
            or not value[0].isalnum() or not value[-1].isalnum():
        raise ValueError("not an S3 bucket name (3 to 63 lower-case letters, digits, dots and hyphens)")
    return value


def queue_name(value: str) -> str:
    if not all(c.isalnum() or c in "-_.:" for c in value):
        raise ValueError("only letters, digits and - _ . : in a queue name")
    return value


# ----------------------------------------------------------------------------------------------- the table


@dataclass(frozen=True)
class Variable:
    name: str
    field: str
    parse: Callable[[str], Any]
    kind: str  # what the README and `fieldcase config check` call its type
    minimum: float | None = None
    maximum: float | None = None
    why: str = ""  # why the range, when it is not obvious
    secret: bool = False  # a URL that may carry a password: shown with the password masked
    strip: bool = True  # surrounding blanks dropped; False where a blank would change what the value means

    def check(self, raw: str) -> Any:
        """The typed value of `raw`, or ValueError with the reason (without the name)."""
        value = self.parse(raw)
        if self.minimum is not None and value < self.minimum:
            raise ValueError(f"must be ≥ {_plain(self.minimum)}{self.why}")
        if self.maximum is not None and value > self.maximum:
            raise ValueError(f"must be ≤ {_plain(self.maximum)}{self.why}")
        return value

    def shown(self, raw: str) -> str:
        return mask_url(raw) if self.secret else raw


def _plain(n: float) -> str:
    return str(int(n)) if float(n).is_integer() else str(n)


V = Variable
VARIABLES: tuple[Variable, ...] = (
    V("FIELDCASE_INSTANCE_DIR", "instance_dir", directory, "path"),
    V("DATABASE_URL", "database_url", database_url, "URL", secret=True),
    V("FIELDCASE_ACCESS_TOKEN_TTL", "access_token_ttl", integer, "seconds", 1),
    V("FIELDCASE_REFRESH_TOKEN_TTL", "refresh_token_ttl", integer, "seconds", 1),
    V("FIELDCASE_LOGIN_WINDOW", "login_window_seconds", integer, "seconds", 1),
    # The old name of FIELDCASE_LOGIN_FREE_FAILURES, still read; the new name wins when both are set (it is later).
    V("FIELDCASE_LOGIN_MAX_FAILURES", "login_free_failures", integer, "integer", 0),
    V("FIELDCASE_LOGIN_FREE_FAILURES", "login_free_failures", integer, "integer", 0),
    V("FIELDCASE_LOGIN_DELAY", "login_delay_seconds", integer, "seconds", 1),
    V("FIELDCASE_LOGIN_DELAY_MAX", "login_delay_max_seconds", integer, "seconds", 1),
    V("FIELDCASE_LOGIN_MEMORY", "login_memory_seconds", integer, "seconds", 1),
    V("FIELDCASE_LOGIN_MAX_FAILURES_PER_ADDRESS", "login_max_failures_per_address", integer, "integer", 1),
    V("FIELDCASE_PASSWORD_KDF", "password_kdf", password_kdf, "KDF", strip=False),  # spelled as werkzeug reads it
    V("FIELDCASE_GAP_TIMEOUT", "gap_timeout_seconds", integer, "seconds", 1),
    V("FIELDCASE_QUARANTINE_PER_DEVICE", "quarantine_per_device", integer, "integer", 0),
    V("FIELDCASE_S3_BUCKET", "s3_bucket", s3_bucket, "bucket name"),
    V("FIELDCASE_S3_ENDPOINT_URL", "s3_endpoint_url", url("http", "https"), "URL"),
    V("FIELDCASE_S3_REGION", "s3_region", text, "text"),
    V("FIELDCASE_MULTIPART_THRESHOLD", "multipart_threshold", integer, "bytes", 1),
    V("FIELDCASE_MULTIPART_PART_SIZE", "multipart_part_size", integer, "bytes", 5 * MIB, 5 * 1024 * MIB,
      " (S3's part sizes: 5 MiB to 5 GiB)"),
    V("FIELDCASE_UPLOAD_DEADLINE_HOURS", "upload_deadline_hours", number, "hours", 0.001),
    V("FIELDCASE_PHOTO_TIME_TOLERANCE", "photo_time_tolerance_seconds", number, "seconds", 0),
    V("FIELDCASE_PHOTO_DISTANCE_TOLERANCE", "photo_distance_tolerance_m", number, "metres", 0),
    V("FIELDCASE_COVERAGE_TOLERANCE", "coverage_tolerance_seconds", number, "seconds", 0),
    V("FIELDCASE_MAJOR_FINE_YUAN", "major_fine_yuan", integer, "yuan", 0),
    V("FIELDCASE_RETENTION_DAYS", "retention_days", integer, "days", MIN_RETENTION_DAYS, None,
      " (the legal minimum for keeping evidence)"),
    V("FIELDCASE_DB_POOL_SIZE", "db_pool_size", integer, "integer", 1),
    V("FIELDCASE_DB_MAX_OVERFLOW", "db_max_overflow", integer, "integer", 0),
    V("FIELDCASE_DB_POOL_TIMEOUT", "db_pool_timeout", number, "seconds", 0.001),
    V("FIELDCASE_MAX_CONCURRENT_PUSHES", "max_concurrent_pushes", integer, "integer", 1),
    V("FIELDCASE_MAX_CONCURRENT_UPLOADS", "max_concurrent_uploads", integer, "integer", 1),
    V("FIELDCASE_ADMISSION_WAIT", "admission_wait", number, "seconds", 0),
    V("FIELDCASE_BUSY_RETRY_AFTER", "busy_retry_after", integer, "seconds", 1),
    V("FIELDCASE_TRUST_PROXY", "trust_proxy", boolean, "boolean"),
    V("FIELDCASE_LOG_LEVEL", "log_level", choice(*LOG_LEVELS, upper=True), "|".join(LOG_LEVELS)),
    V("FIELDCASE_LOG_FORMAT", "log_format", choice(*LOG_FORMATS), "|".join(LOG_FORMATS)),
    V("FIELDCASE_JOBS", "jobs", choice(*JOB_MODES), "|".join(JOB_MODES)),
    V("FIELDCASE_REDIS_URL", "redis_url", url("redis", "rediss", "unix"), "URL", secret=True),
    V("FIELDCASE_JOB_QUEUE", "job_queue", queue_name, "name"),
    V("FIELDCASE_JWT_SECRET_FILE", "jwt_secret_file", text, "path"),
    V("FIELDCASE_TOKEN_SUITE", "token_suite", choice(*TOKEN_SUITES), "|".join(TOKEN_SUITES)),
    V("FIELDCASE_KEK_FILE", "kek_file", text, "path"),
    V("FIELDCASE_CUSTODY_KEY_FILE", "custody_key_file", text, "path"),
    V("FIELDCASE_CUSTODY_KEYRING", "custody_keyring_file", text, "path"),
    V("FIELDCASE_CUSTODY_ORIGIN", "custody_origin", text, "text"),
    V("FIELDCASE_CUSTODY_SUITES", "custody_suites", custody_suites, "intl or intl,sm"),
    V("FIELDCASE_CUSTODY_SM_KEY_FILE", "custody_sm_key_file", text, "path"),
    V("FIELDCASE_CUSTODY_SM_KEYRING", "custody_sm_keyring_file", text, "path"),
    V("FIELDCASE_WITNESS_KEYS", "witness_keys", words, "comma-separated vkeys"),
    V("FIELDCASE_TSA_URL", "tsa_url", url("http", "https"), "URL", secret=True),
    V("FIELDCASE_TSA_CERT", "tsa_cert_file", text, "path"),
    V("FIELDCASE_TSA_TIMEOUT", "tsa_timeout", number, "seconds", 0.001),
    V("FIELDCASE_HEAD_INTERVAL", "head_interval_seconds", integer, "seconds", 1),
    V("FIELDCASE_AUDIT_INTERVAL", "audit_interval_seconds", integer, "seconds", 0),
    V("FIELDCASE_AUDIT_SAMPLE", "audit_sample", integer, "integer", 0),
    V("FIELDCASE_SWEEP_INTERVAL", "sweep_interval_seconds", integer, "seconds", 0),
    V("FIELDCASE_METRICS_PORT", "metrics_port", integer, "port", 0, 65535),
    V("FIELDCASE_METRICS_HOST", "metrics_host", text, "host"),
    V("FIELDCASE_METRICS_DIR", "metrics_dir", text, "path"),
    V("FIELDCASE_WORKER_METRICS_PORT", "worker_metrics_port", integer, "port", 0, 65535),
    V("FIELDCASE_COMMIT", "commit", text, "text"),
)
BY_NAME = {v.name: v for v in VARIABLES}


def mask_url(value: str) -> str:
    """The URL with its password (if any) replaced by ***: what may be printed or logged of it."""
    try:
        parts = urlsplit(value)
    except ValueError:
        return "***"
    if parts.password is None:
        return value
    host = parts.netloc.rpartition("@")[2]
    return urlunsplit(parts._replace(netloc=f"{parts.username or ''}:***@{host}"))


def _echo(value: str, limit: int = 80) -> str:
    return value if len(value) <= limit else value[:limit] + "…"


@dataclass
class Reading:
    """What the environment says: typed values of the variables it sets, where each setting came from, and every
    problem (one line each)."""

    values: dict[str, Any] = field(default_factory=dict)  # field name -> typed value, for what the env sets
    sources: dict[str, str] = field(default_factory=dict)  # variable name -> "env" or "default"
    problems: list[str] = field(default_factory=list)
    unknown: list[str] = field(default_factory=list)  # one line per FIELDCASE_* name no setting reads

    def raise_problems(self) -> None:
        if self.problems:
            raise SettingsError(self.problems)


def read(env: Mapping[str, str], defaults: Mapping[str, Any]) -> Reading:
    """Parse every variable the environment sets (an empty one counts as unset), check each against its range and
    then the rules between them (with `defaults` for what is unset)."""
    reading = Reading()
    for var in VARIABLES:
        raw = env.get(var.name) or ""
        raw = raw.strip() if var.strip or not raw.strip() else raw
        if not raw:
            reading.sources[var.name] = "default"
            continue
        reading.sources[var.name] = "env"
        try:
            reading.values[var.field] = var.check(raw)
        except ValueError as exc:
            reading.problems.append(f"{var.name}={_echo(var.shown(raw))}: {exc}")
    if "jobs" not in reading.values and reading.values.get("redis_url"):
        reading.values["jobs"] = "rq"  # a Redis URL says there are workers, unless FIELDCASE_JOBS says otherwise
    if not reading.problems:
        reading.problems = combination_problems({**defaults, **reading.values})
    reading.unknown = unknown_names(env)
    return reading


def combination_problems(values: Mapping[str, Any]) -> list[str]:
    """The rules between settings (`values`: every field), one line each; `Settings.resolved` applies them too,
    so settings built in code obey them as well."""
    problems = []
    if values["refresh_token_ttl"] <= values["access_token_ttl"]:
        problems.append(f"FIELDCASE_REFRESH_TOKEN_TTL={values['refresh_token_ttl']}: must be longer than "
                        f"FIELDCASE_ACCESS_TOKEN_TTL ({values['access_token_ttl']}), or phones could not renew "
                        "their access")
    if values["jobs"] not in JOB_MODES:
        problems.append(f"FIELDCASE_JOBS={values['jobs']}: must be one of " + ", ".join(JOB_MODES))
    elif values["jobs"] == "rq" and not values["redis_url"]:
        problems.append("FIELDCASE_JOBS=rq: needs FIELDCASE_REDIS_URL (e.g. redis://127.0.0.1:6379/0)")
    suites = values.get("custody_suites", ("intl",))
    spelled = suites if isinstance(suites, str) else ",".join(map(str, suites))
    try:
        custody_suites(spelled)
    except ValueError as exc:
        problems.append(f"FIELDCASE_CUSTODY_SUITES={spelled}: {exc}")
    return problems


def unknown_names(env: Mapping[str, str]) -> list[str]:
    """A line for each FIELDCASE_* name that no setting reads (a typo, or a setting that was removed)."""
    lines = []
    for name in sorted(env):
        if not name.startswith(PREFIX) or name in BY_NAME or name.startswith(TOOLING_PREFIXES):
            continue
        close = difflib.get_close_matches(name, list(BY_NAME), n=1, cutoff=0.8)
        hint = f" (did you mean {close[0]}?)" if close else ""
        lines.append(f"{name} is not a fieldcase setting{hint}; it is ignored")
    return lines
