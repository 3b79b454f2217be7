"""SM2 devices (issue 23, item 2; PROTOCOL §2, §3): a phone that signs in the national algorithms.

Given a phone that enrolled an SM2 key (`alg` SM2SM3), its records are SM2 signatures with SM3 over the pinned user
ID 1234567812345678, raw r ‖ s, and its chain links are SM3 of each JWS. Such phones work beside Ed25519 phones:
they push to the same server, merge into the same case, appear in the same package, and pass the same audits.

The SM2 phone is the reference client (`sync.client.Phone(suite="sm")`), which signs with GmSSL itself; the
server verifies through `backend.core.crypto`. The digests the tests expect are computed here with `hashlib`
(OpenSSL's SM3 and SHA-256), independently of both.
"""

from __future__ import annotations

import base64
import hashlib
import io
import json
import shutil
import subprocess
import uuid
import zipfile
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta

import gmssl_pyx
import pytest
from click.testing import CliRunner
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature
from sqlalchemy import select, update

from backend.cli import main
from backend.core.models import Case, Device, LedgerRecord, QuarantinedRecord
from backend.web.console.present import ledger_rows
from media.package_verify import verify_package
from sync.client import SHANGHAI, Phone
from sync.client.signing import DeviceKey
from tests.conftest import PASSWORD
from tests.phones import b64, jws_hash, uid
from tests.wsgi_transport import session_for

BASE = "http://fieldcase.test"
CENTRE = {"name": "明德书画培训中心", "region": "330106"}
PURPOSE = "移送法制审核"


def sm3(text: str) -> str:
    return hashlib.new("sm3", text.encode("ascii")).hexdigest()


def sha256(text: str) -> str:
    return hashlib.sha256(text.encode("ascii")).hexdigest()


def lenient_b64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


class FieldClock:
    def __init__(self) -> None:
        self.now = datetime.now(SHANGHAI).replace(microsecond=0) - timedelta(hours=3)

    def __call__(self) -> datetime:
        self.now += timedelta(seconds=5)
        return self.now


@pytest.fixture
def make_phone(app, tmp_path) -> Iterator[Callable[..., Phone]]:
    """Reference phones talking to the in-process app: `suite="sm"` makes an SM2 phone."""
    made: list[Phone] = []

    def make(officer, label: str, suite: str = "intl") -> Phone:
        phone = Phone(tmp_path / label, BASE, session=session_for(app), clock=FieldClock(), sleep=lambda _s: None,
                      max_attempts=1, suite=suite)
        made.append(phone)
        phone.login(officer.username, PASSWORD)
        phone.enrol(label)
        return phone

    yield make
    for phone in made:
        phone.close()


def device_row(db, device_id: str) -> Device:
    with db.session() as s:
        return s.get(Device, device_id)


def ledger(db, device_id: str) -> list[LedgerRecord]:
    with db.session() as s:
        return list(s.scalars(select(LedgerRecord).where(LedgerRecord.device_id == device_id)
                              .order_by(LedgerRecord.seq)))


def push_texts(client, headers, texts: list[str]) -> list[dict]:
    r = client.post("/api/v1/sync/push", json={"records": texts}, headers=headers)
    assert r.status_code == 200, r.json
    return r.json["results"]


def flip_signature_bit(text: str) -> str:
    """The same record with one bit of its signature's r flipped, spelled canonically again."""
    header, payload, signature = text.split(".")
    raw = bytearray(lenient_b64(signature))
    raw[5] ^= 0x01
    return f"{header}.{payload}.{b64(bytes(raw))}"


# ------------------------------------------------------------------------------------------------- enrolment


def test_given_an_sm2_phone_when_it_enrols_then_the_device_is_an_sm2sm3_device(make_phone, zhang, db):
    phone = make_phone(zhang, "sm2 phone", suite="sm")

    raw = lenient_b64(phone.public_key)
    assert len(phone.public_key) == 87 and len(raw) == 65 and raw[0] == 0x04
    status = phone.device_status()
    assert status["alg"] == "SM2SM3" and status["head"] == {"seq": 0, "hash": "0" * 64}
    device = device_row(db, phone.device_id)
    assert (device.suite, device.public_key) == ("sm", phone.public_key)


def test_given_an_ed25519_phone_when_it_enrols_as_before_then_its_device_is_intl(phone, db):
    """No `alg` in the body, as every phone sent before SM2 devices: an Ed25519 device."""
    status = phone.client.get(f"/api/v1/devices/{phone.device_id}", headers=phone.headers).json
    assert status["alg"] == "EdDSA"
    assert device_row(db, phone.device_id).suite == "intl"


def _enrol(client, headers, **body) -> tuple[int, dict]:
    r = client.post("/api/v1/devices", json={"label": "sm2", **body}, headers=headers)
    return r.status_code, r.json


def _sm2_key() -> bytes:
    point, _private = gmssl_pyx.sm2_key_generate()
    return b"\x04" + point


def test_given_an_sm2_key_of_the_wrong_shape_or_off_the_curve_when_enrolled_then_422_names_public_key(
        client, officers, zhang):
    headers = officers.headers(zhang)
    good = _sm2_key()
    x, y = good[1:33], int.from_bytes(good[33:], "big")
    off_curve = b"\x04" + x + ((y + 1) % 2**256).to_bytes(32, "big")
    cases = [
        (good[1:], "must be the 65-byte uncompressed SM2 point (0x04 || x || y), not 64 bytes"),
        (good + b"\x00", "not 66 bytes"),
        (bytes(32), "not 32 bytes"),
        (b"\x02" + good[1:], "its first byte is 0x04"),
        (off_curve, "is not a point on the SM2 curve"),
        (b"\x04" + bytes(64), "is not a point on the SM2 curve"),
    ]
    for key, says in cases:
        status, body = _enrol(client, headers, public_key=b64(key), alg="SM2SM3")
        assert (status, body["code"]) == (422, 422), (key.hex(), body)
        (message,) = _field_errors(body, "public_key")
        assert says in message, message
    with officers.db.session() as s:
        assert s.scalar(select(Device).where(Device.officer_id == zhang.id)) is None


def _field_errors(body: dict, field: str) -> list[str]:
    """The messages a 422 gives for one field of the body (flask-smorest nests them under `json`)."""
    errors = body.get("errors") or {}
    errors = errors.get("json", errors)
    return errors[field]


def test_given_an_sm2_key_spelled_another_way_or_an_unknown_alg_when_enrolled_then_422_names_the_field(
        client, officers, zhang):
    headers = officers.headers(zhang)
    key = b64(_sm2_key())
    respelled = key[:-1] + "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"[
        ("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_".index(key[-1]) | 1)]
    assert respelled != key and lenient_b64(respelled) == lenient_b64(key)
    status, body = _enrol(client, headers, public_key=respelled, alg="SM2SM3")
    assert status == 422 and "not canonical base64url" in _field_errors(body, "public_key")[0]

    for alg in ("SM2", "sm2sm3", "ES256", ""):
        status, body = _enrol(client, headers, public_key=key, alg=alg)
        assert status == 422 and _field_errors(body, "alg"), body

    ed25519 = b64(Ed25519PrivateKey.generate().public_key().public_bytes_raw())
    status, body = _enrol(client, headers, public_key=ed25519, alg="SM2SM3")  # an Ed25519 key is no SM2 key
    assert status == 422 and "not 32 bytes" in _field_errors(body, "public_key")[0]
    status, body = _enrol(client, headers, public_key=key)  # an SM2 key without its alg is not an Ed25519 key
    assert status == 422 and _field_errors(body, "public_key") == ["public_key must be 32 raw bytes"]


def test_given_an_enrolled_sm2_key_when_enrolled_again_then_409(client, officers, zhang):
    headers = officers.headers(zhang)
    key = b64(_sm2_key())
    assert _enrol(client, headers, public_key=key, alg="SM2SM3")[0] == 201
    status, body = _enrol(client, headers, public_key=key, alg="SM2SM3")
    assert status == 409, body


# ------------------------------------------------------------------------------------------------------ push


def test_given_an_sm2_phone_when_it_pushes_then_its_records_are_applied_and_chained_by_sm3(make_phone, zhang, db):
    phone = make_phone(zhang, "sm2 phone", suite="sm")
    cid = phone.open_case(CENTRE, summary="无证培训举报核查")
    iid = phone.start_inspection(cid, officers=[zhang.id])
    phone.add_finding(iid, "unlicensed", "现场发现无证培训")
    phone.end_inspection(iid, "violation_found")

    answer = phone.push()
    assert answer["counts"] == {"applied": 4}, answer["results"]
    rows = ledger(db, phone.device_id)
    assert [r.seq for r in rows] == [1, 2, 3, 4]
    for row in rows:
        header = json.loads(lenient_b64(row.jws.split(".")[0]))
        assert header == {"alg": "SM2SM3", "kid": phone.device_id, "typ": "fieldcase-record"}
        assert row.hash == sm3(row.jws) != sha256(row.jws)
    assert [r.prev for r in rows] == ["0" * 64] + [r.hash for r in rows[:-1]]
    assert answer["heads"][phone.device_id] == {"seq": 4, "hash": sm3(rows[-1].jws)}
    assert phone.outbox() == []  # the phone's own SM3 links matched the server's: every record acknowledged


def test_given_an_sm2_phone_when_a_bit_of_a_signature_is_flipped_then_the_push_refuses_it(
        make_phone, client, officers, zhang, db):
    phone = make_phone(zhang, "sm2 phone", suite="sm")
    phone.open_case(CENTRE)
    (record,) = phone.outbox()
    forged = flip_signature_bit(record.jws)
    headers = officers.headers(zhang)

    (result,) = push_texts(client, headers, [forged])
    assert (result["status"], result["code"]) == ("rejected", "bad_signature"), result
    assert result["detail"] == "signature does not verify with the device key"
    assert ledger(db, phone.device_id) == []
    with db.session() as s:
        (kept,) = s.scalars(select(QuarantinedRecord).where(QuarantinedRecord.device_id == phone.device_id))
        assert (kept.code, kept.jws, kept.hash) == ("bad_signature", forged, sm3(forged))

    (result,) = push_texts(client, headers, [record.jws])  # the record as signed still holds
    assert result["status"] == "applied", result


def _sm2_signer(tmp_path, name: str) -> DeviceKey:
    """An SM2 device key of the reference client, to sign records by hand."""
    return DeviceKey(tmp_path / f"{name}.key", enrolled=lambda: False, suite="sm")


def _sign(key: DeviceKey, kid: str, officer_id: str, seq: int, prev: str, body: dict,
          at: datetime | None = None) -> str:
    at = at or datetime.now(SHANGHAI).replace(microsecond=0) - timedelta(minutes=60 - seq)
    return key.sign_record(kid=kid, by=officer_id, op=uid(), seq=seq, prev=prev, at=at.isoformat(),
                           type_="case.open", body=body)


def test_given_an_ed25519_device_when_an_sm2_record_is_pushed_for_it_then_it_is_refused(phone, zhang, tmp_path, db):
    """A record whose alg is not its device's is no signature of that device (PROTOCOL §4 `bad_signature`),
    whichever key made it; so is an Ed25519 record of an SM2 device."""
    key = _sm2_signer(tmp_path, "stray")
    text = _sign(key, phone.device_id, zhang.id, 1, "0" * 64, {"client_case_id": uid(), "institution": CENTRE})
    (result,) = phone.push([text])["results"]
    assert (result["status"], result["code"]) == ("rejected", "bad_signature"), result
    assert "the device enrolled an Ed25519 key (alg EdDSA or Ed25519)" in result["detail"]

    r = phone.client.post("/api/v1/devices", json={"public_key": key.public_key, "alg": "SM2SM3"},
                          headers=phone.headers)
    assert r.status_code == 201, r.json
    sm2_device = r.json["id"]
    assert r.json["alg"] == "SM2SM3"
    payload = phone.payload("case.open", {"client_case_id": uid(), "institution": CENTRE}, seq=1, prev="0" * 64)
    eddsa = phone.sign(payload, header={"alg": "EdDSA", "kid": sm2_device, "typ": "fieldcase-record"})
    (result,) = phone.push([eddsa])["results"]
    assert (result["status"], result["code"]) == ("rejected", "bad_signature"), result
    assert "the device enrolled an SM2 key (alg SM2SM3)" in result["detail"]
    assert ledger(db, phone.device_id) == [] and ledger(db, sm2_device) == []

    good = _sign(key, sm2_device, zhang.id, 1, "0" * 64, {"client_case_id": uid(), "institution": CENTRE})
    (result,) = phone.push([good])["results"]
    assert result["status"] == "applied", result


def test_given_an_sm2_device_when_a_record_arrives_past_a_gap_then_it_is_held_and_caught_up_by_its_sm3_link(
        phone, zhang, tmp_path, db):
    key = _sm2_signer(tmp_path, "gap")
    r = phone.client.post("/api/v1/devices", json={"public_key": key.public_key, "alg": "SM2SM3"},
                          headers=phone.headers)
    device = r.json["id"]
    first = _sign(key, device, zhang.id, 1, "0" * 64, {"client_case_id": uid(), "institution": CENTRE})
    second = _sign(key, device, zhang.id, 2, sm3(first), {"client_case_id": uid(), "institution": CENTRE})

    assert [r["status"] for r in phone.push([second])["results"]] == ["deferred"]
    answer = phone.push([first])
    assert [(r["seq"], r["status"]) for r in answer["results"]] == [(1, "applied"), (2, "applied")]
    assert answer["results"][1]["caught_up"] is True
    assert answer["heads"][device] == {"seq": 2, "hash": sm3(second)}

    # A link by SHA-256, as an Ed25519 phone's, does not chain an SM2 device's records.
    other = _sm2_signer(tmp_path, "gap2")
    r = phone.client.post("/api/v1/devices", json={"public_key": other.public_key, "alg": "SM2SM3"},
                          headers=phone.headers)
    first = _sign(other, r.json["id"], zhang.id, 1, "0" * 64, {"client_case_id": uid(), "institution": CENTRE})
    sha_linked = _sign(other, r.json["id"], zhang.id, 2, sha256(first),
                       {"client_case_id": uid(), "institution": CENTRE})
    results = phone.push([first, sha_linked])["results"]
    assert [(r["status"], r.get("code")) for r in results] == [("applied", None), ("rejected", "chain_broken")]


# ------------------------------------------------------------------------------------------- the mixed fleet


@pytest.fixture
def fleet(app, client, officers, make_phone, db):
    """An SM2 phone and an Ed25519 phone of one department at one centre, each opening the case offline, each
    inspecting, capturing and uploading a photo; and the case exported as a package."""
    wang, chen = officers.make(name="王芳"), officers.make(name="陈刚")
    sm2_phone, ed_phone = make_phone(wang, "sm2 phone", suite="sm"), make_phone(chen, "ed25519 phone")
    visits = {}
    for phone, officer in ((sm2_phone, wang), (ed_phone, chen)):
        cid = phone.open_case(CENTRE, summary="联合检查")
        iid = phone.start_inspection(cid, officers=[wang.id, chen.id])
        eid = phone.capture_evidence(f"photo by {officer.id} ".encode() + uuid.uuid4().bytes, "photo", "image/jpeg",
                                     inspection_id=iid)
        phone.add_finding(iid, "unlicensed", "现场发现无证培训", evidence=[eid])
        phone.end_inspection(iid, "violation_found")
        answer = phone.push()
        assert answer["counts"] == {"applied": 5}, answer["results"]
        assert [u["status"] for u in phone.upload_pending()] == ["verified"]
        visits[phone.suite] = (cid, iid, eid, answer["results"])
    cases = {visits[s][3][0]["refs"]["case_id"] for s in visits}
    custodian = officers.make(roles=("custodian",))
    (case_id,) = cases
    r = client.get(f"/api/v1/cases/{case_id}/package", query_string={"purpose": PURPOSE},
                   headers=officers.headers(custodian))
    assert r.status_code == 200, r.data[:500]
    return {"sm2": sm2_phone, "ed25519": ed_phone, "case_id": case_id, "visits": visits, "zip": r.data,
            "key": client.get("/api/v1/custody/public-key").json["public_key"]}


def test_given_an_sm2_and_an_ed25519_phone_when_both_open_the_case_offline_then_they_merge_into_one(fleet, db):
    sm_open, ed_open = fleet["visits"]["sm"][3][0], fleet["visits"]["intl"][3][0]
    assert sm_open["refs"]["case_id"] == ed_open["refs"]["case_id"] == fleet["case_id"]
    assert [sm_open["refs"].get("merged"), ed_open["refs"].get("merged")].count(True) == 1
    with db.session() as s:
        assert s.get(Case, fleet["case_id"]) is not None
    for phone, digest in ((fleet["sm2"], sm3), (fleet["ed25519"], sha256)):
        rows = ledger(db, phone.device_id)
        assert all(row.hash == digest(row.jws) for row in rows)
        assert [r.prev for r in rows[1:]] == [r.hash for r in rows[:-1]]


def test_given_a_mixed_fleet_package_when_verified_offline_then_it_holds(fleet, tmp_path):
    m = json.loads(zipfile.ZipFile(io.BytesIO(fleet["zip"])).read("manifest.json"))
    devices = m["devices"]
    assert devices[fleet["sm2"].device_id]["alg"] == "SM2SM3"
    assert devices[fleet["ed25519"].device_id]["alg"] == "EdDSA"
    assert devices[fleet["sm2"].device_id]["public_key"] == fleet["sm2"].public_key
    for rec in m["records"]:
        assert rec["hash"] == (sm3 if rec["device"] == fleet["sm2"].device_id else sha256)(rec["jws"])
    assert len({rec["device"] for rec in m["records"]}) == 2

    report = verify_package(io.BytesIO(fleet["zip"]), fleet["key"])
    assert report.ok, report.problems
    assert report.devices == 2 and report.records == len(m["records"]) == 10
    path = tmp_path / "package.zip"
    path.write_bytes(fleet["zip"])
    result = CliRunner().invoke(main, ["verify-package", str(path), "--public-key", fleet["key"]])
    assert result.exit_code == 0, result.output
    assert result.output.rstrip().endswith(": OK")


def _rewritten(data: bytes, change: Callable[[dict], None]) -> bytes:
    """The package with its manifest changed (its seal then names the change too)."""
    src = zipfile.ZipFile(io.BytesIO(data))
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as dst:
        for info in src.infolist():
            body = src.read(info.filename)
            if info.filename == "manifest.json":
                manifest = json.loads(body)
                change(manifest)
                body = json.dumps(manifest, ensure_ascii=False).encode()
            dst.writestr(info, body)
    return out.getvalue()


def _sm2_record(m: dict, fleet: dict, rtype: str) -> dict:
    return next(r for r in m["records"] if r["device"] == fleet["sm2"].device_id and r["type"] == rtype)


def test_given_a_tampered_sm2_record_in_a_package_when_verified_then_it_is_named(fleet):
    device = fleet["sm2"].device_id

    def flip(m: dict) -> None:
        rec = _sm2_record(m, fleet, "inspection.finding")
        rec["jws"] = flip_signature_bit(rec["jws"])
        rec["hash"] = sm3(rec["jws"])

    report = verify_package(io.BytesIO(_rewritten(fleet["zip"], flip)), fleet["key"])
    seq = _sm2_record(json.loads(zipfile.ZipFile(io.BytesIO(fleet["zip"])).read("manifest.json")), fleet,
                      "inspection.finding")["seq"]
    assert (f"record {device}#{seq}: signature check failed (bad signature): the record is not as the device signed "
            "it") in report.problems, report.problems

    def listed_by_sha256(m: dict) -> None:
        rec = _sm2_record(m, fleet, "case.open")
        rec["hash"] = sha256(rec["jws"])

    report = verify_package(io.BytesIO(_rewritten(fleet["zip"], listed_by_sha256)), fleet["key"])
    assert f"record {device}#1: its JWS does not hash to the listed hash (the record was altered)" in report.problems

    def passed_off_as_ed25519(m: dict) -> None:
        m["devices"][device]["alg"] = "EdDSA"

    report = verify_package(io.BytesIO(_rewritten(fleet["zip"], passed_off_as_ed25519)), fleet["key"])
    assert any(p.startswith(f"device {device}: its public key is not a valid Ed25519 key (an Ed25519 public key is "
                            "32 bytes, not 65)") for p in report.problems), report.problems

    def unknown_alg(m: dict) -> None:
        m["devices"][device]["alg"] = "ES256"

    report = verify_package(io.BytesIO(_rewritten(fleet["zip"], unknown_alg)), fleet["key"])
    assert (f"device {device}: its alg 'ES256' is not one the protocol defines (EdDSA, Ed25519, SM2SM3), so none of "
            "its records can be checked") in report.problems, report.problems


def test_given_a_mixed_fleet_when_the_whole_system_is_audited_then_it_passes_and_an_sm2_hash_edit_is_named(
        fleet, settings, db):
    env = {"DATABASE_URL": settings.database_url, "FIELDCASE_INSTANCE_DIR": str(settings.instance_dir)}
    result = CliRunner().invoke(main, ["verify", "--json"], env=env)
    report = json.loads(result.stdout)
    assert result.exit_code == 0, report["problems"]
    assert report["counts"]["devices"] == 2

    rows = ledger(db, fleet["sm2"].device_id)
    row = rows[2]
    with db.engine.begin() as conn:  # the SHA-256 of the JWS in place of its SM3: not the hash of that record
        conn.execute(update(LedgerRecord).where(LedgerRecord.id == row.id).values(hash=sha256(row.jws)))
    result = CliRunner().invoke(main, ["verify", "--json"], env=env)
    report = json.loads(result.stdout)
    assert result.exit_code == 1
    where = f"{fleet['sm2'].device_id}#{row.seq}"
    assert any(p["object"] == where and "does not hash to the hash stored with it" in p["message"]
               for p in report["problems"]), report["problems"]


def test_given_a_mixed_fleet_when_the_console_shows_the_case_then_every_signature_and_link_holds(fleet, db):
    with db.session() as s:
        inspections = [fleet["visits"][suite][1] for suite in ("sm", "intl")]
        rows = ledger_rows(s, fleet["case_id"], inspections)
    assert {r.record.device_id for r in rows} == {fleet["sm2"].device_id, fleet["ed25519"].device_id}
    assert {(r.signature, r.chain) for r in rows} <= {("valid", "first"), ("valid", "linked")}, \
        [(r.record.device_id, r.record.seq, r.signature, r.chain) for r in rows]


# ----------------------------------------------------------------------------------------- the reference phone


def test_given_an_sm2_phone_when_opened_again_then_it_keeps_its_kind(app, tmp_path, zhang):
    folder = tmp_path / "phone"
    with Phone(folder, BASE, session=session_for(app), suite="sm") as phone:
        key = phone.public_key
    with Phone(folder, BASE, session=session_for(app)) as phone:
        assert (phone.suite, phone.public_key) == ("sm", key)
    with pytest.raises(RuntimeError, match="a phone keeps its kind"):
        Phone(folder, BASE, session=session_for(app), suite="intl")
    assert (folder / "device.key").stat().st_mode & 0o777 == 0o600


def test_given_an_sm2_phones_record_when_checked_with_gmssl_then_it_is_sm2_with_sm3_over_the_pinned_user_id(
        make_phone, zhang):
    """The signature is over the JWS signing input with Z_A of user ID 1234567812345678 and is raw r ‖ s: GmSSL
    verifies its DER form with that ID, and not with another."""
    phone = make_phone(zhang, "sm2 phone", suite="sm")
    phone.open_case(CENTRE)
    (record,) = phone.outbox()
    header, payload, signature = record.jws.split(".")
    raw = lenient_b64(signature)
    assert len(raw) == 64
    der = encode_dss_signature(int.from_bytes(raw[:32], "big"), int.from_bytes(raw[32:], "big"))
    point = lenient_b64(phone.public_key)[1:]
    message = f"{header}.{payload}".encode("ascii")
    assert gmssl_pyx.sm2_verify(point, message, der, signer_id=b"1234567812345678")
    assert not gmssl_pyx.sm2_verify(point, message, der, signer_id=b"1234567812345679")
    assert record.hash == sm3(record.jws)
    assert jws_hash(record.jws) != record.hash  # not the Ed25519 phones' SHA-256


# The SPKI DER of an SM2 public key before its 65-byte point: id-ecPublicKey with the curve SM2 (1.2.156.10197.1.301).
SM2_SPKI_PREFIX = bytes.fromhex("3059301306072a8648ce3d020106082a811ccf5501822d034200")


@pytest.mark.skipif(shutil.which("openssl") is None, reason="needs the openssl command (OpenSSL 3)")
def test_given_an_sm2_phones_record_when_openssl_checks_it_then_it_verifies_as_protocol_3_defines(
        make_phone, zhang, tmp_path):
    """PROTOCOL §3's SM2SM3, checked by a third implementation: OpenSSL 3's SM2 with `distid:1234567812345678` over
    the signing input, the signature as the DER of r and s."""
    phone = make_phone(zhang, "sm2 phone", suite="sm")
    phone.open_case(CENTRE)
    (record,) = phone.outbox()
    header, payload, signature = record.jws.split(".")
    raw = lenient_b64(signature)
    spki = SM2_SPKI_PREFIX + lenient_b64(phone.public_key)
    (tmp_path / "key.pem").write_text("-----BEGIN PUBLIC KEY-----\n" + base64.b64encode(spki).decode()
                                      + "\n-----END PUBLIC KEY-----\n")
    (tmp_path / "input").write_bytes(f"{header}.{payload}".encode("ascii"))
    (tmp_path / "sig.der").write_bytes(encode_dss_signature(int.from_bytes(raw[:32], "big"),
                                                            int.from_bytes(raw[32:], "big")))

    def openssl(distid: str) -> subprocess.CompletedProcess:
        return subprocess.run(["openssl", "pkeyutl", "-verify", "-pubin", "-inkey", str(tmp_path / "key.pem"),
                               "-rawin", "-digest", "sm3", "-pkeyopt", f"distid:{distid}",
                               "-in", str(tmp_path / "input"), "-sigfile", str(tmp_path / "sig.der")],
                              capture_output=True, text=True, check=False)

    verified = openssl("1234567812345678")
    assert verified.returncode == 0 and "Verified Successfully" in verified.stdout, verified.stderr
    assert openssl("1234567812345679").returncode != 0
