"""The case lifecycle: the penalty procedure's steps, who may take them, and what closing needs."""

from __future__ import annotations

from dataclasses import dataclass, replace

import pytest
from sqlalchemy import update

from backend.core.models import Case, Evidence
from tests.phones import TestPhone

CENTRE = {"name": "星辰教育培训中心", "region": "330106"}


@dataclass
class Work:
    client: object
    phone: TestPhone
    cid: str
    case_id: str
    headers: dict
    legal: dict
    reviewer: dict

    def move(self, to: str, headers: dict | None = None, **body):
        return self.client.post(f"/api/v1/cases/{self.case_id}/transitions", json={"to": to, "reason": f"→ {to}",
                                                                                   **body},
                                headers=headers or self.headers)

    def walk(self, *steps: str) -> None:
        for to in steps:
            headers = self.legal if to == "notified" and self.status() == "legal_review" else self.headers
            r = self.move(to, headers)
            assert r.status_code == 201, r.json

    def status(self) -> str:
        return self.transitions().json["status"]

    def transitions(self, headers: dict | None = None):
        return self.client.get(f"/api/v1/cases/{self.case_id}/transitions", headers=headers or self.headers)


@pytest.fixture
def work(client, officers) -> Work:
    officer = officers.make(department="education")
    phone = TestPhone(client, officer, officers.headers(officer))
    cid, record = phone.open_case(CENTRE)
    case_id = phone.push([record])["results"][0]["refs"]["case_id"]
    legal = officers.headers(officers.make(department="education", roles=("legal_reviewer",)))
    reviewer = officers.headers(officers.make(department="education", roles=("reviewer",)))
    return Work(client, phone, cid, case_id, phone.headers, legal, reviewer)


def test_the_whole_procedure_with_the_right_roles(work, db):
    work.walk("investigating", "legal_review")
    approved = work.move("notified", work.legal)
    assert approved.status_code == 201, approved.json
    assert approved.json["transition"]["legal_approval"] is True
    decided = work.move("decided", decision={"fine_yuan": 50_000, "ordered_closure": True})
    assert decided.status_code == 201, decided.json
    assert decided.json["transition"]["decision"] == {
        "fine_yuan": 50_000, "ordered_closure": True, "major": True,
        "major_reasons": ["fine above 10000 yuan", "ordered closure"], "major_fine_threshold_yuan": 10_000}
    work.walk("executed", "closed")

    listing = work.transitions().json
    assert listing["status"] == "closed" and listing["next"] == []
    steps = [(t["from"], t["to"]) for t in listing["transitions"]]
    assert steps == [("registered", "investigating"), ("investigating", "legal_review"),
                     ("legal_review", "notified"), ("notified", "decided"), ("decided", "executed"),
                     ("executed", "closed")]
    assert [t["legal_approval"] for t in listing["transitions"]] == [False, False, True, False, False, False]
    assert listing["transitions"][-1]["case_version"] == listing["version"] == 7
    assert all(t["actor"] and t["at"] and t["reason"] for t in listing["transitions"])
    assert work.client.get(f"/api/v1/cases/{work.case_id}", headers=work.headers).json["status"] == "closed"
    with db.transaction() as s:
        assert s.get(Case, work.case_id).open_key is None


def test_a_step_not_in_the_table_is_refused_with_what_is_allowed(work):
    r = work.move("decided", decision={"fine_yuan": 100})
    assert r.status_code == 409
    assert r.json["message"] == ("a case in status 'registered' cannot go to 'decided'; "
                                 "from registered it may go to: investigating, dismissed, transferred")
    assert work.move("archived").status_code == 422
    extra = work.move("investigating", decision={"fine_yuan": 100})
    assert extra.status_code == 422 and "only when going to decided" in extra.json["message"]
    assert work.client.post(f"/api/v1/cases/{work.case_id}/transitions", json={"to": "investigating"},
                            headers=work.headers).status_code == 422  # reason is required
    work.walk("dismissed")
    final = work.move("investigating")
    assert final.status_code == 409 and "dismissed is final" in final.json["message"]
    assert work.status() == "dismissed"


def test_only_a_legal_reviewer_concludes_legal_review(work, officers):
    outsider = officers.headers(officers.make(department="education"))  # same district, not on this case
    refused = work.move("investigating", outsider)
    assert refused.status_code == 403 and "case's officers" in refused.json["message"]
    work.walk("investigating", "legal_review")
    admin = officers.headers(officers.make(department="education", roles=("admin",)))
    for headers in (work.headers, work.reviewer, admin):
        r = work.move("notified", headers)
        assert r.status_code == 403 and r.json["message"] == "only a legal reviewer may conclude legal review"
    back = work.move("investigating", work.legal)  # sent back: not an approval
    assert back.status_code == 201 and back.json["transition"]["legal_approval"] is False
    assert work.status() == "investigating"


def test_a_major_decision_needs_legal_approval(work, app, monkeypatch):
    work.walk("investigating", "notified")  # no legal review
    for decision, why in (({"fine_yuan": 10_001}, "fine above 10000 yuan"),
                          ({"licence_revocation": True}, "licence revocation"),
                          ({"fine_yuan": 500, "ordered_closure": True}, "ordered closure")):
        r = work.move("decided", decision=decision)
        assert r.status_code == 409, r.json
        assert why in r.json["message"] and "legal reviewer's approval" in r.json["message"]
    assert work.move("decided", decision={}).status_code == 422
    state = app.extensions["fieldcase"]
    default = state.settings
    monkeypatch.setattr(state, "settings", replace(default, major_fine_yuan=1000))
    assert work.move("decided", decision={"fine_yuan": 5_000}).status_code == 409
    monkeypatch.setattr(state, "settings", default)
    ok = work.move("decided", decision={"fine_yuan": 10_000})  # the threshold itself is not above it
    assert ok.status_code == 201, ok.json
    assert ok.json["transition"]["decision"]["major"] is False


def test_closing_checks_the_file_and_a_reviewer_may_override(work, client, officers, db):
    other = officers.make(department="education")
    second = TestPhone(client, other, officers.headers(other))
    cid2, open2 = second.open_case(CENTRE)
    second.push([open2])  # merges into the same open case
    iid, start = work.phone.start(work.cid, [work.phone.officer.id, other.id])
    eid, evidence = work.phone.evidence(iid)  # a photo: no clips, so the inspection's coverage is "none"
    upd = {"case": {"client_case_id": work.cid}, "base_version": 1, "fields": {"summary": "A"}}
    work.phone.push([start, evidence, work.phone.end(iid), work.phone.record("case.update", upd)])
    conflicting = second.record("case.update", {**upd, "case": {"client_case_id": cid2}, "fields": {"summary": "B"}})
    assert second.push([conflicting])["results"][0]["status"] == "conflict"
    work.walk("investigating", "notified")
    assert work.move("decided", decision={"fine_yuan": 2_000}).status_code == 201
    work.walk("executed")

    blocked = work.move("closed")
    assert blocked.status_code == 409
    missing = blocked.json["errors"]["missing"]
    assert [(m["kind"], m["status"]) for m in missing] == [("evidence", "declared"), ("inspection", "none"),
                                                           ("conflict", "open")]
    assert missing[0]["id"] == eid and missing[1]["id"] == iid
    assert f"evidence {eid} is declared, not verified" in blocked.json["message"]

    with db.transaction() as s:
        s.execute(update(Evidence).where(Evidence.id == eid).values(status="verified"))
    still = work.move("closed")
    assert still.status_code == 409
    assert [m["kind"] for m in still.json["errors"]["missing"]] == ["inspection", "conflict"]

    by_officer = work.move("closed", override_reason="我说可以")
    assert by_officer.status_code == 403
    assert work.move("executed", work.reviewer, override_reason="x").status_code == 409  # not a step at all
    closed = work.move("closed", work.reviewer, override_reason="执法记录仪故障已另行说明，冲突不影响处罚")
    assert closed.status_code == 201, closed.json
    last = work.transitions().json["transitions"][-1]
    assert last["override_reason"] == "执法记录仪故障已另行说明，冲突不影响处罚"
    assert [m["kind"] for m in last["missing"]] == ["inspection", "conflict"]
    assert work.status() == "closed"


def test_a_complete_file_closes_without_override(work):
    work.walk("investigating", "notified")
    assert work.move("decided", decision={"licence_revocation": False, "fine_yuan": 200}).status_code == 201
    work.walk("executed")
    r = work.move("closed")
    assert r.status_code == 201 and r.json["transition"]["missing"] is None


def test_a_transfer_keeps_its_target_and_reason(work):
    assert work.move("transferred").status_code == 422
    own = work.move("transferred", transfer_to="education")
    assert own.status_code == 422 and "already belongs" in own.json["message"]
    assert work.move("transferred", transfer_to="nosuch").status_code == 422
    work.walk("investigating")
    r = work.client.post(f"/api/v1/cases/{work.case_id}/transitions", headers=work.headers,
                         json={"to": "transferred", "transfer_to": "judiciary", "reason": "涉嫌非法经营罪，移送公安"})
    assert r.status_code == 201, r.json
    (last,) = work.transitions().json["transitions"][-1:]
    assert (last["to"], last["transfer_to"], last["reason"]) == ("transferred", "judiciary", "涉嫌非法经营罪，移送公安")
    # The case left the open statuses: the same institution gets a new case.
    _cid, again = work.phone.open_case(CENTRE)
    assert work.phone.push([again])["results"][0]["refs"]["case_id"] != work.case_id


def test_a_transfer_to_another_department(work):
    r = work.move("transferred", transfer_to="market")
    assert r.status_code == 201 and r.json["transition"]["transfer_to"] == "market"
    assert r.json["case"]["status"] == "transferred"


def test_outside_jurisdiction_the_case_does_not_exist(work, officers):
    for roles in (("officer", "admin"), ("legal_reviewer",)):
        elsewhere = officers.headers(officers.make(region="330102", department="education", roles=roles))
        assert work.move("investigating", elsewhere).status_code == 404
        assert work.transitions(elsewhere).status_code == 404
    assert work.status() == "registered"


def test_the_feed_shows_the_status_change_and_the_transition(work):
    work.walk("investigating")
    changes = work.client.get("/api/v1/sync/pull", headers=work.headers).json["changes"]
    cases = [c for c in changes if c["kind"] == "case" and c["id"] == work.case_id]
    assert cases[-1]["data"]["status"] == "investigating" and cases[-1]["data"]["version"] == 2
    (step,) = [c for c in changes if c["kind"] == "case_transition"]
    assert step["data"]["case_id"] == work.case_id
    assert (step["data"]["from"], step["data"]["to"]) == ("registered", "investigating")


def _phone_sets_status(work: Work, to: str, base_version: int) -> dict:
    record = work.phone.record("case.update", {"case": {"client_case_id": work.cid}, "base_version": base_version,
                                               "fields": {"status": to, "summary": f"phone says {to}"}})
    return work.phone.push([record])["results"][0]


def test_a_phone_status_change_passes_the_same_gates_as_the_desk(work):
    stepped = _phone_sets_status(work, "investigating", 1)
    assert stepped["status"] == "applied", stepped
    history = work.transitions().json
    assert history["status"] == "investigating"
    [step] = history["transitions"]
    assert (step["from"], step["to"], step["actor"]) == ("registered", "investigating", work.phone.officer.id)
    assert step["reason"].startswith("case.update ")


@pytest.mark.parametrize("to", ["decided", "closed", "notified"])
def test_a_phone_cannot_jump_the_procedure(work, to):
    work.walk("investigating", "legal_review")
    before = work.transitions().json
    refused = _phone_sets_status(work, to, before["version"])
    assert (refused["status"], refused["code"]) == ("invalid", "transition_refused"), refused
    after = work.transitions().json
    assert after["status"] == "legal_review" and after["transitions"] == before["transitions"]
    case = work.client.get(f"/api/v1/cases/{work.case_id}", headers=work.headers).json
    assert case["summary"] != f"phone says {to}"  # nothing of the refused record is applied
