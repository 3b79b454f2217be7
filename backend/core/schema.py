"""Bringing a database to the current schema (Alembic) and loading reference data."""

from __future__ import annotations

import logging
import re
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Connection, Engine, text

import migrations
from backend.core.db import Database
from backend.core.reference import seed, seed_benchmarks

log = logging.getLogger("fieldcase.schema")

SCHEMA_LOCK_KEY = 0x6663_7363_686D  # "fcschm"

# How long a migration may wait for a table's lock (migrations/env.py sets it for every migration transaction on
# PostgreSQL; docs/deployment.md, "Rolling upgrades"), in PostgreSQL's syntax: milliseconds, or with a unit.
DEFAULT_LOCK_TIMEOUT = "5s"
LOCK_TIMEOUT_FORMAT = re.compile(r"\d+(ms|s|min)?")
LOCK_NOT_AVAILABLE = "55P03"  # PostgreSQL's SQLSTATE when lock_timeout ran out


def check_lock_timeout(value: str | None) -> None:
    """SET takes no bound parameter, so the value is written into the statement: only PostgreSQL's own syntax."""
    if value is not None and not LOCK_TIMEOUT_FORMAT.fullmatch(value):
        raise ValueError(f"{value!r}: give milliseconds, or a number with ms, s or min (e.g. 30s)")


class MigrationBrokeReferences(RuntimeError):
    """An upgrade would leave rows whose foreign keys name no row: rolled back whole, nothing changed."""


@contextmanager
def migration_transaction(conn: Connection) -> Iterator[Connection]:
    """The one transaction a whole upgrade runs in. On SQLite, foreign keys are off inside it and checked whole at
    its end, SQLite's own procedure for schema changes (sqlite.org/lang_altertable.html, "other kinds of table
    schema changes"): a migration that rebuilds a table (Alembic's batch mode: copy, drop, rename) drops a table
    other rows refer to, and with foreign keys on that fails on any database with such rows (0013 did, on every
    populated one). `PRAGMA foreign_keys` cannot change inside a transaction, so it is set before it begins, and
    set back on the pooled connection after."""
    sqlite = conn.dialect.name == "sqlite" and not conn.in_transaction()
    if sqlite:
        conn.connection.driver_connection.execute("PRAGMA foreign_keys=OFF")
    try:
        with conn.begin():
            yield conn
            if sqlite:
                _check_references(conn)
    finally:
        if sqlite:
            conn.connection.driver_connection.execute("PRAGMA foreign_keys=ON")


def _check_references(conn: Connection) -> None:
    broken = conn.exec_driver_sql("PRAGMA foreign_key_check").all()
    if broken:  # (table, rowid, parent, fk id): tables only, never a row's values
        tables = ", ".join(sorted({f"{row[0]} -> {row[2]}" for row in broken}))
        raise MigrationBrokeReferences(f"the upgrade would leave {len(broken)} row(s) referring to no row "
                                       f"({tables}); it was rolled back whole, nothing changed")


def alembic_config(url: str) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(Path(migrations.__file__).parent))
    cfg.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return cfg


def current_revision(engine: Engine) -> str | None:
    with engine.connect() as conn:
        return MigrationContext.configure(conn).get_current_revision()


def head_revision(url: str) -> str | None:
    return ScriptDirectory.from_config(alembic_config(url)).get_current_head()


def known_revisions(url: str) -> frozenset[str]:
    return frozenset(r.revision for r in ScriptDirectory.from_config(alembic_config(url)).walk_revisions())


def upgrade(db: Database, *, lock_timeout: str | None = None) -> bool:
    """Upgrade to head, in one transaction; returns whether anything had to be done. `lock_timeout` (PostgreSQL's
    syntax: `5s`, `500ms`) replaces migrations/env.py's default wait for a table's lock."""
    before = current_revision(db.engine)
    head = head_revision(db.url)
    if before == head:
        return False
    log.info("upgrading database schema from %s to %s", before or "empty", head)
    cfg = alembic_config(db.url)
    if lock_timeout:
        cfg.attributes["lock_timeout"] = lock_timeout
    with db.engine.connect() as conn, migration_transaction(conn):
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, "head")
    return True


class SchemaNotCurrent(RuntimeError):
    """The database's schema is not the one this release was written for; the message says what to run."""


def migrates_on_start(url: str) -> bool:
    """Whether `fieldcase serve` migrates before serving when not told: only on the embedded SQLite default, where
    it is the one process of its release. On a shared database the release's `fieldcase migrate` step does it:
    the first new process must not change the schema under the old release's processes while they serve."""
    return url.startswith("sqlite")


def require_current(db: Database) -> None:
    """Refuse (SchemaNotCurrent) a schema that is not at this release's newest migration: code serving a schema it
    was not written for fails at its first query of a new column, or writes what an older schema cannot hold."""
    current = current_revision(db.engine)
    script = ScriptDirectory.from_config(alembic_config(db.url))
    head = script.get_current_head()
    if current == head:
        return
    known = current is None or any(rev.revision == current for rev in script.walk_revisions())
    if not known:
        raise SchemaNotCurrent(f"the database schema is at revision {current}, which this release does not know "
                               f"(a newer release migrated it; this one needs {head}): run the newer release")
    raise SchemaNotCurrent(f"the database schema is at revision {current or 'none (an empty database)'}, this "
                           f"release needs {head}: run `fieldcase migrate`, then start again")


@contextmanager
def schema_lock(db: Database) -> Iterator[None]:
    """One process at a time brings the schema and reference data up to date (PostgreSQL: a session advisory lock).

    Several API processes of a new release start together; without it they
    would all run the same migration, and all but one fail to start. SQLite
    serialises the upgrade by its own write lock.
    """
    if db.engine.dialect.name != "postgresql":
        yield
        return
    with db.engine.connect() as conn:
        conn.execute(text("SELECT pg_advisory_lock(:k)"), {"k": SCHEMA_LOCK_KEY})
        conn.commit()
        try:
            yield
        finally:
            conn.execute(text("SELECT pg_advisory_unlock(:k)"), {"k": SCHEMA_LOCK_KEY})
            conn.commit()


def prepare(db: Database, *, lock_timeout: str | None = None) -> None:
    """What `fieldcase migrate` does (and `serve` on SQLite, and `demo`): schema to head, reference data loaded."""
    with schema_lock(db):
        upgrade(db, lock_timeout=lock_timeout)
        with db.transaction() as session:
            seed(session)
            seed_benchmarks(session)
