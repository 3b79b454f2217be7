"""Bringing a database to the current schema (Alembic) and loading reference data."""

from __future__ import annotations

import logging
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Engine

import migrations

from .db import Database
from .reference import seed, seed_benchmarks

log = logging.getLogger("fieldcase.schema")


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


def prepare(db: Database) -> None:
    """What `serve` and `demo` do before taking requests: schema to head, reference data loaded."""
    upgrade(db)
    with db.transaction() as session:
        seed(session)
        seed_benchmarks(session)
