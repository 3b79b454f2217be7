"""Device heads in the custody log: every push that moves a device's chain leaves a leaf naming where it ends.

So a chain later cut short on the server (a deleted ledger row, a dropped newest record) disagrees with a
signed, witnessed leaf, and the custody log's own checks still hold (the leaf is an ordinary event).
"""

from __future__ import annotations

import json

import pytest
from sqlalchemy import select

from backend.core.models import CustodyEvent
from media.custody.verify import verify_log
from tests.phones import TestPhone, jws_hash

CENTRE = {"name": "拱墅区启明培训中心", "region": "330105", "address": "湖墅南路 8 号"}


@pytest.fixture
def wang(officers):
    return officers.make(region="330105", department="education", name="王磊")


@pytest.fixture
def chen(officers):
    return officers.make(region="330105", department="education", name="陈静")


def head_leaves(db) -> list[dict]:
    with db.session() as s:
        rows = s.scalars(select(CustodyEvent).where(CustodyEvent.action == "device_head")
                         .order_by(CustodyEvent.leaf_index))
        return [json.loads(r.leaf) for r in rows]


def test_given_two_phones_when_each_pushes_then_each_device_head_is_a_custody_leaf(client, officers, wang, chen, db,
                                                                                   app):
    first = TestPhone(client, wang, officers.headers(wang))
    second = TestPhone(client, chen, officers.headers(chen))
    cid, opened = first.open_case(CENTRE)
    iid, started = first.start(cid, [wang.id, chen.id])
    found = first.finding(iid)
    answer = first.push([opened, started, found])
    assert answer["heads"][first.device_id] == {"seq": 3, "hash": jws_hash(found)}
    _, other = second.open_case(CENTRE)
    second.push([other])

    leaves = head_leaves(db)
    assert [(leaf["device"], leaf["seq"], leaf["record_hash"], leaf["actor"]) for leaf in leaves] == [
        (first.device_id, 3, jws_hash(found), wang.id), (second.device_id, 1, jws_hash(other), chen.id)]
    assert all(leaf["evidence_id"] is None for leaf in leaves)
    with db.session() as s:
        report = verify_log(s, app.extensions["fieldcase"].signer.verification_keys())
    assert report.ok, report.problems


def test_given_a_push_that_moves_no_chain_when_it_is_sent_then_no_head_leaf_is_added(client, officers, wang, db):
    phone = TestPhone(client, wang, officers.headers(wang))
    _, opened = phone.open_case(CENTRE)
    phone.push([opened])
    assert phone.push([opened])["results"][0]["status"] == "duplicate"
    phone.seq, phone.prev = 5, "ab" * 32  # a record past a gap: held, the chain does not move
    _, held = phone.open_case(CENTRE)
    assert phone.push([held])["results"][0]["status"] == "deferred"
    assert [leaf["seq"] for leaf in head_leaves(db)] == [1]


def test_given_a_gap_a_reviewer_releases_then_the_new_head_is_a_leaf_by_the_reviewer(client, officers, wang, db):
    phone = TestPhone(client, wang, officers.headers(wang))
    phone.seq, phone.prev = 2, "cd" * 32  # records 1 and 2 were lost with the phone's old storage
    _, three = phone.open_case(CENTRE)
    assert phone.push([three])["results"][0]["status"] == "deferred"
    assert head_leaves(db) == []
    reviewer = officers.make(region="330105", roles=("officer", "reviewer"))
    r = client.post(f"/api/v1/devices/{phone.device_id}/gaps/release", json={"reason": "手机重置 phone wiped"},
                    headers=officers.headers(reviewer))
    assert r.status_code == 200, r.json
    (leaf,) = head_leaves(db)
    assert (leaf["device"], leaf["seq"], leaf["record_hash"], leaf["actor"]) == (
        phone.device_id, 3, jws_hash(three), reviewer.id)
