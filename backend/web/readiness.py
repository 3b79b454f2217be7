"""Readiness: may this process be given requests? Each dependency checked, the verdict cached for a moment.

`GET /api/v1/health/ready` (and `/api/v1/health`, which load balancers already call) answers 200 when every
dependency answers and 503 naming the ones that do not. The checks, each bounded by a short timeout:

- `database`: `SELECT 1`, and the schema's Alembic revision is the head of this release's migrations (a process
  of a new release on an old schema would fail on the first query that needs a column). A revision this release
  does not know is a newer release's, migrated while this process still serves: a rolling upgrade
  (docs/deployment.md, "Rolling upgrades") runs only expand migrations then, which an older process works with,
  so it stays ready and says so; the contract step waits for a later release, when no older process is left;
- `redis` (only with FIELDCASE_JOBS=rq): `PING` (without it, completed uploads wait until a sweep);
- `store`: the bucket answers `HeadBucket`, or the local folder is there and writable (`media.store_probe`);
- `jwt_secret`, `custody_key`: the key files can be read, whole (the process holds its keys in memory, but a
  worker gunicorn restarts, or the next deploy, reads them again and would not start).

Why the database check has an engine of its own: the app's pool is sized for requests, and a push under load may
be waiting for its last free connection. A probe that checked out of that pool would take the slot from the push
(or, with every connection busy, wait the pool's timeout and then call a busy process dead, so the load balancer
would move its load onto the others, which are just as busy). The probe engine opens one short-lived connection
(no pool: `NullPool`) with a connect timeout and a statement timeout of `TIMEOUT` seconds, at most once per
`TTL` seconds per process, and closes it: it never waits for the app's pool and never holds a connection between
probes. It also tests what a new pool connection would need (the server reachable, the login accepted, a
connection slot free), which a connection kept open would not.

Why the cache: a load balancer probes every process every few seconds, several may probe at once, and each
check costs a connection and round trips. The verdict is kept `TTL` (2 s) per process; concurrent probes wait for
the one check in progress instead of starting their own. Details never carry a secret, a URL or a row value:
the answer is public (a load balancer reads it); the full error goes to the log.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import Connection, create_engine, inspect, text
from sqlalchemy.engine import make_url
from sqlalchemy.pool import NullPool

from backend.core.redis_client import bounded_redis

log = logging.getLogger("fieldcase.readiness")

TIMEOUT = 2.0  # seconds any one check may take (connect, then answer)
TTL = 2.0  # seconds a verdict is reused by this process

Probe = Callable[[], str | None]  # None: fine; else what is wrong, fit for a public answer


@dataclass(frozen=True)
class Check:
    """One dependency: its name, and a probe telling what is wrong with it now (or what is fine, as `ok_detail`)."""

    name: str
    probe: Probe
    ok_detail: str | Callable[[], str] = "ok"


@dataclass(frozen=True)
class Outcome:
    name: str
    ok: bool
    detail: str

    def as_dict(self) -> dict[str, object]:
        return {"name": self.name, "ok": self.ok, "detail": self.detail}


@dataclass(frozen=True)
class Verdict:
    outcomes: tuple[Outcome, ...]

    @property
    def ready(self) -> bool:
        return all(o.ok for o in self.outcomes)

    @property
    def failing(self) -> list[str]:
        return [o.name for o in self.outcomes if not o.ok]


def run_check(check: Check) -> Outcome:
    """A probe that raises (rather than saying what is wrong) fails with its exception's type, nothing more."""
    try:
        problem = check.probe()
    except Exception as exc:
        log.warning("readiness check %s failed", check.name, exc_info=True)
        return Outcome(check.name, False, f"check failed ({type(exc).__name__})")
    if problem is not None:
        log.warning("not ready: %s: %s", check.name, problem)
        return Outcome(check.name, False, problem)
    detail = check.ok_detail() if callable(check.ok_detail) else check.ok_detail
    return Outcome(check.name, True, detail)


class Readiness:
    """The checks of one process, and its last verdict, reused for `ttl` seconds."""

    def __init__(self, checks: Sequence[Check], *, ttl: float = TTL,
                 monotonic: Callable[[], float] = time.monotonic) -> None:
        self.checks = tuple(checks)
        self.ttl = ttl
        self._monotonic = monotonic
        self._lock = threading.Lock()
        self._verdict: Verdict | None = None
        self._at = 0.0

    def verdict(self) -> Verdict:
        with self._lock:  # one check at a time; probes arriving meanwhile get its verdict
            if self._verdict is None or self._monotonic() - self._at >= self.ttl:
                self._verdict = Verdict(tuple(run_check(c) for c in self.checks))
                self._at = self._monotonic()
            return self._verdict


# --------------------------------------------------------------------------------------------- the checks


class DatabaseProbe:
    """`SELECT 1` and the schema revision, on a connection of its own (see the module's docstring)."""

    def __init__(self, url: str, head: str | None, *, known: frozenset[str],
                 timeout: float = TIMEOUT) -> None:
        self.head = head
        self.known = known | ({head} if head else set())
        self.newer = False
        self.current: str | None = None
        self.timeout_ms = int(timeout * 1000)
        backend = make_url(url).get_backend_name()
        self.postgresql = backend == "postgresql"
        if self.postgresql:
            # The statement timeout is set per transaction (SET LOCAL), not as a startup option: PgBouncer refuses
            # startup options it does not know.
            connect_args: dict[str, object] = {"connect_timeout": max(1, round(timeout))}
        elif backend == "sqlite":
            connect_args = {"timeout": timeout}
        else:
            connect_args = {}
        self.engine = create_engine(url, poolclass=NullPool, connect_args=connect_args)

    def __call__(self) -> str | None:
        from sqlalchemy.exc import SQLAlchemyError

        try:
            with self.engine.connect() as conn:
                if self.postgresql:
                    conn.execute(text(f"SET LOCAL statement_timeout = {self.timeout_ms}"))
                    conn.execute(text(f"SET LOCAL lock_timeout = {self.timeout_ms}"))
                conn.execute(text("SELECT 1"))
                self.current = _revision(conn)
        except SQLAlchemyError as exc:
            log.warning("readiness: the database does not answer (%s)", type(exc).__name__)
            return f"the database does not answer ({type(getattr(exc, 'orig', None) or exc).__name__})"
        if self.current is None:
            return f"the schema has no revision, this release needs {self.head}: run `fieldcase migrate`"
        self.newer = self.current not in self.known
        if self.current != self.head and not self.newer:
            return (f"the schema is at revision {self.current}, this release needs {self.head}: "
                    "run `fieldcase migrate`")
        return None

    def ok_detail(self) -> str:
        if self.newer:
            return (f"schema at revision {self.current}, newer than this release's {self.head}: serving through a "
                    "rolling upgrade; replace this process")
        return f"schema at revision {self.current}"

    def dispose(self) -> None:
        self.engine.dispose()


def _revision(conn: Connection) -> str | None:
    """The schema's Alembic revision, read as Alembic stores it (its own reader logs at INFO on every call, and a
    probe runs every few seconds). No table: no revision."""
    if not inspect(conn).has_table("alembic_version"):
        return None
    versions = sorted(conn.execute(text("SELECT version_num FROM alembic_version")).scalars())
    return ",".join(versions) or None


def redis_probe(url: str, *, timeout: float = TIMEOUT) -> Probe:
    from redis.exceptions import RedisError

    client = bounded_redis(url, connect_timeout=timeout, read_timeout=timeout)

    def probe() -> str | None:
        try:
            client.ping()
        except RedisError as exc:
            log.warning("readiness: Redis does not answer (%s)", type(exc).__name__)
            return f"Redis does not answer ({type(exc).__name__})"
        return None

    return probe


def key_file_probe(path: Path, min_bytes: int, what: str) -> Probe:
    """The file is there, readable, and at least `min_bytes` long; its bytes are read and dropped, never shown."""

    def probe() -> str | None:
        try:
            with open(path, "rb") as fh:
                size = len(fh.read(min_bytes))
        except FileNotFoundError:
            return f"the {what} file is missing"
        except OSError as exc:
            return f"the {what} file cannot be read ({exc.strerror or type(exc).__name__})"
        if size < min_bytes:
            return f"the {what} file is truncated"
        return None

    return probe
