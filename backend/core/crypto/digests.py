"""Digests whose algorithm a format outside fieldcase fixes, whatever suites a deployment enables.

A proof fieldcase makes (a record's chain hash, an evidence digest, a Merkle node, a signed head) is made in a
suite: ask `suites`. These are for the formats that name their algorithm themselves, so that choosing the `sm`
suite cannot change them and nothing else needs to call hashlib or hmac:

- a Content-Security-Policy script hash, and RFC 9530 `Content-Digest`/`Repr-Digest` (``sha-256``);
- a C2SP signed-note key ID (SHA-256 of name, type and key) and the key fingerprints printed beside it;
- the RFC 3161 message imprint of an intl head, and ESSCertID (RFC 2634), which names a TSA certificate by SHA-1;
- published algorithms whose outputs others recompute: the random draws' HMAC-SHA256, the members of a package
  index, the hash under which a refresh token is kept, the advisory-lock numbers.
"""

from __future__ import annotations

import hashlib
import hmac

from backend.core.crypto.suites import Hasher


def sha256(data: bytes) -> bytes:
    return hashlib.sha256(data).digest()


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def sha256_hasher() -> Hasher:
    """A streaming SHA-256 (RFC 9530 digests of a body as it arrives)."""
    return hashlib.sha256()


def sha1(data: bytes) -> bytes:
    """SHA-1, only to read an identifier a format writes with it (ESSCertID v1): never to trust or prove anything."""
    return hashlib.sha1(data, usedforsecurity=False).digest()


def hmac_sha256(key: bytes, message: bytes) -> bytes:
    return hmac.new(key, message, hashlib.sha256).digest()


def equal(a: bytes | str, b: bytes | str) -> bool:
    """Compared in constant time (a MAC, a token's hash)."""
    return hmac.compare_digest(a, b)  # type: ignore[arg-type]
