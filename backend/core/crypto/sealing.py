"""SM4-GCM (GB/T 32907, GCM as GB/T 15852/ISO 19772 use it) and HMAC-SM3 (GB/T 15852.2 with SM3), over OpenSSL.

The column type, key provider and blind index built on these are the sealed-fields module's; this file only
fixes the primitives' shapes: a 16-byte key, a 12-byte random nonce, a 16-byte tag, and the associated data
that binds a ciphertext to where it is stored, so a sealed value copied to another row or column fails to open.
"""

from __future__ import annotations

import os

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes, hmac
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

KEY_BYTES = 16
NONCE_BYTES = 12
TAG_BYTES = 16


class SealBroken(ValueError):
    """A sealed value that does not open under its key and associated data: edited, moved, or the wrong key."""


def seal(key: bytes, plaintext: bytes, associated: bytes = b"") -> bytes:
    """nonce ‖ ciphertext ‖ tag."""
    nonce = os.urandom(NONCE_BYTES)
    encryptor = Cipher(algorithms.SM4(key), modes.GCM(nonce)).encryptor()
    encryptor.authenticate_additional_data(associated)
    body = encryptor.update(plaintext) + encryptor.finalize()
    return nonce + body + encryptor.tag


def open_sealed(key: bytes, sealed: bytes, associated: bytes = b"") -> bytes:
    if len(sealed) < NONCE_BYTES + TAG_BYTES:
        raise SealBroken("too short to be sealed")
    nonce, body, tag = sealed[:NONCE_BYTES], sealed[NONCE_BYTES:-TAG_BYTES], sealed[-TAG_BYTES:]
    decryptor = Cipher(algorithms.SM4(key), modes.GCM(nonce, tag)).decryptor()
    decryptor.authenticate_additional_data(associated)
    try:
        return decryptor.update(body) + decryptor.finalize()
    except InvalidTag:
        raise SealBroken("the sealed value does not open: edited, moved, or sealed under another key") from None


def hmac_sm3(key: bytes, message: bytes) -> bytes:
    mac = hmac.HMAC(key, hashes.SM3())
    mac.update(message)
    return mac.finalize()
