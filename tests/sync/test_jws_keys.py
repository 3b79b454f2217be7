"""Device keys through the suites (issue 23, item 1; PROTOCOL §2, §3): what enrolment answers for a key it refuses,
and how a record's signature is held to its device's key.

The answers are the protocol's and predate the suites: a phone sees the same text whichever library now checks the
point. Off-curve Ed25519 encodings are found here by plain arithmetic on the curve equation (RFC 8032 §5.1.3),
independently of libsodium and OpenSSL.
"""

from __future__ import annotations

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from backend.core.crypto import INTL, SM
from sync.jws import RecordRejected, load_device_key, load_public_key, parse, verify
from tests.phones import b64, compact

_P = 2**255 - 19
_D = -121665 * pow(121666, -1, _P) % _P


def _ed25519_encoding(y: int) -> bytes:
    return y.to_bytes(32, "little")


def _off_the_curve() -> bytes:
    """The first y for which no x solves -x² + y² = 1 + d·x²·y² (x² = (y² − 1) / (d·y² + 1) is not a square)."""
    for y in range(2, 100):
        x2 = (y * y - 1) * pow(_D * y * y + 1, -1, _P) % _P
        if x2 and pow(x2, (_P - 1) // 2, _P) != 1:
            return _ed25519_encoding(y)
    raise AssertionError("no y below 100 is off the curve")


SMALL_ORDER = [
    _ed25519_encoding(1),  # the identity (0, 1)
    _ed25519_encoding(_P - 1),  # (0, -1), of order 2
    bytes(32),  # y = 0: a point of order 4
]


def _enrol(client, headers, key: bytes, alg: str = "EdDSA") -> tuple[int, list[str]]:
    r = client.post("/api/v1/devices", json={"label": "keys", "public_key": b64(key), "alg": alg}, headers=headers)
    errors = (r.json.get("errors") or {}).get("json", r.json.get("errors") or {})
    return r.status_code, errors.get("public_key", [])


def test_given_ed25519_keys_of_the_wrong_length_off_the_curve_or_of_small_order_when_enrolled_then_422_says_so(
        client, officers, zhang):
    headers = officers.headers(zhang)
    good = Ed25519PrivateKey.generate().public_key().public_bytes_raw()
    wrong_length = [good[:31], good + b"\x00", SM.generate()[1]]
    for key in wrong_length:
        assert _enrol(client, headers, key) == (422, ["public_key must be 32 raw bytes"]), key.hex()
    for key in [_off_the_curve(), *SMALL_ORDER]:
        assert _enrol(client, headers, key) == (422, ["public_key is not a valid Ed25519 point"]), key.hex()
    assert _enrol(client, headers, good)[0] == 201


def test_given_sm2_keys_of_the_wrong_shape_or_off_the_curve_when_enrolled_then_422_gives_the_protocols_texts(
        client, officers, zhang):
    headers = officers.headers(zhang)
    good = SM.generate()[1]
    y = int.from_bytes(good[33:], "big")
    off_curve = good[:33] + ((y + 1) % 2**256).to_bytes(32, "big")
    cases = [
        (good[1:], "public_key must be the 65-byte uncompressed SM2 point (0x04 || x || y), not 64 bytes"),
        (b"\x03" + good[1:], "public_key must be the uncompressed SM2 point: its first byte is 0x04"),
        (off_curve, "public_key is not a point on the SM2 curve"),
    ]
    for key, says in cases:
        assert _enrol(client, headers, key, alg="SM2SM3") == (422, [says]), key.hex()
    assert _enrol(client, headers, good, alg="SM2SM3")[0] == 201


def _record(suite_alg: str, sign) -> str:
    header = b64(compact({"alg": suite_alg, "kid": "dev_keys", "typ": "fieldcase-record"}))
    payload = b64(compact({"v": 1, "seq": 1, "type": "case.open", "body": {}}))
    return f"{header}.{payload}.{b64(sign(f'{header}.{payload}'.encode('ascii')))}"


def _flipped(text: str) -> str:
    head, _, signature = text.rpartition(".")
    swap = "B" if signature[0] != "B" else "C"
    return f"{head}.{swap}{signature[1:]}"


def test_given_an_ed25519_device_key_when_its_records_are_verified_then_only_its_own_signatures_hold():
    private = Ed25519PrivateKey.generate()
    key = load_device_key(b64(private.public_key().public_bytes_raw()), INTL)
    for alg in INTL.jws_algs:  # EdDSA, and RFC 9864's Ed25519 for the same signature
        verify(parse(_record(alg, private.sign)), key)
    with pytest.raises(RecordRejected) as refused:
        verify(parse(_flipped(_record("EdDSA", private.sign))), key)
    assert (refused.value.code, refused.value.detail) == ("bad_signature",
                                                         "signature does not verify with the device key")
    other = Ed25519PrivateKey.generate()
    with pytest.raises(RecordRejected, match="signature does not verify"):
        verify(parse(_record("EdDSA", other.sign)), key)


def test_given_an_sm2_device_key_when_an_ed25519_record_claims_it_then_its_alg_is_refused():
    private, public = SM.generate()
    key = load_device_key(b64(public), SM)
    verify(parse(_record("SM2SM3", lambda data: SM.sign(private, public, data))), key)
    with pytest.raises(RecordRejected) as refused:
        verify(parse(_record("EdDSA", Ed25519PrivateKey.generate().sign)), key)
    assert refused.value.detail == ("the record's alg is not its device's: the device enrolled an SM2 key "
                                    "(alg SM2SM3)")
    with pytest.raises(RecordRejected, match="signature does not verify"):
        verify(parse(_flipped(_record("SM2SM3", lambda data: SM.sign(private, public, data)))), key)


def test_given_a_stored_key_spelled_with_unused_bits_when_loaded_then_it_loads_as_enrolled_but_not_anew():
    raw = Ed25519PrivateKey.generate().public_key().public_bytes_raw()
    spelled = b64(raw)
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
    odd = spelled[:-1] + alphabet[alphabet.index(spelled[-1]) | 1]
    assert odd != spelled
    assert load_public_key(odd) == load_public_key(spelled) == raw
    with pytest.raises(ValueError, match="^public_key is not canonical base64url"):
        load_public_key(odd, canonical=True)
    with pytest.raises(ValueError, match="^public_key is not base64url$"):
        load_public_key(spelled + "=")
