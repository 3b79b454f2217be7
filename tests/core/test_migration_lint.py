"""The migration linter of .ci/run (.ci/lint_migrations.py: squawk over the SQL each migration runs on PostgreSQL):
what it records, and that a new migration's problem fails it while a shipped migration's accepted finding does not."""

from __future__ import annotations

import os
import runpy
import subprocess
import sys
from pathlib import Path

import pytest
from alembic.script import ScriptDirectory

from backend.core.schema import DEFAULT_LOCK_TIMEOUT, alembic_config

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / ".ci" / "lint_migrations.py"


def _lint(folder: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(SCRIPT), "--sql-dir", str(folder)], capture_output=True, text=True,
                          timeout=120)


def test_given_a_new_migration_that_blocks_writes_when_linted_then_it_fails_naming_each_problem(tmp_path):
    (tmp_path / "0099_new.sql").write_text(
        f"SET LOCAL lock_timeout = '{DEFAULT_LOCK_TIMEOUT}';\n"
        "CREATE INDEX ix_custody_events_actor ON custody_events (actor);\n"  # blocks every push while it builds
        "ALTER TABLE devices DROP COLUMN label;\n")  # an old process still reads it during the rollout

    done = _lint(tmp_path)

    assert done.returncode != 0
    assert "warning[require-concurrent-index-creation]" in done.stdout
    assert "warning[ban-drop-column]" in done.stdout
    assert "\x1b" not in done.stdout  # plain text for CI's log


def test_given_a_migration_without_its_lock_timeout_when_linted_then_it_fails(tmp_path):
    (tmp_path / "0099_new.sql").write_text("ALTER TABLE cases ADD COLUMN note VARCHAR(40);\n")
    done = _lint(tmp_path)
    assert done.returncode != 0 and "warning[require-lock-timeout]" in done.stdout


def test_given_a_shipped_migrations_accepted_finding_when_linted_then_only_other_problems_fail(tmp_path):
    index = "CREATE INDEX ix_custody_events_device_id_leaf_index ON custody_events (device_id, leaf_index);\n"
    (tmp_path / "0009_custody_device_heads.sql").write_text(f"SET LOCAL lock_timeout = '5s';\n{index}")
    assert _lint(tmp_path).returncode == 0, _lint(tmp_path).stdout  # accepted in .ci/migrations-accepted.toml

    (tmp_path / "0009_custody_device_heads.sql").write_text(
        f"SET LOCAL lock_timeout = '5s';\n{index}ALTER TABLE devices DROP COLUMN label;\n")
    done = _lint(tmp_path)
    assert done.returncode != 0 and "warning[ban-drop-column]" in done.stdout


def test_given_the_migrations_when_recorded_on_postgresql_then_each_runs_under_the_lock_timeout(tmp_path):
    """One file per migration, each beginning with migrations/env.py's `SET LOCAL lock_timeout`: the one home of
    that setting reaches every migration (0013 and 0014 once set it themselves)."""
    server = os.environ.get("FIELDCASE_TEST_DATABASE_URL")
    if not server:
        pytest.skip("records the SQL PostgreSQL runs: set FIELDCASE_TEST_DATABASE_URL")
    record = runpy.run_path(str(SCRIPT))["record"]

    files = record(server, tmp_path)

    script = ScriptDirectory.from_config(alembic_config("sqlite://"))
    assert [f.stem for f in files] == [Path(rev.path).stem for rev in reversed(list(script.walk_revisions()))]
    for f in files:
        assert f.read_text().startswith(f"SET LOCAL lock_timeout = '{DEFAULT_LOCK_TIMEOUT}';\n"), f.name
    assert "CREATE TABLE corrections" in (tmp_path / "0013_corrections.sql").read_text()
