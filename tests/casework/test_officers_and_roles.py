"""Admins manage officers within their jurisdiction; other roles cannot."""

from __future__ import annotations


def _new(**over):
    body = {"username": "wang.wei", "password": "a long enough password", "name": "王伟",
            "department": "education", "region": "330106", "roles": ["officer"],
            "cert_number": "ZJ330106-0042", "cert_valid_from": "2026-01-01", "cert_valid_until": "2028-12-31"}
    body.update(over)
    return body


def test_only_admins_create_officers(client, officers):
    plain = officers.make()
    r = client.post("/api/v1/officers", json=_new(), headers=officers.headers(plain))
    assert r.status_code == 403 and r.json["code"] == 403

    admin = officers.make(region="330100", roles=("officer", "admin"))
    r = client.post("/api/v1/officers", json=_new(), headers=officers.headers(admin))
    assert r.status_code == 201, r.json
    assert r.json["certificate"] == {"number": "ZJ330106-0042", "valid_from": "2026-01-01",
                                     "valid_until": "2028-12-31"}
    login = client.post("/api/v1/auth/token", json={"username": "wang.wei", "password": "a long enough password"})
    assert login.status_code == 200


def test_duplicate_username_and_certificate_are_conflicts(client, officers):
    admin = officers.make(region="330100", roles=("officer", "admin"))
    h = officers.headers(admin)
    assert client.post("/api/v1/officers", json=_new(), headers=h).status_code == 201
    assert client.post("/api/v1/officers", json=_new(cert_number="X1"), headers=h).status_code == 409
    assert client.post("/api/v1/officers", json=_new(username="li.na"), headers=h).status_code == 409


def test_bad_officer_fields_are_422_with_reasons(client, officers):
    admin = officers.make(region="330100", roles=("officer", "admin"))
    h = officers.headers(admin)
    r = client.post("/api/v1/officers", json=_new(roles=["sheriff"]), headers=h)
    assert r.status_code == 422 and "roles" in r.json["errors"]["json"]
    r = client.post("/api/v1/officers", json=_new(region="999999"), headers=h)
    assert r.status_code == 422 and "department" in r.json["errors"]
    r = client.post("/api/v1/officers", json=_new(cert_valid_until="2020-01-01"), headers=h)
    assert r.status_code == 422
    r = client.post("/api/v1/officers", json=_new(password="short"), headers=h)
    assert r.status_code == 422


def test_a_district_admin_manages_only_their_district(client, officers):
    admin = officers.make(region="330106", roles=("officer", "admin"))
    h = officers.headers(admin)
    r = client.post("/api/v1/officers", json=_new(region="330108"), headers=h)
    assert r.status_code == 422 and "region" in r.json["errors"]
    binjiang = officers.make(region="330108")
    assert client.get(f"/api/v1/officers/{binjiang.id}", headers=h).status_code == 404
    assert client.patch(f"/api/v1/officers/{binjiang.id}", json={"name": "x"}, headers=h).status_code == 404
    mine = officers.make(region="330106")
    r = client.patch(f"/api/v1/officers/{mine.id}", json={"region": "330108"}, headers=h)
    assert r.status_code == 422
    listed = client.get("/api/v1/officers", headers=h).json
    ids = {o["id"] for o in listed["items"]}
    assert mine.id in ids and binjiang.id not in ids
    assert listed["total"] == len(ids)


def test_admin_updates_certificate_and_roles(client, officers):
    admin = officers.make(region="330100", roles=("officer", "admin"))
    officer = officers.make(certified=False)
    h = officers.headers(admin)
    r = client.patch(f"/api/v1/officers/{officer.id}",
                     json={"cert_number": "ZJ-NEW-1", "cert_valid_from": "2026-01-01",
                           "cert_valid_until": "2027-01-01", "roles": ["officer", "custodian"]}, headers=h)
    assert r.status_code == 200, r.json
    assert r.json["certificate"]["number"] == "ZJ-NEW-1"
    assert r.json["roles"] == ["officer", "custodian"]
    r = client.patch(f"/api/v1/officers/{officer.id}", json={"cert_valid_until": "2025-01-01"}, headers=h)
    assert r.status_code == 422
    assert client.get(f"/api/v1/officers/{officer.id}", headers=h).json["certificate"]["valid_until"] == "2027-01-01"
