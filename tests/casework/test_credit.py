"""Credit and risk: the integrity record, the risk score it gives, and discretion benchmarks on decisions."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

import pytest

from backend.core.reference import CATALOGUE, DISCRETION_BENCHMARKS, seed_benchmarks
from tests.phones import SHANGHAI, TestPhone, uid

DISTRICT, OTHER, CITY = "330106", "330108", "330100"


@pytest.fixture
def benchmarks(db):
    """The seeded benchmarks (each test starts from emptied tables; seeding puts them back)."""
    with db.transaction() as s:
        seed_benchmarks(s)


@dataclass
class Desk:
    client: object
    officers: object
    admin_h: dict
    officer: object
    partner: object
    phone: TestPhone

    def institution(self, name: str, **extra) -> str:
        r = self.client.post("/api/v1/institutions", json={"name": name, "region": DISTRICT, **extra},
                             headers=self.admin_h)
        assert r.status_code == 201, r.json
        return r.json["id"]

    def inspect(self, cid: str, start: datetime, end: datetime, outcome: str, *findings: tuple[str, datetime]):
        iid = uid()
        records = [self.phone.record("inspection.start", {"inspection_id": iid, "case": {"client_case_id": cid},
                                                          "officers": [self.officer.id, self.partner.id]}, at=start)]
        for category, at in findings:
            records.append(self.phone.finding(iid, category, at=at))
        records.append(self.phone.end(iid, outcome, at=end))
        assert {r["status"] for r in self.phone.push(records)["results"]} == {"applied"}
        return iid

    def open_case(self, institution_id: str) -> tuple[str, str]:
        cid, opened = self.phone.open_case({"id": institution_id})
        return cid, self.phone.push([opened])["results"][0]["refs"]["case_id"]

    def move(self, case_id: str, to: str, headers: dict | None = None, **body):
        return self.client.post(f"/api/v1/cases/{case_id}/transitions",
                                json={"to": to, "reason": f"→ {to}", **body}, headers=headers or self.phone.headers)

    def integrity(self, institution_id: str, headers: dict | None = None):
        return self.client.get(f"/api/v1/institutions/{institution_id}/integrity",
                               headers=headers or self.phone.headers)


@pytest.fixture
def desk(client, officers) -> Desk:
    admin = officers.make(department="education", region=DISTRICT, roles=("admin",))
    officer = officers.make(department="education", region=DISTRICT)
    partner = officers.make(department="market", region=DISTRICT)
    return Desk(client, officers, officers.headers(admin), officer, partner,
                TestPhone(client, officer, officers.headers(officer)))


def _now() -> datetime:
    return datetime.now(SHANGHAI).replace(microsecond=0)


def _instant(text: str) -> datetime:
    return datetime.fromisoformat(text)


def test_the_integrity_record_lists_complaints_findings_decisions_and_rectifications(desk, client, officers,
                                                                                     benchmarks):
    # Given: a complaint, an inspection that ordered rectification (one finding), a later clean inspection,
    # and a decision; plus a clue from our own inspection, which is a finding already, not a complaint.
    inst = desk.institution("星辰教育", licence_status="licensed", risk_level="low")
    now = _now()
    complaint = desk.phone.record("clue.report", {"clue_id": uid(), "source": "complaint", "institution": {"id": inst},
                                                  "description": "家长投诉周末上课"}, at=now - timedelta(days=50))
    own = desk.phone.record("clue.report", {"clue_id": uid(), "source": "inspection", "institution": {"id": inst},
                                            "description": "检查中发现"}, at=now - timedelta(days=45))
    desk.phone.push([complaint, own])
    cid, case_id = desk.open_case(inst)
    ordered_at, cleared_at = now - timedelta(days=40, hours=-1), now - timedelta(days=10, hours=-1)
    first = desk.inspect(cid, now - timedelta(days=40), ordered_at, "rectification_ordered",
                         ("hours", now - timedelta(days=40, minutes=-5)))
    second = desk.inspect(cid, now - timedelta(days=10), cleared_at, "no_violation")
    for to in ("investigating", "notified"):
        assert desk.move(case_id, to).status_code == 201
    decided = desk.move(case_id, "decided", decision={"fine_yuan": 2_000, "category": "hours"})
    assert decided.status_code == 201, decided.json

    # When
    r = desk.integrity(inst, officers.headers(officers.make(region=DISTRICT)))

    # Then
    assert r.status_code == 200, r.json
    body = r.json
    assert body["counts"] == {"complaints": 1, "findings": 1, "decisions": 1, "rectifications": 1, "inspections": 2}
    kinds = [(e["kind"], e["points"]) for e in body["record"]]
    assert sorted(kinds) == sorted([("complaint", 4), ("finding", 10), ("decision", 20), ("rectification", 0),
                                    ("inspection", 0), ("inspection", 0)])
    assert [e["at"] for e in body["record"]] == sorted((e["at"] for e in body["record"]), reverse=True)
    rect = next(e for e in body["record"] if e["kind"] == "rectification")
    assert rect["id"] == first and _instant(rect["at"]) == ordered_at and _instant(rect["rectified_at"]) == cleared_at
    decision = next(e for e in body["record"] if e["kind"] == "decision")
    assert decision["case_id"] == case_id and decision["fine_yuan"] == 2_000 and decision["major"] is False
    finding = next(e for e in body["record"] if e["kind"] == "finding")
    assert finding["category"] == "hours" and finding["inspection_id"] == first
    complaint_event = next(e for e in body["record"] if e["kind"] == "complaint")
    assert complaint_event["source"] == "complaint" and "description" not in complaint_event
    risk = body["risk"]
    assert (risk["score"], risk["level"], risk["stored_score"], risk["stored_level"]) == (34, "medium", 0, "low")
    assert risk["interval_days"] == 180 and _instant(risk["last_inspected_at"]) == cleared_at
    assert risk["next_due_on"] == (cleared_at.date() + timedelta(days=180)).isoformat() and risk["overdue"] is False
    assert next(e for e in body["record"] if e["id"] == second)["outcome"] == "no_violation"
    # Outside the jurisdiction it does not exist.
    assert desk.integrity(inst, officers.headers(officers.make(region=OTHER))).status_code == 404

    # Storing the score is a desk act; a changed level reaches the phones.
    assert client.post(f"/api/v1/institutions/{inst}/risk", headers=desk.phone.headers).status_code == 403
    stored = client.post(f"/api/v1/institutions/{inst}/risk", headers=desk.admin_h)
    assert stored.status_code == 200, stored.json
    assert (stored.json["score"], stored.json["level"], stored.json["previous_level"]) == (34, "medium", "low")
    shown = client.get(f"/api/v1/institutions/{inst}", headers=desk.phone.headers).json
    assert (shown["risk_level"], shown["complaint_count"], shown["violation_count"]) == ("medium", 1, 1)
    changes = client.get("/api/v1/sync/pull", headers=desk.phone.headers).json["changes"]
    levels = [c["data"]["risk_level"] for c in changes if c["kind"] == "institution" and c["id"] == inst]
    assert levels[-1] == "medium"


def test_old_faults_fade_and_the_thresholds_set_the_level_and_frequency(desk, client):
    inst = desk.institution("无证托管点", licence_status="unlicensed")
    cid, _case = desk.open_case(inst)
    now = _now()
    long_ago = now - timedelta(days=3 * 365)
    desk.inspect(cid, long_ago, long_ago + timedelta(hours=1), "violation_found",
                 ("unlicensed", long_ago + timedelta(minutes=5)),
                 ("hours", now - timedelta(days=540)),
                 ("venue", now - timedelta(days=20)))

    risk = desk.integrity(inst).json
    points = {e["category"]: e["points"] for e in risk["record"] if e["kind"] == "finding"}
    assert points == {"unlicensed": 0, "hours": 5, "venue": 10}
    assert risk["risk"]["standing"] == [{"kind": "licence_status", "value": "unlicensed", "points": 20}]
    assert (risk["risk"]["score"], risk["risk"]["level"], risk["risk"]["interval_days"]) == (35, "medium", 180)
    assert risk["risk"]["overdue"] is True  # last inspected three years ago

    desk.inspect(cid, now - timedelta(days=2), now - timedelta(days=2, hours=-1), "violation_found",
                 ("fees", now - timedelta(days=2, minutes=-5)), ("contracts", now - timedelta(days=2, minutes=-6)))
    risk = desk.integrity(inst).json["risk"]
    assert (risk["score"], risk["level"], risk["interval_days"], risk["overdue"]) == (55, "high", 90, False)

    clean = desk.institution("规范培训", licence_status="licensed")
    risk = desk.integrity(clean).json["risk"]
    assert (risk["score"], risk["level"], risk["interval_days"]) == (0, "low", 365)
    assert risk["last_inspected_at"] is None and risk["next_due_on"] is None and risk["overdue"] is True

    bulk = client.post("/api/v1/risk/recompute", json={}, headers=desk.admin_h)
    assert bulk.status_code == 200, bulk.json
    assert bulk.json == {"institutions": 2, "changed": 2, "levels": {"low": 1, "medium": 0, "high": 1}}
    assert client.post("/api/v1/risk/recompute", json={}, headers=desk.phone.headers).status_code == 403


def test_seeded_benchmarks_cover_the_catalogue_with_their_legal_basis(client, officers, db, benchmarks):
    h = officers.headers(officers.make())
    items = client.get("/api/v1/discretion-benchmarks", headers=h).json["items"]
    assert len(items) == len(DISCRETION_BENCHMARKS)
    codes = {c[0] for c in CATALOGUE}
    assert {b["category"] for b in items} <= codes
    assert all(b["basis"] and b["fine_min_yuan"] <= b["fine_max_yuan"] for b in items)
    unlicensed = client.get("/api/v1/discretion-benchmarks", query_string={"category": "unlicensed"}, headers=h).json
    assert all("民办教育促进法" in b["basis"] for b in unlicensed["items"]) and len(unlicensed["items"]) == 3
    fire = client.get("/api/v1/discretion-benchmarks", query_string={"category": "fire_safety"}, headers=h).json
    assert {(b["fine_min_yuan"], b["fine_max_yuan"]) for b in fire["items"]} == {(5_000, 10_000), (5_000, 50_000)}
    with db.transaction() as s:
        assert seed_benchmarks(s) == 0  # idempotent: a category that has benchmarks is left alone


@pytest.mark.parametrize(("query", "expected"), [
    ({"first_offence": "true", "rectified_in_time": "true", "amount_involved_yuan": 5_000}, (0, 10_000)),
    ({"first_offence": "false", "rectified_in_time": "true", "amount_involved_yuan": 5_000}, (0, 50_000)),
    ({"amount_involved_yuan": 50_000}, (10_001, 500_000)),
    ({}, None),  # every unlicensed benchmark depends on the amount involved
])
def test_the_most_specific_benchmark_whose_circumstances_hold_applies(client, officers, benchmarks, query, expected):
    r = client.get("/api/v1/discretion-benchmarks/match", query_string={"category": "unlicensed", **query},
                   headers=officers.headers(officers.make()))
    assert r.status_code == 200, r.json
    found = r.json["benchmark"]
    assert (None if found is None else (found["fine_min_yuan"], found["fine_max_yuan"])) == expected


def test_benchmarks_are_city_data_kept_by_city_admins(client, officers, benchmarks):
    body = {"category": "advertising", "first_offence": None, "fine_min_yuan": 10_000, "fine_max_yuan": 200_000,
            "basis": "《中华人民共和国广告法》", "measures": "责令停止发布"}
    district_admin = officers.headers(officers.make(region=DISTRICT, roles=("admin",)))
    assert client.post("/api/v1/discretion-benchmarks", json=body, headers=district_admin).status_code == 403
    city = officers.headers(officers.make(region=CITY, roles=("admin",)))
    reversed_ = client.post("/api/v1/discretion-benchmarks", json={**body, "fine_min_yuan": 300_000}, headers=city)
    assert reversed_.status_code == 422 and "fine_max_yuan" in reversed_.json["errors"]
    unknown = client.post("/api/v1/discretion-benchmarks", json={**body, "category": "nonsense"}, headers=city)
    assert unknown.status_code == 422
    created = client.post("/api/v1/discretion-benchmarks", json=body, headers=city)
    assert created.status_code == 201, created.json
    patched = client.patch(f"/api/v1/discretion-benchmarks/{created.json['id']}", json={"fine_max_yuan": 100_000},
                           headers=city)
    assert patched.status_code == 200 and patched.json["fine_max_yuan"] == 100_000
    assert client.patch("/api/v1/discretion-benchmarks/999999", json={"fine_max_yuan": 1}, headers=city).status_code \
        == 404
    match = client.get("/api/v1/discretion-benchmarks/match", query_string={"category": "advertising"},
                       headers=city).json
    assert match["benchmark"]["id"] == created.json["id"]


def test_a_fine_within_the_benchmark_is_decided_and_records_the_benchmark(desk, benchmarks):
    _cid, case_id = desk.open_case(desk.institution("启航培训"))
    for to in ("investigating", "notified"):
        assert desk.move(case_id, to).status_code == 201
    r = desk.move(case_id, "decided", decision={
        "fine_yuan": 8_000, "category": "unlicensed", "first_offence": True, "rectified_in_time": True,
        "amount_involved_yuan": 5_000})
    assert r.status_code == 201, r.json
    stored = r.json["transition"]["decision"]
    assert stored["within_benchmark"] is True and stored["major"] is False
    assert (stored["benchmark"]["fine_min_yuan"], stored["benchmark"]["fine_max_yuan"]) == (0, 10_000)
    assert stored["benchmark"]["first_offence"] is True and "民办教育促进法" in stored["benchmark"]["basis"]


def test_a_fine_outside_the_benchmark_needs_a_written_reason_and_legal_approval(desk, officers, benchmarks):
    legal = officers.headers(officers.make(department="education", region=DISTRICT, roles=("legal_reviewer",)))
    outside = {"fine_yuan": 3_000, "category": "hours", "first_offence": True, "rectified_in_time": True}
    _cid, case_id = desk.open_case(desk.institution("明日之星"))
    for to in ("investigating", "notified"):
        assert desk.move(case_id, to).status_code == 201

    no_reason = desk.move(case_id, "decided", decision=outside)
    assert no_reason.status_code == 422, no_reason.json
    assert "outside the discretion benchmark" in no_reason.json["message"]
    assert no_reason.json["errors"]["decision"]["discretion_reason"]
    reasoned = {**outside, "discretion_reason": "屡教不改，社会影响较大"}
    no_review = desk.move(case_id, "decided", decision=reasoned)
    assert no_review.status_code == 409
    assert no_review.json["message"].startswith("a decision outside the discretion benchmark (fine outside the "
                                                "discretion benchmark (0-0 yuan)) needs a legal reviewer's approval")
    unknown = desk.move(case_id, "decided", decision={**outside, "category": "nonsense"})
    assert unknown.status_code == 422

    # Through legal review (another case): the same decision is taken, with its reason and the benchmark kept.
    _cid2, reviewed = desk.open_case(desk.institution("智慧树艺术"))
    for to, headers in (("investigating", None), ("legal_review", None), ("notified", legal)):
        assert desk.move(reviewed, to, headers).status_code == 201
    decided = desk.move(reviewed, "decided", decision=reasoned)
    assert decided.status_code == 201, decided.json
    stored = decided.json["transition"]["decision"]
    assert stored["within_benchmark"] is False and stored["discretion_reason"] == "屡教不改，社会影响较大"
    assert (stored["benchmark"]["fine_min_yuan"], stored["benchmark"]["fine_max_yuan"]) == (0, 0)


def test_a_decision_without_a_matching_benchmark_is_kept_as_given(desk, benchmarks):
    _cid, case_id = desk.open_case(desk.institution("飞跃体育"))
    for to in ("investigating", "notified"):
        assert desk.move(case_id, to).status_code == 201
    r = desk.move(case_id, "decided", decision={"fine_yuan": 5_000, "category": "epidemic"})
    assert r.status_code == 201, r.json
    stored = r.json["transition"]["decision"]
    assert stored["benchmark"] is None and stored["within_benchmark"] is None


def test_dates_in_the_future_of_the_record_do_not_break_the_score(desk):
    # A phone whose clock ran ahead: the event counts in full, never more.
    inst = desk.institution("钟表快", licence_status="licensed")
    cid, _case = desk.open_case(inst)
    later = _now() + timedelta(minutes=30)
    desk.inspect(cid, later, later + timedelta(minutes=30), "violation_found", ("hours", later + timedelta(minutes=1)))
    risk = desk.integrity(inst).json["risk"]
    assert (risk["score"], risk["level"]) == (10, "low")
    assert risk["next_due_on"] == ((later + timedelta(minutes=30)).date() + timedelta(days=365)).isoformat()
