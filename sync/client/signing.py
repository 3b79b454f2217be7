"""The device's signature on every record: its key, the compact JWS, and the chain hash.

A record is worth something only if the server can tell which device made it and that nothing changed since:
PROTOCOL §2 enrols one public key per device, §3 signs each record as a compact JWS (RFC 7515) and chains records
by a hash of that JWS. A phone is one of two kinds, fixed when its key is made:

- ``intl``: an Ed25519 key, records `EdDSA` (RFC 8037), chained by SHA-256;
- ``sm``: an SM2 key (the national algorithms, GB/T 32918), records `SM2SM3`, chained by SM3 (GB/T 32905).
  Signed here with GmSSL (`gmssl_pyx`) and the user ID 1234567812345678, as PROTOCOL §3 fixes; the signature is
  raw r ‖ s, 64 bytes.

The private key stays in ``device.key`` (0600) and is used here only: Ed25519's raw 32 bytes; for SM2 the
32-byte private key followed by the 65-byte public key (GmSSL does not derive one from the other).
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import gmssl_pyx
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature
from cryptography.hazmat.primitives.serialization import Encoding, NoEncryption, PrivateFormat, PublicFormat

from sync.client.wire import b64url, compact_json

ZERO_HASH = "0" * 64
SUITES = ("intl", "sm")
ALG = {"intl": "EdDSA", "sm": "SM2SM3"}  # the header's alg, and what the phone enrols its key for
SM2_USER_ID = b"1234567812345678"  # PROTOCOL §3: GM/T 0009's default, pinned (library defaults differ)


def jws_hash(jws: str, suite: str = "intl") -> str:
    """The chain link of PROTOCOL §3: SHA-256 (an Ed25519 phone) or SM3 (an SM2 phone) of the compact JWS's ASCII
    bytes, in lower-case hex."""
    data = jws.encode("ascii")
    if suite == "sm":
        digest = hashes.Hash(hashes.SM3())
        digest.update(data)
        return digest.finalize().hex()
    if suite != "intl":
        raise ValueError(f"suite must be one of {SUITES}")
    return hashlib.sha256(data).hexdigest()


class _Ed25519:
    FILE_BYTES = 32
    FILE = "a raw 32-byte Ed25519 private key"

    def __init__(self, raw: bytes | None) -> None:
        self._key = Ed25519PrivateKey.from_private_bytes(raw) if raw else Ed25519PrivateKey.generate()
        self.public = self._key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)

    def file_bytes(self) -> bytes:
        return self._key.private_bytes(Encoding.Raw, PrivateFormat.Raw, NoEncryption())

    def sign(self, message: bytes) -> bytes:
        return self._key.sign(message)


class _Sm2:
    FILE_BYTES = 32 + 65
    FILE = "an SM2 key (the 32-byte private key, then the 65-byte public key)"

    def __init__(self, raw: bytes | None) -> None:
        if raw:
            self._private, self.public = raw[:32], raw[32:]
        else:
            point, self._private = gmssl_pyx.sm2_key_generate()
            self.public = b"\x04" + point
        if len(self.public) != 65 or self.public[0] != 0x04:
            raise RuntimeError("the SM2 public key in device.key is not an uncompressed point")

    def file_bytes(self) -> bytes:
        return self._private + self.public

    def sign(self, message: bytes) -> bytes:
        """SM2 with SM3 over Z_A ‖ message (GmSSL computes Z_A from the user ID), as raw r ‖ s, not GmSSL's DER."""
        der = gmssl_pyx.sm2_sign(self._private, self.public[1:], message, signer_id=SM2_USER_ID)
        r, s = decode_dss_signature(der)
        return r.to_bytes(32, "big") + s.to_bytes(32, "big")


_KINDS = {"intl": _Ed25519, "sm": _Sm2}


class DeviceKey:
    """The key in ``path``, made on first use; ``enrolled`` tells whether records may already depend on it.
    ``suite`` is ``intl`` (Ed25519) or ``sm`` (SM2)."""

    def __init__(self, path: Path, *, enrolled: Callable[[], bool], suite: str = "intl") -> None:
        if suite not in _KINDS:
            raise ValueError(f"suite must be one of {SUITES}")
        self.path = path
        self.suite = suite
        self.alg = ALG[suite]
        self._enrolled = enrolled
        self._key = self._load()
        self.public_key = self._public()

    def record_hash(self, jws: str) -> str:
        """The chain link to a record this key signed: its hash in this phone's suite."""
        return jws_hash(jws, self.suite)

    def replace(self) -> None:
        """Make a new key in place of this one; the caller has checked that nothing depends on the old one."""
        self.path.unlink(missing_ok=True)
        self._key = self._load()
        self.public_key = self._public()

    def sign_record(self, *, kid: str, by: str | None, op: str, seq: int, prev: str, at: str, type_: str,
                    body: Mapping[str, Any]) -> str:
        """A record as the compact JWS of PROTOCOL §3: header and payload compact JSON, then the signature."""
        header = {"alg": self.alg, "kid": kid, "typ": "fieldcase-record"}
        payload = {"v": 1, "op": op, "seq": seq, "prev": prev, "at": at, "by": by, "type": type_, "body": body}
        signing_input = b64url(compact_json(header)) + "." + b64url(compact_json(payload))
        return signing_input + "." + b64url(self._key.sign(signing_input.encode("ascii")))

    def _public(self) -> str:
        return b64url(self._key.public)

    def _load(self) -> _Ed25519 | _Sm2:
        path, kind = self.path, _KINDS[self.suite]
        try:
            raw = path.read_bytes()
        except FileNotFoundError:
            if self._enrolled():
                # A new key would make every queued record fail bad_signature and be dropped.
                raise RuntimeError("device.key is missing for an enrolled device; enrol a new device") from None
            key = kind(None)
            raw = key.file_bytes()
            try:
                fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            except FileExistsError:  # another process won the race: use its key
                return self._load()
            with os.fdopen(fd, "wb") as fh:
                fh.write(raw)
                fh.flush()
                os.fsync(fh.fileno())
            return key
        if len(raw) != kind.FILE_BYTES:
            raise RuntimeError(f"{path} is not {kind.FILE}")
        if path.stat().st_mode & 0o077:
            os.chmod(path, 0o600)
        return kind(raw)
