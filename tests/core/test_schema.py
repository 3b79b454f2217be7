"""The schema exists only through Alembic, and upgrading an empty database yields exactly the models."""

from __future__ import annotations

from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import func, select

from backend.core.db import Database
from backend.core.models import Base, Region, ViolationCategory
from backend.core.reference import CATALOGUE, REGIONS, seed
from backend.core.schema import current_revision, head_revision, prepare, upgrade


def test_upgrade_of_an_empty_database_matches_the_models(fresh_database_url):
    db = Database(fresh_database_url())
    try:
        assert current_revision(db.engine) is None
        assert upgrade(db) is True
        assert current_revision(db.engine) == head_revision(db.url)
        with db.engine.connect() as conn:
            ctx = MigrationContext.configure(conn, opts={"compare_type": True})
            diff = compare_metadata(ctx, Base.metadata)
        assert diff == []
        assert upgrade(db) is False
    finally:
        db.dispose()


def test_reference_seeding_is_idempotent(fresh_database_url):
    db = Database(fresh_database_url())
    try:
        prepare(db)
        prepare(db)
        with db.transaction() as session:
            assert seed(session) == {"regions": 0, "departments": 0, "agencies": 0, "categories": 0}
            assert session.scalar(select(func.count()).select_from(Region)) == len(REGIONS)
            assert session.scalar(select(func.count()).select_from(ViolationCategory)) == len(CATALOGUE)
    finally:
        db.dispose()
