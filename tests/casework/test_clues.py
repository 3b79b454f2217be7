"""Clues: intake from every channel, routing by the catalogue, duplicates, their ends, and the public status page."""

from __future__ import annotations

import json
import re

import pytest

from backend.casework.clues import CODE_ALPHABET, normalise_tracking_code
from tests.phones import TestPhone, uid

CENTRE = {"name": "启航学科辅导中心", "region": "330106", "address": "西湖区文三路 100 号"}
CODE_RE = re.compile(rf"^[{CODE_ALPHABET}]{{4}}-[{CODE_ALPHABET}]{{4}}-[{CODE_ALPHABET}]{{4}}$")
COMPLAINANT = {"name": "王晓梅", "phone": "13900001111", "email": "wxm@example.cn", "address": "文三路 8 号 2 单元"}
DESCRIPTION = "家长王晓梅反映：周末在居民楼内开展初中数学培训，联系电话 13900001111"


@pytest.fixture
def desk(client, officers):
    """A hotline officer at the district (education), and a helper that takes clues through the API."""
    hotline = officers.make(department="education", region="330106", name="热线员甲")
    headers = officers.headers(hotline)

    def take(headers=headers, **body):
        payload = {"source": "hotline", "institution": CENTRE, "description": DESCRIPTION, **body}
        return client.post("/api/v1/clues", json=payload, headers=headers)

    take.officer, take.headers = hotline, headers
    return take


def test_a_hotline_clue_is_taken_routed_by_its_category_and_given_a_tracking_code(desk, client):
    r = desk(category="fire_safety", complainant=COMPLAINANT,
             attachments=[{"name": "楼道照片.jpg", "media_type": "image/jpeg", "sha256": "ab" * 32, "size": 1234}])
    assert r.status_code == 201, r.json
    clue = r.json
    assert CODE_RE.match(clue["tracking_code"])
    assert (clue["status"], clue["category"], clue["department"]) == ("new", "fire_safety", "fire")
    assert clue["source"] == "hotline" and clue["reported_by"] == desk.officer.id
    assert clue["attachments"][0]["sha256"] == "ab" * 32
    # The complainant is kept, but only those who handle the clue (here: fire) see it; the taker is education.
    assert clue["complainant"] is None
    # A clue without a category goes to the lead department until it is triaged.
    plain = desk(institution={"name": "另一家机构", "region": "330106"}).json
    assert (plain["status"], plain["category"], plain["department"]) == ("new", None, "education")
    listed = client.get("/api/v1/clues", headers=desk.headers).json
    assert listed["total"] == 2 and all("complainant" not in c for c in listed["items"])


def test_only_officers_and_admins_take_clues_and_only_within_their_jurisdiction(desk, officers, client):
    custodian = officers.headers(officers.make(roles=("custodian",)))
    assert desk(headers=custodian).status_code == 403
    far = desk(institution={"name": "萧山某机构", "region": "330109"})
    assert far.status_code == 422 and "jurisdiction" in far.json["message"]
    city = officers.headers(officers.make(region="330100", roles=("admin",)))
    assert desk(headers=city, institution={"name": "萧山某机构", "region": "330109"}).status_code == 201
    assert desk(category="nosuch").status_code == 422
    assert desk(source="rumour").status_code == 422
    assert desk(attachments=[{"evidence_id": uid()}]).status_code == 422
    assert desk(attachments=[{"name": "x.jpg"}]).status_code == 422  # a file needs its hash


def test_a_clue_reported_from_a_phone_gets_a_tracking_code_and_reaches_the_feed(client, officers):
    grid = officers.make(department="education")
    phone = TestPhone(client, grid, officers.headers(grid))
    clue_id = uid()
    result = phone.push([phone.record("clue.report", {"clue_id": clue_id, "source": "grid_worker",
                                                      "institution": CENTRE,
                                                      "description": "晚上九点后仍有学生进出"})])["results"][0]
    assert result["status"] == "applied", result
    assert result["refs"]["clue_id"] == clue_id and CODE_RE.match(result["refs"]["tracking_code"])
    clue = client.get(f"/api/v1/clues/{clue_id}", headers=phone.headers).json
    assert (clue["status"], clue["department"], clue["tracking_code"]) == (
        "new", "education", result["refs"]["tracking_code"])
    changes = client.get("/api/v1/sync/pull", headers=phone.headers).json["changes"]
    (change,) = [c for c in changes if c["kind"] == "clue"]
    assert change["id"] == clue_id and change["data"]["tracking_code"] == result["refs"]["tracking_code"]
    assert "complainant" not in change["data"]


def test_duplicates_are_linked_to_the_earliest_open_clue_and_follow_it(desk, officers, client):
    first = desk(complainant=COMPLAINANT).json
    grid = officers.make(department="education")
    phone = TestPhone(client, grid, officers.headers(grid))
    second_id = uid()
    pushed = phone.push([phone.record("clue.report", {"clue_id": second_id, "source": "grid_worker",
                                                      "institution": CENTRE, "description": "同一机构"})])
    assert pushed["results"][0]["refs"]["duplicate_of"] == first["id"]
    third = desk(category="hours").json
    assert (third["status"], third["duplicate_of"]) == ("duplicate", first["id"])
    # Another institution is another matter.
    other = desk(institution={"name": "别家机构", "region": "330106"}).json
    assert other["status"] == "new" and other["duplicate_of"] is None
    detail = client.get(f"/api/v1/clues/{first['id']}", headers=desk.headers).json
    assert detail["duplicates"] == [second_id, third["id"]]

    # Triage of the original carries its duplicates to the department that handles the category.
    r = client.post(f"/api/v1/clues/{first['id']}/triage", json={"category": "advertising"}, headers=desk.headers)
    assert r.status_code == 200, r.json
    assert (r.json["status"], r.json["department"]) == ("triaged", "market")
    for dup in (second_id, third["id"]):
        c = client.get(f"/api/v1/clues/{dup}", headers=desk.headers).json
        assert (c["status"], c["category"], c["department"]) == ("duplicate", "advertising", "market")
    # A duplicate is not handled on its own...
    market = officers.headers(officers.make(department="market"))
    alone = client.post(f"/api/v1/clues/{second_id}/close", json={"outcome": "no_violation", "reason": "x"},
                        headers=market)
    assert alone.status_code == 409 and first["id"] in alone.json["message"]
    # Triaged on its own, a duplicate that was about something else leaves its original.
    own = client.post(f"/api/v1/clues/{third['id']}/triage", json={"category": "hours"}, headers=market)
    assert (own.json["status"], own.json["duplicate_of"], own.json["department"]) == ("triaged", None, "education")
    assert client.get(f"/api/v1/clues/{first['id']}", headers=market).json["duplicates"] == [second_id]
    # ...and when its original becomes a case, it becomes that case too.
    made = client.post(f"/api/v1/clues/{first['id']}/case", json={}, headers=market)
    assert made.status_code == 201, made.json
    c = client.get(f"/api/v1/clues/{second_id}", headers=market).json
    assert (c["status"], c["case_id"]) == ("case", made.json["case"]["id"])
    assert client.get(f"/api/v1/clues/{third['id']}", headers=market).json["status"] == "triaged"


def test_triage_routes_by_the_catalogue_and_only_the_routed_department_acts(desk, officers, client):
    clue = desk().json
    culture = officers.headers(officers.make(department="culture"))
    url = f"/api/v1/clues/{clue['id']}"
    assert client.post(f"{url}/triage", json={"category": "pricing"}, headers=culture).status_code == 403
    wrong = client.post(f"{url}/triage", json={"category": "pricing", "department": "fire"}, headers=desk.headers)
    assert wrong.status_code == 422 and "market, education" in wrong.json["message"]
    r = client.post(f"{url}/triage", json={"category": "pricing", "department": "education"}, headers=desk.headers)
    assert (r.json["status"], r.json["department"]) == ("triaged", "education")
    r = client.post(f"{url}/triage", json={"category": "pricing"}, headers=desk.headers)
    assert r.json["department"] == "market"
    # Routed to market now: education no longer acts on it, market does and sees the complainant.
    assert client.post(f"{url}/close", json={"outcome": "other", "reason": "x"},
                       headers=desk.headers).status_code == 403
    market = officers.headers(officers.make(department="market"))
    assert client.get(url, headers=market).json["complainant"] is None  # this clue had none
    far = officers.headers(officers.make(department="market", region="330105"))
    assert client.get(url, headers=far).status_code == 404
    assert client.post(f"{url}/triage", json={"category": "pricing"}, headers=far).status_code == 404


def test_a_clue_becomes_a_case_or_joins_the_departments_open_case(desk, officers, client):
    first = desk(category="unlicensed").json
    second = desk(institution={"name": "启航学科辅导中心", "region": "330106"}, category="content").json
    assert second["status"] == "new"  # another matter on the same institution
    r = client.post(f"/api/v1/clues/{first['id']}/case", json={"summary": "无证办学"}, headers=desk.headers)
    assert r.status_code == 201, r.json
    case = r.json["case"]
    assert r.json["existing"] is False
    assert (case["status"], case["department"], case["summary"]) == ("registered", "education", "无证办学")
    assert (r.json["clue"]["status"], r.json["clue"]["case_id"], r.json["clue"]["outcome"]) == (
        "case", case["id"], "case_opened")
    # The same department already has an open case on the institution: the second clue joins it.
    joined = client.post(f"/api/v1/clues/{second['id']}/case", json={}, headers=desk.headers)
    assert joined.status_code == 201 and joined.json["existing"] is True
    assert joined.json["case"]["id"] == case["id"]
    # A phone of the same department opening a case there merges into it: one rule for desk and phones.
    phone = TestPhone(client, desk.officer, desk.headers)
    _cid, opened = phone.open_case(CENTRE)
    refs = phone.push([opened])["results"][0]["refs"]
    assert refs["case_id"] == case["id"] and refs["merged"] is True
    again = client.post(f"/api/v1/clues/{first['id']}/case", json={}, headers=desk.headers)
    assert again.status_code == 409


def test_closing_keeps_the_reason_inside_and_shows_the_outcome(desk, client):
    clue = desk(complainant=COMPLAINANT).json
    url = f"/api/v1/clues/{clue['id']}"
    bad = client.post(f"{url}/close", json={"outcome": "solved", "reason": "x"}, headers=desk.headers)
    assert bad.status_code == 422
    r = client.post(f"{url}/close", json={"outcome": "no_violation", "reason": "现场核查：王晓梅所述房屋为自住"},
                    headers=desk.headers)
    assert r.status_code == 200, r.json
    assert (r.json["status"], r.json["outcome"], r.json["closed_reason"]) == (
        "closed", "no_violation", "现场核查：王晓梅所述房屋为自住")
    assert r.json["closed_at"]
    assert client.post(f"{url}/close", json={"outcome": "other", "reason": "again"},
                       headers=desk.headers).status_code == 409
    public = client.get(f"/api/v1/public/clues/{clue['tracking_code']}").json
    assert (public["status"], public["outcome"]) == ("closed", "no_violation")


PUBLIC_FIELDS = {"tracking_code", "status", "reported_at", "updated_at", "closed_at", "department", "outcome",
                 "case_status"}


def test_the_public_status_page_needs_no_login_and_tells_no_personal_data(desk, officers, client):
    clue = desk(complainant=COMPLAINANT, category="fire_safety").json
    fire = officers.make(department="fire", name="消防员乙")
    client.post(f"/api/v1/clues/{clue['id']}/case", json={"summary": "疏散通道堵塞"}, headers=officers.headers(fire))

    r = client.get(f"/api/v1/public/clues/{clue['tracking_code']}")
    assert r.status_code == 200, r.json
    assert r.headers["Cache-Control"] == "no-store"
    body = r.json
    assert set(body) == PUBLIC_FIELDS
    assert set(body["department"]) == {"code", "name_zh", "name_en"}
    assert (body["status"], body["department"]["code"], body["outcome"], body["case_status"]) == (
        "case", "fire", "case_opened", "registered")
    text = json.dumps(body, ensure_ascii=False)
    for secret in (*COMPLAINANT.values(), DESCRIPTION, "王晓梅", desk.officer.id, desk.officer.name, fire.id,
                   fire.name, clue["id"], clue["institution_id"], CENTRE["name"], CENTRE["address"]):
        assert secret not in text, secret

    # Typed the way people type it, the code still works; anything else is the same 404.
    loose = clue["tracking_code"].replace("-", " ").lower()
    assert client.get(f"/api/v1/public/clues/{loose}").json == body
    unknown = client.get("/api/v1/public/clues/2222-2222-2222")
    malformed = client.get("/api/v1/public/clues/not-a-code")
    assert unknown.status_code == malformed.status_code == 404
    assert unknown.json == malformed.json


def test_tracking_codes_are_distinct_and_unambiguous(desk):
    codes = {desk(institution={"name": f"机构{i}", "region": "330106"}).json["tracking_code"] for i in range(20)}
    assert len(codes) == 20 and all(CODE_RE.match(c) for c in codes)
    assert not set("".join(codes)) & set("01ILOU")
    assert normalise_tracking_code("abcd efgh jkmn") == "ABCD-EFGH-JKMN"
    assert normalise_tracking_code("ABCD-EFGH-JKM0") is None  # 0 is never issued
