"""Fixtures: a real database (SQLite by default, PostgreSQL with FIELDCASE_TEST_DATABASE_URL), a real app.

The schema is built once per run through Alembic, exactly as production does;
each test then starts from empty tables (reference data kept).
"""

from __future__ import annotations

import os
import sys
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from backend.bootstrap import create_app
from backend.casework.accounts import create_officer
from backend.core.config import Settings
from backend.core.db import Database
from backend.core.models import Base, Officer
from backend.core.redis_client import bounded_redis
from backend.core.schema import prepare
from backend.core.secret_files import generates_secrets, init_secrets

# Where the machine forbids bytecode files (PYTHONDONTWRITEBYTECODE, as some containers set), every test worker would
# compile and assertion-rewrite each module again, ~8 s per worker and per run: the suite keeps its bytecode in its
# own cache folder instead (gitignored, outside the source tree's folders), and so do the servers it starts.
if sys.dont_write_bytecode and sys.pycache_prefix is None:
    sys.pycache_prefix = str(Path(__file__).resolve().parents[1] / ".pytest_cache" / "pycache")
    sys.dont_write_bytecode = False
    os.environ.pop("PYTHONDONTWRITEBYTECODE", None)
    os.environ["PYTHONPYCACHEPREFIX"] = sys.pycache_prefix

REFERENCE_TABLES = {"regions", "departments", "agencies", "violation_categories", "category_departments",
                    "alembic_version"}
PASSWORD = "correct horse battery"
TEST_KDF = "scrypt:1024:8:1"

PG_ENV = "FIELDCASE_TEST_DATABASE_URL"


def pytest_xdist_auto_num_workers(config: pytest.Config) -> int:
    """`-n auto`: one worker more than the machine has cores, up to 9. A share of the suite waits on what it starts
    (gunicorn, job workers, Chromium, a TSA, a restarted Redis), and the extra worker runs quick tests meanwhile: on 2
    cores, PostgreSQL leg 5:18 with 3 workers against 5:41 with 2 and 5:44 with 4. The cap keeps a large machine's
    workers (each with its own database and pools) inside PostgreSQL's 100 connections."""
    return min((os.cpu_count() or 1) + 1, 9)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """The slow runs first. Each takes 5–30 s: started last, one of them would keep its worker busy while the others
    sit idle. Started first, pytest-xdist's worksteal shares the quick tests out behind them."""
    items.sort(key=lambda item: item.get_closest_marker("slow") is None)


def _admin_url(url: str) -> str:
    return make_url(url).set(drivername="postgresql+psycopg").render_as_string(hide_password=False)


@pytest.fixture(scope="session")
def fresh_database_url(tmp_path_factory) -> Iterator:
    """A factory for empty databases of the kind under test; each is dropped at the end of the run."""
    server = os.environ.get(PG_ENV)
    created: list[str] = []

    def make() -> str:
        if not server:
            return f"sqlite:///{tmp_path_factory.mktemp('db') / 'fieldcase.db'}"
        name = f"fieldcase_test_{uuid.uuid4().hex[:12]}"
        admin = create_engine(_admin_url(server), isolation_level="AUTOCOMMIT")
        with admin.connect() as conn:
            conn.execute(text(f'CREATE DATABASE "{name}"'))
            # A test database need not survive a crash of its server: commits skip the WAL flush (the server's
            # durability is PostgreSQL's, not what these tests are about), which roughly halves their cost.
            conn.execute(text(f'ALTER DATABASE "{name}" SET synchronous_commit = off'))
        admin.dispose()
        created.append(name)
        return make_url(_admin_url(server)).set(database=name).render_as_string(hide_password=False)

    yield make
    if created:
        admin = create_engine(_admin_url(server), isolation_level="AUTOCOMMIT")
        with admin.connect() as conn:
            for name in created:
                conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


@pytest.fixture(scope="session")
def database_url(fresh_database_url) -> str:
    url = fresh_database_url()
    db = Database(url)
    prepare(db)
    db.dispose()
    return url


def _empty_tables(db: Database) -> None:
    """Every table but the reference data emptied, and on PostgreSQL their id sequences restarted.

    DELETE, not TRUNCATE: a test leaves a few rows, and TRUNCATE's new files cost ~90 ms per test on PostgreSQL
    against ~5 ms for DELETE. On PostgreSQL the DELETEs go in one round trip (~8 ms down to ~2 ms a test); SQLite's
    driver takes one statement at a time.
    """
    tables = [t for t in reversed(Base.metadata.sorted_tables) if t.name not in REFERENCE_TABLES]
    with db.engine.begin() as conn:
        if db.engine.dialect.name != "postgresql":
            for t in tables:
                conn.execute(t.delete())
        else:
            # Each statement as SQLAlchemy writes it for the table (no parameters), joined into one batch.
            conn.exec_driver_sql(";".join(str(t.delete().compile(dialect=conn.dialect)) for t in tables))
            conn.execute(text(
                "SELECT setval(s.oid, 1, false) FROM pg_class s JOIN pg_depend d ON d.objid = s.oid "
                "JOIN pg_class t ON t.oid = d.refobjid WHERE s.relkind = 'S' AND t.relname = ANY(:tables)"),
                {"tables": [t.name for t in tables]})


def settings_in(folder: Path, database_url: str) -> Settings:
    """A test server's settings, its keys and secrets under `folder`.

    Passwords are hashed at a test's cost (scrypt N = 2^10, ~1 ms): officers are made and log in by the hundred here.
    The deployment's default cost is backend.core.crypto.passwords.PASSWORD_KDF (tests/core/test_passwords.py).
    """
    settings = Settings(instance_dir=folder / "instance", database_url=database_url, password_kdf=TEST_KDF).resolved()
    if not generates_secrets(settings):  # on PostgreSQL, as a deployment does: `fieldcase init-secrets` first
        init_secrets(settings)
    return settings


@pytest.fixture
def settings(database_url, tmp_path: Path) -> Settings:
    return settings_in(tmp_path, database_url)


@pytest.fixture(scope="module")
def module_settings(database_url, tmp_path_factory) -> Settings:
    """Settings for what a test module builds once and its tests then only read offline (a downloaded package).

    Such a fixture builds inside `app_on(module_settings)` and returns bytes and keys, not the server: the server's
    tables are emptied as it returns, so each test still starts from empty tables and none leans on another's rows.
    """
    return settings_in(tmp_path_factory.mktemp("module"), database_url)


@contextmanager
def app_on(settings: Settings, **kwargs: Any) -> Iterator[Flask]:
    """An app of `settings` for one test; afterwards its tables emptied (reference data kept) and its pool closed.
    `kwargs` go to `create_app` (a clock, an observer)."""
    application = create_app(settings, **kwargs)
    try:
        yield application
    finally:
        state = application.extensions["fieldcase"]
        _empty_tables(state.db)
        state.db.dispose()


@pytest.fixture
def app(settings):
    with app_on(settings) as application:
        yield application


@pytest.fixture
def db(app) -> Database:
    return app.extensions["fieldcase"].db


@pytest.fixture
def client(app):
    return app.test_client()


class Officers:
    """Makes officers with real hashed passwords (at the tests' KDF cost), and gives them tokens.

    `login` goes through the API (POST /auth/token). `headers`, which hundreds of tests call only to act as an
    officer, has the app's own token issuer sign the access token a login would give, for the officer as the
    database has them now: logging in each time was a twentieth of the suite's time, and login itself is tested
    where it is the subject (tests/web/test_auth.py and the throttle's tests).
    """

    def __init__(self, db: Database, client, kdf: str = TEST_KDF) -> None:
        self.db = db
        self.client = client
        self.kdf = kdf
        self._n = 0

    def make(self, *, region: str = "330106", department: str = "education", roles=("officer",),
             certified: bool = True, username: str | None = None, name: str | None = None):
        self._n += 1
        username = username or f"officer{self._n}-{uuid.uuid4().hex[:6]}"
        with self.db.transaction() as session:
            return create_officer(
                session, username=username, password=PASSWORD, name=name or f"警员{self._n}",
                department=department, region=region, roles=list(roles),
                cert_number=f"ZJ{uuid.uuid4().hex[:10].upper()}" if certified else None,
                cert_valid_from=date.today() - timedelta(days=365) if certified else None,
                cert_valid_until=date.today() + timedelta(days=365) if certified else None, kdf=self.kdf,
                now=datetime.now(UTC),
            )

    def login(self, officer) -> dict:
        r = self.client.post("/api/v1/auth/token", json={"username": officer.username, "password": PASSWORD})
        assert r.status_code == 200, r.json
        return r.json

    def headers(self, officer) -> dict[str, str]:
        state = self.client.application.extensions["fieldcase"]
        with self.db.session() as session:
            current = session.get(Officer, officer.id)
            assert current is not None and current.active, f"{officer.id} could not log in"
            token = state.issuer.access_token(current, now=state.clock())
        return {"Authorization": "Bearer " + token}


@pytest.fixture
def officers(db, client) -> Officers:
    return Officers(db, client)


@pytest.fixture(scope="session")
def s3_server():
    """moto's S3 in server mode on loopback: boto3's real HTTP client talks to it, phones PUT to it."""
    from moto.server import ThreadedMotoServer

    from backend.liveserver import free_port

    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    os.environ.setdefault("AWS_ACCESS_KEY_ID", "fieldcase-test")
    os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "fieldcase-test")
    os.environ.setdefault("AWS_DEFAULT_REGION", "us-east-1")
    yield f"http://127.0.0.1:{port}"
    server.stop()


@pytest.fixture(params=["local", "s3"])
def store_kind(request):
    return request.param


@pytest.fixture
def media_app(request, store_kind, settings):
    """The app on the local store or on S3 (moto server), with a small multipart threshold."""
    from dataclasses import replace

    overrides = {"multipart_threshold": 6 * 1024 * 1024, "multipart_part_size": 5 * 1024 * 1024}
    if store_kind == "s3":
        endpoint = request.getfixturevalue("s3_server")
        overrides.update(s3_bucket=f"fieldcase-{uuid.uuid4().hex[:10]}", s3_endpoint_url=endpoint)
    with app_on(replace(settings, **overrides)) as application:
        if store_kind == "s3":
            application.extensions["fieldcase"].store.ensure_bucket()
        yield application


REDIS_ENV = "FIELDCASE_TEST_REDIS_URL"


@pytest.fixture(scope="session")
def redis_url() -> str:
    """Redis for the job-queue tests (FIELDCASE_TEST_REDIS_URL, default the local one); skipped when unreachable."""
    from redis.exceptions import RedisError

    url = os.environ.get(REDIS_ENV, "redis://127.0.0.1:6379/0")
    try:
        bounded_redis(url, connect_timeout=2, read_timeout=2).ping()
    except RedisError as exc:
        pytest.skip(f"Redis is unreachable at {url} ({exc}); set {REDIS_ENV} to run the job-queue tests")
    return url


@pytest.fixture
def job_queue(redis_url) -> Iterator[str]:
    """A queue name of this test's own (Redis may be shared), with its jobs and registries removed afterwards."""
    from redis import Redis
    from rq import Queue

    name = f"fieldcase-test-{uuid.uuid4().hex[:10]}"
    yield name
    connection = Redis.from_url(redis_url)
    queue = Queue(name, connection=connection)
    job_ids = set(queue.job_ids)
    for registry in (queue.failed_job_registry, queue.finished_job_registry, queue.scheduled_job_registry,
                     queue.started_job_registry):
        job_ids.update(registry.get_job_ids())
    queue.delete(delete_jobs=True)
    for job_id in job_ids:
        connection.delete(f"rq:job:{job_id}", f"rq:results:{job_id}")
    for key in connection.scan_iter(f"rq:*:{name}*"):
        connection.delete(key)


@pytest.fixture(scope="session")
def tsa(tmp_path_factory) -> Iterator:
    """An RFC 3161 Time-Stamping Authority on loopback: OpenSSL's own `ts -reply` behind HTTP (tests/tsa.py).

    Configure an app with `tsa_url=tsa.url` (and `tsa_cert_file=str(tsa.ca)` to anchor its tokens). Shared by the
    run: a test that takes it down (`tsa.available = False`) puts it back.
    """
    from tests.tsa import TestTSA

    authority = TestTSA(tmp_path_factory.mktemp("tsa")).start()
    yield authority
    authority.stop()


@pytest.fixture
def rq_settings(settings, redis_url, job_queue):
    """The test's settings with the jobs on Redis, in the test's own queue."""
    from dataclasses import replace

    return replace(settings, jobs="rq", redis_url=redis_url, job_queue=job_queue)


@pytest.fixture
def rq_app(rq_settings) -> Iterator:
    with app_on(rq_settings) as application:
        yield application
