"""The key-encryption key (KEK), behind an interface of two methods: `wrap` and `unwrap`.

Personal data is sealed under data keys (`data_keys`), and each data key is stored only wrapped by the KEK.
Nothing else in the program touches the KEK: a `KeyProvider` wraps a fresh data key and unwraps a stored one,
and names the KEK it used (`kek_id`, kept beside each wrapped key), so a KEK can be replaced
(`fieldcase keys rotate-kek`) while rows sealed under the data keys stay as they are.

The default provider is a file (`FileKeyProvider`): 16 random bytes (an SM4 key), mode 0600, made by
`fieldcase init-secrets` (on SQLite, on first use), at FIELDCASE_KEK_FILE (default `instance/data-kek.key`).
A file readable by the group or by others is refused: the process does not start with it.

Where a hardware crypto module (密码机, an SDF device per GM/T 0018) or a cloud KMS plugs in: write a class with
the same three members and give it to `backend.core.crypto.data_keys.KeyRing` in the composition root
(`backend.bootstrap.key_ring`), the keys command (`backend.keys_cli`) and migration 0018, instead of
`FileKeyProvider`:

- `kek_id`: the name of the key that wraps now (the device's key index, the KMS key id and version);
- `wrap(key)`: the device or service encrypts a 16-byte data key under the KEK, which never leaves it
  (SDF_ExportKeyWithKEK / SDF_Encrypt with an internal SM4 key; a KMS `Encrypt` under an SM4 key);
- `unwrap(wrapped, kek_id)`: the reverse, under the KEK named (SDF_ImportKeyWithKEK / SDF_Decrypt; KMS `Decrypt`),
  raising `KeyUnavailable` when that KEK is not held.

The data keys themselves are used in this process's memory (SM4-GCM in `sealing`): that is the envelope
pattern a KMS expects, and what keeps a request from calling the module per field.
"""

from __future__ import annotations

import os
import secrets
import stat
from pathlib import Path
from typing import Protocol

from backend.core.crypto.sealing import KEY_BYTES, SealBroken, hmac_sm3, open_sealed, seal

_WRAP_LABEL = b"fieldcase.data-key.v1\x00"


class KeyUnavailable(RuntimeError):
    """The KEK a data key is wrapped under is not held here, or its file may not be used: the message says why
    and what to do (never a key's bytes)."""


class KeyProvider(Protocol):
    """What wraps and unwraps the data keys: a file here, a 密码机 or a KMS in a deployment that has one."""

    @property
    def kek_id(self) -> str:
        """The id of the KEK that `wrap` uses now; stored beside each wrapped key."""

    def wrap(self, key: bytes) -> bytes:
        """`key` (a data key) encrypted and authenticated under the current KEK."""

    def unwrap(self, wrapped: bytes, kek_id: str) -> bytes:
        """The data key `wrap` gave `wrapped` under KEK `kek_id`; KeyUnavailable if that KEK is not held or the
        wrapped key does not open under it."""


def kek_id_of(kek: bytes) -> str:
    """A file KEK's id: 16 hex digits of HMAC-SM3 under the key itself, naming it without revealing it."""
    return "file:" + hmac_sm3(kek, b"fieldcase.kek-id.v1").hex()[:16]


def read_kek_file(path: Path) -> bytes:
    """The 16 bytes of a KEK file; KeyUnavailable if it is missing, the wrong size, or open to the group or others."""
    try:
        mode = stat.S_IMODE(path.stat().st_mode)
    except FileNotFoundError:
        raise KeyUnavailable(f"FIELDCASE_KEK_FILE: {path} does not exist; `fieldcase init-secrets` makes it") \
            from None
    if mode & 0o077:
        raise KeyUnavailable(f"FIELDCASE_KEK_FILE: {path} is mode {mode:04o}, readable beyond its owner; "
                             "`chmod 600` it (the key that protects personal data is refused otherwise)")
    data = path.read_bytes()
    if len(data) != KEY_BYTES:
        raise KeyUnavailable(f"FIELDCASE_KEK_FILE: {path} holds {len(data)} bytes, not the {KEY_BYTES} of an SM4 key")
    return data


class FileKeyProvider:
    """The KEK in a file. KEKs it replaced, or one staged by a rotation not yet finished, are files beside it
    named by their id (`<file>.<kek id>`), so data keys wrapped under any of them still unwrap here."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self._kek = read_kek_file(self.path)
        self._id = kek_id_of(self._kek)

    @property
    def kek_id(self) -> str:
        return self._id

    def wrap(self, key: bytes) -> bytes:
        return seal(self._kek, key, _WRAP_LABEL + self._id.encode())

    def unwrap(self, wrapped: bytes, kek_id: str) -> bytes:
        kek = self._kek if kek_id == self._id else self._sibling(kek_id)
        try:
            return open_sealed(kek, wrapped, _WRAP_LABEL + kek_id.encode())
        except SealBroken:
            raise KeyUnavailable(f"a data key does not unwrap under KEK {kek_id}: the wrapped key was altered")\
                from None

    def sibling_path(self, kek_id: str) -> Path:
        """Where a KEK other than the current one is kept: the file's name and the KEK's id."""
        return self.path.with_name(f"{self.path.name}.{kek_id.removeprefix('file:')}")

    def _sibling(self, kek_id: str) -> bytes:
        path = self.sibling_path(kek_id)
        if not path.exists():
            raise KeyUnavailable(f"a data key is wrapped under KEK {kek_id}, which this host does not hold "
                                 f"(FIELDCASE_KEK_FILE {self.path} is {self._id}): copy the current KEK file from "
                                 "the host that rotated it")
        kek = read_kek_file(path)
        if kek_id_of(kek) != kek_id:
            raise KeyUnavailable(f"{path} does not hold KEK {kek_id}")
        return kek

    def stage(self) -> FileKeyProvider:
        """A new KEK, written (0600) beside the current one under its own id, as a provider: what a rotation
        re-wraps the data keys under before it takes the KEK file's place (`promote`)."""
        kek = secrets.token_bytes(KEY_BYTES)
        path = self.sibling_path(kek_id_of(kek))
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as fh:
            fh.write(kek)
            fh.flush()
            os.fsync(fh.fileno())
        return FileKeyProvider(path)

    def promote(self, staged: FileKeyProvider) -> Path:
        """`staged` becomes the KEK file; the KEK it replaces is kept beside it under its id (returned), for the
        backups taken before the rotation, until the operator destroys it."""
        retired = self.sibling_path(self._id)
        if not retired.exists():
            os.link(self.path, retired)
        os.replace(staged.path, self.path)
        return retired
