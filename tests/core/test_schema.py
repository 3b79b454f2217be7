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


def test_given_officers_with_certificates_when_0014_runs_then_their_certificates_begin_the_history(
        fresh_database_url):
    from alembic import command
    from sqlalchemy import text

    from backend.core.schema import alembic_config

    db = Database(fresh_database_url())
    try:
        cfg = alembic_config(db.url)
        with db.engine.begin() as conn:
            cfg.attributes["connection"] = conn
            command.upgrade(cfg, "0013")
        with db.transaction() as session:
            seed(session)
        with db.engine.begin() as conn:
            for n, cert in enumerate(("ZJ-OLD-1", None)):
                conn.execute(text(
                    "INSERT INTO officers (id, username, name, password_hash, department_code, region_code, roles, "
                    "cert_number, cert_valid_from, cert_valid_until, active, created_at, updated_at) VALUES "
                    "(:id, :u, '警员', 'x', 'education', '330106', '[\"officer\"]', :c, :f, :t, true, :at, :at)"),
                    {"id": f"ofc_{n}", "u": f"u{n}", "c": cert, "f": "2025-01-01" if cert else None,
                     "t": "2027-12-31" if cert else None, "at": "2026-01-02 03:04:05"})
        with db.engine.begin() as conn:
            cfg.attributes["connection"] = conn
            command.upgrade(cfg, "0014")
        with db.engine.connect() as conn:
            rows = conn.execute(text("SELECT officer_id, cert_number, cert_valid_until, recorded_by "
                                     "FROM officer_certificates")).all()
        assert [(r[0], r[1], str(r[2]), r[3]) for r in rows] == [("ofc_0", "ZJ-OLD-1", "2027-12-31", None)]
    finally:
        db.dispose()
