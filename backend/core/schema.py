"""Bringing a database to the current schema (Alembic) and loading reference data."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Engine, text

import migrations
from backend.core.db import Database
from backend.core.reference import seed, seed_benchmarks

log = logging.getLogger("fieldcase.schema")

SCHEMA_LOCK_KEY = 0x6663_7363_686D  # "fcschm"


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


def upgrade(db: Database) -> bool:
    """Upgrade to head; returns whether anything had to be done."""
    before = current_revision(db.engine)
    head = head_revision(db.url)
    if before == head:
        return False
    log.info("upgrading database schema from %s to %s", before or "empty", head)
    cfg = alembic_config(db.url)
    with db.engine.begin() as conn:
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, "head")
    return True


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


def prepare(db: Database) -> None:
    """What `serve` and `demo` do before taking requests: schema to head, reference data loaded."""
    with schema_lock(db):
        upgrade(db)
        with db.transaction() as session:
            seed(session)
            seed_benchmarks(session)
