"""Double random, one public: draws reproducible from their seed, tasks in the teams' feeds, published results."""

from __future__ import annotations

import hashlib
import hmac
import json
import math
import re
from collections import Counter
from dataclasses import dataclass
from datetime import date, timedelta

import pytest
from sqlalchemy import update

from backend.casework.draws import run
from backend.core.models import Draw
from tests.phones import TestPhone, uid

DISTRICT, OTHER = "330106", "330108"
PLANNED = date.today() + timedelta(days=7)
PERIOD = {"period_start": date.today().isoformat(), "period_end": (date.today() + timedelta(days=30)).isoformat(),
          "planned_date": PLANNED.isoformat()}
PUBLIC_FIELDS = {"institution_name", "credit_code", "region", "date", "outcome", "categories", "campaign"}


@dataclass
class World:
    client: object
    officers: object
    admin: object
    admin_h: dict
    institutions: dict[str, str]  # name -> id
    team: list  # certified officers of the district, education and market

    def draw(self, headers: dict | None = None, **body):
        payload = {**PERIOD, "departments": ["education", "market"], "count": 3, **body}
        return self.client.post("/api/v1/draws", json=payload, headers=headers or self.admin_h)

    def headers(self, officer) -> dict:
        return self.officers.headers(officer)


def _institution(client, headers, name, region=DISTRICT, **extra):
    r = client.post("/api/v1/institutions", json={"name": name, "region": region, **extra}, headers=headers)
    assert r.status_code == 201, r.json
    return r.json["id"]


@pytest.fixture
def world(client, officers) -> World:
    admin = officers.make(department="education", region=DISTRICT, roles=("admin",))
    admin_h = officers.headers(admin)
    names = ["启航培训", "星辰教育", "明日之星", "智慧树艺术", "飞跃体育"]
    institutions = {n: _institution(client, admin_h, n, licence_status="licensed") for n in names}
    team = [officers.make(department=d, region=DISTRICT) for d in ("education", "education", "market", "market")]
    return World(client, officers, admin, admin_h, institutions, team)


# --- an independent implementation of docs "Draws, as built", in floating point ------------------------------

def _u(seed: str, message: str) -> float:
    digest = hmac.new(bytes.fromhex(seed), message.encode(), hashlib.sha256).digest()
    return int.from_bytes(digest, "big") / 2**256


def rerun(seed: str, inputs: dict) -> list[dict]:
    keyed = sorted(inputs["institutions"], key=lambda i: (-math.log(_u(seed, "institution:" + i["id"])) / i["weight"],
                                                          i["id"]))
    load = {o["id"]: o["load"] for o in inputs["officers"]}
    out = []
    for inst in keyed[: inputs["count"]]:
        team, depts = [], set()
        for _ in range(inputs["team_size"]):
            pool = [o for o in inputs["officers"] if o["id"] not in team]
            if inputs["joint"] and any(o["department"] not in depts for o in pool):
                pool = [o for o in pool if o["department"] not in depts]
            best = min(pool, key=lambda o: (load[o["id"]], -_u(seed, f"officer:{inst['id']}:{o['id']}"), o["id"]))
            team.append(best["id"])
            depts.add(best["department"])
        for oid in team:
            load[oid] += 1
        out.append({"institution_id": inst["id"], "officers": team})
    return out


def test_a_joint_draw_picks_registered_institutions_and_certified_teams_from_two_departments(world, client, officers):
    # Given: a provisional centre (known only by a name a phone gave), one in another district, an uncertified
    # officer, a custodian, and an officer of another district: none of them may be drawn.
    field = officers.make(department="culture", region=DISTRICT)
    phone = TestPhone(client, field, officers.headers(field))
    _cid, opened = phone.open_case({"name": "无名托管点", "region": DISTRICT})
    provisional = phone.push([opened])["results"][0]["refs"]
    city_admin = officers.make(region="330100", roles=("admin",))
    elsewhere = _institution(client, world.headers(city_admin), "滨江培训", region=OTHER)
    uncertified = officers.make(department="education", region=DISTRICT, certified=False)
    custodian = officers.make(department="market", region=DISTRICT, roles=("custodian",))
    far = officers.make(department="market", region=OTHER)

    # When
    r = world.draw()

    # Then
    assert r.status_code == 201, r.json
    d = r.json
    assert re.fullmatch(r"[0-9a-f]{64}", d["seed"]) and d["algorithm"] == "es-hmac-sha256-v1"
    assert d["joint"] is True and d["departments"] == ["education", "market"] and d["team_size"] == 2
    pool = {i["id"] for i in d["inputs"]["institutions"]}
    assert pool == set(world.institutions.values())
    assert elsewhere not in pool and provisional["institution_id"] not in pool
    assert {o["id"] for o in d["inputs"]["officers"]} == {o.id for o in world.team}
    assert not {uncertified.id, custodian.id, far.id, field.id} & {o["id"] for o in d["inputs"]["officers"]}
    departments = {o.id: o.department_code for o in world.team}
    assert len(d["result"]) == 3 and len({x["institution_id"] for x in d["result"]}) == 3
    for item in d["result"]:
        assert len(item["officers"]) == 2
        assert {departments[o] for o in item["officers"]} == {"education", "market"}
    # Load is spread: every officer is on a team before anyone is on a second one.
    first_two = d["result"][0]["officers"] + d["result"][1]["officers"]
    assert sorted(first_two) == sorted(o.id for o in world.team)
    assert [(t["institution_id"], t["officers"], t["status"], t["planned_date"]) for t in d["tasks"]] == [
        (x["institution_id"], x["officers"], "assigned", PLANNED.isoformat()) for x in d["result"]]
    assert all(t["draw_id"] == d["id"] and t["departments"] == ["education", "market"] for t in d["tasks"])


def test_the_draw_is_reproducible_from_its_seed_and_stored_inputs(world, client, db):
    drawn = world.draw(count=4).json
    shown = client.get(f"/api/v1/draws/{drawn['id']}", headers=world.admin_h).json
    assert shown["seed"] == drawn["seed"] and shown["inputs"] == drawn["inputs"]

    # Anyone can re-run it from the seed and inputs alone, with their own implementation.
    assert rerun(shown["seed"], shown["inputs"]) == shown["result"]
    reviewer = world.officers.make(department="education", region=DISTRICT, roles=("reviewer",))
    verified = client.get(f"/api/v1/draws/{drawn['id']}/verify", headers=world.headers(reviewer)).json
    assert verified["matches"] is True and verified["result"] == shown["result"]

    # A stored result that was changed afterwards no longer matches its seed.
    swapped = [shown["result"][1], shown["result"][0], *shown["result"][2:]]
    with db.transaction() as s:
        s.execute(update(Draw).where(Draw.id == drawn["id"]).values(result=swapped))
    assert client.get(f"/api/v1/draws/{drawn['id']}/verify", headers=world.admin_h).json["matches"] is False


def test_risk_sets_the_weights_and_the_weights_set_the_odds(world, client):
    # Given: an unlicensed institution (medium), and one unlicensed with three recent findings (high).
    medium = _institution(client, world.admin_h, "无证培训甲", licence_status="unlicensed")
    high = _institution(client, world.admin_h, "无证培训乙", licence_status="unlicensed")
    officer = world.team[0]
    phone = TestPhone(client, officer, world.headers(officer))
    cid, opened = phone.open_case({"id": high})
    iid, started = phone.start(cid, [officer.id, world.team[2].id])
    phone.push([opened, started, *[phone.finding(iid, "hours") for _ in range(3)], phone.end(iid)])

    inputs = world.draw(count=1).json["inputs"]

    by_id = {i["id"]: i for i in inputs["institutions"]}
    assert (by_id[high]["risk_level"], by_id[high]["weight"]) == ("high", 4)
    assert (by_id[medium]["risk_level"], by_id[medium]["weight"]) == ("medium", 2)
    assert {(by_id[i]["risk_level"], by_id[i]["weight"]) for i in world.institutions.values()} == {("low", 1)}
    assert inputs["weights"] == {"low": 1, "medium": 2, "high": 4}
    # Over many seeds each institution is drawn in proportion to its weight.
    three = {"count": 1, "team_size": 2, "joint": False, "officers": inputs["officers"],
             "institutions": [{"id": "a", "weight": 1}, {"id": "b", "weight": 2}, {"id": "c", "weight": 4}]}
    n = 3000
    seen = Counter(run(hashlib.sha256(str(k).encode()).hexdigest(), three)[0]["institution_id"] for k in range(n))
    for key, weight in (("a", 1), ("b", 2), ("c", 4)):
        assert abs(seen[key] / n - weight / 7) < 0.03, seen


def test_a_campaign_weights_up_its_focus_categories_and_its_tasks_carry_it(world, client, officers):
    r = client.post("/api/v1/campaigns", json={"name": "2026 暑期专项", "starts_on": PERIOD["period_start"],
                                               "ends_on": PERIOD["period_end"], "focus_categories": ["fire_safety"]},
                    headers=world.admin_h)
    assert r.status_code == 201, r.json
    campaign = r.json
    officer = world.team[0]
    phone = TestPhone(client, officer, world.headers(officer))
    target = world.institutions["飞跃体育"]
    cid, opened = phone.open_case({"id": target})
    iid, started = phone.start(cid, [officer.id, world.team[2].id])
    phone.push([opened, started, phone.finding(iid, "fire_safety"), phone.end(iid, "rectification_ordered")])

    d = world.draw(campaign_id=campaign["id"]).json

    by_id = {i["id"]: i for i in d["inputs"]["institutions"]}
    assert by_id[target]["focus"] is True and by_id[target]["weight"] == 2 * {"low": 1, "medium": 2}[
        by_id[target]["risk_level"]]
    assert all(not i["focus"] for k, i in by_id.items() if k != target)
    assert d["campaign_id"] == campaign["id"] and {t["campaign_id"] for t in d["tasks"]} == {campaign["id"]}
    task = d["tasks"][0]
    lead = next(o for o in world.team if o.id == task["officers"][0])
    lead_phone = TestPhone(client, lead, world.headers(lead))
    cid2, opened2 = lead_phone.open_case({"id": task["institution_id"]})
    iid2 = uid()
    lead_phone.push([opened2, lead_phone.record("inspection.start", {
        "inspection_id": iid2, "case": {"client_case_id": cid2}, "officers": task["officers"], "task_id": task["id"]}),
        lead_phone.end(iid2, "no_violation")])
    published = client.get("/api/v1/public/inspections").json["items"]
    assert [(p["campaign"], p["outcome"], p["categories"]) for p in published] == [
        ("2026 暑期专项", "no_violation", [])]
    district = officers.make(region=OTHER)
    city_campaign = client.post("/api/v1/campaigns", json={
        "name": "寒假专项", "starts_on": "2027-01-15", "ends_on": "2027-02-20", "focus_categories": []},
        headers=world.headers(officers.make(region="330100", roles=("admin",)))).json
    seen = client.get("/api/v1/campaigns", headers=world.headers(district)).json["items"]
    assert [c["id"] for c in seen] == [city_campaign["id"]]  # the city's, not another district's
    outside = world.draw(campaign_id=city_campaign["id"])
    assert outside.status_code == 422 and "outside the campaign" in outside.json["message"]


def test_campaign_input_is_checked(world, client):
    base = {"name": "周末专项", "starts_on": "2026-08-01", "ends_on": "2026-08-31"}
    bad_category = client.post("/api/v1/campaigns", json={**base, "focus_categories": ["nonsense"]},
                               headers=world.admin_h)
    assert bad_category.status_code == 422 and "nonsense" in bad_category.json["message"]
    reversed_ = client.post("/api/v1/campaigns", json={**base, "ends_on": "2026-07-01"}, headers=world.admin_h)
    assert reversed_.status_code == 422
    plain = world.officers.make(region=DISTRICT)
    assert client.post("/api/v1/campaigns", json=base, headers=world.headers(plain)).status_code == 403


def test_a_draw_that_cannot_be_staffed_or_filled_says_why(world, client, officers):
    too_many = world.draw(count=6)
    assert too_many.status_code == 409
    assert "only 5 institutions" in too_many.json["message"] and too_many.json["errors"]["count"]
    only_culture = world.draw(departments=["education", "culture"], joint=True)
    assert only_culture.status_code == 409 and "two departments" in only_culture.json["message"]
    # Certificates must be valid on the planned date, not today.
    late = PLANNED + timedelta(days=400)
    expired = world.draw(period_end=late.isoformat(), planned_date=late.isoformat())
    assert expired.status_code == 409 and "certificates valid on" in expired.json["message"]
    outside = world.draw(planned_date=(date.today() + timedelta(days=60)).isoformat())
    assert outside.status_code == 422 and outside.json["errors"]["planned_date"]
    assert world.draw(departments=["education", "nowhere"]).status_code == 422
    assert world.draw(region=OTHER).status_code == 422  # a district admin draws only in their district
    assert world.draw(count=0).status_code == 422
    plain = world.draw(headers=world.headers(world.team[0]))
    assert plain.status_code == 403
    market_admin = officers.make(department="market", region=DISTRICT, roles=("admin",))
    refused = world.draw(departments=["education"], headers=world.headers(market_admin))
    assert refused.status_code == 403 and "own department" in refused.json["message"]


def test_an_institution_is_not_drawn_twice_in_one_period(world):
    first = world.draw(count=3).json
    second = world.draw(count=2).json
    firsts = {x["institution_id"] for x in first["result"]}
    assert not firsts & {x["institution_id"] for x in second["result"]}
    assert world.draw(count=1).status_code == 409  # all five are planned for this period now
    # The officers already busy that day are drawn only after the others: their load is in the inputs.
    assert sorted(o["load"] for o in second["inputs"]["officers"]) == [1, 1, 2, 2]


def test_drawn_tasks_go_to_the_assigned_officers_only(world, client, officers):
    d = world.draw(count=1).json
    task = d["tasks"][0]
    on_team = [o for o in world.team if o.id in task["officers"]]
    off_team = [o for o in world.team if o.id not in task["officers"]]

    for officer in on_team:
        changes = client.get("/api/v1/sync/pull", headers=world.headers(officer)).json["changes"]
        tasks = [c for c in changes if c["kind"] == "task"]
        assert [(c["id"], c["op"], c["data"]["status"]) for c in tasks] == [(task["id"], "upsert", "assigned")]
        assert tasks[0]["data"]["institution_id"] == task["institution_id"]
        listed = client.get("/api/v1/tasks", headers=world.headers(officer)).json
        assert [t["id"] for t in listed["items"]] == [task["id"]]
        assert client.get(f"/api/v1/tasks/{task['id']}", headers=world.headers(officer)).status_code == 200
    for officer in off_team:
        changes = client.get("/api/v1/sync/pull", headers=world.headers(officer)).json["changes"]
        assert not [c for c in changes if c["kind"] == "task"]
        assert client.get("/api/v1/tasks", headers=world.headers(officer)).json["total"] == 0
        assert client.get(f"/api/v1/tasks/{task['id']}", headers=world.headers(officer)).status_code == 404
        assert client.get("/api/v1/tasks", query_string={"mine": "false"},
                          headers=world.headers(officer)).status_code == 403
    everyone = client.get("/api/v1/tasks", query_string={"mine": "false"}, headers=world.admin_h).json
    assert [t["id"] for t in everyone["items"]] == [task["id"]]
    other_admin = officers.make(region=OTHER, roles=("admin",))
    assert client.get(f"/api/v1/tasks/{task['id']}", headers=world.headers(other_admin)).status_code == 404
    assert client.get(f"/api/v1/draws/{d['id']}", headers=world.headers(other_admin)).status_code == 404
    assert client.get(f"/api/v1/draws/{d['id']}", headers=world.headers(on_team[0])).status_code == 403

    cancelled = client.post(f"/api/v1/tasks/{task['id']}/cancel", headers=world.admin_h)
    assert cancelled.status_code == 200 and cancelled.json["status"] == "cancelled"
    changes = client.get("/api/v1/sync/pull", headers=world.headers(on_team[0])).json["changes"]
    assert [c["data"]["status"] for c in changes if c["kind"] == "task"] == ["assigned", "cancelled"]
    assert client.post(f"/api/v1/tasks/{task['id']}/cancel", headers=world.admin_h).status_code == 409


def test_inspection_start_links_its_task_and_the_result_is_published_without_personal_data(world, client):
    d = world.draw(count=2).json
    task, other = d["tasks"]
    lead = next(o for o in world.team if o.id == task["officers"][0])
    phone = TestPhone(client, lead, world.headers(lead))
    cid, opened = phone.open_case({"id": task["institution_id"]})
    iid = uid()
    start = phone.record("inspection.start", {"inspection_id": iid, "case": {"client_case_id": cid},
                                              "officers": task["officers"], "task_id": task["id"]})
    assert phone.push([opened, start])["results"][1]["status"] == "applied"

    linked = client.get(f"/api/v1/tasks/{task['id']}", headers=phone.headers).json
    assert (linked["status"], linked["inspection_id"]) == ("done", iid) and linked["done_at"]
    feed = client.get("/api/v1/sync/pull", headers=phone.headers).json["changes"]
    assert [c["data"]["status"] for c in feed if c["kind"] == "task" and c["id"] == task["id"]] == ["assigned", "done"]
    # Not published while the inspection is open.
    assert client.get("/api/v1/public/inspections").json["total"] == 0

    eid, photo = phone.evidence(iid)
    phone.push([photo, phone.finding(iid, "hours"), phone.finding(iid, "pricing"), phone.end(iid, "violation_found")])
    r = client.get("/api/v1/public/inspections")  # no login

    assert r.status_code == 200
    assert set(r.json) == {"items", "page", "page_size", "total"} and r.json["total"] == 1
    item = r.json["items"][0]
    assert set(item) == PUBLIC_FIELDS
    name = next(n for n, i in world.institutions.items() if i == task["institution_id"])
    assert item == {"institution_name": name, "credit_code": None, "region": DISTRICT,
                    "date": item["date"], "outcome": "violation_found", "categories": ["hours", "pricing"],
                    "campaign": None}
    assert re.fullmatch(r"\d{4}-\d{2}-\d{2}", item["date"])
    text = json.dumps(r.json, ensure_ascii=False)
    for secret in [*task["officers"], lead.name, lead.username, iid, eid, cid, task["id"], d["id"], "现场发现"]:
        assert secret not in text
    assert client.get("/api/v1/public/inspections", query_string={"region": OTHER}).json["total"] == 0
    assert client.get("/api/v1/public/inspections", query_string={"date_from": "2000-01-01",
                                                                  "date_to": "2000-12-31"}).json["total"] == 0
    assert other["status"] == "assigned"


def test_a_task_id_that_does_not_fit_is_kept_but_never_rejects_the_record(world, client):
    d = world.draw(count=2).json
    task, other = d["tasks"]
    lead = next(o for o in world.team if o.id == task["officers"][0])
    phone = TestPhone(client, lead, world.headers(lead))
    cid, opened = phone.open_case({"id": task["institution_id"]})
    unknown, wrong = uid(), uid()
    records = [opened,
               phone.record("inspection.start", {"inspection_id": unknown, "case": {"client_case_id": cid},
                                                 "officers": task["officers"], "task_id": "tsk_not_a_task"}),
               phone.record("inspection.start", {"inspection_id": wrong, "case": {"client_case_id": cid},
                                                 "officers": task["officers"], "task_id": other["id"]})]
    results = phone.push(records)["results"]
    assert [r["status"] for r in results] == ["applied", "applied", "applied"]
    assert "task_mismatch" not in results[1].get("flags", []) and "task_mismatch" in results[2]["flags"]
    shown = client.get(f"/api/v1/inspections/{unknown}", headers=phone.headers).json
    assert shown["task_id"] == "tsk_not_a_task"
    assert client.get(f"/api/v1/tasks/{other['id']}", headers=world.admin_h).json["status"] == "assigned"


def test_a_campaign_task_outside_a_draw_needs_two_certified_officers_and_is_not_published(world, client, officers):
    campaign = client.post("/api/v1/campaigns", json={"name": "国庆专项", "starts_on": PERIOD["period_start"],
                                                      "ends_on": PERIOD["period_end"]}, headers=world.admin_h).json
    uncertified = officers.make(department="education", region=DISTRICT, certified=False)
    body = {"institution_id": world.institutions["启航培训"], "planned_date": PLANNED.isoformat(),
            "campaign_id": campaign["id"]}
    short = client.post("/api/v1/tasks", json={**body, "officers": [world.team[0].id, uncertified.id]},
                        headers=world.admin_h)
    assert short.status_code == 422 and "at least 2 officers" in short.json["message"]
    stranger = officers.make(department="market", region=OTHER)  # outside the admin's jurisdiction
    foreign = client.post("/api/v1/tasks", json={**body, "officers": [world.team[0].id, stranger.id]},
                          headers=world.admin_h)
    assert foreign.status_code == 422 and stranger.id in foreign.json["message"]
    r = client.post("/api/v1/tasks", json={**body, "officers": [world.team[0].id, world.team[2].id]},
                    headers=world.admin_h)
    assert r.status_code == 201, r.json
    task = r.json
    assert task["draw_id"] is None and task["campaign_id"] == campaign["id"]
    assert task["departments"] == ["education", "market"]

    phone = TestPhone(client, world.team[0], world.headers(world.team[0]))
    cid, opened = phone.open_case({"id": task["institution_id"]})
    iid = uid()
    start = phone.record("inspection.start", {"inspection_id": iid, "case": {"client_case_id": cid},
                                              "officers": task["officers"], "task_id": task["id"]})
    phone.push([opened, start, phone.end(iid, "no_violation")])
    assert client.get(f"/api/v1/tasks/{task['id']}", headers=phone.headers).json["status"] == "done"
    assert client.get("/api/v1/public/inspections").json["total"] == 0  # targeted, not random: not published
