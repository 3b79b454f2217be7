"""Releases: `fieldcase migrate` as a release step, `fieldcase serve --migrate/--no-migrate` (no migration on a
shared database unless asked), and the lock_timeout every migration transaction runs under on PostgreSQL."""

from __future__ import annotations

import os
import subprocess
import sys
import time

import pytest
import requests
from alembic import command
from alembic.script import ScriptDirectory
from click.testing import CliRunner
from sqlalchemy import create_engine, text

from backend.cli import main
from backend.core.db import Database
from backend.core.schema import alembic_config, current_revision, head_revision
from backend.liveserver import free_port, running_server


def _env(url: str, tmp_path) -> dict[str, str]:
    env = {"DATABASE_URL": url, "FIELDCASE_INSTANCE_DIR": str(tmp_path / "inst")}
    assert CliRunner().invoke(main, ["init-secrets"], env=env).exit_code == 0  # on PostgreSQL: made explicitly
    return env


def _one_behind(url: str) -> tuple[str, str]:
    """The schema brought to the migration before the newest; returns (that revision, the newest)."""
    cfg = alembic_config(url)
    head = ScriptDirectory.from_config(cfg).get_current_head()
    previous = ScriptDirectory.from_config(cfg).get_revision(head).down_revision
    command.upgrade(cfg, previous)
    return previous, head


def _revision(url: str) -> str | None:
    db = Database(url)
    try:
        return current_revision(db.engine)
    finally:
        db.dispose()


def _serve(env: dict[str, str], *args: str) -> subprocess.CompletedProcess:
    """`fieldcase serve` in a child; one that refuses exits at once, one that serves would run into the timeout."""
    return subprocess.run([sys.executable, "-m", "backend", "serve", "--port", str(free_port()), "--workers", "1",
                           *args], env={**os.environ, **env}, capture_output=True, text=True, timeout=60)


def test_given_a_schema_one_migration_behind_when_serve_runs_with_no_migrate_then_it_refuses_in_one_line(
        fresh_database_url, tmp_path):
    url = fresh_database_url()
    previous, head = _one_behind(url)

    refused = _serve(_env(url, tmp_path), "--no-migrate")

    assert refused.returncode == 1, refused.stderr
    assert refused.stderr.splitlines()[-1] == (
        f"error: the database schema is at revision {previous}, this release needs {head}: run `fieldcase migrate`, "
        "then start again")
    assert "Listening at" not in refused.stderr  # gunicorn never started
    assert _revision(url) == previous  # nothing migrated


def test_given_an_empty_database_when_serve_runs_with_no_flag_then_only_sqlite_is_migrated(
        fresh_database_url, tmp_path):
    url = fresh_database_url()
    env = _env(url, tmp_path)
    if url.startswith("sqlite"):
        with running_server(env, workers=1, log_path=tmp_path / "server.log") as base:
            assert requests.get(base + "/api/v1/health/ready", timeout=10).status_code == 200
        assert _revision(url) == head_revision(url)
    else:
        refused = _serve(env)
        assert refused.returncode == 1, refused.stderr
        assert refused.stderr.splitlines()[-1].startswith(
            "error: the database schema is at revision none (an empty database), this release needs ")
        assert _revision(url) is None


def test_given_a_schema_behind_when_migrate_runs_then_serve_no_migrate_starts_on_it(fresh_database_url, tmp_path):
    url = fresh_database_url()
    _one_behind(url)
    env = _env(url, tmp_path)

    migrated = CliRunner().invoke(main, ["migrate"], env=env)

    assert migrated.exit_code == 0, migrated.output
    assert migrated.output == f"database at revision {head_revision(url)}\n"
    with running_server(env, workers=1, log_path=tmp_path / "server.log", args=("--no-migrate",)) as base:
        assert requests.get(base + "/api/v1/health/ready", timeout=10).status_code == 200
    again = CliRunner().invoke(main, ["db", "upgrade"], env=env)  # the earlier name, the same command
    assert again.exit_code == 0 and again.output == migrated.output


def test_given_a_lock_timeout_that_is_not_postgresql_syntax_when_migrate_runs_then_it_is_refused(
        fresh_database_url, tmp_path):
    url = fresh_database_url()
    refused = CliRunner().invoke(main, ["migrate", "--lock-timeout", "5s'; DROP TABLE officers; --"],
                                 env=_env(url, tmp_path))
    assert refused.exit_code == 2 and "Invalid value for --lock-timeout" in refused.output
    assert _revision(url) is None


def test_given_a_table_locked_by_a_long_transaction_when_migrate_runs_then_it_gives_up_after_its_lock_timeout(
        fresh_database_url, tmp_path):
    """0013 adds a foreign key to `cases`, which needs a lock that an open writer's transaction holds. The migration
    must give up after the lock_timeout migrations/env.py sets (0013 no longer sets its own), rolled back whole,
    rather than wait, and make every later statement on `cases` wait behind it."""
    url = fresh_database_url()
    if url.startswith("sqlite"):
        pytest.skip("lock_timeout is PostgreSQL's; SQLite has one writer at a time")
    command.upgrade(alembic_config(url), "0012")
    env = _env(url, tmp_path)
    holder = create_engine(url)
    try:
        with holder.connect() as conn:
            conn.execute(text("LOCK TABLE cases IN ROW EXCLUSIVE MODE"))  # what an open push's writes hold
            started = time.monotonic()
            waited = subprocess.run([sys.executable, "-m", "backend", "migrate", "--lock-timeout", "300ms"],
                                    env={**os.environ, **env}, capture_output=True, text=True, timeout=60)
            elapsed = time.monotonic() - started
            conn.rollback()
    finally:
        holder.dispose()

    assert waited.returncode == 1, waited.stderr
    assert waited.stderr.splitlines() == [
        "error: a migration waited longer than 300ms for a lock on a table in use and was rolled back whole (nothing "
        "changed): run `fieldcase migrate` again, at a quieter time or with a longer --lock-timeout"]
    assert elapsed < 10
    assert _revision(url) == "0012"
    after = CliRunner().invoke(main, ["migrate"], env=env)  # the lock gone, the same command goes through
    assert after.exit_code == 0, after.output
    assert _revision(url) == head_revision(url)
