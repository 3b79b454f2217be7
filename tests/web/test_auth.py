"""PROTOCOL §1: given an officer with a password, when they log in and refresh, then the server answers so."""

from __future__ import annotations

import base64
import json
import time

import jwt

from tests.conftest import PASSWORD


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def test_login_returns_a_token_pair_and_me_returns_the_profile(client, officers):
    officer = officers.make(region="330106", department="market")
    pair = officers.login(officer)
    assert pair["token_type"] == "Bearer"
    assert pair["expires_in"] == 900
    claims = jwt.decode(pair["access_token"], options={"verify_signature": False})
    assert claims["sub"] == officer.id and claims["roles"] == ["officer"]
    assert {"exp", "iat", "jti"} <= set(claims)

    me = client.get("/api/v1/me", headers={"Authorization": "Bearer " + pair["access_token"]})
    assert me.status_code == 200
    assert me.json["id"] == officer.id
    assert me.json["department"] == "market" and me.json["region"] == "330106"
    assert me.json["certificate"]["number"] == officer.cert_number


def test_unknown_user_and_wrong_password_get_the_same_answer(client, officers):
    officer = officers.make()
    wrong = client.post("/api/v1/auth/token", json={"username": officer.username, "password": "nope-nope-nope"})
    unknown = client.post("/api/v1/auth/token", json={"username": "ghost", "password": "nope-nope-nope"})
    assert wrong.status_code == unknown.status_code == 401
    assert wrong.json == unknown.json
    assert wrong.json["code"] == 401 and wrong.json["message"]


def test_a_refresh_token_works_once_and_reuse_revokes_its_family(client, officers):
    officer = officers.make()
    first = officers.login(officer)
    second = client.post("/api/v1/auth/refresh", json={"refresh_token": first["refresh_token"]})
    assert second.status_code == 200
    assert second.json["refresh_token"] != first["refresh_token"]

    reused = client.post("/api/v1/auth/refresh", json={"refresh_token": first["refresh_token"]})
    assert reused.status_code == 401
    # The thief or the victim: either way the descendant token is dead too.
    after = client.post("/api/v1/auth/refresh", json={"refresh_token": second.json["refresh_token"]})
    assert after.status_code == 401

    other_login = officers.login(officer)
    assert client.post("/api/v1/auth/refresh",
                       json={"refresh_token": other_login["refresh_token"]}).status_code == 200


def test_garbage_refresh_token_is_401(client):
    r = client.post("/api/v1/auth/refresh", json={"refresh_token": "not-a-token"})
    assert r.status_code == 401 and r.json["code"] == 401


def _secret(app) -> bytes:
    return app.extensions["fieldcase"].issuer.secret


def _me(client, token: str):
    return client.get("/api/v1/me", headers={"Authorization": "Bearer " + token})


def test_tokens_without_a_valid_signature_or_algorithm_are_refused(app, client, officers):
    officer = officers.make()
    now = int(time.time())
    claims = {"iss": "fieldcase", "sub": officer.id, "roles": ["admin"], "iat": now, "exp": now + 600, "jti": "x"}

    header = _b64(json.dumps({"alg": "none", "typ": "JWT"}).encode())
    unsigned = f"{header}.{_b64(json.dumps(claims).encode())}."
    assert _me(client, unsigned).status_code == 401

    forged = jwt.encode(claims, "some-other-secret-of-enough-length-000000", algorithm="HS256")
    assert _me(client, forged).status_code == 401

    other_alg = jwt.encode(claims, _secret(app), algorithm="HS512")
    assert _me(client, other_alg).status_code == 401

    good = jwt.encode(claims, _secret(app), algorithm="HS256")
    assert _me(client, good).status_code == 200


def test_expired_and_incomplete_tokens_are_refused(app, client, officers):
    officer = officers.make()
    now = int(time.time())
    base = {"iss": "fieldcase", "sub": officer.id, "roles": [], "iat": now - 1000, "jti": "j"}
    expired = jwt.encode({**base, "exp": now - 10}, _secret(app), algorithm="HS256")
    r = _me(client, expired)
    assert r.status_code == 401 and "expired" in r.json["message"]
    no_exp = jwt.encode(base, _secret(app), algorithm="HS256")
    assert _me(client, no_exp).status_code == 401
    assert client.get("/api/v1/me").status_code == 401
    assert client.get("/api/v1/me", headers={"Authorization": "Basic abc"}).status_code == 401


def test_a_deactivated_officer_is_locked_out_at_once(client, officers):
    admin = officers.make(region="330100", roles=("officer", "admin"))
    officer = officers.make()
    pair = officers.login(officer)
    r = client.post(f"/api/v1/officers/{officer.id}/deactivate", headers=officers.headers(admin))
    assert r.status_code == 200 and r.json["active"] is False

    assert _me(client, pair["access_token"]).status_code == 401
    assert client.post("/api/v1/auth/refresh", json={"refresh_token": pair["refresh_token"]}).status_code == 401
    login = client.post("/api/v1/auth/token", json={"username": officer.username, "password": PASSWORD})
    assert login.status_code == 401


def test_repeated_failures_for_one_username_are_throttled(client, officers):
    officer = officers.make()
    for _ in range(5):
        r = client.post("/api/v1/auth/token", json={"username": officer.username, "password": "wrong-password"})
        assert r.status_code == 401
    blocked = client.post("/api/v1/auth/token", json={"username": officer.username, "password": PASSWORD})
    assert blocked.status_code == 429
    assert int(blocked.headers["Retry-After"]) > 0
    assert blocked.json["code"] == 429
    # Another officer from the same address is not yet affected.
    other = officers.make()
    assert client.post("/api/v1/auth/token",
                       json={"username": other.username, "password": PASSWORD}).status_code == 200


def test_repeated_failures_from_one_address_are_throttled(app, client, officers):
    officer = officers.make()
    for i in range(30):
        r = client.post("/api/v1/auth/token", json={"username": f"guess{i}", "password": "wrong-password"},
                        environ_base={"REMOTE_ADDR": "10.9.9.9"})
        assert r.status_code == 401
    r = client.post("/api/v1/auth/token", json={"username": officer.username, "password": PASSWORD},
                    environ_base={"REMOTE_ADDR": "10.9.9.9"})
    assert r.status_code == 429
    r = client.post("/api/v1/auth/token", json={"username": officer.username, "password": PASSWORD},
                    environ_base={"REMOTE_ADDR": "10.9.9.10"})
    assert r.status_code == 200


def test_a_successful_login_clears_the_failure_count(client, officers):
    officer = officers.make()
    for _ in range(4):
        client.post("/api/v1/auth/token", json={"username": officer.username, "password": "wrong-password"})
    assert client.post("/api/v1/auth/token",
                       json={"username": officer.username, "password": PASSWORD}).status_code == 200
    for _ in range(4):
        client.post("/api/v1/auth/token", json={"username": officer.username, "password": "wrong-password"})
    assert client.post("/api/v1/auth/token",
                       json={"username": officer.username, "password": PASSWORD}).status_code == 200
