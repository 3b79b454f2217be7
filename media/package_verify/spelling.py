"""How a package must spell what it holds, as strictly as the server (PROTOCOL "Records and push, as built"):
canonical base64url (URL-safe alphabet, no padding, unused trailing bits zero), hashes of 64 lower-case hex
digits, raw 32-byte Ed25519 keys, JSON objects. What is spelled otherwise is `Refused`: not checked further.
"""

from __future__ import annotations

import binascii
import json
import re
from typing import Any

from backend.core.crypto import INTL, sm2
from media.custody.keys import key_id_of
from sync.jws import canonical_b64decode

_HEX_HASH = re.compile(r"[0-9a-f]{64}")


class Refused(ValueError):
    """Something in the package is not spelled as the protocol allows; what it claims was not checked."""


def b64d(text: object) -> bytes:
    """Canonical base64url (RFC 7515 §2, RFC 4648 §3.5), by the server's own rule: the only spelling of its
    bytes; Refused otherwise."""
    if not isinstance(text, str):
        raise Refused("not a string")
    try:
        return canonical_b64decode(text)
    except (ValueError, binascii.Error) as exc:
        raise Refused(str(exc)) from None


def sm2_signature(text: object) -> bytes:
    """An SM2 signature: canonical base64url of exactly r ‖ s (64 bytes); Refused (saying why) otherwise."""
    signature = b64d(text)
    if len(signature) != sm2.SIGNATURE_BYTES:
        raise Refused(f"{len(signature)} bytes, not the 64 of SM2's r ‖ s")
    return signature


def hash32(text: object, what: str) -> bytes:
    """A 32-byte hash, written as 64 lower-case hex digits; Refused (saying why) otherwise."""
    if not isinstance(text, str):
        raise Refused(f"{what} is not a hex string")
    if not text:
        raise Refused(f"{what} is empty")
    if not _HEX_HASH.fullmatch(text):
        if len(text) != 64:
            raise Refused(f"{what} has {len(text)} characters, not the 64 hex digits of a 32-byte hash")
        raise Refused(f"{what} is not lower-case hex")
    return bytes.fromhex(text)


def load_key(text: str) -> bytes:
    """The raw 32-byte Ed25519 public key that `text` spells in canonical base64url (see `typed_key` for one typed
    by a person). InvalidPublicKey (a ValueError, saying why) for one off the curve or of small order: under the
    identity point, OpenSSL holds a forged signature of any message to be valid."""
    raw = b64d(text)
    if len(raw) != 32:
        raise Refused(f"an Ed25519 public key is 32 bytes, not {len(raw)}")
    INTL.check_public_key(raw)
    return raw


def typed_key(text: str) -> str:
    """A key given on the command line: surrounding blanks, standard base64's `+` and `/` and its `=` padding
    are forgiven there (they cannot make a package pass); its bits must still be spelled canonically."""
    return text.strip().replace("+", "-").replace("/", "_").rstrip("=")


def key_id(text: str) -> str:
    return key_id_of(b64d(text))


def json_object(raw: bytes, what: str) -> dict[str, Any]:
    try:
        value = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        raise Refused(f"its {what} is not JSON ({type(exc).__name__})") from None
    if not isinstance(value, dict):
        raise Refused(f"its {what} is not a JSON object")
    return value
