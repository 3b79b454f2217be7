"""SM2 signatures with SM3 (GB/T 32918.2, GB/T 35276), over GmSSL 3 (`gmssl-pyx`, a native library).

Every choice that libraries leave to their defaults is fixed here, because they differ between libraries and
versions, and a signature made under one choice does not verify under another:

- the signer's user ID is ``1234567812345678`` (GM/T 0009-2012 §10, GB/T 35276-2017 §5.4): Z_A =
  SM3(ENTL ‖ ID ‖ a ‖ b ‖ x_G ‖ y_G ‖ x_A ‖ y_A), and the signed digest is SM3(Z_A ‖ M);
- a public key travels as the uncompressed point, 65 bytes: ``0x04 ‖ x ‖ y`` (GB/T 32918.1 §4.2.9);
- a signature travels as raw ``r ‖ s``, 32 bytes each, big-endian, as JWS ES256 does (RFC 7518 §3.4), not as
  the DER SEQUENCE GmSSL and OpenSSL write; the DER is read and written by `cryptography`'s helpers, not by hand.
"""

from __future__ import annotations

import gmssl_pyx
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature, encode_dss_signature

USER_ID = b"1234567812345678"
PUBLIC_KEY_BYTES = 65
SIGNATURE_BYTES = 64
# The curve's order n (GB/T 32918.5): r and s are in [1, n-1].
N = 0xFFFFFFFEFFFFFFFFFFFFFFFFFFFFFFFF7203DF6B21C6052B53BBF40939D54123


class InvalidKey(ValueError):
    """Bytes that are not an SM2 key: the wrong length or prefix, or a point not on the curve."""


def _point(public_key: bytes) -> bytes:
    """The 64 bytes x ‖ y GmSSL takes, from the 65-byte uncompressed point; refused unless on the curve."""
    if len(public_key) != PUBLIC_KEY_BYTES or public_key[0] != 0x04:
        raise InvalidKey(f"an SM2 public key is the uncompressed point, {PUBLIC_KEY_BYTES} bytes starting 0x04")
    try:
        return gmssl_pyx.normalize_sm2_public_key(public_key[1:])
    except (gmssl_pyx.InvalidValueError, gmssl_pyx.GmsslInnerError, ValueError):
        raise InvalidKey("the SM2 public key is not a point on the curve") from None


def check_public_key(public_key: bytes) -> None:
    """Raises InvalidKey unless `public_key` is an uncompressed point on the SM2 curve."""
    _point(public_key)


def generate() -> tuple[bytes, bytes]:
    """A new key pair: (private key, 32 bytes; public key, 65 bytes uncompressed)."""
    public, private = gmssl_pyx.sm2_key_generate()
    return private, b"\x04" + public


def sign(private_key: bytes, public_key: bytes, message: bytes) -> bytes:
    """The raw r ‖ s signature of `message` under the pinned user ID."""
    der = gmssl_pyx.sm2_sign(private_key, _point(public_key), message, signer_id=USER_ID)
    r, s = decode_dss_signature(der)
    return r.to_bytes(32, "big") + s.to_bytes(32, "big")


def verify(public_key: bytes, message: bytes, signature: bytes) -> bool:
    """Whether `signature` (raw r ‖ s) signs `message` under `public_key` and the pinned user ID."""
    if len(signature) != SIGNATURE_BYTES:
        return False
    r, s = int.from_bytes(signature[:32], "big"), int.from_bytes(signature[32:], "big")
    if not (0 < r < N and 0 < s < N):
        return False
    try:
        point = _point(public_key)
    except InvalidKey:
        return False
    try:
        return bool(gmssl_pyx.sm2_verify(point, message, encode_dss_signature(r, s), signer_id=USER_ID))
    except (gmssl_pyx.InvalidValueError, gmssl_pyx.GmsslInnerError, ValueError):
        return False


def signature_to_der(signature: bytes) -> bytes:
    """The DER SEQUENCE {r, s} that OpenSSL's `pkeyutl -verify` and most SM2 libraries read."""
    return encode_dss_signature(int.from_bytes(signature[:32], "big"), int.from_bytes(signature[32:], "big"))


def signature_from_der(der: bytes) -> bytes:
    r, s = decode_dss_signature(der)
    return r.to_bytes(32, "big") + s.to_bytes(32, "big")
