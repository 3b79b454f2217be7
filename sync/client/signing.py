"""The device's signature on every record: its Ed25519 key, the compact JWS, and the chain hash.

A record is worth something only if the server can tell which device made it and that nothing changed since:
PROTOCOL §2 enrols one Ed25519 public key per device, §3 signs each record as a compact JWS (RFC 7515, EdDSA)
and chains records by the SHA-256 of that JWS. The private key stays in ``device.key`` (raw 32 bytes, 0600)
and is used here only.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, NoEncryption, PrivateFormat, PublicFormat

from sync.client.wire import b64url, compact_json

ZERO_HASH = "0" * 64


def jws_hash(jws: str) -> str:
    """The chain link of PROTOCOL §3: SHA-256 of the compact JWS's ASCII bytes."""
    return hashlib.sha256(jws.encode("ascii")).hexdigest()


class DeviceKey:
    """The key in ``path``, made on first use; ``enrolled`` tells whether records may already depend on it."""

    def __init__(self, path: Path, *, enrolled: Callable[[], bool]) -> None:
        self.path = path
        self._enrolled = enrolled
        self._key = self._load()
        self.public_key = self._public()

    def replace(self) -> None:
        """Make a new key in place of this one; the caller has checked that nothing depends on the old one."""
        self.path.unlink(missing_ok=True)
        self._key = self._load()
        self.public_key = self._public()

    def sign_record(self, *, kid: str, by: str | None, op: str, seq: int, prev: str, at: str, type_: str,
                    body: Mapping[str, Any]) -> str:
        """A record as the compact JWS of PROTOCOL §3: header and payload compact JSON, then the signature."""
        header = {"alg": "EdDSA", "kid": kid, "typ": "fieldcase-record"}
        payload = {"v": 1, "op": op, "seq": seq, "prev": prev, "at": at, "by": by, "type": type_, "body": body}
        signing_input = b64url(compact_json(header)) + "." + b64url(compact_json(payload))
        return signing_input + "." + b64url(self._key.sign(signing_input.encode("ascii")))

    def _public(self) -> str:
        return b64url(self._key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw))

    def _load(self) -> Ed25519PrivateKey:
        path = self.path
        try:
            raw = path.read_bytes()
        except FileNotFoundError:
            if self._enrolled():
                # A new key would make every queued record fail bad_signature and be dropped.
                raise RuntimeError("device.key is missing for an enrolled device; enrol a new device") from None
            key = Ed25519PrivateKey.generate()
            raw = key.private_bytes(Encoding.Raw, PrivateFormat.Raw, NoEncryption())
            try:
                fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            except FileExistsError:  # another process won the race: use its key
                return self._load()
            with os.fdopen(fd, "wb") as fh:
                fh.write(raw)
                fh.flush()
                os.fsync(fh.fileno())
            return key
        if len(raw) != 32:
            raise RuntimeError(f"{path} is not a raw 32-byte Ed25519 private key")
        if path.stat().st_mode & 0o077:
            os.chmod(path, 0o600)
        return Ed25519PrivateKey.from_private_bytes(raw)
