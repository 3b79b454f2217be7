"""PROTOCOL §8: every event that touches evidence is a leaf; heads are signed; proofs verify independently."""

from __future__ import annotations

import base64
import hashlib
import json

import hypothesis
import pytest
import rfc8785
from click.testing import CliRunner
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from hypothesis import given
from hypothesis import strategies as st
from sqlalchemy import delete, select, text, update

from backend.cli import main
from backend.core.models import CustodyEvent
from media.custody.encoding import canonical
from tests import rfc6962
from tests.phones import TestPhone, uid


@pytest.fixture
def phone(client, officers):
    officer = officers.make()
    return TestPhone(client, officer, officers.headers(officer))


def declare_and_upload(phone, data: bytes) -> str:
    eid, record = phone.evidence(None, data)
    assert phone.push([record])["results"][0]["status"] == "applied"
    plan = phone.client.post(f"/api/v1/evidence/{eid}/uploads", headers=phone.headers).json
    path = plan["url"].split("localhost", 1)[1]
    assert phone.client.put(path, data=data, headers=phone.headers).status_code == 200
    assert phone.client.post(f"/api/v1/evidence/{eid}/complete", json={}, headers=phone.headers).json["status"]
    return eid


def b64d(s: str) -> bytes:
    return base64.urlsafe_b64decode(s + "=" * (-len(s) % 4))


def test_an_items_life_is_in_the_log_and_each_leaf_is_proven_in_the_signed_tree(client, phone):
    eid = declare_and_upload(phone, b"clip bytes")
    got = client.get(f"/api/v1/evidence/{eid}/content", query_string={"purpose": "法制审核"}, headers=phone.headers)
    assert got.status_code == 200
    events = client.get(f"/api/v1/evidence/{eid}/custody", headers=phone.headers).json["events"]
    assert [e["action"] for e in events] == ["declared", "upload_started", "verified", "read"]
    assert events[-1]["purpose"] == "法制审核" and events[0]["sha256"] == hashlib.sha256(b"clip bytes").hexdigest()
    for e in events:
        assert e["leaf"] == rfc8785.dumps(json.loads(e["leaf"])).decode()  # canonical, so anyone can rehash it

    head = client.get("/api/v1/custody/tree-head", headers=phone.headers).json
    key = client.get("/api/v1/custody/public-key").json
    public = Ed25519PublicKey.from_public_bytes(b64d(key["public_key"]))
    signed = rfc8785.dumps({k: head[k] for k in ("tree_size", "root_hash", "timestamp")})
    public.verify(b64d(head["signature"]), signed)
    # the item's four events and the push's device_head leaf (where the phone's chain then ended)
    assert head["key_id"] == key["key_id"] and head["tree_size"] == 5

    root = bytes.fromhex(head["root_hash"])
    for e in events:
        proof = client.get("/api/v1/custody/proofs/inclusion", headers=phone.headers,
                           query_string={"leaf_index": e["leaf_index"], "tree_size": head["tree_size"]}).json
        leaf_hash = hashlib.sha256(b"\x00" + e["leaf"].encode()).digest()
        assert rfc6962.verify_inclusion(leaf_hash, e["leaf_index"], head["tree_size"],
                                        [bytes.fromhex(p) for p in proof["proof"]], root)
        assert not rfc6962.verify_inclusion(leaf_hash, e["leaf_index"], head["tree_size"],
                                            [bytes.fromhex(p) for p in proof["proof"]], bytes(32))


def test_the_tree_only_grows_and_consistency_proofs_show_it(client, phone):
    declare_and_upload(phone, b"first")
    old = client.get("/api/v1/custody/tree-head", headers=phone.headers).json
    declare_and_upload(phone, b"second")
    new = client.get("/api/v1/custody/tree-head", headers=phone.headers).json
    assert new["tree_size"] > old["tree_size"]
    proof = client.get("/api/v1/custody/proofs/consistency", headers=phone.headers,
                       query_string={"first": old["tree_size"], "second": new["tree_size"]}).json
    assert rfc6962.verify_consistency(old["tree_size"], new["tree_size"], bytes.fromhex(old["root_hash"]),
                                      bytes.fromhex(new["root_hash"]), [bytes.fromhex(p) for p in proof["proof"]])
    stored = client.get("/api/v1/custody/tree-head", query_string={"tree_size": old["tree_size"]},
                        headers=phone.headers).json
    assert stored == old
    assert client.get("/api/v1/custody/tree-head", query_string={"tree_size": 999},
                      headers=phone.headers).status_code == 404
    bad = client.get("/api/v1/custody/proofs/inclusion", query_string={"leaf_index": 5, "tree_size": 99},
                     headers=phone.headers)
    assert bad.status_code == 422


def _verify(settings):
    env = {"DATABASE_URL": settings.database_url, "FIELDCASE_INSTANCE_DIR": str(settings.instance_dir)}
    return CliRunner().invoke(main, ["custody", "verify"], env=env)


@pytest.fixture
def logged(client, phone, settings):
    for i in range(3):
        declare_and_upload(phone, f"item {i}".encode())
    client.get("/api/v1/custody/tree-head", headers=phone.headers)
    result = _verify(settings)
    assert result.exit_code == 0, result.output
    assert "12 leaves" in result.output and ": OK" in result.output  # per item: 3 events and a device_head
    return phone


@pytest.mark.parametrize("tamper, says", [
    ("alter", "leaf 4:"),
    ("remove", "leaf 4: missing"),
    ("reorder", "leaf 3:"),
])
def test_custody_verify_reports_rows_changed_in_the_database(logged, db, settings, tamper, says):
    with db.transaction() as s:
        if tamper == "alter":
            row = s.get(CustodyEvent, 4)
            row.leaf = row.leaf.replace('"actor":"', '"actor":"x')
            row.actor = "x" + row.actor
        elif tamper == "remove":
            s.execute(delete(CustodyEvent).where(CustodyEvent.leaf_index == 4))
        else:
            a, b = s.get(CustodyEvent, 3), s.get(CustodyEvent, 4)
            leaves = (a.leaf, a.evidence_id, a.action, a.actor), (b.leaf, b.evidence_id, b.action, b.actor)
            s.execute(update(CustodyEvent).where(CustodyEvent.leaf_index == 3).values(
                leaf=leaves[1][0], evidence_id=leaves[1][1], action=leaves[1][2], actor=leaves[1][3]))
            s.execute(update(CustodyEvent).where(CustodyEvent.leaf_index == 4).values(
                leaf=leaves[0][0], evidence_id=leaves[0][1], action=leaves[0][2], actor=leaves[0][3]))
    result = _verify(settings)
    assert result.exit_code == 1
    assert says in result.output
    assert "tree head 12: the events do not give its root" in result.output


def test_custody_verify_catches_a_forged_tree_head(logged, db, settings):
    with db.transaction() as s:
        s.execute(text("UPDATE tree_heads SET root_hash = :r"), {"r": "ab" * 32})
    result = _verify(settings)
    assert result.exit_code == 1 and "bad signature" in result.output


def test_unknown_evidence_has_no_custody_answer(client, phone):
    assert client.get(f"/api/v1/evidence/{uid()}/custody", headers=phone.headers).status_code == 404


def test_given_a_size_no_head_was_issued_at_when_asked_then_404_names_the_nearest_issued_sizes(client, phone):
    declare_and_upload(phone, b"first")
    first = client.get("/api/v1/custody/tree-head", headers=phone.headers).json["tree_size"]
    declare_and_upload(phone, b"second")
    second = client.get("/api/v1/custody/tree-head", headers=phone.headers).json["tree_size"]

    between = client.get("/api/v1/custody/tree-head", query_string={"tree_size": first + 1}, headers=phone.headers)
    beyond = client.get("/api/v1/custody/tree-head", query_string={"tree_size": second + 5}, headers=phone.headers)
    note = client.get("/api/v1/custody/checkpoint", query_string={"tree_size": first + 1})

    assert between.status_code == 404
    assert between.json["errors"]["nearest_issued"] == [first, second]
    assert f"nearest issued sizes are {first} and {second}" in between.json["message"]
    assert beyond.status_code == 404 and beyond.json["errors"]["nearest_issued"] == [second]
    assert f"the tree has {second} leaves" in beyond.json["message"]
    assert note.status_code == 404 and note.json["errors"]["nearest_issued"] == [first, second]
    # What the client does instead: take an issued head, and prove the two consistent.
    proof = client.get("/api/v1/custody/proofs/consistency", query_string={"first": first, "second": second},
                       headers=phone.headers)
    assert proof.status_code == 200


json_scalars = (st.none() | st.booleans() | st.integers(min_value=-(2**60), max_value=2**60)
                | st.floats(allow_nan=False, allow_infinity=False) | st.text())
json_values = st.recursive(json_scalars, lambda inner: st.lists(inner, max_size=4)
                           | st.dictionaries(st.text(max_size=8), inner, max_size=4), max_leaves=12)


@hypothesis.settings(max_examples=400, deadline=None)
@given(value=json_values)
def test_custody_canonical_json_is_byte_for_byte_rfc_8785(value):
    """Leaves are encoded by a fast path when their values allow it; the bytes must be JCS's exactly,
    whatever the value (control characters, non-BMP keys, large integers, floats, lone surrogates)."""
    try:
        expected = rfc8785.dumps(value)
    except Exception as exc:  # noqa: BLE001 - what JCS refuses must be refused here too
        with pytest.raises(type(exc)):
            canonical(value)
        return
    assert canonical(value) == expected


def test_a_leaf_as_a_push_writes_it_is_its_rfc_8785_text(client, phone, db):
    """The leaf text stored for a declared item is JCS of its fields."""
    eid, record = phone.evidence(None, b"\xff\xd8 photo")
    assert phone.push([record])["results"][0]["status"] == "applied"
    with db.session() as s:
        (row,) = s.scalars(select(CustodyEvent).where(CustodyEvent.evidence_id == eid))
    assert row.leaf.encode() == rfc8785.dumps(json.loads(row.leaf))
