"""Complainants' personal data sealed at rest (issue 23, item 5): what the clues table holds, who sees it in clear,
finding a caller's clues by phone through the blind index, and rotating the key-encryption key under the rows."""

from __future__ import annotations

import io
import stat
from pathlib import Path

import pytest
from click.testing import CliRunner
from sqlalchemy import select, text

from backend.bootstrap import create_app
from backend.casework.clues import clues_by_complainant_phone, complainant_of
from backend.cli import main
from backend.core import logs
from backend.core.crypto.sealing import SealBroken
from backend.core.models import Clue, DataKey, Officer
from tests.casework.test_personal_data import MASKED, desk
from tests.conftest import Officers

COMPLAINANT = {"name": "王晓梅", "phone": "139-0000-1111", "email": "wxm@example.cn", "address": "文三路 8 号 2 单元",
               "anonymous": False}
CLEAR = [b"13900001111", b"139-0000-1111", "王晓梅".encode(), b"wxm@example.cn", "文三路 8 号".encode()]

__all__ = ["desk"]  # the fixture: a hotline officer taking clues (tests/casework/test_personal_data.py)


def _stored(db, clue_id: str):
    with db.engine.connect() as conn:
        return conn.execute(text("SELECT * FROM clues WHERE id = :id"), {"id": clue_id}).one()


def _holds_clear(row) -> list[str]:
    found = []
    for name, value in zip(row._fields, row, strict=True):
        stored = bytes(value) if isinstance(value, bytes | memoryview) else str(value).encode()
        found += [f"{name}: {clear!r}" for clear in CLEAR if clear in stored]
    return found


def test_given_a_clue_with_a_complainant_when_its_row_is_read_with_sql_then_nothing_is_in_clear(desk, db, client):
    clue = desk(complainant=COMPLAINANT)
    row = _stored(db, clue["id"])
    assert "complainant" not in row._fields
    assert _holds_clear(row) == []
    assert len(bytes(row.complainant_sealed)) > 5 + 12 + 16 and len(row.complainant_phone_index) == 64
    with db.engine.connect() as conn:
        (kind,) = conn.execute(text("SELECT purpose FROM data_keys WHERE id = :id"),
                               {"id": int.from_bytes(bytes(row.complainant_sealed)[1:5], "big")}).one()
    assert kind == "seal"
    # ...who handles it sees it masked, and in clear exactly as it was given once they state why.
    assert clue["complainant"] == MASKED
    assert client.get(f"/api/v1/clues/{clue['id']}", headers=desk.headers).json["complainant"] == MASKED
    assert _unmasked(client, clue["id"], desk.headers) == COMPLAINANT


def _unmasked(client, clue_id: str, headers) -> dict:
    r = client.post(f"/api/v1/clues/{clue_id}/complainant/unmask", json={"purpose": "回访举报人"}, headers=headers)
    assert r.status_code == 200, r.json
    return r.json["complainant"]


def test_given_a_sealed_complainant_copied_to_another_clue_then_it_does_not_open_there(desk, db, app):
    victim, other = desk(complainant=COMPLAINANT), desk(institution={"name": "另一家机构", "region": "330106"})
    with db.engine.begin() as conn:
        conn.execute(text("UPDATE clues SET complainant_sealed = (SELECT complainant_sealed FROM clues WHERE id = :v) "
                          "WHERE id = :o"), {"v": victim["id"], "o": other["id"]})
    keys = app.extensions["fieldcase"].keys
    with db.transaction() as session:
        moved = session.get(Clue, other["id"])
        with pytest.raises(SealBroken):
            complainant_of(session, keys, moved)
        assert complainant_of(session, keys, session.get(Clue, victim["id"])) == COMPLAINANT


def test_given_clues_from_one_caller_when_looked_up_by_phone_then_the_blind_index_finds_them_alone(
        desk, db, app, officers):
    first = desk(complainant=COMPLAINANT)
    again = desk(complainant={"name": "王女士", "phone": "139 0000 1111"},
                 institution={"name": "另一家机构", "region": "330106"})
    desk(complainant={"name": "李先生", "phone": "13900001112"}, institution={"name": "第三家", "region": "330106"})
    desk(institution={"name": "第四家", "region": "330106"})  # no complainant
    keys = app.extensions["fieldcase"].keys
    elsewhere = officers.make(department="market")
    with db.transaction() as session:
        viewer = session.get(Officer, desk.officer.id)
        found = clues_by_complainant_phone(session, viewer, "１３９-0000-1111", keys=keys)
        assert [c["id"] for c in found] == [first["id"], again["id"]]
        assert all("complainant" not in c for c in found)
        assert clues_by_complainant_phone(session, viewer, "13900009999", keys=keys) == []
        # One who does not handle these clues finds none of them.
        assert clues_by_complainant_phone(session, session.get(Officer, elsewhere.id), "13900001111", keys=keys) == []
        assert session.scalar(select(DataKey.purpose).where(DataKey.purpose == "index")) == "index"


def test_given_a_sealed_value_that_does_not_open_when_read_then_the_error_is_logged_without_personal_data(
        desk, db, client):
    buffer = io.StringIO()
    logs.configure("DEBUG", "json", buffer)
    try:
        victim = desk(complainant=COMPLAINANT)
        other = desk(institution={"name": "另一家机构", "region": "330106"})
        client.get(f"/api/v1/clues/{victim['id']}", headers=desk.headers)
        with db.engine.begin() as conn:
            conn.execute(text("UPDATE clues SET complainant_sealed = (SELECT complainant_sealed FROM clues "
                              "WHERE id = :v) WHERE id = :o"), {"v": victim["id"], "o": other["id"]})
        broken = client.get(f"/api/v1/clues/{other['id']}", headers=desk.headers)
    finally:
        logs.configure("WARNING", "json")
    assert broken.status_code == 500 and "王晓梅" not in broken.get_data(as_text=True)
    logged = buffer.getvalue()
    assert "SealBroken" in logged  # the refusal is logged...
    assert [clear for clear in CLEAR if clear in logged.encode()] == []  # ...and nothing of the person


def _env(settings) -> dict[str, str]:
    return {"DATABASE_URL": settings.database_url, "FIELDCASE_INSTANCE_DIR": str(settings.instance_dir)}


def test_given_sealed_rows_when_the_kek_is_rotated_then_the_rows_are_unchanged_and_still_open(
        desk, db, settings, client):
    given = [COMPLAINANT, {"name": "李先生", "phone": "13900001112"}]
    clues = [desk(complainant=given[0]),
             desk(complainant=given[1], institution={"name": "另一家机构", "region": "330106"})]
    with db.engine.connect() as conn:
        before_rows = conn.execute(text("SELECT id, complainant_sealed, complainant_phone_index FROM clues "
                                        "ORDER BY id")).all()
        before_keys = conn.execute(text("SELECT id, wrapped, kek_id, \"check\" FROM data_keys ORDER BY id")).all()
    kek = Path(settings.kek_path)
    old_kek = kek.read_bytes()

    rotated = CliRunner().invoke(main, ["keys", "rotate-kek"], env=_env(settings))
    assert rotated.exit_code == 0, rotated.output
    assert "re-wrapped 2 data key(s)" in rotated.output and "sealed rows unchanged" in rotated.output

    with db.engine.connect() as conn:
        after_rows = conn.execute(text("SELECT id, complainant_sealed, complainant_phone_index FROM clues "
                                       "ORDER BY id")).all()
        after_keys = conn.execute(text("SELECT id, wrapped, kek_id, \"check\" FROM data_keys ORDER BY id")).all()
    assert [tuple(map(_plain, r)) for r in after_rows] == [tuple(map(_plain, r)) for r in before_rows]
    assert [(k.id, k.check) for k in after_keys] == [(k.id, k.check) for k in before_keys]  # the same data keys
    assert all(a.kek_id != b.kek_id and bytes(a.wrapped) != bytes(b.wrapped)
               for a, b in zip(after_keys, before_keys, strict=True))  # wrapped anew, under another KEK
    assert kek.read_bytes() != old_kek and stat.S_IMODE(kek.stat().st_mode) == 0o600
    retired = kek.with_name(f"{kek.name}.{before_keys[0].kek_id.removeprefix('file:')}")
    assert retired.read_bytes() == old_kek and stat.S_IMODE(retired.stat().st_mode) == 0o600

    # A process started after the rotation (it unwraps with the new KEK file alone) opens every row.
    retired.rename(kek.with_name("elsewhere"))
    fresh = create_app(settings)
    try:
        fresh_client = fresh.test_client()
        headers = Officers(fresh.extensions["fieldcase"].db, fresh_client).headers(desk.officer)
        for clue, complainant in zip(clues, given, strict=True):
            assert _unmasked(fresh_client, clue["id"], headers) == complainant
    finally:
        fresh.extensions["fieldcase"].db.dispose()
    # The running process keeps the data keys it had unwrapped.
    assert _unmasked(client, clues[0]["id"], desk.headers) == COMPLAINANT
    status = CliRunner().invoke(main, ["keys", "status"], env=_env(settings))
    assert status.exit_code == 0 and status.output.count("unwraps here") == 2, status.output


def _plain(value):
    return bytes(value) if isinstance(value, memoryview) else value


def test_given_a_kek_another_process_rotated_when_a_host_lacks_the_new_file_then_it_says_what_to_copy(
        desk, db, settings, tmp_path):
    desk(complainant=COMPLAINANT)
    kek = Path(settings.kek_path)
    old = kek.read_bytes()
    assert CliRunner().invoke(main, ["keys", "rotate-kek"], env=_env(settings)).exit_code == 0
    other_host = tmp_path / "host2"
    other_host.mkdir()
    (other_host / "data-kek.key").write_bytes(old)
    (other_host / "data-kek.key").chmod(0o600)
    lagging = CliRunner().invoke(main, ["keys", "status"],
                                 env={**_env(settings), "FIELDCASE_KEK_FILE": str(other_host / "data-kek.key")})
    assert "which this host does not hold" in lagging.output and "copy the current KEK file" in lagging.output
