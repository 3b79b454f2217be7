"""Health that tells the truth: a process is live while it answers, ready only while what it needs answers.

A load balancer asks `GET /api/v1/health` (or `/health/ready`) and sends phones only to processes that say 200;
an orchestrator asks `/health/live` and restarts a process only when that stops answering. Each test below takes
one dependency away for real (a database port where nothing listens, Redis on a dead port, the evidence folder
removed, the bucket deleted on the S3 server, a key file removed, a schema one migration behind) and expects 503
naming it, with nothing secret in the answer.
"""

from __future__ import annotations

import shutil
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import replace
from importlib import metadata
from typing import Any

import pytest
from alembic import command
from alembic.script import ScriptDirectory
from flask import Flask
from sqlalchemy import text

from backend.bootstrap import create_app
from backend.core.config import Settings
from backend.core.schema import alembic_config, head_revision
from backend.core.secret_files import init_secrets
from backend.liveserver import free_port
from backend.web.readiness import Check, Readiness

NAMES = ["database", "store", "jwt_secret", "custody_key"]


@contextmanager
def app_with(settings: Settings, **changes: Any) -> Iterator[Flask]:
    """An API process built on `settings` with `changes`, as `fieldcase serve` would build it."""
    changed = replace(settings, **changes)
    init_secrets(changed)  # on PostgreSQL a deployment makes its keys with `fieldcase init-secrets` first
    application = create_app(changed)
    try:
        yield application
    finally:
        application.extensions["fieldcase"].db.dispose()


def checks(response) -> dict[str, dict[str, Any]]:
    return {c["name"]: c for c in response.json["checks"]}


def not_ready(response, *names: str) -> dict[str, dict[str, Any]]:
    """A 503 in the protocol's error shape naming exactly `names`, with Retry-After; returns the checks by name."""
    assert response.status_code == 503, response.json
    assert response.headers["Retry-After"].isdigit() and int(response.headers["Retry-After"]) >= 1
    body = response.json
    assert body["code"] == 503 and body["status"] == "Service Unavailable"
    assert body["message"] == "not ready: " + ", ".join(names)
    found = checks(response)
    assert sorted(n for n, c in found.items() if not c["ok"]) == sorted(names)
    return found


def test_given_a_healthy_process_when_asked_then_it_is_live_and_ready_with_every_dependency_checked(client):
    assert client.get("/api/v1/health/live").json == {"status": "alive"}
    ready = client.get("/api/v1/health/ready")
    assert ready.status_code == 200 and ready.json["status"] == "ready"
    assert [c["name"] for c in ready.json["checks"]] == NAMES
    assert all(c["ok"] for c in ready.json["checks"])
    assert checks(ready)["database"]["detail"] == f"schema at revision {head_revision('sqlite://')}"
    assert client.get("/api/v1/health").json == ready.json  # the name load balancers already call


def test_given_postgresql_refuses_connections_when_asked_then_not_ready_names_the_database_but_still_live(settings):
    port = free_port()  # nothing listens there: every connection is refused
    url = f"postgresql+psycopg://fieldcase:s3cret-password@127.0.0.1:{port}/fieldcase"
    with app_with(settings, database_url=url) as app:
        client = app.test_client()
        started = time.monotonic()
        found = not_ready(client.get("/api/v1/health/ready"), "database")
        assert time.monotonic() - started < 5
        detail = found["database"]["detail"]
        assert detail.startswith("the database does not answer")
        for secret in ("s3cret", "fieldcase:", str(port), "127.0.0.1"):
            assert secret not in str(found), secret
        assert all(found[name]["ok"] for name in ("store", "jwt_secret", "custody_key"))
        not_ready(client.get("/api/v1/health"), "database")
        assert client.get("/api/v1/health/live").status_code == 200


def test_given_redis_is_down_in_rq_mode_when_asked_then_not_ready_names_redis(settings):
    with app_with(settings, jobs="rq", redis_url=f"redis://:hunter2@127.0.0.1:{free_port()}/0") as app:
        found = not_ready(app.test_client().get("/api/v1/health/ready"), "redis")
        assert found["redis"]["detail"] == "Redis does not answer (ConnectionError)"
        assert "hunter2" not in str(found)


def test_given_redis_answers_in_rq_mode_when_asked_then_redis_is_checked_and_ready(settings, redis_url):
    with app_with(settings, jobs="rq", redis_url=redis_url) as app:
        ready = app.test_client().get("/api/v1/health/ready")
        assert ready.status_code == 200
        assert [c["name"] for c in ready.json["checks"]] == ["database", "redis", "store", "jwt_secret", "custody_key"]


def test_given_the_evidence_folder_is_removed_when_asked_then_not_ready_names_the_store_until_it_is_back(app,
                                                                                                      client):
    state = app.extensions["fieldcase"]
    state.readiness = Readiness(state.readiness.checks, ttl=0)  # no cached verdict: see each change at once
    root = state.store.root
    assert client.get("/api/v1/health/ready").status_code == 200
    shutil.rmtree(root)
    found = not_ready(client.get("/api/v1/health/ready"), "store")
    assert found["store"]["detail"] == "the evidence folder is missing"
    assert str(root) not in str(found)
    for area in ("staging", "objects", "mismatch", "derived"):
        (root / area).mkdir(parents=True)
    assert client.get("/api/v1/health/ready").status_code == 200


def test_given_the_bucket_is_deleted_when_asked_then_not_ready_names_the_store(settings, s3_server):
    bucket = f"fieldcase-ready-{free_port()}"
    with app_with(settings, s3_bucket=bucket, s3_endpoint_url=s3_server) as app:
        state = app.extensions["fieldcase"]
        state.store.ensure_bucket()
        client = app.test_client()
        ready = client.get("/api/v1/health/ready")
        assert ready.status_code == 200 and checks(ready)["store"]["detail"] == "s3 store answers"
        state.store.client.delete_bucket(Bucket=bucket)
        state.readiness = Readiness(state.readiness.checks, ttl=0)
        found = not_ready(client.get("/api/v1/health/ready"), "store")
        assert found["store"]["detail"].startswith("the bucket does not answer HeadBucket (")
        assert bucket not in str(found) and s3_server not in str(found)


@pytest.mark.parametrize(("name", "path"), [("custody_key", "custody_key_path"), ("jwt_secret", "jwt_secret_path")])
def test_given_a_key_file_is_removed_when_asked_then_not_ready_names_it(app, client, settings, name, path):
    key = getattr(settings, path)
    key.unlink()
    found = not_ready(client.get("/api/v1/health/ready"), name)
    assert found[name]["detail"].endswith("file is missing")
    assert str(key) not in str(found) and key.name not in str(found)


def test_given_a_schema_one_migration_behind_when_asked_then_not_ready_names_both_revisions(settings,
                                                                                         fresh_database_url):
    url = fresh_database_url()
    head = head_revision(url)
    previous = ScriptDirectory.from_config(alembic_config(url)).get_revision(head).down_revision
    command.upgrade(alembic_config(url), previous)
    with app_with(settings, database_url=url) as app:
        found = not_ready(app.test_client().get("/api/v1/health/ready"), "database")
        assert found["database"]["detail"].startswith(
            f"the schema is at revision {previous}, this release needs {head}: run `fieldcase migrate`")


def test_given_a_schema_migrated_by_a_newer_release_when_asked_then_this_older_process_stays_ready_and_says_so(
        settings, fresh_database_url):
    """A rolling upgrade: `fieldcase migrate` of the next release has run its expand migration while this process
    still serves. A revision this release does not know is that newer release's, so the load balancer keeps it."""
    url = fresh_database_url()
    command.upgrade(alembic_config(url), "head")
    with app_with(settings, database_url=url) as app:
        with app.extensions["fieldcase"].db.engine.begin() as conn:
            conn.execute(text("UPDATE alembic_version SET version_num = 'next_release_0042'"))
        r = app.test_client().get("/api/v1/health/ready")
        assert r.status_code == 200, r.json
        assert checks(r)["database"]["detail"] == (
            f"schema at revision next_release_0042, newer than this release's {head_revision(url)}: serving "
            "through a rolling upgrade; replace this process")


def test_given_an_empty_database_when_asked_then_not_ready_says_it_has_no_revision(settings, fresh_database_url):
    with app_with(settings, database_url=fresh_database_url()) as app:
        found = not_ready(app.test_client().get("/api/v1/health/ready"), "database")
        assert found["database"]["detail"].startswith("the schema has no revision, this release needs ")


def test_given_every_pool_connection_is_taken_when_probed_then_readiness_answers_at_once_without_one(settings):
    """The probe has a connection of its own: a busy process is busy (admission and the pool answer 503 to work),
    not dead, and the probe never takes the last connection from a push."""
    with app_with(settings, db_pool_size=1, db_max_overflow=0, db_pool_timeout=3.0) as app:
        engine = app.extensions["fieldcase"].db.engine
        with engine.connect():
            assert engine.pool.checkedout() == 1
            started = time.monotonic()
            ready = app.test_client().get("/api/v1/health/ready")
            assert ready.status_code == 200 and time.monotonic() - started < 2
            assert engine.pool.checkedout() == 1


def test_given_many_probes_within_the_ttl_when_asked_then_the_dependencies_are_checked_once():
    now = [100.0]
    calls: list[float] = []

    def probe() -> str | None:
        calls.append(now[0])
        return None if len(calls) == 1 else "down"

    readiness = Readiness([Check("thing", probe)], ttl=2.0, monotonic=lambda: now[0])
    assert all(readiness.verdict().ready for _ in range(10))
    now[0] += 1.9
    assert readiness.verdict().ready and len(calls) == 1
    now[0] += 0.1
    verdict = readiness.verdict()
    assert not verdict.ready and verdict.failing == ["thing"] and len(calls) == 2


def test_given_a_probe_that_raises_when_checked_then_it_fails_with_the_error_type_only():
    def probe() -> str | None:
        raise RuntimeError("postgresql://user:secret@db/fieldcase")

    (outcome,) = Readiness([Check("thing", probe)]).verdict().outcomes
    assert outcome.as_dict() == {"name": "thing", "ok": False, "detail": "check failed (RuntimeError)"}


def test_the_version_names_the_package_and_the_commit_from_fieldcase_commit(settings):
    with app_with(settings, commit="0123456789abcdef0123456789abcdef01234567") as app:
        assert app.test_client().get("/api/v1/version").json == {
            "version": metadata.version("fieldcase"), "commit": "0123456789abcdef0123456789abcdef01234567",
            "commit_source": "env"}


def test_without_fieldcase_commit_the_version_says_where_its_commit_came_from(client):
    answer = client.get("/api/v1/version").json
    assert answer["version"] == metadata.version("fieldcase")
    assert answer["commit_source"] in ("package", "git", "unknown")
    assert (answer["commit"] is None) == (answer["commit_source"] == "unknown")


def test_health_routes_are_in_the_openapi_document(client):
    paths = client.get("/api/v1/openapi.json").json["paths"]
    for path in ("/api/v1/health", "/api/v1/health/live", "/api/v1/health/ready", "/api/v1/version"):
        assert "get" in paths[path] and "security" not in paths[path]["get"], path
    assert "503" in paths["/api/v1/health/ready"]["get"]["responses"]
