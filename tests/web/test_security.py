"""Hostile callers, through the HTTP API: given what an attacker can send, then the server answers as documented.

Each test names the attack and asserts the documented answer (PROTOCOL §1, §2, §4, §6; docs/protocol.md
"Authentication", "Jurisdiction", "Records and push, as built", "Security, as built") in the one JSON error shape
`{code, status, message, errors?}`, and that nothing was stored, read or written on the way. test_auth.py holds
the ordinary token, refresh and throttle behaviour; this file holds what is tried on purpose.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import io
import json
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, replace
from datetime import timedelta
from http import HTTPStatus
from pathlib import Path
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import func, select

from backend.bootstrap import create_app
from backend.core.models import Device, LedgerRecord, LoginFailure, Officer, QuarantinedRecord, RefreshToken, utcnow
from tests import images
from tests.conftest import PASSWORD, Officers
from tests.phones import TestPhone, b64, compact, uid

CENTRE = {"name": "西湖区星火艺术培训中心", "region": "330106", "address": "文二路 28 号"}
HOME, FAR = "330106", "330105"


def error(r, status: int) -> dict[str, Any]:
    """The documented error shape, and nothing else: no HTML page, no stack trace, no extra fields."""
    assert r.status_code == status, (r.status_code, r.get_data(as_text=True)[:500])
    assert r.mimetype == "application/json", r.mimetype
    body = r.json
    assert {"code", "status", "message"} <= set(body) <= {"code", "status", "message", "errors"}, body
    assert body["code"] == status and body["status"] == HTTPStatus(status).phrase
    assert isinstance(body["message"], str) and body["message"]
    return body


def me(client: FlaskClient, token: str):
    return client.get("/api/v1/me", headers={"Authorization": "Bearer " + token})


def claims(officer: Officer, **changes: Any) -> dict[str, Any]:
    now = int(time.time())
    return {"iss": "fieldcase", "sub": officer.id, "roles": ["officer", "admin"], "iat": now, "exp": now + 600,
            "jti": uuid.uuid4().hex, **changes}


def hmac_token(payload: dict[str, Any], key: bytes, header: dict[str, Any] | None = None) -> str:
    """Signed by hand, so that no library's refusal of a weak key decides what the server is sent."""
    signing_input = f"{b64(compact(header or {'alg': 'HS256', 'typ': 'JWT'}))}.{b64(compact(payload))}"
    return f"{signing_input}.{b64(hmac.new(key, signing_input.encode(), hashlib.sha256).digest())}"


def count(db, model) -> int:
    with db.session() as s:
        return s.scalar(select(func.count()).select_from(model))


# --- §1 access tokens --------------------------------------------------------------------------------------------

@pytest.mark.parametrize("alg", ["none", "None", "NONE", "nOnE"])
@pytest.mark.parametrize("signature", ["", "c2lnbmF0dXJl"])
def test_given_an_unsigned_token_of_alg_none_when_it_calls_then_401(client, officers, alg, signature):
    officer = officers.make()
    token = f"{b64(compact({'alg': alg, 'typ': 'JWT'}))}.{b64(compact(claims(officer)))}.{signature}"
    error(me(client, token), 401)


def test_given_a_valid_token_relabelled_alg_none_when_it_calls_then_401(client, officers):
    """The signature is genuine, but a header saying `none` must not make the server skip checking it."""
    officer = officers.make()
    good = officers.login(officer)["access_token"]
    _header, payload, signature = good.split(".")
    for alg in ("none", "HS512", "hs256"):
        error(me(client, f"{b64(compact({'alg': alg, 'typ': 'JWT'}))}.{payload}.{signature}"), 401)
    assert me(client, good).status_code == 200


def _rsa() -> Any:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


@pytest.mark.parametrize("alg, make_key", [
    pytest.param("RS256", _rsa, id="RS256"),
    pytest.param("PS256", _rsa, id="PS256"),
    pytest.param("ES256", lambda: ec.generate_private_key(ec.SECP256R1()), id="ES256"),
    pytest.param("EdDSA", Ed25519PrivateKey.generate, id="EdDSA"),
])
def test_given_a_token_signed_with_an_attackers_asymmetric_key_when_it_calls_then_401(client, officers, alg,
                                                                                      make_key):
    """The server accepts only its configured HMAC algorithm: a key the caller brings proves nothing."""
    officer = officers.make()
    key = make_key()
    for header in ({}, {"jwk": {"kty": "OKP"}}, {"jku": "https://attacker.example/keys", "kid": "k1"}):
        error(me(client, jwt.encode(claims(officer), key, algorithm=alg, headers=header)), 401)


def test_given_an_hs256_token_signed_with_a_guessable_key_when_it_calls_then_401(client, officers):
    """Key confusion: the custody public key (published at /custody/public-key) is no HMAC secret, nor is ''."""
    officer = officers.make()
    published = client.get("/api/v1/custody/public-key").json
    raw = base64.urlsafe_b64decode(published["public_key"] + "=" * (-len(published["public_key"]) % 4))
    guesses = [b"", b"\x00" * 32, raw, published["public_key"].encode(), published["key_id"].encode(),
               b"fieldcase", b"secret", officer.id.encode()]
    for key in guesses:
        error(me(client, hmac_token(claims(officer), key)), 401)


def test_given_a_token_minted_with_the_real_secret_but_wrong_claims_when_it_calls_then_401(app, client, officers):
    """Signature alone is not enough: issuer, subject, expiry and types are all checked."""
    officer = officers.make()
    secret = app.extensions["fieldcase"].issuer.secret
    now = int(time.time())
    for bad in (claims(officer, iss="someone-else"), claims(officer, sub="off_doesnotexist"),
                claims(officer, sub=12345), claims(officer, exp="tomorrow"), claims(officer, exp=now - 1),
                {k: v for k, v in claims(officer).items() if k != "jti"},
                {k: v for k, v in claims(officer).items() if k != "iss"}):
        error(me(client, hmac_token(bad, secret)), 401)
    assert me(client, hmac_token(claims(officer), secret)).status_code == 200


def test_given_an_access_token_past_its_expiry_when_it_calls_then_401_saying_expired(app, client, officers):
    officer = officers.make()
    issuer = app.extensions["fieldcase"].issuer
    stale = issuer.access_token(officer, now=utcnow() - timedelta(seconds=issuer.access_ttl + 1))
    body = error(me(client, stale), 401)
    assert "expired" in body["message"]
    error(client.post("/api/v1/sync/push", json={"records": []}, headers={"Authorization": "Bearer " + stale}), 401)


@pytest.mark.parametrize("header", ["Bearer", "Bearer ", "bearer  ", "Token abc", "Bearer a.b", "Bearer a.b.c.d",
                                    "Bearer \u00e9\u00e9.\u00e9.\u00e9", "Basic " + b64(b"admin:admin")])
def test_given_a_malformed_authorization_header_when_it_calls_then_401(client, header):
    error(client.get("/api/v1/me", headers={"Authorization": header}), 401)


# --- §1 refresh tokens -------------------------------------------------------------------------------------------

def test_given_a_refresh_token_used_twice_then_the_second_use_is_refused_and_its_whole_family_revoked(
        client, officers, db):
    officer = officers.make()
    first = officers.login(officer)
    rotated = client.post("/api/v1/auth/refresh", json={"refresh_token": first["refresh_token"]}).json
    again = client.post("/api/v1/auth/refresh", json={"refresh_token": rotated["refresh_token"]}).json

    body = error(client.post("/api/v1/auth/refresh", json={"refresh_token": first["refresh_token"]}), 401)
    assert "reused" in body["message"]
    # Committed although the request failed: every token of the family is revoked in the database.
    with db.session() as s:
        family = s.scalars(select(RefreshToken).where(RefreshToken.officer_id == officer.id)).all()
        assert len(family) == 3 and all(t.revoked_at is not None for t in family)
    error(client.post("/api/v1/auth/refresh", json={"refresh_token": again["refresh_token"]}), 401)


def test_given_one_kind_of_token_when_it_is_used_as_the_other_then_401(client, officers):
    officer = officers.make()
    pair = officers.login(officer)
    error(me(client, pair["refresh_token"]), 401)
    error(client.post("/api/v1/auth/refresh", json={"refresh_token": pair["access_token"]}), 401)
    assert client.post("/api/v1/auth/refresh", json={"refresh_token": pair["refresh_token"]}).status_code == 200


# --- deactivated officers ----------------------------------------------------------------------------------------

def test_given_a_deactivated_officer_with_a_still_valid_token_when_they_push_or_read_then_401(client, officers,
                                                                                              db):
    admin = officers.make(region="330100", roles=("officer", "admin"))
    officer = officers.make()
    phone = TestPhone(client, officer, officers.headers(officer))
    _cid, opened = phone.open_case(CENTRE)
    assert client.post(f"/api/v1/officers/{officer.id}/deactivate", headers=officers.headers(admin)).status_code == 200

    error(client.post("/api/v1/sync/push", json={"records": [opened]}, headers=phone.headers), 401)
    error(client.get(f"/api/v1/devices/{phone.device_id}", headers=phone.headers), 401)
    error(client.post("/api/v1/devices", json={"public_key": b64(bytes(32)), "label": "x"}, headers=phone.headers),
          401)
    error(client.get("/api/v1/sync/pull", headers=phone.headers), 401)
    assert count(db, LedgerRecord) == 0


# --- §2 another officer's device ---------------------------------------------------------------------------------

@pytest.fixture
def zhang(officers: Officers) -> Officer:
    return officers.make(region=HOME, department="education", name="张敏")


@pytest.fixture
def phone(client, officers, zhang) -> TestPhone:
    return TestPhone(client, zhang, officers.headers(zhang))


def test_given_records_of_another_officers_device_when_pushed_then_rejected_not_owner_and_nothing_changes(
        client, officers, db, phone):
    li = officers.make(region=HOME, department="education", name="李强")
    cid, opened = phone.open_case(CENTRE)
    _iid, started = phone.start(cid, [phone.officer.id, li.id])
    answer = phone.push([opened, started], headers=officers.headers(li))
    assert [(r["status"], r["code"]) for r in answer["results"]] == [("rejected", "not_owner")] * 2
    assert answer["heads"] == {}  # the caller learns nothing of the device's chain
    assert count(db, LedgerRecord) == 0
    # The owner's own push of the very same records is unaffected.
    assert [r["status"] for r in phone.push([opened, started])["results"]] == ["applied", "applied"]


def test_given_another_officers_device_when_read_revoked_or_released_then_404_as_if_unknown(client, officers,
                                                                                          phone, db):
    li = officers.make(region=HOME)
    far_reviewer = officers.make(region=FAR, roles=("officer", "reviewer", "admin"))
    for who in (officers.headers(li), officers.headers(far_reviewer)):
        known = error(client.get(f"/api/v1/devices/{phone.device_id}", headers=who), 404)
        unknown = error(client.get("/api/v1/devices/dev_doesnotexist", headers=who), 404)
        assert known["message"].replace(phone.device_id, "?") == unknown["message"].replace("dev_doesnotexist", "?")
        error(client.post(f"/api/v1/devices/{phone.device_id}/revoke", headers=who), 404)
    error(client.post(f"/api/v1/devices/{phone.device_id}/gaps/release", json={"reason": "x"},
                      headers=officers.headers(far_reviewer)), 404)
    with db.session() as s:
        assert s.get(Device, phone.device_id).status == "active"


def test_given_another_officer_flooding_a_device_with_pushes_then_its_owners_quarantine_is_not_evicted(
        settings, zhang):
    """Quarantine is bounded per device *and pushing officer*: a flood of not_owner rejections cannot make room
    by dropping what the owner's rejected submissions left for the forensic record."""
    small = create_app(replace(settings, quarantine_per_device=3))
    try:
        client = small.test_client()
        db = small.extensions["fieldcase"].db
        officers = Officers(db, client)
        phone = TestPhone(client, zhang, officers.headers(zhang))
        forged = [phone.sign(phone.payload("case.open", {"client_case_id": uid(), "institution": CENTRE}),
                             key=Ed25519PrivateKey.generate()) for _ in range(2)]
        phone.push(forged)
        intruder = officers.make(region=HOME)
        for _ in range(3):
            flood = [phone.sign(phone.payload("case.open", {"client_case_id": uid(), "institution": CENTRE}))
                     for _ in range(4)]
            phone.push(flood, headers=officers.headers(intruder))
        with db.session() as s:
            kept = s.scalars(select(QuarantinedRecord).where(QuarantinedRecord.officer_id == zhang.id)).all()
            assert sorted(q.jws for q in kept) == sorted(forged)
            theirs = s.scalar(select(func.count()).where(QuarantinedRecord.officer_id == intruder.id))
            assert theirs == 3
    finally:
        small.extensions["fieldcase"].db.dispose()


# --- jurisdiction: another district's objects by guessed id ------------------------------------------------------

@dataclass
class Scene:
    case_id: str
    inspection_id: str
    evidence_id: str
    device_id: str
    phone: TestPhone


@pytest.fixture
def scene(client, officers, phone) -> Scene:
    """A district-330106 case with an ended inspection and a verified photo (with its thumbnail)."""
    partner = officers.make(region=HOME)
    cid, opened = phone.open_case(CENTRE)
    iid, started = phone.start(cid, [phone.officer.id, partner.id])
    data = images.jpeg_without_exif()
    eid, photo = phone.evidence(iid, data)
    ended = phone.end(iid)
    results = phone.push([opened, started, photo, ended])["results"]
    assert [r["status"] for r in results] == ["applied"] * 4, results
    plan = client.post(f"/api/v1/evidence/{eid}/uploads", headers=phone.headers).json
    assert client.put(plan["url"].split("localhost", 1)[1], data=data, headers=phone.headers).status_code == 200
    done = client.post(f"/api/v1/evidence/{eid}/complete", json={}, headers=phone.headers).json
    assert done["status"] == "verified" and done["has_thumbnail"], done
    return Scene(results[0]["refs"]["case_id"], iid, eid, phone.device_id, phone)


def _reads(sc: Scene, case_id: str, inspection_id: str, evidence_id: str) -> list[tuple[str, str, dict | None]]:
    return [
        ("GET", f"/api/v1/cases/{case_id}", None),
        ("GET", f"/api/v1/cases/{case_id}/transitions", None),
        ("GET", f"/api/v1/cases/{case_id}/package?purpose=check", None),
        ("GET", f"/api/v1/inspections/{inspection_id}", None),
        ("GET", f"/api/v1/inspections/{inspection_id}/coverage", None),
        ("GET", f"/api/v1/evidence/{evidence_id}", None),
        ("GET", f"/api/v1/evidence/{evidence_id}/content", None),
        ("GET", f"/api/v1/evidence/{evidence_id}/thumbnail", None),
        ("GET", f"/api/v1/evidence/{evidence_id}/custody", None),
        ("POST", f"/api/v1/evidence/{evidence_id}/uploads", None),
        ("POST", f"/api/v1/evidence/{evidence_id}/complete", {}),
        ("POST", f"/api/v1/custody/holdings/{evidence_id}/transfer", {"to": sc.phone.officer.id, "reason": "x"}),
        ("POST", f"/api/v1/custody/holdings/{evidence_id}/acknowledge", {}),
        ("POST", f"/api/v1/cases/{case_id}/transitions", {"to": "investigating", "reason": "x"}),
    ]


def test_given_another_districts_objects_when_fetched_by_id_then_404_exactly_like_ids_that_do_not_exist(
        client, officers, scene, db):
    """404, never 403: the answer for a real id outside the jurisdiction equals the answer for a made-up one."""
    far = officers.make(region=FAR, department="education",
                        roles=("officer", "custodian", "reviewer", "legal_reviewer", "admin"))
    headers = officers.headers(far)
    ghost = (f"case_{uuid.uuid4().hex[:12]}", uid(), uid())
    real = (scene.case_id, scene.inspection_id, scene.evidence_id)
    custody_before = count(db, LedgerRecord), client.get("/api/v1/custody/tree-head", headers=headers).json
    for (method, url, body), (_m, ghost_url, _b) in zip(_reads(scene, *real), _reads(scene, *ghost), strict=True):
        got = error(client.open(url, method=method, json=body, headers=headers), 404)
        made_up = error(client.open(ghost_url, method=method, json=body, headers=headers), 404)
        for ident, other in zip(real, ghost, strict=True):
            got["message"] = got["message"].replace(ident, "?")
            made_up["message"] = made_up["message"].replace(other, "?")
        assert got == made_up, (url, got, made_up)
    # Nothing was logged as read or exported by the outsider.
    assert client.get("/api/v1/custody/tree-head", headers=headers).json["tree_size"] == custody_before[1]["tree_size"]
    assert count(db, LedgerRecord) == custody_before[0]


def test_given_another_officer_of_the_same_district_then_upload_routes_of_my_evidence_answer_404(
        client, officers, scene):
    """Only the declaring officer uploads: a colleague who may read the item cannot replace its bytes."""
    colleague = officers.headers(officers.make(region=HOME))
    assert client.get(f"/api/v1/evidence/{scene.evidence_id}", headers=colleague).status_code == 200
    error(client.post(f"/api/v1/evidence/{scene.evidence_id}/uploads", headers=colleague), 404)
    error(client.put(f"/api/v1/evidence/{scene.evidence_id}/content", data=b"x", headers=colleague), 404)
    assert client.head(f"/api/v1/evidence/{scene.evidence_id}/content", headers=colleague).status_code == 404
    error(client.post(f"/api/v1/evidence/{scene.evidence_id}/complete", json={}, headers=colleague), 404)


# --- §6 evidence ids that try to leave the store -----------------------------------------------------------------

TRAVERSALS = [
    "..", "...", "..%2F..%2Fsentinel.txt", "%2e%2e%2f%2e%2e%2fsentinel.txt", "%2E%2E%2F%2E%2E%2F..%2Fsentinel.txt",
    "..%5C..%5Csentinel.txt", "..\\..\\sentinel.txt", "%2Fetc%2Fpasswd", "%2F%2Fetc%2Fpasswd", "C:%5Csentinel.txt",
    "%252e%252e%252fsentinel.txt", "..%c0%af..%c0%afsentinel.txt", "staging%2F..%2F..%2Fsentinel.txt",
    "objects", "derived", "thumbnails%2F..%2F..%2F..%2Fsentinel.txt", "a%00b", "%00", "~", "%7E%2F.ssh",
]


def _snapshot(root: Path) -> dict[str, tuple[int, int, bytes]]:
    return {str(p.relative_to(root)): (p.stat().st_size, p.stat().st_mtime_ns, hashlib.sha256(p.read_bytes()).digest())
            for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.mark.parametrize("ident", TRAVERSALS)
def test_given_an_evidence_id_with_path_traversal_then_404_or_422_and_no_file_outside_the_store_is_touched(
        app, client, settings, tmp_path, phone, ident):
    secret = b"SENTINEL-" + uuid.uuid4().hex.encode()
    for place in (tmp_path / "sentinel.txt", settings.instance_dir / "sentinel.txt"):
        place.write_bytes(secret)
    before = _snapshot(tmp_path)
    calls = [("GET", ""), ("GET", "/content"), ("HEAD", "/content"), ("GET", "/thumbnail"), ("GET", "/custody"),
             ("POST", "/uploads"), ("POST", "/complete"), ("PUT", "/content")]
    for method, suffix in calls:
        r = client.open(f"/api/v1/evidence/{ident}{suffix}", method=method, headers=phone.headers,
                        data=b"PWNED" if method == "PUT" else None,
                        content_type="application/octet-stream" if method == "PUT" else None)
        assert r.status_code in (404, 422), (method, suffix, r.status_code, r.get_data()[:200])
        if method != "HEAD":
            error(r, r.status_code)
        assert secret not in r.get_data() and b"PWNED" not in r.get_data()
    assert _snapshot(tmp_path) == before


@pytest.mark.parametrize("key", ["../sentinel.txt", "objects/../../sentinel.txt", "/etc/passwd", "derived/../../x",
                                 "objects/\x00", "derived/" + "../" * 8 + "tmp/x"])
def test_given_a_key_that_leads_out_of_the_local_store_then_the_store_itself_refuses_it(tmp_path, key):
    """Defence in depth: object keys are minted by the server, but the store would not follow one out anyway."""
    from media.store import LocalStore, StoreError

    root = tmp_path / "store"
    store = LocalStore(root)
    (tmp_path / "sentinel.txt").write_bytes(b"secret")
    outside = {name for name in _snapshot(tmp_path) if not name.startswith("store/")}
    before = _snapshot(tmp_path)
    with pytest.raises(StoreError):
        store.open(key)
    with pytest.raises(StoreError):
        store.remove(key)
    with pytest.raises(StoreError):
        store.offset(key)
    try:
        written = store.put_derived(key.removeprefix("derived/"), b"PWNED", "image/jpeg")
    except StoreError:
        pass
    else:  # an absolute name is taken as a name under derived/, never as a path from /
        assert (root / written).resolve().is_relative_to((root / "derived").resolve())
    after = _snapshot(tmp_path)
    assert {name: after[name] for name in outside} == {name: before[name] for name in outside}
    assert {name for name in after if not name.startswith("store/")} == outside


# --- oversized headers and bodies --------------------------------------------------------------------------------

def test_given_a_64_kib_authorization_header_then_431(client, phone):
    body = error(client.get("/api/v1/me", headers={"Authorization": "Bearer " + "a" * 65536}), 431)
    assert "header" in body["message"]


def test_given_an_oversized_or_too_many_headers_on_any_route_then_431(client, phone):
    error(client.get("/api/v1/health", headers={"X-Filler": "x" * (16 * 1024)}), 431)
    error(client.post("/api/v1/auth/token", json={"username": "a", "password": "b"},
                      headers={"User-Agent": "x" * 70000}), 431)
    many = {f"X-H{i}": "1" for i in range(101)}
    error(client.get("/api/v1/health", headers=many), 431)
    assert client.get("/api/v1/health", headers={"X-Filler": "x" * 8000}).status_code == 200


def _raw(port: int, request: bytes) -> tuple[int, str, dict[str, Any]]:
    """Send bytes as they are (no client library would send a broken request line) and read the answer."""
    import socket

    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(request)
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = dict(line.split(": ", 1) for line in lines[1:])
    return int(lines[0].split(" ")[1]), headers.get("Content-Type", ""), json.loads(body)


@pytest.fixture(scope="module")
def production_port(module_settings, tmp_path_factory) -> Iterator[int]:
    """One production server (gunicorn) for the requests it refuses itself: nothing of them reaches the app."""
    from tests.live import live_server, port_of

    with live_server(module_settings, tmp_path_factory.mktemp("gunicorn") / "server.log", workers=1) as base:
        yield port_of(base)


@pytest.mark.parametrize("request_bytes, status", [
    (b"GET /api/v1/health HTTP/1.1\r\nHost: x\r\nX-Filler: " + b"x" * 20000 + b"\r\n\r\n", 431),
    (b"GET /api/v1/health HTTP/1.1\r\nHost: x\r\n" + b"".join(b"X-H%d: 1\r\n" % i for i in range(120)) + b"\r\n",
     431),
    (b"GET /" + b"a" * 9000 + b" HTTP/1.1\r\nHost: x\r\n\r\n", 414),
    (b"GET /api/v1/health HTTP/1.1 extra\r\nHost: x\r\n\r\n", 400),
], ids=["header_too_large", "too_many_headers", "request_line_too_long", "broken_request_line"])
def test_given_what_the_production_server_refuses_itself_then_the_answer_is_the_json_error_too(
        production_port, request_bytes, status):
    """gunicorn answers these before the app sees the request; a phone still gets PROTOCOL's JSON error."""
    got, content_type, body = _raw(production_port, request_bytes)
    assert (got, content_type) == (status, "application/json")
    assert set(body) == {"code", "status", "message"} and body["code"] == status
    assert body["status"] == HTTPStatus(status).phrase and body["message"]


def test_given_a_push_over_8_mib_then_413_and_nothing_is_handled(client, phone, db):
    junk = "a" * (200 * 1024)
    records = [junk] * 42  # 8.2 MiB: over the push limit, under the app's hard limit of 9 MiB
    error(client.post("/api/v1/sync/push", json={"records": records}, headers=phone.headers), 413)
    assert count(db, QuarantinedRecord) == 0


def test_given_a_chunked_push_over_8_mib_without_content_length_then_413(client, phone, db):
    """A chunked body declares no length: the limit is checked on what arrived, not on the header."""
    data = json.dumps({"records": ["a" * (200 * 1024)] * 42}).encode()
    r = client.post("/api/v1/sync/push", input_stream=io.BytesIO(data), content_type="application/json",
                    headers={**phone.headers, "Transfer-Encoding": "chunked"},
                    environ_overrides={"wsgi.input_terminated": True})
    error(r, 413)
    assert count(db, QuarantinedRecord) == 0


def test_given_any_body_over_the_app_limit_then_413(client):
    error(client.post("/api/v1/auth/token", data=b"{" + b" " * (9 * 1024 * 1024 + 1) + b"}",
                      content_type="application/json"), 413)


def test_given_a_signed_record_over_256_kib_then_it_is_rejected_malformed_and_not_ledgered(phone, db):
    body = {"client_case_id": uid(), "institution": CENTRE, "summary": "超" * 90_000}
    big = phone.record("case.open", body)
    assert len(big) > 256 * 1024
    (result,) = phone.push([big])["results"]
    assert (result["status"], result["code"]) == ("rejected", "malformed")
    assert count(db, LedgerRecord) == 0


def test_given_json_nested_deeper_than_the_parser_allows_then_400(client, phone):
    deep = b'{"records": ' + b"[" * 200_000 + b"]" * 200_000 + b"}"
    error(client.post("/api/v1/sync/push", data=deep, content_type="application/json", headers=phone.headers), 400)
    error(client.post("/api/v1/auth/token", data=b"[" * 100_000, content_type="application/json"), 400)


def test_given_a_record_that_is_a_deeply_nested_list_then_it_is_rejected_malformed(client, phone, db):
    nested: Any = "x"
    for _ in range(600):
        nested = [nested]
    answer = client.post("/api/v1/sync/push", json={"records": [nested, {"a": nested}]}, headers=phone.headers)
    assert answer.status_code == 200, answer.get_data()[:300]
    assert [(r["status"], r["code"]) for r in answer.json["results"]] == [("rejected", "malformed")] * 2
    assert count(db, QuarantinedRecord) == 2


@pytest.mark.parametrize("body", [
    {"username": "\ud800", "password": "x"},
    {"username": "ok", "password": "\udfff\u0041"},
])
def test_given_a_lone_surrogate_in_a_json_body_then_422(client, body):
    """JSON can spell a lone surrogate (`\\ud800`); no UTF-8 text, and so no database, can hold one."""
    data = json.dumps(body).encode()  # ensure_ascii: the surrogate travels as an escape
    error(client.post("/api/v1/auth/token", data=data, content_type="application/json"), 422)


def test_given_a_lone_surrogate_as_a_pushed_record_then_422_and_a_valid_pair_is_only_malformed(client, phone):
    error(client.post("/api/v1/sync/push", data=b'{"records": ["\\ud800"]}', content_type="application/json",
                      headers=phone.headers), 422)
    r = client.post("/api/v1/sync/push", data=b'{"records": ["\\ud83d\\ude00"]}', content_type="application/json",
                    headers=phone.headers)
    assert r.status_code == 200 and r.json["results"][0]["code"] == "malformed"


# --- slow repeated logins ----------------------------------------------------------------------------------------

def _fail(client: FlaskClient, username: str, address: str = "127.0.0.1", **headers: str):
    return client.post("/api/v1/auth/token", json={"username": username, "password": "wrong-password"},
                       environ_base={"REMOTE_ADDR": address}, headers=headers)


def _age_failures(db, seconds: int) -> None:
    """Time passing for the throttle: every recorded failure becomes `seconds` older."""
    with db.transaction() as s:
        for failure in s.scalars(select(LoginFailure)):
            failure.at -= timedelta(seconds=seconds)


def test_given_failures_spread_over_hours_then_they_still_count_and_retry_after_says_when_to_come_back(
        client, officers, db, settings):
    """A slow guesser (one try an hour) is counted like a fast one: its failures are remembered for a day, so the
    wait after each grows just the same; Retry-After is the seconds left of it, and then logging in works."""
    officer = officers.make()
    for _ in range(settings.login_free_failures + 1):
        error(_fail(client, officer.username), 401)
        _age_failures(db, 3600)  # spaced out: each waited longer than any delay asks
    error(_fail(client, officer.username), 401)  # the 7th failure, 2 beyond the free ones: then wait base·2^2
    blocked = client.post("/api/v1/auth/token", json={"username": officer.username, "password": PASSWORD})
    error(blocked, 429)
    retry = int(blocked.headers["Retry-After"])
    assert settings.login_delay_seconds * 4 - 2 <= retry <= settings.login_delay_seconds * 4
    _age_failures(db, retry)
    assert client.post("/api/v1/auth/token",
                       json={"username": officer.username, "password": PASSWORD}).status_code == 200


def test_given_a_throttled_username_then_refused_attempts_do_not_extend_the_block(client, officers, db, settings):
    officer = officers.make()
    for _ in range(settings.login_free_failures):
        _fail(client, officer.username)
    for _ in range(5):
        error(_fail(client, officer.username), 429)
    with db.session() as s:
        assert s.scalar(select(func.count()).select_from(LoginFailure)) == settings.login_free_failures


def test_given_spellings_of_one_username_then_they_are_throttled_as_one(client, officers, settings):
    officer = officers.make(username="wang.wei")
    for spelling in ("wang.wei", "WANG.WEI", " Wang.Wei ", "wang.wei\t", "WANG.wei"):
        error(_fail(client, spelling), 401)
    error(client.post("/api/v1/auth/token", json={"username": officer.username, "password": PASSWORD}), 429)


def test_given_a_forged_x_forwarded_for_then_the_address_throttle_still_applies(client, officers, settings):
    """Without FIELDCASE_TRUST_PROXY the peer address counts, whatever the request says about itself."""
    officer = officers.make()
    for i in range(settings.login_max_failures_per_address):
        error(_fail(client, f"guess{i}", "10.7.7.7", **{"X-Forwarded-For": f"192.0.2.{i}"}), 401)
    r = client.post("/api/v1/auth/token", json={"username": officer.username, "password": PASSWORD},
                    environ_base={"REMOTE_ADDR": "10.7.7.7"}, headers={"X-Forwarded-For": "192.0.2.250"})
    error(r, 429)
    assert int(r.headers["Retry-After"]) >= 1


def test_given_a_trusted_proxy_then_only_the_address_it_appended_counts(settings, zhang):
    """Behind the proxy, a client's own X-Forwarded-For entries come first; only the last one is the proxy's."""
    proxied: Flask = create_app(replace(settings, trust_proxy=True))
    try:
        client = proxied.test_client()
        for i in range(settings.login_max_failures_per_address):
            error(_fail(client, f"guess{i}", "10.0.0.1", **{"X-Forwarded-For": f"192.0.2.{i}, 198.51.100.7"}), 401)
        r = client.post("/api/v1/auth/token", json={"username": zhang.username, "password": PASSWORD},
                        environ_base={"REMOTE_ADDR": "10.0.0.1"},
                        headers={"X-Forwarded-For": "203.0.113.9, 198.51.100.7"})
        error(r, 429)
        r = client.post("/api/v1/auth/token", json={"username": zhang.username, "password": PASSWORD},
                        environ_base={"REMOTE_ADDR": "10.0.0.1"}, headers={"X-Forwarded-For": "198.51.100.8"})
        assert r.status_code == 200
    finally:
        proxied.extensions["fieldcase"].db.dispose()
