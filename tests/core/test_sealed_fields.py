"""Sealed fields (issue 23, item 5): SM4-GCM under data keys wrapped by a key-encryption key (KEK), an HMAC-SM3 blind
index, the KEK file and its provider, and migration 0018 sealing the complainants stored before it."""

from __future__ import annotations

import json
import os
import stat
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path

import pytest
from alembic import command
from sqlalchemy import func, select, text

from backend.bootstrap import create_app
from backend.casework.clues import COMPLAINANT, COMPLAINANT_PHONE
from backend.core.config import Settings
from backend.core.crypto.data_keys import KeyRing, key_check
from backend.core.crypto.key_provider import FileKeyProvider, KeyUnavailable, kek_id_of
from backend.core.crypto.sealed_fields import (
    BlindIndex,
    SealedField,
    index_value,
    open_value,
    phone_digits,
    seal_value,
)
from backend.core.crypto.sealing import SealBroken
from backend.core.db import Database
from backend.core.models import DataKey
from backend.core.reference import seed
from backend.core.schema import alembic_config, upgrade
from backend.core.secret_files import init_secrets, kek_provider

NOTES = SealedField("clues", "complainant")
KEY = bytes(range(16))
PLAIN = "王晓梅 13900001111".encode()


def _kek(path: Path, mode: int = 0o600) -> Path:
    path.write_bytes(os.urandom(16))
    path.chmod(mode)
    return path


# -- sealing and the blind index, as functions of the keys

def test_given_a_sealed_value_when_opened_for_its_own_field_and_row_then_it_gives_the_plaintext():
    sealed = seal_value(7, KEY, NOTES, "clue-1", PLAIN)
    assert PLAIN not in sealed and sealed[:5] == b"\x01\x00\x00\x00\x07"  # version 1, data key 7
    assert open_value(KEY, NOTES, "clue-1", sealed) == PLAIN
    assert seal_value(7, KEY, NOTES, "clue-1", PLAIN) != sealed  # a fresh nonce each time


@pytest.mark.parametrize("change", ["another row", "another column", "another table", "relabelled key",
                                    "flipped bit", "another key", "truncated"])
def test_given_a_sealed_value_when_moved_or_altered_then_it_does_not_open(change):
    sealed = seal_value(7, KEY, NOTES, "clue-1", PLAIN)
    field, row, key = NOTES, "clue-1", KEY
    if change == "another row":
        row = "clue-2"
    elif change == "another column":
        field = SealedField("clues", "outcome")
    elif change == "another table":
        field = SealedField("cases", "complainant")
    elif change == "relabelled key":
        sealed = sealed[:4] + b"\x08" + sealed[5:]
    elif change == "flipped bit":
        sealed = sealed[:20] + bytes([sealed[20] ^ 1]) + sealed[21:]
    elif change == "another key":
        key = bytes(16)
    else:
        sealed = sealed[:20]
    with pytest.raises(SealBroken):
        open_value(key, field, row, sealed)


def test_phone_numbers_are_indexed_by_their_digits_alone():
    assert phone_digits("139-0000 1111") == phone_digits("１３９００００１１１１") == "13900001111"
    assert phone_digits("(0571) 8700-1234") == "057187001234"
    phones = COMPLAINANT_PHONE
    same = {index_value(KEY, phones, spelled) for spelled in ("13900001111", "139 0000 1111", "139-0000-1111")}
    assert len(same) == 1 and len(same.pop()) == 64
    assert index_value(KEY, phones, "13900001112") != index_value(KEY, phones, "13900001111")
    assert index_value(bytes(16), phones, "13900001111") != index_value(KEY, phones, "13900001111")
    other_field = BlindIndex("clues", "witness.phone", phone_digits)
    assert index_value(KEY, other_field, "13900001111") != index_value(KEY, phones, "13900001111")
    assert index_value(KEY, phones, "no digits") is None and index_value(KEY, phones, None) is None


# -- the KEK file and its provider

def test_given_a_kek_file_when_it_wraps_a_data_key_then_it_unwraps_it_under_its_id_only(tmp_path):
    provider = FileKeyProvider(_kek(tmp_path / "kek"))
    assert provider.kek_id == kek_id_of((tmp_path / "kek").read_bytes())
    wrapped = provider.wrap(KEY)
    assert KEY not in wrapped and provider.unwrap(wrapped, provider.kek_id) == KEY
    with pytest.raises(KeyUnavailable, match="which this host does not hold"):
        provider.unwrap(wrapped, "file:0123456789abcdef")
    with pytest.raises(KeyUnavailable, match="altered"):
        provider.unwrap(wrapped[:-1] + bytes([wrapped[-1] ^ 1]), provider.kek_id)


@pytest.mark.parametrize("mode", [0o640, 0o604, 0o660, 0o644])
def test_given_a_kek_file_readable_beyond_its_owner_then_it_is_refused(tmp_path, mode):
    path = _kek(tmp_path / "kek", mode)
    with pytest.raises(KeyUnavailable, match=f"is mode {mode:04o}, readable beyond its owner; `chmod 600` it"):
        FileKeyProvider(path)
    path.chmod(0o600)
    FileKeyProvider(path)  # the same file, once only its owner reads it


def test_given_a_kek_file_of_the_wrong_size_or_none_then_it_is_refused(tmp_path):
    short = tmp_path / "short"
    short.write_bytes(b"x" * 15)
    short.chmod(0o600)
    with pytest.raises(KeyUnavailable, match="holds 15 bytes, not the 16 of an SM4 key"):
        FileKeyProvider(short)
    with pytest.raises(KeyUnavailable, match="does not exist; `fieldcase init-secrets` makes it"):
        FileKeyProvider(tmp_path / "missing")


def test_init_secrets_makes_the_kek_file_0600_and_an_app_refuses_a_group_readable_one(settings, tmp_path):
    shared = replace(settings, kek_file=str(tmp_path / "keys" / "kek"))
    made = {entry.name: fresh for entry, fresh in init_secrets(shared)}
    kek = Path(shared.kek_path)
    assert made["kek"] is True and stat.S_IMODE(kek.stat().st_mode) == 0o600 and len(kek.read_bytes()) == 16
    kek.chmod(0o640)
    with pytest.raises(KeyUnavailable, match="readable beyond its owner"):
        create_app(shared)


# -- the key ring, in a database

def test_given_no_data_keys_when_a_value_is_sealed_then_one_sealing_key_is_made_wrapped_and_reused(settings, db):
    ring = KeyRing(kek_provider(settings))
    with db.transaction() as session:
        assert ring.index(session, COMPLAINANT_PHONE, "13900001111") is None  # a reader makes no key
        assert session.scalar(select(func.count()).select_from(DataKey)) == 0
        first = ring.seal(session, NOTES, "clue-1", PLAIN, now=datetime.now(UTC))
        second = ring.seal(session, NOTES, "clue-2", PLAIN, now=datetime.now(UTC))
    with db.transaction() as session:
        (row,) = session.scalars(select(DataKey))
        assert (row.purpose, row.generation, row.kek_id) == ("seal", 1, ring.provider.kek_id)
        assert first[1:5] == second[1:5] == row.id.to_bytes(4, "big")
        # Another process, with only the KEK file and the database, opens both.
        fresh = KeyRing(kek_provider(settings))
        assert fresh.open(session, NOTES, "clue-1", first) == fresh.open(session, NOTES, "clue-2", second) == PLAIN
        assert key_check(fresh.provider.unwrap(row.wrapped, row.kek_id)) == row.check
        with pytest.raises(SealBroken):
            fresh.open(session, NOTES, "clue-2", first)


def test_given_data_keys_wrapped_by_one_kek_when_another_kek_is_used_then_they_do_not_unwrap(settings, db,
                                                                                           tmp_path):
    ring = KeyRing(kek_provider(settings))
    with db.transaction() as session:
        sealed = ring.seal(session, NOTES, "clue-1", PLAIN, now=datetime.now(UTC))
    stranger = KeyRing(FileKeyProvider(_kek(tmp_path / "other-kek")))
    with db.transaction() as session, pytest.raises(KeyUnavailable, match="which this host does not hold"):
        stranger.open(session, NOTES, "clue-1", sealed)


# -- migration 0018: the complainants stored in clear before it are sealed

CLEAR = {"name": "赵敏", "phone": "138-0000-2222", "email": "zm@example.cn", "address": "文三路 8 号"}


def _clear_values() -> list[bytes]:
    return [CLEAR["name"].encode(), b"13800002222", CLEAR["phone"].encode(), CLEAR["email"].encode(),
            CLEAR["address"].encode(), json.dumps(CLEAR["name"]).encode()]  # also as JSON escapes it


def test_given_clues_with_complainants_in_clear_when_0018_runs_then_they_are_sealed_and_nothing_clear_is_left(
        fresh_database_url, tmp_path, monkeypatch):
    instance = tmp_path / "instance"
    for name in ("DATABASE_URL", "FIELDCASE_KEK_FILE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("FIELDCASE_INSTANCE_DIR", str(instance))  # where the app, and so the migration, finds the KEK
    db = Database(fresh_database_url())
    try:
        cfg = alembic_config(db.url)
        with db.engine.begin() as conn:
            cfg.attributes["connection"] = conn
            command.upgrade(cfg, "0017")
        with db.transaction() as session:
            seed(session)
        with db.engine.begin() as conn:
            conn.execute(text(
                "INSERT INTO institutions (id, name, name_norm, address, region_code, licence_status, category, "
                "risk_level, provisional, unmatched, complaint_count, violation_count, risk_score, created_at, "
                "updated_at) VALUES ('ins_1', '启航', '启航', '', '330106', 'unknown', 'other', 'medium', false, "
                "false, 0, 0, 0, :at, :at)"), {"at": "2026-01-02 03:04:05"})
            for clue_id, complainant in (("c-full", json.dumps(CLEAR, ensure_ascii=False)), ("c-null", "null"),
                                         ("c-none", None)):
                conn.execute(text(
                    "INSERT INTO clues (id, source, institution_id, region_code, description, status, reported_by, "
                    "reported_at, attachments, complainant) VALUES (:id, 'hotline', 'ins_1', '330106', '课外培训', "
                    "'new', 'ofc_1', :at, '[]', :c)"), {"id": clue_id, "at": "2026-01-02 03:04:05", "c": complainant})

        assert upgrade(db) is True

        settings = Settings.from_env()
        ring = KeyRing(kek_provider(settings))
        assert stat.S_IMODE(settings.kek_path.stat().st_mode) == 0o600  # made on first use, as the app would
        with db.engine.connect() as conn:
            rows = {row.id: row for row in conn.execute(text("SELECT * FROM clues ORDER BY id"))}
            keys = conn.execute(text("SELECT purpose, generation, kek_id FROM data_keys ORDER BY id")).all()
        assert "complainant" not in rows["c-full"]._fields
        assert [tuple(k) for k in keys] == [("seal", 1, ring.provider.kek_id), ("index", 1, ring.provider.kek_id)]
        # Read with plain SQL, no column of any clue holds a value in clear.
        for row in rows.values():
            for value in row:
                stored = value if isinstance(value, bytes) else str(value).encode()
                assert not any(clear in stored for clear in _clear_values()), value
        assert rows["c-null"].complainant_sealed is None and rows["c-none"].complainant_sealed is None
        with db.transaction() as session:
            sealed = bytes(rows["c-full"].complainant_sealed)
            assert json.loads(ring.open(session, COMPLAINANT, "c-full", sealed)) == CLEAR
            assert rows["c-full"].complainant_phone_index == ring.index(session, COMPLAINANT_PHONE, "13800002222")
    finally:
        db.dispose()
    if db.engine.dialect.name == "sqlite":  # nor in the file's free pages (secure_delete), once its WAL is folded in
        raw = Path(db.engine.url.database).read_bytes()
        assert not any(clear in raw for clear in _clear_values())
