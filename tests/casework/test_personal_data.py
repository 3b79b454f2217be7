"""Complainants' personal data on screens (COMPLIANCE §3): masked in every answer, in clear only through an unmasking
with a stated purpose, each unmasking on record for reviewers, and clues found by the complainant's phone number
over HTTP. Through the real app and database, with real officers and sealed rows."""

from __future__ import annotations

from datetime import datetime, timedelta

import pytest
from sqlalchemy import select

from backend.casework.masking import mask_complainant, mask_name, mask_phone, mask_text, reveal
from backend.core.models import ComplainantUnmasking

CENTRE = {"name": "启航学科辅导中心", "region": "330106", "address": "西湖区文三路 100 号"}
ELSEWHERE = {"name": "萧山某培训机构", "region": "330109"}
COMPLAINANT = {"name": "王晓梅", "phone": "139-0000 1111", "email": "wxm@example.cn", "address": "文三路 8 号 2 单元",
               "anonymous": False}
MASKED = {"name": "王＊＊", "phone": "139****1111", "email": "w＊＊＊＊", "address": "文＊＊＊＊", "anonymous": False}
CLEAR = ["王晓梅", "13900001111", "139-0000 1111", "wxm@example.cn", "文三路 8 号"]
PURPOSE = "电话回访举报人，核实办学地址"


@pytest.fixture
def desk(client, officers):
    """A hotline officer of education in Xihu (the lead department: clues without a category come to it)."""
    hotline = officers.make(department="education", region="330106", name="热线员甲")
    headers = officers.headers(hotline)

    def take(headers=headers, **body):
        payload = {"source": "hotline", "institution": CENTRE, "description": "周末在居民楼内开展培训", **body}
        r = client.post("/api/v1/clues", json=payload, headers=headers)
        assert r.status_code == 201, r.json
        return r.json

    take.officer, take.headers = hotline, headers
    return take


def unmask(client, clue_id: str, headers, **body):
    return client.post(f"/api/v1/clues/{clue_id}/complainant/unmask", json=body, headers=headers)


def records(db) -> list[ComplainantUnmasking]:
    with db.transaction() as session:
        found = list(session.scalars(select(ComplainantUnmasking).order_by(ComplainantUnmasking.id)))
        session.expunge_all()
        return found


# -- the rule


def test_given_values_when_masked_then_the_rule_keeps_what_protocol_says():
    assert (mask_name("张三丰"), mask_name(" 李先生 "), mask_name("王"), mask_name("")) == (
        "张＊＊", "李＊＊", "＊", "")
    assert mask_phone("138-1234 5678") == "138****5678"
    assert mask_phone("１３８１２３４５６７８") == "138****5678"  # full-width digits count, as in the blind index
    assert mask_phone("0571-8765 4321") == "057*****4321"
    assert (mask_phone("12345"), mask_phone("1234567"), mask_phone("no digits")) == ("*****", "*******", "")
    assert (mask_text("wxm@example.cn"), mask_text("")) == ("w＊＊＊＊", "")
    assert mask_complainant(COMPLAINANT) == MASKED and mask_complainant(None) is None
    assert reveal(COMPLAINANT, ["phone"]) == {**MASKED, "phone": "139-0000 1111"}


# -- masked by default


def test_given_a_handler_when_the_clue_is_answered_then_the_complainant_is_masked_everywhere(desk, client):
    taken = desk(complainant=COMPLAINANT)
    assert taken["complainant"] == MASKED
    shown = client.get(f"/api/v1/clues/{taken['id']}", headers=desk.headers)
    assert shown.json["complainant"] == MASKED
    closed = client.post(f"/api/v1/clues/{taken['id']}/close", json={"outcome": "other", "reason": "已回访"},
                         headers=desk.headers)
    assert closed.json["complainant"] == MASKED
    for answer in (shown, closed):
        assert [clear for clear in CLEAR if clear in answer.get_data(as_text=True)] == []


# -- unmasking


def test_given_a_purpose_when_a_handler_unmasks_then_the_clear_values_come_with_a_record(desk, client, db):
    clue = desk(complainant=COMPLAINANT)

    r = unmask(client, clue["id"], desk.headers, purpose=f"  {PURPOSE} ")

    assert r.status_code == 200, r.json
    assert r.headers["Cache-Control"] == "no-store"
    assert r.json["complainant"] == COMPLAINANT
    assert (r.json["clue_id"], r.json["fields"], r.json["purpose"], r.json["by"], r.json["by_name"]) == (
        clue["id"], ["name", "phone", "email", "address"], PURPOSE, desk.officer.id, "热线员甲")
    (record,) = records(db)
    assert (record.clue_id, record.region_code, record.fields, record.purpose, record.viewed_by) == (
        clue["id"], "330106", ["name", "phone", "email", "address"], PURPOSE, desk.officer.id)
    assert str(record.id) == r.json["id"]
    # Unmasking shows, it does not change the default: the next answer is masked again.
    assert client.get(f"/api/v1/clues/{clue['id']}", headers=desk.headers).json["complainant"] == MASKED


def test_given_chosen_fields_when_unmasked_then_only_those_are_clear_and_recorded(desk, client, db):
    clue = desk(complainant={"name": "李先生", "phone": "13900001112"})

    r = unmask(client, clue["id"], desk.headers, purpose=PURPOSE, fields=["phone", "email"])

    assert r.status_code == 200, r.json
    assert r.json["complainant"] == {"name": "李＊＊", "phone": "13900001112"}
    assert r.json["fields"] == ["phone"] and records(db)[0].fields == ["phone"]  # no e-mail was given
    assert unmask(client, clue["id"], desk.headers, purpose=PURPOSE, fields=["email"]).status_code == 404
    assert unmask(client, clue["id"], desk.headers, purpose=PURPOSE, fields=["id_number"]).status_code == 422
    assert len(records(db)) == 1


@pytest.mark.parametrize(("body", "field"), [({}, "purpose"), ({"purpose": ""}, "purpose"),
                                             ({"purpose": "   "}, "purpose"), ({"purpose": "x" * 501}, "purpose"),
                                             ({"purpose": "a\x00b"}, "NUL"),
                                             ({"purpose": PURPOSE, "reason": "extra"}, "reason")])
def test_given_no_purpose_when_unmasking_then_422_with_the_reason_and_no_record(desk, client, db, body, field):
    clue = desk(complainant=COMPLAINANT)

    r = unmask(client, clue["id"], desk.headers, **body)

    assert r.status_code == 422 and r.json["code"] == 422 and r.json["message"]
    assert field in str(r.json.get("errors")) or field in r.json["message"], r.json
    assert "complainant" not in r.json and records(db) == []


def test_given_an_officer_of_another_district_when_unmasking_then_404_exactly_as_for_an_unknown_clue(
        desk, client, officers, db):
    clue = desk(complainant=COMPLAINANT)
    xiaoshan = officers.headers(officers.make(department="education", region="330109"))

    outside = unmask(client, clue["id"], xiaoshan, purpose=PURPOSE)
    unknown = unmask(client, "00000000-0000-4000-8000-000000000000", xiaoshan, purpose=PURPOSE)

    assert (outside.status_code, unknown.status_code) == (404, 404)
    assert outside.json == {**unknown.json, "message": unknown.json["message"].replace(
        "00000000-0000-4000-8000-000000000000", clue["id"])}
    assert records(db) == []


def test_given_a_viewer_who_does_not_handle_the_clue_when_unmasking_then_403_as_for_other_actions(
        desk, client, officers, db):
    clue = desk(complainant=COMPLAINANT)
    market = officers.headers(officers.make(department="market", region="330106"))
    reviewer = officers.headers(officers.make(roles=("reviewer",), region="330106"))

    for headers in (market, reviewer):
        assert client.get(f"/api/v1/clues/{clue['id']}", headers=headers).json["complainant"] is None
        refused = unmask(client, clue["id"], headers, purpose=PURPOSE)
        assert refused.status_code == 403 and "complainant" not in refused.json
        assert client.post(f"/api/v1/clues/{clue['id']}/triage", json={"category": "fire_safety"},
                           headers=headers).status_code == 403  # the rule that refuses the clue's other actions
    assert records(db) == []
    # A clue without a complainant has nothing to unmask.
    plain = desk(institution={"name": "另一家机构", "region": "330106"})
    assert unmask(client, plain["id"], desk.headers, purpose=PURPOSE).status_code == 404


# -- the log of unmaskings


def test_given_unmaskings_when_reviewers_read_the_log_then_they_see_their_jurisdiction_only(desk, client, officers):
    here = desk(complainant=COMPLAINANT)
    city = officers.make(region="330100", roles=("officer", "admin"), name="市级管理员")
    city_headers = officers.headers(city)
    there = desk(headers=city_headers, institution=ELSEWHERE, complainant={"name": "赵女士", "phone": "13700003333"})
    assert unmask(client, here["id"], desk.headers, purpose=PURPOSE).status_code == 200
    assert unmask(client, there["id"], city_headers, purpose="核实萧山线索").status_code == 200

    xihu_reviewer = officers.headers(officers.make(roles=("reviewer",), region="330106"))
    mine = client.get("/api/v1/clues/unmaskings", headers=xihu_reviewer)
    assert mine.status_code == 200, mine.json
    assert mine.json["total"] == 1
    (row,) = mine.json["items"]
    assert (row["clue_id"], row["region"], row["fields"], row["purpose"], row["by"], row["by_name"]) == (
        here["id"], "330106", ["name", "phone", "email", "address"], PURPOSE, desk.officer.id, "热线员甲")
    assert row["at"].endswith("Z")

    everything = client.get("/api/v1/clues/unmaskings", headers=city_headers).json
    assert [r["clue_id"] for r in everything["items"]] == [there["id"], here["id"]]  # newest first
    assert client.get("/api/v1/clues/unmaskings", headers=city_headers,
                      query_string={"clue_id": here["id"]}).json["total"] == 1
    assert client.get("/api/v1/clues/unmaskings", headers=city_headers,
                      query_string={"by": city.id}).json["items"][0]["clue_id"] == there["id"]
    assert client.get("/api/v1/clues/unmaskings", headers=desk.headers).status_code == 403  # an officer audits none


# -- the look-up by phone number


def test_given_a_phone_written_any_way_when_looked_up_then_the_handlers_clues_answer_masked(
        desk, client, officers):
    first = desk(complainant=COMPLAINANT)
    again = desk(complainant={"name": "王女士", "phone": "13900001111"},
                 institution={"name": "另一家", "region": "330106"})
    desk(complainant={"name": "李先生", "phone": "13900001112"}, institution={"name": "第三家", "region": "330106"})
    city_headers = officers.headers(officers.make(region="330100", roles=("officer", "admin")))
    far = desk(headers=city_headers, institution=ELSEWHERE, complainant={"name": "王晓梅", "phone": "13900001111"})

    r = client.post("/api/v1/clues/lookup", json={"complainant_phone": "139 0000-1111"}, headers=desk.headers)

    assert r.status_code == 200, r.json
    assert [c["id"] for c in r.json["items"]] == [first["id"], again["id"]]  # not Xiaoshan's
    assert [c["complainant"] for c in r.json["items"]] == [MASKED, {"name": "王＊＊", "phone": "139****1111"}]
    assert [clear for clear in CLEAR if clear in r.get_data(as_text=True)] == []
    # The city sees the whole city; Xiaoshan's handler their own clue alone; another department none.
    for headers, found in ((city_headers, [first["id"], again["id"], far["id"]]),
                           (officers.headers(officers.make(department="education", region="330109")), [far["id"]]),
                           (officers.headers(officers.make(department="market", region="330106")), [])):
        r = client.post("/api/v1/clues/lookup", json={"complainant_phone": "13900001111"}, headers=headers)
        assert [c["id"] for c in r.json["items"]] == found
    assert client.post("/api/v1/clues/lookup", json={"complainant_phone": "13900009999"},
                       headers=desk.headers).json == {"items": []}


@pytest.mark.parametrize(("body", "field"), [({}, "complainant_phone"),
                                             ({"complainant_phone": ""}, "complainant_phone"),
                                             ({"complainant_phone": "--- ()"}, "complainant_phone"),
                                             ({"complainant_phone": "1" * 41}, "complainant_phone"),
                                             ({"complainant_phone": 13900001111}, "complainant_phone"),
                                             ({"complainant_phone": "139", "name": "x"}, "name")])
def test_given_bad_input_when_looking_up_then_a_json_422_says_why(desk, client, body, field):
    r = client.post("/api/v1/clues/lookup", json=body, headers=desk.headers)
    assert r.status_code == 422 and r.is_json
    assert r.json["message"] and field in str(r.json["errors"]), r.json


def test_the_look_up_takes_the_number_in_its_body_never_its_url(client):
    doc = client.get("/api/v1/openapi.json").json
    lookup = doc["paths"]["/api/v1/clues/lookup"]
    assert set(lookup) == {"post"} and "parameters" not in lookup["post"]
    body = lookup["post"]["requestBody"]["content"]["application/json"]["schema"]["$ref"].rsplit("/", 1)[1]
    assert doc["components"]["schemas"][body]["required"] == ["complainant_phone"]
    assert client.get("/api/v1/clues/lookup", query_string={"complainant_phone": "13900001111"}).status_code in (
        401, 404, 405)


def test_given_a_day_of_unmaskings_when_filtered_by_date_then_from_includes_and_to_excludes(desk, client, officers):
    clue = desk(complainant=COMPLAINANT)
    unmask(client, clue["id"], desk.headers, purpose=PURPOSE)
    admin = officers.headers(officers.make(roles=("officer", "admin")))
    at = client.get("/api/v1/clues/unmaskings", headers=admin).json["items"][0]["at"]
    when = datetime.fromisoformat(at.replace("Z", "+00:00"))
    for args, total in (({"from": at}, 1), ({"to": at}, 0), ({"from": (when + timedelta(seconds=1)).isoformat()}, 0)):
        assert client.get("/api/v1/clues/unmaskings", headers=admin, query_string=args).json["total"] == total, args
    assert client.get("/api/v1/clues/unmaskings", headers=admin, query_string={"from": "yesterday"}).status_code == 422
