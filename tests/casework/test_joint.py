"""Joint enforcement: participating departments, and transfers to departments, the city and the judiciary."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import pytest

from tests.phones import TestPhone, uid

CENTRE = {"name": "博学教育培训中心", "region": "330106"}


@dataclass
class Scene:
    client: object
    officers: object
    phone: TestPhone
    case_id: str

    @property
    def headers(self) -> dict:
        return self.phone.headers

    def as_(self, **kw) -> dict:
        return self.officers.headers(self.officers.make(**kw))

    def case(self, headers: dict | None = None, case_id: str | None = None):
        return self.client.get(f"/api/v1/cases/{case_id or self.case_id}", headers=headers or self.headers)

    def move(self, to: str, headers: dict | None = None, case_id: str | None = None, **body):
        return self.client.post(f"/api/v1/cases/{case_id or self.case_id}/transitions",
                                json={"to": to, "reason": f"→ {to}", **body}, headers=headers or self.headers)

    def transfer(self, headers: dict | None = None, **body):
        return self.client.post(f"/api/v1/cases/{self.case_id}/transfers", json={"reason": "不属本部门管辖", **body},
                                headers=headers or self.headers)

    def answer(self, transfer_id: str, verb: str, headers: dict, **body):
        return self.client.post(f"/api/v1/transfers/{transfer_id}/{verb}", json=body, headers=headers)

    def transitions(self, case_id: str | None = None) -> list[dict]:
        return self.client.get(f"/api/v1/cases/{case_id or self.case_id}/transitions",
                               headers=self.headers).json["transitions"]


@pytest.fixture
def scene(client, officers) -> Scene:
    """An education officer of 西湖区 whose phone opened a case on a tutoring centre."""
    officer = officers.make(department="education", region="330106")
    phone = TestPhone(client, officer, officers.headers(officer))
    _cid, opened = phone.open_case(CENTRE)
    case_id = phone.push([opened])["results"][0]["refs"]["case_id"]
    return Scene(client, officers, phone, case_id)


def test_officers_of_a_participating_department_work_on_the_case(scene, client):
    market = scene.as_(department="market")
    culture = scene.as_(department="culture")
    assert scene.move("investigating", market).status_code == 403

    url = f"/api/v1/cases/{scene.case_id}/departments"
    assert client.post(url, json={"department": "market", "reason": "涉及收费问题"}, headers=market).status_code == 403
    assert client.post(url, json={"department": "education", "reason": "x"}, headers=scene.headers).status_code == 422
    added = client.post(url, json={"department": "market", "reason": "涉及收费问题，联合执法"}, headers=scene.headers)
    assert added.status_code == 201, added.json
    assert client.post(url, json={"department": "market", "reason": "again"}, headers=scene.headers).status_code == 409
    team = client.get(url, headers=culture).json
    assert team["lead"] == "education" and [p["department"] for p in team["participants"]] == ["market"]

    # Market's officers now move the case along; culture's still do not.
    assert scene.move("investigating", market).status_code == 201
    assert scene.move("notified", culture).status_code == 403
    # Only within jurisdiction: market in another district does not even see the case.
    assert scene.case(scene.as_(department="market", region="330105")).status_code == 404

    # The phones of the region learn who takes part, and that a department left.
    assert client.delete(f"{url}/market", headers=scene.headers).status_code == 204
    assert client.delete(f"{url}/market", headers=scene.headers).status_code == 404
    assert scene.move("notified", market).status_code == 403
    changes = client.get("/api/v1/sync/pull", headers=market).json["changes"]
    joined = [(c["op"], c["data"]["department"]) for c in changes if c["kind"] == "case_department"]
    assert joined == [("upsert", "market"), ("delete", "market")]
    assert all(c["id"] == f"{scene.case_id}:market" for c in changes if c["kind"] == "case_department")


def test_a_department_transfer_waits_for_the_receiver_and_a_refusal_keeps_the_case(scene, client):
    outsider = scene.as_(department="education")  # same district and department, not on the case
    assert scene.transfer(outsider, to="department", department="market").status_code == 403
    assert scene.transfer(to="department", department="education").status_code == 422
    assert scene.transfer(to="department").status_code == 422

    r = scene.transfer(to="department", department="market")
    assert r.status_code == 201, r.json
    t = r.json
    assert (t["status"], t["to"], t["to_department"], t["from_department"]) == (
        "pending", "department", "market", "education")
    assert t["sent"]["case"]["id"] == scene.case_id and t["sent"]["evidence"] == []
    assert scene.case().json["status"] == "registered"  # still the sender's, still open
    assert scene.transfer(to="city").status_code == 409  # one question at a time
    at_once = scene.move("transferred", transfer_to="culture")
    assert at_once.status_code == 409 and t["id"] in at_once.json["message"]

    assert scene.answer(t["id"], "refuse", scene.as_(department="culture"), reason="x").status_code == 403
    assert scene.answer(t["id"], "refuse", scene.as_(department="market"), reason="").status_code == 422
    market = scene.as_(department="market")
    refused = scene.answer(t["id"], "refuse", market, reason="不属市场监管职责")
    assert refused.status_code == 200, refused.json
    assert (refused.json["status"], refused.json["decision_reason"]) == ("refused", "不属市场监管职责")
    assert refused.json["successor_case_id"] is None
    assert scene.answer(t["id"], "accept", market).status_code == 409
    assert scene.case().json["status"] == "registered"
    assert scene.move("investigating").status_code == 201  # the sender goes on with it


def test_an_accepted_department_transfer_closes_the_case_and_opens_the_receivers(scene, client):
    t = scene.transfer(to="department", department="market", reason="收费违规，属市场监管").json
    market_officer = scene.officers.make(department="market")
    market = scene.officers.headers(market_officer)
    incoming = client.get("/api/v1/transfers", query_string={"direction": "incoming", "status": "pending"},
                          headers=market).json
    assert [i["id"] for i in incoming["items"]] == [t["id"]]

    r = scene.answer(t["id"], "accept", market, reason="接收")
    assert r.status_code == 200, r.json
    assert (r.json["status"], r.json["decided_by"]) == ("accepted", market_officer.id)
    successor_id = r.json["successor_case_id"]
    assert successor_id and successor_id != scene.case_id

    old = scene.case().json
    assert old["status"] == "transferred"
    last = scene.transitions()[-1]
    assert (last["to"], last["transfer_to"], last["actor"]) == ("transferred", "market", market_officer.id)
    new = scene.case(market, successor_id).json
    assert (new["status"], new["department"], new["created_by"]) == ("registered", "market", market_officer.id)
    assert scene.move("investigating", market, successor_id).status_code == 201  # the acceptor works on it
    assert scene.move("dismissed", scene.headers, successor_id).status_code == 403  # no longer the sender's
    # The sender's phone learns the answer through the feed.
    changes = client.get("/api/v1/sync/pull", headers=scene.headers).json["changes"]
    asked, answered = [c for c in changes if c["kind"] == "transfer"]
    assert asked["id"] == answered["id"] == t["id"]
    assert (asked["data"]["status"], answered["data"]["status"]) == ("pending", "accepted")
    assert answered["data"]["successor_case_id"] == successor_id


def test_a_transfer_to_the_city_is_answered_at_the_city_level(scene, client):
    t = scene.transfer(to="city", reason="涉及多个区的连锁机构").json
    assert (t["to"], t["to_department"]) == ("city", "education")
    district = scene.as_(department="education", roles=("admin",))
    assert scene.answer(t["id"], "accept", district).status_code == 403
    assert scene.answer(t["id"], "accept", scene.as_(department="market", region="330100")).status_code == 403
    city_officer = scene.officers.make(department="education", region="330100")
    city = scene.officers.headers(city_officer)
    assert [i["id"] for i in client.get("/api/v1/transfers", query_string={"direction": "incoming"},
                                        headers=city).json["items"]] == [t["id"]]
    r = scene.answer(t["id"], "accept", city)
    assert r.status_code == 200, r.json
    successor_id = r.json["successor_case_id"]
    assert scene.transitions()[-1]["transfer_to"] == "city"
    successor = scene.case(city, successor_id).json
    assert (successor["department"], successor["created_by"]) == ("education", city_officer.id)
    # The district still sees it but no longer runs it; the city does.
    assert scene.move("investigating", scene.headers, successor_id).status_code == 403
    assert scene.move("investigating", city, successor_id).status_code == 201


def _package(scene, client) -> tuple[str, str]:
    """A photo declared for the case, then an evidence package of it exported by a custodian."""
    phone = scene.phone
    data = b"jpeg bytes of the classroom"
    eid = uid()
    body = {"evidence_id": eid, "case": {"id": scene.case_id}, "kind": "photo", "media_type": "image/jpeg",
            "sha256": hashlib.sha256(data).hexdigest(), "size": len(data), "captured_at": phone.clock.isoformat()}
    assert phone.push([phone.record("evidence.capture", body)])["results"][0]["status"] == "applied"
    custodian = scene.as_(department="education", roles=("custodian",))
    r = client.get(f"/api/v1/cases/{scene.case_id}/package", query_string={"purpose": "移送公安"}, headers=custodian)
    assert r.status_code == 200, r.json
    return eid, r.headers["X-Package-Id"]


def test_a_transfer_to_the_judiciary_keeps_what_was_sent_and_closes_the_case(scene, client):
    eid, package_id = _package(scene, client)
    assert scene.move("investigating").status_code == 201
    assert scene.transfer(to="judiciary", department="market").status_code == 422
    assert scene.transfer(to="judiciary", package_id=str(uid())).status_code == 422  # not this case's package
    r = scene.transfer(to="judiciary", reason="涉嫌非法经营罪", package_id=package_id)
    assert r.status_code == 201, r.json
    t = r.json
    assert (t["status"], t["to"], t["to_department"]) == ("pending", "judiciary", None)
    sent = t["sent"]
    assert sent["package_id"] == package_id and sent["case"]["status"] == "investigating"
    assert [(e["id"], e["sha256"]) for e in sent["evidence"]] == [
        (eid, hashlib.sha256(b"jpeg bytes of the classroom").hexdigest())]
    assert scene.case().json["status"] == "transferred"
    last = scene.transitions()[-1]
    assert (last["to"], last["transfer_to"], last["reason"]) == ("transferred", "judiciary", "涉嫌非法经营罪")
    # What was sent is kept as sent: reading it later gives the same.
    assert client.get(f"/api/v1/transfers/{t['id']}", headers=scene.headers).json["sent"] == sent

    # The police decline to open a case: the sending department records it, and the matter comes back to it.
    assert scene.answer(t["id"], "refuse", scene.as_(department="market"), reason="x").status_code == 403
    r = scene.answer(t["id"], "refuse", scene.headers, reason="公安机关不予立案，退回依法处理")
    assert r.status_code == 200, r.json
    back = scene.case(case_id=r.json["successor_case_id"]).json
    assert (back["status"], back["department"], back["created_by"]) == (
        "registered", "education", scene.phone.officer.id)


def test_the_lifecycle_step_transfers_at_once_and_the_receiver_still_answers(scene, client):
    r = scene.move("transferred", transfer_to="market")
    assert r.status_code == 201 and r.json["case"]["status"] == "transferred"
    (t,) = client.get("/api/v1/transfers", query_string={"subject_id": scene.case_id},
                      headers=scene.headers).json["items"]
    assert (t["status"], t["to"], t["to_department"], t["reason"]) == (
        "pending", "department", "market", "→ transferred")
    market_officer = scene.officers.make(department="market")
    accepted = scene.answer(t["id"], "accept", scene.officers.headers(market_officer))
    assert accepted.status_code == 200, accepted.json
    assert len([s for s in scene.transitions() if s["to"] == "transferred"]) == 1  # closed once, when sent
    assert scene.case(case_id=accepted.json["successor_case_id"]).json["created_by"] == market_officer.id


def test_a_case_past_the_point_of_transfer_cannot_be_asked_for(scene):
    assert scene.move("dismissed").status_code == 201
    r = scene.transfer(to="department", department="market")
    assert r.status_code == 409 and "dismissed is final" in r.json["message"]


def test_a_clue_goes_to_another_department_when_accepted_and_stays_when_refused(client, officers):
    hotline = officers.headers(officers.make(department="education"))
    clue = client.post("/api/v1/clues", headers=hotline, json={
        "source": "complaint", "institution": CENTRE, "description": "预收费超过三个月",
        "complainant": {"name": "李先生", "phone": "13800002222"}}).json
    url = f"/api/v1/clues/{clue['id']}/transfers"
    assert client.post(url, json={"to": "department", "department": "market", "reason": "x"},
                       headers=officers.headers(officers.make(department="culture"))).status_code == 403
    r = client.post(url, json={"to": "department", "department": "market", "reason": "属收费问题"}, headers=hotline)
    assert r.status_code == 201, r.json
    assert "complainant" not in r.json["sent"]["clue"] and r.json["sent"]["clue"]["description"] == "预收费超过三个月"
    # While it waits, the clue is neither triaged nor closed by anyone.
    assert client.post(f"/api/v1/clues/{clue['id']}/close", json={"outcome": "other", "reason": "x"},
                       headers=hotline).status_code == 409
    market = officers.headers(officers.make(department="market"))
    refused = client.post(f"/api/v1/transfers/{r.json['id']}/refuse", json={"reason": "先由教育部门核实"},
                          headers=market)
    assert refused.status_code == 200
    assert client.get(f"/api/v1/clues/{clue['id']}", headers=hotline).json["department"] == "education"

    again = client.post(url, json={"to": "department", "department": "market", "reason": "已核实，属收费问题"},
                        headers=hotline).json
    assert client.post(f"/api/v1/transfers/{again['id']}/accept", json={}, headers=market).status_code == 200
    detail = client.get(f"/api/v1/clues/{clue['id']}", headers=market).json
    assert detail["department"] == "market" and detail["complainant"]["phone"] == "138****2222"
    assert [(t["status"]) for t in detail["transfers"]] == ["refused", "accepted"]
    made = client.post(f"/api/v1/clues/{clue['id']}/case", json={}, headers=market)
    assert made.status_code == 201 and made.json["case"]["department"] == "market"
    assert client.get(f"/api/v1/public/clues/{clue['tracking_code']}").json["department"]["code"] == "market"


def test_a_clue_sent_to_the_judiciary_shows_so_publicly_and_returns_if_refused(client, officers):
    hotline = officers.headers(officers.make(department="education"))
    clue = client.post("/api/v1/clues", headers=hotline, json={
        "source": "social_supervisor", "institution": CENTRE, "description": "涉嫌以培训为名集资"}).json
    r = client.post(f"/api/v1/clues/{clue['id']}/transfers", json={"to": "judiciary", "reason": "涉嫌非法集资"},
                    headers=hotline)
    assert r.status_code == 201, r.json
    public = client.get(f"/api/v1/public/clues/{clue['tracking_code']}").json
    assert (public["status"], public["outcome"]) == ("transferred", "transferred_to_judiciary")
    refused = client.post(f"/api/v1/transfers/{r.json['id']}/refuse", json={"reason": "不构成犯罪"}, headers=hotline)
    assert refused.status_code == 200, refused.json
    back = client.get(f"/api/v1/clues/{clue['id']}", headers=hotline).json
    assert (back["status"], back["outcome"]) == ("new", None)


def test_a_clue_taken_by_the_city_is_handled_at_the_city_only(client, officers):
    hotline = officers.headers(officers.make(department="education"))
    clue = client.post("/api/v1/clues", headers=hotline, json={
        "source": "media", "institution": CENTRE, "description": "媒体报道的连锁机构"}).json
    t = client.post(f"/api/v1/clues/{clue['id']}/transfers", json={"to": "city", "reason": "影响较大"},
                    headers=hotline).json
    city = officers.headers(officers.make(department="education", region="330100"))
    assert client.post(f"/api/v1/transfers/{t['id']}/accept", json={}, headers=city).status_code == 200
    assert client.post(f"/api/v1/clues/{clue['id']}/triage", json={"category": "disguised"},
                       headers=hotline).status_code == 403
    assert client.post(f"/api/v1/clues/{clue['id']}/triage", json={"category": "disguised"},
                       headers=city).status_code == 200


def test_the_joint_team_goes_on_with_the_matter_to_the_successor_case(scene, client):
    url = f"/api/v1/cases/{scene.case_id}/departments"
    for department in ("culture", "market"):
        assert client.post(url, json={"department": department, "reason": "联合执法"},
                           headers=scene.headers).status_code == 201
    t = scene.transfer(to="department", department="market", reason="收费违规，属市场监管").json
    market = scene.as_(department="market")
    successor_id = scene.answer(t["id"], "accept", market, reason="接收").json["successor_case_id"]

    team = client.get(f"/api/v1/cases/{successor_id}/departments", headers=market).json
    assert team["lead"] == "market"
    # culture carries over; market leads now, so it is not also a participant
    assert [p["department"] for p in team["participants"]] == ["culture"]
    assert team["participants"][0]["reason"] == f"carried over from case {scene.case_id}"
    assert scene.move("investigating", scene.as_(department="culture"), successor_id).status_code == 201
