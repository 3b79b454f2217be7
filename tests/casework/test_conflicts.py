"""case.update and conflicts: fields changed on the server since base_version open a conflict; nothing is lost."""

from __future__ import annotations

import pytest

from tests.phones import TestPhone


@pytest.fixture
def pair(client, officers):
    a_officer = officers.make(department="education")
    b_officer = officers.make(department="education")
    a = TestPhone(client, a_officer, officers.headers(a_officer))
    b = TestPhone(client, b_officer, officers.headers(b_officer))
    centre = {"name": "星辰教育", "region": "330106"}
    cid_a, open_a = a.open_case(centre)
    cid_b, open_b = b.open_case(centre)
    case_id = a.push([open_a])["results"][0]["refs"]["case_id"]
    b.push([open_b])
    return a, b, cid_a, cid_b, case_id


def _update(phone, cid, base, **fields):
    return phone.record("case.update", {"case": {"client_case_id": cid}, "base_version": base, "fields": fields})


def test_concurrent_edits_of_one_field_open_a_conflict_and_keep_both_values(pair, client):
    a, b, cid_a, cid_b, case_id = pair
    ra = a.push([_update(a, cid_a, 1, summary="无证办学，责令停止")])["results"][0]
    rb = b.push([_update(b, cid_b, 1, summary="疑似无证，待核实", status="investigating")])["results"][0]
    assert ra["status"] == "applied" and ra["refs"]["version"] == 2
    assert rb["status"] == "conflict" and rb["refs"]["conflicts"] == ["summary"]
    case = client.get(f"/api/v1/cases/{case_id}", headers=a.headers).json
    # The field nobody else touched was applied; the contested one kept the server's value.
    assert case["status"] == "investigating" and case["summary"] == "无证办学，责令停止"
    assert case["version"] == 3 and case["open_conflicts"] == 1
    (conflict,) = client.get("/api/v1/conflicts", headers=a.headers).json["items"]
    assert (conflict["base_value"], conflict["server_value"], conflict["phone_value"]) == (
        "", "无证办学，责令停止", "疑似无证，待核实")


def test_a_conflict_is_resolved_with_a_reason_and_the_losing_value_stays(pair, client, officers):
    a, b, cid_a, cid_b, case_id = pair
    a.push([_update(a, cid_a, 1, summary="A 的说法")])
    b.push([_update(b, cid_b, 1, summary="B 的说法")])
    (conflict,) = client.get("/api/v1/conflicts", headers=a.headers).json["items"]
    outsider = officers.make(department="culture")
    r = client.post(f"/api/v1/conflicts/{conflict['id']}/resolve", headers=officers.headers(outsider),
                    json={"choice": "phone", "reason": "现场核实"})
    assert r.status_code == 403
    r = client.post(f"/api/v1/conflicts/{conflict['id']}/resolve", headers=b.headers,
                    json={"choice": "phone", "reason": "现场核实后以 B 为准"})
    assert r.status_code == 200, r.json
    assert r.json["status"] == "resolved" and r.json["resolved_value"] == "B 的说法"
    case = client.get(f"/api/v1/cases/{case_id}", headers=a.headers).json
    assert case["summary"] == "B 的说法" and case["open_conflicts"] == 0
    resolved = client.get("/api/v1/conflicts", query_string={"status": "resolved"}, headers=a.headers).json
    assert resolved["items"][0]["server_value"] == "A 的说法"
    again = client.post(f"/api/v1/conflicts/{conflict['id']}/resolve", headers=b.headers,
                        json={"choice": "server", "reason": "again"})
    assert again.status_code == 409


def test_an_update_from_the_current_version_is_simply_applied(pair, client):
    a, b, cid_a, _cid_b, case_id = pair
    assert a.push([_update(a, cid_a, 1, summary="一")])["results"][0]["status"] == "applied"
    assert a.push([_update(a, cid_a, 2, summary="二")])["results"][0]["status"] == "applied"
    bad = a.push([_update(a, cid_a, 9, summary="三")])["results"][0]
    assert (bad["status"], bad["code"]) == ("invalid", "bad_version")
    bad_field = a.push([_update(a, cid_a, 3, institution_id="x")])["results"][0]
    assert (bad_field["status"], bad_field["code"]) == ("invalid", "bad_body")
    assert client.get(f"/api/v1/cases/{case_id}", headers=a.headers).json["summary"] == "二"
