"""Configuration: secrets generated into the instance folder, SQLite set up for concurrent use."""

from __future__ import annotations

import stat

from sqlalchemy import text

from backend.bootstrap import create_app
from backend.core.config import Settings, instance_secret
from backend.core.db import Database


def test_secrets_are_generated_once_with_owner_only_permissions(tmp_path):
    first = instance_secret(tmp_path / "inst", "k.key", 32)
    again = instance_secret(tmp_path / "inst", "k.key", 32)
    assert first == again and len(first) == 32
    mode = stat.S_IMODE((tmp_path / "inst" / "k.key").stat().st_mode)
    assert mode == 0o600
    assert [p.name for p in (tmp_path / "inst").iterdir()] == ["k.key"]


def test_two_apps_on_one_instance_folder_share_the_token_key(settings):
    a, b = create_app(settings), create_app(settings)
    try:
        assert a.extensions["fieldcase"].issuer.secret == b.extensions["fieldcase"].issuer.secret
    finally:
        a.extensions["fieldcase"].db.dispose()
        b.extensions["fieldcase"].db.dispose()


def test_default_database_is_sqlite_in_the_instance_folder_with_wal_and_foreign_keys(tmp_path):
    settings = Settings.from_env({"FIELDCASE_INSTANCE_DIR": str(tmp_path / "inst")})
    assert settings.database_url == f"sqlite:///{tmp_path / 'inst' / 'fieldcase.db'}"
    db = Database(settings.database_url)
    try:
        with db.engine.connect() as conn:
            assert conn.execute(text("PRAGMA journal_mode")).scalar() == "wal"
            assert conn.execute(text("PRAGMA foreign_keys")).scalar() == 1
    finally:
        db.dispose()


def test_postgres_urls_get_the_psycopg_driver():
    s = Settings.from_env({"DATABASE_URL": "postgresql://u@h:5432/d", "FIELDCASE_INSTANCE_DIR": "/tmp/x"})
    assert s.database_url == "postgresql+psycopg://u@h:5432/d"
