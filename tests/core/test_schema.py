"""The schema exists only through Alembic, and upgrading an empty database yields exactly the models."""

from __future__ import annotations

import pytest
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


def test_given_a_populated_database_of_an_older_release_when_upgraded_then_its_rows_are_kept_and_its_schema_is_head(
        fresh_database_url, tmp_path, monkeypatch):
    """Migrations that rebuild a table on SQLite (Alembic's batch mode: copy, drop, rename) drop a table other rows
    refer to. On a database with such rows that failed under foreign keys (0013, on every populated SQLite
    database); an upgrade now checks the references once, at its end (`schema.migration_transaction`)."""
    from alembic import command
    from sqlalchemy import inspect, table

    from backend.core.schema import alembic_config, migration_transaction
    from tests.casework.test_system_audit import Server
    from tests.conftest import Officers, app_on, settings_in

    url = fresh_database_url()
    db = Database(url)
    prepare(db)
    db.dispose()
    settings = settings_in(tmp_path, url)
    monkeypatch.setenv("FIELDCASE_INSTANCE_DIR", str(settings.instance_dir))  # 0018's downgrade opens sealed rows
    with app_on(settings) as application:
        state = application.extensions["fieldcase"]
        client = application.test_client()
        Server(client, Officers(state.db, client))  # a case, an inspection, a finding, three verified files
        cfg = alembic_config(state.db.url)
        with state.db.engine.connect() as conn, migration_transaction(conn):
            cfg.attributes["connection"] = conn
            command.downgrade(cfg, "0012")  # the schema of the releases of 2026-11-25
        with state.db.engine.connect() as conn:
            tables = sorted(set(inspect(conn).get_table_names()) - {"alembic_version"})
            before = {t: conn.scalar(select(func.count()).select_from(table(t))) for t in tables}
        assert before["institutions"] == before["cases"] == before["inspections"] == 1
        assert before["findings"] == 1 and before["evidence"] == 3

        assert upgrade(state.db) is True

        with state.db.engine.connect() as conn:
            assert {t: conn.scalar(select(func.count()).select_from(table(t))) for t in tables} == before
            assert conn.exec_driver_sql("SELECT version_num FROM alembic_version").scalar_one() == head_revision(url)
            diff = compare_metadata(MigrationContext.configure(conn, opts={"compare_type": True}), Base.metadata)
        assert diff == []
        if state.db.engine.dialect.name == "sqlite":
            with state.db.engine.connect() as conn:  # and the pooled connection has its foreign keys back on
                assert conn.exec_driver_sql("PRAGMA foreign_keys").scalar_one() == 1


def test_given_a_migration_that_leaves_a_row_referring_to_nothing_on_sqlite_then_it_is_rolled_back_whole(tmp_path):
    from backend.core.schema import MigrationBrokeReferences, migration_transaction

    db = Database(f"sqlite:///{tmp_path / 'references.db'}")
    try:
        with db.engine.begin() as conn:
            conn.exec_driver_sql("CREATE TABLE parent (id INTEGER PRIMARY KEY)")
            conn.exec_driver_sql("CREATE TABLE child (id INTEGER PRIMARY KEY, parent_id INTEGER REFERENCES parent(id))")
            conn.exec_driver_sql("INSERT INTO parent VALUES (1)")
            conn.exec_driver_sql("INSERT INTO child VALUES (1, 1)")
        with pytest.raises(MigrationBrokeReferences) as refused, db.engine.connect() as conn, \
                migration_transaction(conn):
            conn.exec_driver_sql("DELETE FROM parent")  # foreign keys are off meanwhile: no error here
        assert "1 row(s) referring to no row (child -> parent)" in str(refused.value)
        with db.engine.connect() as conn:
            assert conn.exec_driver_sql("SELECT COUNT(*) FROM parent").scalar_one() == 1  # rolled back
            assert conn.exec_driver_sql("PRAGMA foreign_keys").scalar_one() == 1
    finally:
        db.dispose()
