"""Bad input gets PROTOCOL's JSON error shape with a reason, never HTML, never a 500."""

from __future__ import annotations

import pytest


def _shape(r, code):
    assert r.status_code == code
    assert r.is_json, r.data[:200]
    assert r.json["code"] == code
    assert isinstance(r.json["status"], str) and r.json["status"]
    assert isinstance(r.json["message"], str) and r.json["message"]


def test_malformed_json_is_400(client):
    r = client.post("/api/v1/auth/token", data="{not json", content_type="application/json")
    _shape(r, 400)
    assert "JSON" in r.json["message"]


@pytest.mark.parametrize("body", [
    {"username": "a", "password": "b", "extra": 1},
    {"username": 5, "password": "b"},
    {"username": "a"},
    [],
    "just a string",
])
def test_wrong_fields_and_types_are_422_with_field_errors(client, body):
    r = client.post("/api/v1/auth/token", json=body)
    _shape(r, 422)
    assert r.json["errors"]


def test_oversized_body_is_413(client):
    r = client.post("/api/v1/auth/token", data=b"x" * (10 * 1024 * 1024), content_type="application/json")
    _shape(r, 413)


def test_unknown_route_and_wrong_method_are_json(client):
    _shape(client.get("/api/v1/no-such-thing"), 404)
    r = client.delete("/api/v1/auth/token")
    _shape(r, 405)
    assert "POST" in r.headers["Allow"]


def test_bad_query_parameters_are_422(client, officers):
    h = officers.headers(officers.make())
    _shape(client.get("/api/v1/institutions", query_string={"page": "abc"}, headers=h), 422)
    _shape(client.get("/api/v1/institutions", query_string={"colour": "red"}, headers=h), 422)


def test_missing_auth_is_401_json(client):
    r = client.get("/api/v1/reference")
    _shape(r, 401)
    assert r.headers["WWW-Authenticate"].startswith("Bearer")


@pytest.mark.parametrize("path", ["/api/v1/cases/abc%00", "/api/v1/cases?region=33010%00",
                                  "/api/v1/cases?reg%00ion=330106"])
def test_a_nul_in_the_url_is_422_not_a_database_error(client, officers, path):
    r = client.get(path, headers=officers.headers(officers.make()))
    assert r.status_code == 422 and "NUL" in r.json["message"]


def test_a_nul_in_a_json_body_is_422_and_nothing_is_stored(client, officers):
    admin = officers.headers(officers.make(roles=("admin",)))
    r = client.post("/api/v1/institutions", headers=admin, json={"name": "星辰\u0000教育", "region": "330106"})
    assert r.status_code == 422 and "NUL" in r.json["message"]
    listed = client.get("/api/v1/institutions", headers=admin).json
    assert not any("星辰" in i["name"] for i in listed["items"])


def test_an_escaped_backslash_before_u0000_is_ordinary_text(client, officers):
    admin = officers.headers(officers.make(roles=("admin",)))
    r = client.post("/api/v1/institutions", headers=admin, json={"name": "路径 C:\\u0000 测试", "region": "330106"})
    assert r.status_code == 201, r.json
    assert r.json["name"] == "路径 C:\\u0000 测试"


def test_a_signed_record_with_nul_in_its_body_is_ledgered_invalid(client, officers):
    from tests.phones import TestPhone

    officer = officers.make()
    phone = TestPhone(client, officer, officers.headers(officer))
    _cid, record = phone.open_case({"name": "星辰\u0000教育", "region": "330106"})
    [result] = phone.push([record])["results"]
    assert (result["status"], result["code"]) == ("invalid", "bad_body")
    assert "NUL" in result["detail"]
