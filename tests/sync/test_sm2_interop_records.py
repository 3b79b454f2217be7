"""Records made by other SM2 implementations (issue 23, item 7; PROTOCOL §2, §3).

The reference phone signs with GmSSL, as the server verifies with it, so a shared misreading of the protocol would
pass every round trip between them. Here the device's key and every record's signature come from a second
implementation alone, as an independent client built from docs/protocol.md would make them: OpenSSL 3's own SM2
(`openssl genpkey`, `openssl pkeyutl -sign` with distid 1234567812345678), and sm-crypto-v2, the browser verifier's
library, run in Node. Given such a device enrolled, when it pushes its records, then they are applied and chained by
SM3; and the same record with one bit of its signature flipped is refused.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
from asn1crypto import keys, pem

from backend.core.crypto.sm2 import USER_ID, signature_from_der
from tests.core.test_crypto_vectors import SM2_CURVE_OID, needs_node, sm_crypto_v2
from tests.phones import b64, uid
from tests.sync.test_sm2_devices import CENTRE, flip_signature_bit, ledger, sm3

ZERO = "0" * 64


class OpenSslKey:
    """An SM2 key OpenSSL made and keeps; it signs as `openssl pkeyutl` does, the DER turned into raw r ‖ s."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self._run("genpkey", "-algorithm", "SM2", "-out", "key.pem")
        kind, _, der = pem.unarmor((folder / "key.pem").read_bytes())
        info = keys.PrivateKeyInfo.load(der)
        assert kind == "PRIVATE KEY" and info["private_key_algorithm"]["parameters"].native == SM2_CURVE_OID
        self.public = info["private_key"].parsed["public_key"].native

    def _run(self, *args: str) -> None:
        done = subprocess.run(["openssl", *args], cwd=self.folder, capture_output=True, timeout=60, check=False)
        assert done.returncode == 0, done.stderr.decode(errors="replace")

    def sign(self, message: bytes) -> bytes:
        (self.folder / "msg").write_bytes(message)
        self._run("pkeyutl", "-sign", "-inkey", "key.pem", "-rawin", "-digest", "sm3",
                  "-pkeyopt", f"distid:{USER_ID.decode()}", "-in", "msg", "-out", "sig.der")
        return signature_from_der((self.folder / "sig.der").read_bytes())


class SmCryptoV2Key:
    """An SM2 key sm-crypto-v2 made; it signs as a JavaScript phone would (user ID pinned, raw r ‖ s hex)."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        answer = sm_crypto_v2(folder, sign=b"")
        self.pair = {"privateKey": str(answer["privateKey"]), "publicKey": str(answer["publicKey"])}
        self.public = bytes.fromhex(self.pair["publicKey"])

    def sign(self, message: bytes) -> bytes:
        answer = sm_crypto_v2(self.folder, sign=message, key_pair=self.pair)
        assert answer["publicKey"] == self.pair["publicKey"]
        return bytes.fromhex(str(answer["signature"]))


def enrol(phone, key) -> str:
    r = phone.client.post("/api/v1/devices", json={"public_key": b64(key.public), "alg": "SM2SM3",
                                                   "label": type(key).__name__}, headers=phone.headers)
    assert r.status_code == 201, r.json
    assert r.json["alg"] == "SM2SM3"
    return r.json["id"]


def record(phone, key, device: str, seq: int, prev: str) -> str:
    """A `case.open` as PROTOCOL §3 spells it, signed by `key` alone."""
    payload = phone.payload("case.open", {"client_case_id": uid(), "institution": CENTRE}, seq=seq, prev=prev)
    return phone.sign(payload, header={"alg": "SM2SM3", "kid": device, "typ": "fieldcase-record"}, key=key)


@pytest.mark.parametrize("make_key", [OpenSslKey, pytest.param(SmCryptoV2Key, marks=needs_node)],
                         ids=["openssl", "sm-crypto-v2"])
def test_given_a_device_whose_key_and_signatures_come_from_another_library_when_it_pushes_then_they_are_applied(
        phone, zhang, db, tmp_path, make_key):
    key = make_key(tmp_path)
    device = enrol(phone, key)
    first = record(phone, key, device, 1, ZERO)
    second = record(phone, key, device, 2, sm3(first))

    (refused,) = phone.push([flip_signature_bit(first)])["results"]
    assert (refused["status"], refused["code"]) == ("rejected", "bad_signature"), refused

    answer = phone.push([first, second])
    assert [r["status"] for r in answer["results"]] == ["applied", "applied"], answer["results"]
    assert answer["heads"][device] == {"seq": 2, "hash": sm3(second)}
    rows = ledger(db, device)
    assert [(r.seq, r.jws, r.hash, r.prev) for r in rows] == [(1, first, sm3(first), ZERO),
                                                             (2, second, sm3(second), sm3(first))]
