"""The custody log's signing keys: the tree-head key, its keyring of retired keys, rotation, and head signatures.

One key signs every tree head a deployment issues; every API process and worker loads the same key file. A
rotation keeps the retired public keys on a keyring so that heads signed before it stay verifiable.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import secrets
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from backend.core.config import secret_file
from backend.core.secret_files import generates_secrets
from backend.core.times import utc_millis
from media.custody.encoding import b64url, canonical


def key_id_of(public_raw: bytes) -> str:
    """A key's id: the first 16 hex digits of SHA-256 of its raw 32 bytes (PROTOCOL §8)."""
    return hashlib.sha256(public_raw).hexdigest()[:16]


def _public_from_b64(text_: str) -> Ed25519PublicKey:
    return Ed25519PublicKey.from_public_bytes(base64.urlsafe_b64decode(text_ + "=" * (-len(text_) % 4)))


@dataclass(frozen=True)
class Signer:
    """The current tree-head key, and the public halves of the keys it replaced (`retired`: key id, base64url).

    Heads are stored with the id of the key that signed them; after a rotation
    the old heads stay verifiable with the retired public keys.
    """

    private_key: Ed25519PrivateKey
    retired: tuple[tuple[str, str], ...] = ()

    @property
    def public_raw(self) -> bytes:
        return self.private_key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)

    @property
    def key_id(self) -> str:
        return key_id_of(self.public_raw)

    @property
    def public_key(self) -> str:
        return b64url(self.public_raw)

    def sign(self, data: bytes) -> str:
        return b64url(self.private_key.sign(data))

    def public_keys(self) -> dict[str, str]:
        """Every key id this deployment has signed heads with, to its base64url public key (current last)."""
        return {**dict(self.retired), self.key_id: self.public_key}

    def public_key_for(self, key_id: str) -> str | None:
        return self.public_keys().get(key_id)

    def verification_keys(self) -> dict[str, Ed25519PublicKey]:
        return {kid: _public_from_b64(pub) for kid, pub in self.public_keys().items()}


def read_keyring(path: Path | None) -> list[dict[str, str]]:
    """The retired public keys kept at `path` (JSON `{"keys": [{"key_id", "public_key", "retired_at"}]}`)."""
    if path is None or not Path(path).exists():
        return []
    data = json.loads(Path(path).read_text(encoding="utf-8"))
    keys = data.get("keys", []) if isinstance(data, dict) else []
    for entry in keys:
        raw = base64.urlsafe_b64decode(entry["public_key"] + "=" * (-len(entry["public_key"]) % 4))
        if len(raw) != 32 or key_id_of(raw) != entry["key_id"]:
            raise RuntimeError(f"custody keyring {path}: entry {entry.get('key_id')!r} does not match its key")
    return keys


def load_signer(instance_dir: Path | None = None, *, key_file: Path | None = None,
                keyring_file: Path | None = None, create: bool = True) -> Signer:
    """The tree-head key (generated, 0600, on first run when `create`) with the retired keys of the keyring.

    By default both live in the instance folder; a deployment of several
    hosts points FIELDCASE_CUSTODY_KEY_FILE and FIELDCASE_CUSTODY_KEYRING at
    one shared copy (see docs/deployment.md), so every API process and worker
    signs with the same key.
    """
    if key_file is None:
        if instance_dir is None:
            raise ValueError("load_signer needs an instance folder or a key file")
        key_file = Path(instance_dir) / "custody-signing.key"
    if keyring_file is None and instance_dir is not None:
        keyring_file = Path(instance_dir) / "custody-keyring.json"
    seed = secret_file(Path(key_file), 32, create=create)[:32]
    retired = tuple((k["key_id"], k["public_key"]) for k in read_keyring(keyring_file))
    return Signer(Ed25519PrivateKey.from_private_bytes(seed), retired=retired)


def signer_for(settings: Any) -> Signer:
    """The signer a process of this deployment uses (backend.core.config.Settings); its key is made on first use
    only on SQLite (backend.core.secret_files: hosts sharing a database must share one key)."""
    return load_signer(key_file=settings.custody_key_path, keyring_file=settings.custody_keyring_path,
                       create=generates_secrets(settings))


def _write_atomically(path: Path, data: bytes, mode: int) -> None:
    tmp = path.parent / f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    with os.fdopen(fd, "wb") as fh:
        fh.write(data)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


def rotate_key(key_file: Path, keyring_file: Path, *, now: datetime) -> tuple[str, str]:
    """Replace the signing key; the old public key goes to the keyring first. Returns (old id, new id).

    The keyring is written before the key file, so at no moment can a head
    exist whose key is neither current nor on the keyring. Processes keep
    signing with the key they loaded until restarted; both keys verify.
    The old private key is not kept: signed heads need only its public half.
    """
    key_file, keyring_file = Path(key_file), Path(keyring_file)
    old = load_signer(key_file=key_file, keyring_file=keyring_file)
    keys = read_keyring(keyring_file)
    if old.key_id not in {k["key_id"] for k in keys}:
        keys.append({"key_id": old.key_id, "public_key": old.public_key, "retired_at": utc_millis(now)})
    keyring_file.parent.mkdir(parents=True, exist_ok=True)
    _write_atomically(keyring_file, json.dumps({"keys": keys}, indent=2).encode() + b"\n", 0o644)
    _write_atomically(key_file, secrets.token_bytes(32), 0o600)
    new = load_signer(key_file=key_file, keyring_file=keyring_file)
    return old.key_id, new.key_id


def head_payload(tree_size: int, root_hash: str, timestamp: str) -> bytes:
    return canonical({"tree_size": tree_size, "root_hash": root_hash, "timestamp": timestamp})


def verify_head(public_key: Ed25519PublicKey, head: dict[str, Any]) -> bool:
    try:
        signature = base64.urlsafe_b64decode(head["signature"] + "=" * (-len(head["signature"]) % 4))
        public_key.verify(signature, head_payload(head["tree_size"], head["root_hash"], head["timestamp"]))
        return True
    except Exception:  # noqa: BLE001 - any failure to verify is a failed verification
        return False
