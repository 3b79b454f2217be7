"""Sealed fields: how a personal value is sealed (SM4-GCM) and found again (an HMAC-SM3 blind index).

Pure functions of the keys and the value; which data key is used, and where the keys come from, is
`data_keys.KeyRing`'s. A sealed value is stored as

    version (1 byte, 1) ‖ data key id (4 bytes, big-endian) ‖ nonce (12) ‖ ciphertext ‖ tag (16)

and its associated data names the table, the column and the row's id, with that header: a sealed value copied
to another row or column, or relabelled with another key's id, does not open (`SealBroken`). The key id is also
what keeps a value sealed under an older generation of the data key opening after a new one is made.

A blind index is HMAC-SM3 under the index key of the value in its normal form (`BlindIndex.normalise`), with the
table and field in the MAC's input: the same phone number gives the same index in one field, and unrelated
indexes in two. An exact match is all it answers, and only with the index key. An index value does not name its
key (it is the 64 hex digits alone): a look-up computes the value under every generation of the index key.

Why not a SQLAlchemy TypeDecorator: a column type is handed the value and the dialect, never the row, so it
cannot bind a value to its row id, and it would need the key ring from a module global. The domain functions
that write and read a sealed field call `KeyRing.seal` / `KeyRing.open` with the key ring they are passed
(from `backend.bootstrap`), which keeps the keys' path explicit and each sealing visible where it happens.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Callable
from dataclasses import dataclass

from backend.core.crypto.sealing import NONCE_BYTES, TAG_BYTES, SealBroken, hmac_sm3, open_sealed, seal

VERSION = 1
HEADER_BYTES = 5
_SEAL_LABEL = b"fieldcase.sealed.v1"
_INDEX_LABEL = b"fieldcase.index.v1"


@dataclass(frozen=True)
class SealedField:
    """A column that holds sealed values, named as its associated data names it."""

    table: str
    column: str

    def associated(self, row_id: str, header: bytes) -> bytes:
        return b"\x00".join((_SEAL_LABEL, self.table.encode(), self.column.encode(), row_id.encode(), header))


def phone_digits(text: str) -> str:
    """A phone number's normal form for its blind index: its digits alone (full-width ones too), so
    `138-0000 2222`, `138 0000 2222` and `１３８００００２２２２` find each other. The one rule for phones."""
    return "".join(ch for ch in unicodedata.normalize("NFKC", text) if "0" <= ch <= "9")


@dataclass(frozen=True)
class BlindIndex:
    """An exact-match index of a sealed field's part, e.g. `clues` `complainant.phone` with `phone_digits`."""

    table: str
    field: str
    normalise: Callable[[str], str]


def seal_value(key_id: int, key: bytes, field: SealedField, row_id: str, plaintext: bytes) -> bytes:
    header = bytes([VERSION]) + key_id.to_bytes(4, "big")
    return header + seal(key, plaintext, field.associated(row_id, header))


def sealed_key_id(sealed: bytes) -> int:
    """The data key a sealed value names; SealBroken if it is not a sealed value of this version."""
    if len(sealed) < HEADER_BYTES + NONCE_BYTES + TAG_BYTES or sealed[0] != VERSION:
        raise SealBroken("not a sealed value")
    return int.from_bytes(sealed[1:HEADER_BYTES], "big")


def open_value(key: bytes, field: SealedField, row_id: str, sealed: bytes) -> bytes:
    sealed_key_id(sealed)
    header = sealed[:HEADER_BYTES]
    return open_sealed(key, sealed[HEADER_BYTES:], field.associated(row_id, header))


def index_value(key: bytes, index: BlindIndex, value: str | None) -> str | None:
    """The blind index of `value` (64 hex digits), or None when it has nothing to index (empty once normal)."""
    normal = index.normalise(value) if value else ""
    if not normal:
        return None
    return hmac_sm3(key, b"\x00".join((_INDEX_LABEL, index.table.encode(), index.field.encode(),
                                       normal.encode()))).hex()
