"""Retiring a data key that may have leaked (issue 23, item 5): `fieldcase keys new-generation` makes the next
generation, rows sealed before still open and are still found by phone, and `fieldcase keys reseal` moves them to
it in short transactions, naming by id alone a row that does not open."""

from __future__ import annotations

import re

import pytest
from click.testing import CliRunner
from sqlalchemy import select, text

from backend.casework.clues import (
    COMPLAINANT_PHONE,
    clues_by_complainant_phone,
    complainant_of,
    reseal_complainant,
    sealed_clues,
)
from backend.cli import main
from backend.core.crypto.data_keys import INDEX, SEAL
from backend.core.models import Clue, DataKey, Officer

CALLER = {"name": "王晓梅", "phone": "139-0000-1111", "email": "wxm@example.cn", "anonymous": False}
OTHER = {"name": "李先生", "phone": "13900001112"}
CLEAR = ["王晓梅", "李先生", "13900001111", "139-0000-1111", "13900001112", "wxm@example.cn"]


@pytest.fixture
def desk(client, officers):
    """A hotline officer of education taking clues, each about its own institution (so none is a duplicate)."""
    hotline = officers.make(department="education", region="330106", name="热线员乙")
    headers = officers.headers(hotline)
    taken = []

    def take(complainant):
        body = {"source": "hotline", "description": "周末在居民楼内开展培训", "complainant": complainant,
                "institution": {"name": f"机构{len(taken) + 1}", "region": "330106"}}
        r = client.post("/api/v1/clues", json=body, headers=headers)
        assert r.status_code == 201, r.json
        taken.append(r.json["id"])
        return r.json["id"]

    take.officer, take.headers = hotline, headers
    return take


def _env(settings) -> dict[str, str]:
    return {"DATABASE_URL": settings.database_url, "FIELDCASE_INSTANCE_DIR": str(settings.instance_dir)}


def _keys(settings, *args: str):
    return CliRunner().invoke(main, ["keys", *args], env=_env(settings))


def _stored(db) -> dict[str, tuple[bytes, str]]:
    with db.engine.connect() as conn:
        rows = conn.execute(text("SELECT id, complainant_sealed, complainant_phone_index FROM clues")).all()
    return {row.id: (bytes(row.complainant_sealed), row.complainant_phone_index) for row in rows}


def _sealed_by(db) -> dict[str, int]:
    return {clue_id: int.from_bytes(sealed[1:5], "big") for clue_id, (sealed, _) in _stored(db).items()}


def _key(db, purpose: str, generation: int) -> int:
    with db.transaction() as session:
        return session.scalar(select(DataKey.id).where(DataKey.purpose == purpose, DataKey.generation == generation))


def _found(db, app, officer, phone: str) -> list[str]:
    with db.transaction() as session:
        viewer = session.get(Officer, officer.id)
        return [c["id"] for c in clues_by_complainant_phone(session, viewer, phone,
                                                            keys=app.extensions["fieldcase"].keys)]


def _complainant(db, app, clue_id: str):
    """What the row opens to (the domain's reading: what a route then shows of it is the route's)."""
    with db.transaction() as session:
        return complainant_of(session, app.extensions["fieldcase"].keys, session.get(Clue, clue_id))


def test_given_clues_sealed_under_generation_1_when_a_new_generation_is_made_then_old_rows_open_and_new_use_it(
        desk, db, app, settings):
    old = [desk(CALLER), desk(OTHER)]
    seal_1 = _key(db, SEAL, 1)
    assert set(_sealed_by(db).values()) == {seal_1}

    made = _keys(settings, "new-generation")
    assert made.exit_code == 0, made.output
    assert "(seal, generation 2)" in made.output and "(index, generation 2)" in made.output
    seal_2 = _key(db, SEAL, 2)
    assert seal_2 not in (None, seal_1) and _key(db, INDEX, 2) is not None

    # The rows sealed before open as they were, and are found by phone (indexed under generation 1)...
    assert [_complainant(db, app, clue_id) for clue_id in old] == [CALLER, OTHER]
    assert _found(db, app, desk.officer, "13900001111") == [old[0]]
    # ...while a new clue, in the same running process, is sealed and indexed under generation 2.
    new = desk({"name": "王女士", "phone": "139 0000 1111"})
    assert _sealed_by(db)[new] == seal_2
    assert _stored(db)[new][1] != _stored(db)[old[0]][1]  # the same phone, indexed under another key
    assert _found(db, app, desk.officer, "139-0000-1111") == [old[0], new]
    assert _complainant(db, app, new) == {"name": "王女士", "phone": "139 0000 1111"}

    status = _keys(settings, "status")
    assert status.exit_code == 0, status.output
    assert f"clues sealed under data key {seal_1} (seal, generation 1): 2" in status.output
    assert f"clues sealed under data key {seal_2} (seal, generation 2, the newest): 1" in status.output
    assert "2 clue(s) sealed under an older generation" in status.output


def test_given_a_new_generation_when_resealed_then_every_row_is_under_it_unchanged_and_found_and_again_nothing_moves(
        desk, db, app, settings):
    clues = [desk(CALLER), desk(OTHER), desk(CALLER)]
    before = _stored(db)
    assert _keys(settings, "new-generation").exit_code == 0
    seal_2 = _key(db, SEAL, 2)

    resealed = _keys(settings, "reseal", "--batch", "2")
    assert resealed.exit_code == 0, resealed.output
    assert "resealed 3 of 3 clue(s)" in resealed.output
    assert "no clue uses an older seal or index key now" in resealed.output
    assert not [clear for clear in CLEAR if clear in resealed.output]

    after = _stored(db)
    assert set(_sealed_by(db).values()) == {seal_2}
    assert all(after[c][0] != before[c][0] and after[c][1] != before[c][1] for c in clues)  # both sealed anew
    with db.transaction() as session:
        newest = app.extensions["fieldcase"].keys.indexes(session, COMPLAINANT_PHONE, "13900001111")[0]
    assert after[clues[0]][1] == after[clues[2]][1] == newest  # indexed under generation 2
    assert [_complainant(db, app, c) for c in clues] == [CALLER, OTHER, CALLER]
    assert _found(db, app, desk.officer, "13900001111") == [clues[0], clues[2]]
    assert _found(db, app, desk.officer, "13900001112") == [clues[1]]
    with db.transaction() as session:  # the old keys are kept, for backups taken before now
        assert session.scalar(select(DataKey.id).where(DataKey.generation == 1, DataKey.purpose == SEAL)) is not None

    again = _keys(settings, "reseal")
    assert again.exit_code == 0, again.output
    assert "resealed 0 of 3 clue(s)" in again.output
    assert _stored(db) == after
    status = _keys(settings, "status")
    assert "(seal, generation 1): 0" in status.output and "under an older generation" not in status.output


def test_given_a_new_index_generation_alone_when_resealed_for_the_index_then_only_the_indexes_change(
        desk, db, app, settings):
    clues = [desk(CALLER), desk(OTHER)]
    before = _stored(db)
    made = _keys(settings, "new-generation", "--purpose", "index")
    assert made.exit_code == 0 and "(seal, generation" not in made.output, made.output
    assert _key(db, SEAL, 2) is None
    assert _found(db, app, desk.officer, "13900001112") == [clues[1]]

    resealed = _keys(settings, "reseal", "--purpose", "index")
    assert resealed.exit_code == 0, resealed.output
    after = _stored(db)
    assert all(after[c][0] == before[c][0] and after[c][1] != before[c][1] for c in clues)
    assert _found(db, app, desk.officer, "13900001112") == [clues[1]]


def test_given_an_interrupted_reseal_and_a_row_that_no_longer_opens_when_run_again_then_it_names_it_and_does_the_rest(
        desk, db, app, settings):
    clues = sorted([desk(CALLER), desk(OTHER), desk({"name": "赵女士", "phone": "13900001113"}),
                    desk({"name": "钱先生", "phone": "13900001114"})])
    assert _keys(settings, "new-generation").exit_code == 0
    seal_1, seal_2 = _key(db, SEAL, 1), _key(db, SEAL, 2)
    keys = app.extensions["fieldcase"].keys
    # A first run is stopped after its first batch of one clue (the batch committed, the rest not begun).
    with db.transaction() as session:
        (first,) = sealed_clues(session, after=None, limit=1)
        assert reseal_complainant(session, keys, first, now=first.reported_at)
    done = _stored(db)[clues[0]]
    # Meanwhile the third clue's sealed value is overwritten with another row's: it no longer opens.
    with db.engine.begin() as conn:
        conn.execute(text("UPDATE clues SET complainant_sealed = (SELECT complainant_sealed FROM clues WHERE id = :a) "
                          "WHERE id = :b"), {"a": clues[3], "b": clues[2]})
    bad = _stored(db)[clues[2]]

    rerun = _keys(settings, "reseal", "--batch", "1")
    assert rerun.exit_code == 1, rerun.output
    assert re.findall(r"clue (\S+): does not open \(SealBroken\)", rerun.output) == [clues[2]]
    assert "resealed 2 of 4 clue(s)" in rerun.output and "1 clue(s) could not be resealed" in rerun.output
    assert not [clear for clear in CLEAR + ["赵女士", "钱先生", "13900001113", "13900001114"] if clear in rerun.output]
    stored = _stored(db)
    assert stored[clues[0]] == done and stored[clues[2]] == bad  # the first run's work kept, the bad row untouched
    assert _sealed_by(db) == {clues[0]: seal_2, clues[1]: seal_2, clues[2]: seal_1, clues[3]: seal_2}
    with db.transaction() as session:
        assert session.get(Clue, clues[1]).complainant_sealed == stored[clues[1]][0]
    status = _keys(settings, "status")
    assert f"clues sealed under data key {seal_1} (seal, generation 1): 1" in status.output
