"""The custody log's signing keys: the tree-head key, its keyring of retired keys, rotation, and head signatures.

One key signs every tree head a deployment issues; every API process and worker loads the same key file. A
rotation keeps the retired public keys on a keyring so that heads signed before it stay verifiable.

With FIELDCASE_CUSTODY_SUITES=intl,sm the signer also holds an SM2 key (`SmSigner`, `Signer.sm`), which signs the
heads of the SM tree (SM3 nodes): its own key file (private key then public point, 97 bytes, 0600, made by
`fieldcase init-secrets`), key id and keyring, rotated the same way (`fieldcase custody rotate-key --suite sm`).
"""

from __future__ import annotations

import json
import os
import secrets
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import datetime
from pathlib import Path
from typing import Any

from backend.core.config import secret_file
from backend.core.crypto import INTL, SM, Suite, digests, ed25519_public_key
from backend.core.secret_files import SM2_KEY_BYTES, generates_secrets, new_sm2_key
from backend.core.times import utc_millis
from media.custody.encoding import b64url, b64url_decode, canonical


def key_id_of(public_raw: bytes) -> str:
    """A key's id: the first 16 hex digits of SHA-256 of its raw 32 bytes (PROTOCOL §8)."""
    return digests.sha256_hex(public_raw)[:16]


def sm_key_id_of(public_point: bytes) -> str:
    """An SM2 key's id: the first 16 hex digits of SM3 of its 65-byte uncompressed point (PROTOCOL "Custody log in
    the national algorithms")."""
    return SM.hexdigest(public_point)[:16]


@dataclass(frozen=True)
class _HeadKey:
    """A head-signing key of one suite, and the public keys of the keys it replaced (`retired`: key id, base64url),
    so heads signed before a rotation stay verifiable."""

    private_key: bytes = field(repr=False)  # kept out of repr, so out of logs
    public_raw: bytes
    retired: tuple[tuple[str, str], ...] = ()

    suite = INTL
    _key_id = staticmethod(key_id_of)

    @property
    def key_id(self) -> str:
        return self._key_id(self.public_raw)

    @property
    def public_key(self) -> str:
        return b64url(self.public_raw)

    def sign(self, data: bytes) -> str:
        """base64url of the suite's 64-byte signature of `data` (Ed25519; SM2's raw r ‖ s)."""
        return b64url(self.suite.sign(self.private_key, self.public_raw, data))

    def public_keys(self) -> dict[str, str]:
        """Every key id this deployment has signed heads with in this suite, to its base64url key (current last)."""
        return {**dict(self.retired), self.key_id: self.public_key}

    def public_key_for(self, key_id: str) -> str | None:
        return self.public_keys().get(key_id)

    def verification_keys(self) -> dict[str, bytes]:
        """Key id to the raw public key, for `verify_head` / `verify_sm_head`."""
        return {kid: b64url_decode(pub) for kid, pub in self.public_keys().items()}


@dataclass(frozen=True)
class SmSigner(_HeadKey):
    """The SM tree's head key (SM2 with SM3, user ID 1234567812345678: backend.core.crypto.sm2): a 32-byte private
    key and its 65-byte uncompressed point, kept together in its file."""

    suite = SM
    algorithm = "SM2"
    _key_id = staticmethod(sm_key_id_of)


@dataclass(frozen=True)
class Signer(_HeadKey):
    """The current tree-head key (Ed25519: the 32-byte seed as kept in its file, and its public key, derived once by
    `from_seed`).

    Heads are stored with the id of the key that signed them; after a rotation
    the old heads stay verifiable with the retired public keys. `sm` is the SM
    tree's key when the deployment keeps one (FIELDCASE_CUSTODY_SUITES=intl,sm):
    whoever appends leaves with this signer then appends them to both trees.
    """

    sm: SmSigner | None = None

    @classmethod
    def from_seed(cls, seed: bytes, retired: tuple[tuple[str, str], ...] = (), sm: SmSigner | None = None) -> Signer:
        """The key file holds only the seed: its public half is derived here, once, not per signature."""
        return cls(seed, ed25519_public_key(seed), retired, sm)


def _read_keyring(path: Path | None, size: int, key_id: Callable[[bytes], str], what: str) -> list[dict[str, str]]:
    if path is None or not Path(path).exists():
        return []
    data = json.loads(Path(path).read_text(encoding="utf-8"))
    keys = data.get("keys", []) if isinstance(data, dict) else []
    for entry in keys:
        raw = b64url_decode(entry["public_key"])
        if len(raw) != size or key_id(raw) != entry["key_id"]:
            raise RuntimeError(f"{what} {path}: entry {entry.get('key_id')!r} does not match its key")
    return keys


def read_keyring(path: Path | None) -> list[dict[str, str]]:
    """The retired public keys kept at `path` (JSON `{"keys": [{"key_id", "public_key", "retired_at"}]}`)."""
    return _read_keyring(path, 32, key_id_of, "custody keyring")


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
    return Signer.from_seed(seed, retired=retired)


def signer_for(settings: Any) -> Signer:
    """The signer a process of this deployment uses (backend.core.config.Settings); its key is made on first use
    only on SQLite (backend.core.secret_files: hosts sharing a database must share one key). With the `sm` suite
    it carries the SM2 key too."""
    signer = load_signer(key_file=settings.custody_key_path, keyring_file=settings.custody_keyring_path,
                         create=generates_secrets(settings))
    if "sm" in getattr(settings, "custody_suites", ("intl",)):
        signer = replace(signer, sm=load_sm_signer(settings.custody_sm_key_path, settings.custody_sm_keyring_path,
                                                   create=generates_secrets(settings)))
    return signer


def read_sm_keyring(path: Path | None) -> list[dict[str, str]]:
    """The retired SM2 public keys kept at `path`, as `read_keyring` (each a 65-byte point, id by SM3)."""
    return _read_keyring(path, SM.public_key_bytes, sm_key_id_of, "SM2 custody keyring")


def load_sm_signer(key_file: Path, keyring_file: Path | None = None, *, create: bool = True) -> SmSigner:
    """The SM tree's head key (generated, 0600, on first use when `create`), with the retired keys of its keyring.

    The file is the 32-byte private key followed by the 65-byte public point (GmSSL derives no public key from
    a private one); the pair is checked by a signature, so a file whose halves do not match is refused here.
    """
    data = secret_file(Path(key_file), SM2_KEY_BYTES, create=create, make=new_sm2_key)
    if len(data) != SM2_KEY_BYTES:
        raise RuntimeError(f"SM2 custody key {key_file}: {len(data)} bytes, not the {SM2_KEY_BYTES} of a private key "
                           "and its public point")
    private, public = data[:32], data[32:]
    probe = b"fieldcase custody key check"
    try:
        matched = SM.verify(public, probe, SM.sign(private, public, probe))
    except Exception:  # noqa: BLE001 - a key GmSSL cannot sign with is a key that does not match
        matched = False
    if not matched:
        raise RuntimeError(f"SM2 custody key {key_file}: its private key and public point do not match")
    retired = tuple((k["key_id"], k["public_key"]) for k in read_sm_keyring(keyring_file))
    return SmSigner(private_key=private, public_raw=public, retired=retired)


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


def rotate_sm_key(key_file: Path, keyring_file: Path, *, now: datetime) -> tuple[str, str]:
    """`rotate_key` for the SM tree's SM2 key: the old public point goes to its keyring first."""
    key_file, keyring_file = Path(key_file), Path(keyring_file)
    old = load_sm_signer(key_file, keyring_file, create=False)
    keys = read_sm_keyring(keyring_file)
    if old.key_id not in {k["key_id"] for k in keys}:
        keys.append({"key_id": old.key_id, "public_key": old.public_key, "retired_at": utc_millis(now)})
    keyring_file.parent.mkdir(parents=True, exist_ok=True)
    _write_atomically(keyring_file, json.dumps({"keys": keys}, indent=2).encode() + b"\n", 0o644)
    _write_atomically(key_file, new_sm2_key(), 0o600)
    return old.key_id, load_sm_signer(key_file, keyring_file, create=False).key_id


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


def _head_holds(suite: Suite, public_raw: bytes, head: dict[str, Any]) -> bool:
    try:
        signature = b64url_decode(head["signature"])
        return suite.verify(public_raw, head_payload(head["tree_size"], head["root_hash"], head["timestamp"]),
                            signature)
    except Exception:  # noqa: BLE001 - any failure to verify is a failed verification
        return False


def verify_sm_head(public_point: bytes, head: dict[str, Any]) -> bool:
    """Whether an SM tree head's `signature` (base64url of raw r ‖ s) is SM2 by `public_point` over the same
    canonical JSON as an intl head's (`head_payload`)."""
    return _head_holds(SM, public_point, head)


def verify_head(public_raw: bytes, head: dict[str, Any]) -> bool:
    """Whether a tree head's `signature` (base64url) is Ed25519 by the raw 32-byte `public_raw` over `head_payload`."""
    return _head_holds(INTL, public_raw, head)
