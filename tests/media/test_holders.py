"""Custodians: an item's holder hands it over with a reason; it moves when the receiver acknowledges."""

from __future__ import annotations

import pytest

from tests.media.test_custody import declare_and_upload
from tests.phones import TestPhone


@pytest.fixture
def scene(client, officers):
    officer = officers.make()
    phone = TestPhone(client, officer, officers.headers(officer))
    eid = declare_and_upload(phone, b"seized exercise books, photographed")
    custodian = officers.make(roles=("officer", "custodian"))
    return phone, eid, custodian


def _holdings(client, headers):
    return client.get("/api/v1/custody/holdings", headers=headers).json["items"]


def test_the_officer_holds_what_they_uploaded_and_hands_it_to_a_custodian(client, officers, scene):
    phone, eid, custodian = scene
    (mine,) = _holdings(client, phone.headers)
    assert mine["evidence_id"] == eid and mine["holder_id"] == phone.officer.id
    r = client.post(f"/api/v1/custody/holdings/{eid}/transfer", headers=phone.headers,
                    json={"to": custodian.id, "reason": "入库保管"})
    assert r.status_code == 200 and r.json["pending_to"] == custodian.id
    h = officers.headers(custodian)
    (waiting,) = _holdings(client, h)
    assert waiting["pending_to"] == custodian.id and waiting["holder_id"] == phone.officer.id
    r = client.post(f"/api/v1/custody/holdings/{eid}/acknowledge", headers=h, json={"note": "已核对封存"})
    assert r.status_code == 200 and r.json["holder_id"] == custodian.id and r.json["pending_to"] is None
    assert _holdings(client, phone.headers) == []
    events = client.get(f"/api/v1/evidence/{eid}/custody", headers=h).json["events"]
    tail = [(e["action"], e.get("from"), e.get("to"), e.get("reason")) for e in events[-2:]]
    assert tail == [("transfer_requested", None, custodian.id, "入库保管"),
                    ("transferred", phone.officer.id, custodian.id, "入库保管")]


def test_only_the_holder_hands_over_and_only_to_a_custodian(client, officers, scene):
    phone, eid, custodian = scene
    plain = officers.make()
    r = client.post(f"/api/v1/custody/holdings/{eid}/transfer", headers=phone.headers,
                    json={"to": plain.id, "reason": "入库保管"})
    assert r.status_code == 422 and "to" in r.json["errors"]
    r = client.post(f"/api/v1/custody/holdings/{eid}/transfer", headers=officers.headers(custodian),
                    json={"to": custodian.id, "reason": "不是我的"})
    assert r.status_code == 404
    far = officers.make(region="330108", roles=("officer", "custodian"))
    r = client.post(f"/api/v1/custody/holdings/{eid}/transfer", headers=phone.headers,
                    json={"to": far.id, "reason": "跨区"})
    assert r.status_code == 422


def test_only_the_receiver_acknowledges_and_may_refuse(client, officers, scene):
    phone, eid, custodian = scene
    client.post(f"/api/v1/custody/holdings/{eid}/transfer", headers=phone.headers,
                json={"to": custodian.id, "reason": "入库保管"})
    other = officers.make(roles=("officer", "custodian"))
    r = client.post(f"/api/v1/custody/holdings/{eid}/acknowledge", headers=officers.headers(other), json={})
    assert r.status_code == 403
    again = client.post(f"/api/v1/custody/holdings/{eid}/transfer", headers=phone.headers,
                        json={"to": other.id, "reason": "换人"})
    assert again.status_code == 409, again.json
    r = client.post(f"/api/v1/custody/holdings/{eid}/acknowledge", headers=officers.headers(custodian),
                    json={"accept": False, "note": "封条破损，拒收"})
    assert r.status_code == 200 and r.json["holder_id"] == phone.officer.id and r.json["pending_to"] is None
    events = client.get(f"/api/v1/evidence/{eid}/custody", headers=phone.headers).json["events"]
    assert events[-1]["action"] == "transfer_refused" and events[-1]["note"] == "封条破损，拒收"
