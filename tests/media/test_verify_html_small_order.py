"""verify.html refuses an Ed25519 key of small order, off the curve or spelled non-canonically, as verify-package does.

Under the identity point (and the other points of small order) a forged signature `identity ‖ 0³²` holds for any
message in OpenSSL, and Chromium's Web Crypto imports any 32 bytes as an Ed25519 key. Given a package whose custody
key or a device key is such a point, when a clerk picks it in verify.html, then `#verdict` says `fail` with the
line `verify-package` prints (media/package_verify/spelling.py `load_key`, libsodium's valid-point test) and no
other: the forged signatures under it were never checked. A package of valid keys still says `ok`.
"""

from __future__ import annotations

import hashlib

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from nacl.bindings import crypto_core_ed25519_add

from tests.media.test_package import FORGED, IDENTITY, Forger, _b64, rewrite
from tests.media.verify_page import Base, base, driver, in_python, open_and_pick, shot

__all__ = ["base", "driver"]  # the fixtures: the module's packages, and the browser

NOT_A_POINT = "the public key is not a valid Ed25519 point"
P = 2**255 - 19
ORDER_8 = bytes.fromhex("26e8958fc2b227b045c3f489f2ef98f0d5dfac05d3c63339b13802886d53fc05")


def _y(value: int, *, sign: bool = False) -> bytes:
    """The 32 bytes that spell y = `value` (reduced or not), with the sign bit of x set or not (RFC 8032 §5.1.2)."""
    raw = bytearray(value.to_bytes(32, "little"))
    raw[31] |= 0x80 if sign else 0
    return bytes(raw)


def _valid() -> bytes:
    return Ed25519PrivateKey.generate().public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)


def _forged(base: Base) -> bytes:
    """The package resealed by whoever made the identity point its custody key: each signature is `FORGED`."""
    def forge(m: dict) -> None:
        m["custody"].update(public_key=_b64(IDENTITY), key_id=hashlib.sha256(IDENTITY).hexdigest()[:16])
        m["custody"]["tree_head"]["signature"] = FORGED

    return rewrite(base.zip, forge, reseal=Forger())  # type: ignore[arg-type]


def test_given_a_package_whose_custody_key_is_the_identity_point_then_the_page_refuses_the_key(driver, base):
    forged = _forged(base)
    seen = open_and_pick(driver, base, forged)
    shot(driver, "small-order-custody-key")
    assert (seen.verdict, seen.key) == ("fail", "package")
    assert seen.problems == [f"the custody public key in the package is not a valid Ed25519 key ({NOT_A_POINT})"]
    assert any("不是有效的 Ed25519 公钥" in p for p in seen.problems_zh), seen.problems_zh
    assert seen.problems == in_python(forged, None)


def test_given_the_identity_point_entered_as_the_custody_key_then_the_page_refuses_it(driver, base):
    forged, entered = _forged(base), _b64(IDENTITY)
    seen = open_and_pick(driver, base, forged, key=entered)
    assert (seen.verdict, seen.key) == ("fail", "entered")
    assert seen.problems == [f"the public key entered on this page is not a base64url Ed25519 key ({NOT_A_POINT})"]
    assert seen.problems == in_python(forged, entered)


# The device keys verify-package refuses: each of libsodium's small-order encodings, with and without the sign bit,
# and keys off the curve, spelled with y >= p, or a point of the prime-order subgroup plus one of order 8 or 2.
REFUSED = {
    "identity": lambda: IDENTITY,
    "identity-signed": lambda: _y(1, sign=True),
    "order-2": lambda: _y(P - 1),
    "order-4": lambda: _y(0),
    "order-4-signed": lambda: _y(0, sign=True),
    "order-8": lambda: ORDER_8,
    "order-8-minus-y": lambda: _y(P - int.from_bytes(ORDER_8, "little"), sign=True),
    "identity-as-p-plus-1": lambda: _y(P + 1),
    "order-4-as-p": lambda: _y(P, sign=True),
    "off-curve": lambda: _y(2),  # (y² − 1)/(d·y² + 1) is not a square mod p: no x
    "y-not-reduced": lambda: _y(P + 3),  # y = 3 is on the curve, spelled as p + 3
    "order-8-component": lambda: crypto_core_ed25519_add(_valid(), ORDER_8),
    "order-2-component": lambda: crypto_core_ed25519_add(_valid(), _y(P - 1)),
}


@pytest.mark.parametrize("kind", sorted(REFUSED))
def test_given_a_device_key_of_small_order_or_off_the_curve_then_the_page_names_the_device(driver, base, kind):
    device, raw = base.phone_a, REFUSED[kind]()
    data = rewrite(base.zip, lambda m: m["devices"][device].update(public_key=_b64(raw)))
    seen = open_and_pick(driver, base, data, key=base.key)
    assert seen.verdict == "fail"
    assert seen.problems[0] == f"device {device}: its public key is not a valid Ed25519 key ({NOT_A_POINT})"
    assert not any("signature check failed" in p for p in seen.problems), seen.problems
    assert seen.problems == in_python(data, base.key)


def test_given_valid_keys_then_the_page_takes_them(driver, base):
    seen = open_and_pick(driver, base, base.zip, key=base.key)
    assert (seen.verdict, seen.problems) == ("ok", [])

    device = base.phone_a
    data = rewrite(base.zip, lambda m: m["devices"][device].update(public_key=_b64(_valid())))
    seen = open_and_pick(driver, base, data, key=base.key)
    assert seen.verdict == "fail"
    assert not any("not a valid Ed25519 key" in p for p in seen.problems), seen.problems
    assert any(p.startswith(f"record {device}#1: signature check failed") for p in seen.problems), seen.problems
    assert seen.problems == in_python(data, base.key)
