"""The key ring: the data keys sealed fields and blind indexes use, stored wrapped in `data_keys`.

Envelope encryption, as a 密码机 or a KMS expects it: each value is sealed with SM4-GCM under a data key (DEK) of
purpose `seal`, each blind index is HMAC-SM3 under a key of purpose `index`, and a data key is stored only
wrapped by the key-encryption key (KEK) of the `KeyProvider` this ring is given. A data key is unwrapped once per
process and kept in memory, by its row id and key check, so a request does not call the provider per field.

The first key of a purpose is made by the first write that needs it, in the writer's transaction (at most one per
purpose and generation: the unique key makes a racing second one fail and its transaction run again). Reading
never makes a key: a blind index asked for before any was made matches nothing.

Generations retire a data key that may have leaked (`fieldcase keys new-generation`, then `keys reseal`): writers
seal and index under the newest generation of each purpose; a sealed value names its own key, so one sealed under
an older generation still opens; a blind index does not name its key, so a look-up compares with the value under
every generation (`indexes`). Older keys stay in the table: backups taken before the reseal need them.

Who holds the ring: the composition root builds one per process (`backend.bootstrap.key_ring`) and hands it to the
web app's state; a route passes it to the domain function that seals or opens. Nothing finds it in a global or
in the session.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import func, select
from sqlalchemy.orm import InstrumentedAttribute, Session

from backend.core.crypto.key_provider import KeyProvider, KeyUnavailable
from backend.core.crypto.sealed_fields import (
    HEADER_BYTES,
    BlindIndex,
    SealedField,
    index_value,
    open_value,
    seal_value,
    sealed_key_id,
)
from backend.core.crypto.sealing import KEY_BYTES, SealBroken, hmac_sm3
from backend.core.models import DataKey

SEAL, INDEX = "seal", "index"


def key_check(key: bytes) -> str:
    """32 hex digits that show an unwrapped key is the one its row was made with (a key check value)."""
    return hmac_sm3(key, b"fieldcase.data-key-check.v1").hex()[:32]


@dataclass(frozen=True)
class NewDataKey:
    key: bytes
    wrapped: bytes
    kek_id: str
    check: str


def new_data_key(provider: KeyProvider) -> NewDataKey:
    """A fresh random data key, wrapped by `provider`'s KEK (and unwrapped again, to know the provider keeps it)."""
    key = secrets.token_bytes(KEY_BYTES)
    kek_id = provider.kek_id
    wrapped = provider.wrap(key)
    if provider.unwrap(wrapped, kek_id) != key:
        raise KeyUnavailable(f"KEK {kek_id} does not give back the data key it wrapped")
    return NewDataKey(key, wrapped, kek_id, key_check(key))


class KeyRing:
    """The data keys of one database, unwrapped through `provider`."""

    def __init__(self, provider: KeyProvider) -> None:
        self.provider = provider
        self._keys: dict[tuple[int, str], bytes] = {}

    def _plain(self, row: DataKey) -> bytes:
        known = self._keys.get((row.id, row.check))
        if known is not None:
            return known
        key = self.provider.unwrap(row.wrapped, row.kek_id)
        if key_check(key) != row.check:
            raise KeyUnavailable(f"data key {row.id} unwraps under KEK {row.kek_id} to a key that is not its own")
        self._keys[(row.id, row.check)] = key
        return key

    def _current(self, session: Session, purpose: str, now: datetime | None) -> DataKey | None:
        row = self.newest(session, purpose)
        if row is None and now is not None:
            row = self._make(session, purpose, 1, now)
        return row

    def _make(self, session: Session, purpose: str, generation: int, now: datetime) -> DataKey:
        made = new_data_key(self.provider)
        row = DataKey(purpose=purpose, generation=generation, wrapped=made.wrapped, kek_id=made.kek_id,
                      check=made.check, created_at=now)
        session.add(row)
        session.flush()
        self._keys[(row.id, row.check)] = made.key
        return row

    def generations(self, session: Session, purpose: str) -> list[DataKey]:
        """The data keys of `purpose`, newest generation first."""
        return list(session.scalars(select(DataKey).where(DataKey.purpose == purpose)
                                    .order_by(DataKey.generation.desc())))

    def newest(self, session: Session, purpose: str) -> DataKey | None:
        """The key writers of `purpose` use now, or None before the first write made one."""
        return session.scalars(select(DataKey).where(DataKey.purpose == purpose)
                               .order_by(DataKey.generation.desc()).limit(1)).first()

    def new_generation(self, session: Session, purpose: str, *, now: datetime) -> DataKey:
        """A fresh data key of `purpose`, one generation past the newest, wrapped by the current KEK: every seal or
        index written after the caller commits uses it. Its key is unwrapped once here, so a provider that cannot
        give it back refuses before anything is stored."""
        newest = self.newest(session, purpose)
        return self._make(session, purpose, newest.generation + 1 if newest else 1, now)

    def require(self, row: DataKey) -> None:
        """KeyUnavailable unless this ring unwraps `row` to its own key."""
        self._plain(row)

    def seal(self, session: Session, field: SealedField, row_id: str, plaintext: bytes, *, now: datetime) -> bytes:
        """`plaintext` sealed for `field` of row `row_id`, under the newest data key (made now if there is none)."""
        row = self._current(session, SEAL, now)
        assert row is not None  # noqa: S101 - made above when missing
        return seal_value(row.id, self._plain(row), field, row_id, plaintext)

    def open(self, session: Session, field: SealedField, row_id: str, sealed: bytes) -> bytes:
        """What `seal` sealed for this field and row; SealBroken if the value was altered, moved or relabelled."""
        key_id = sealed_key_id(sealed)
        row = session.get(DataKey, key_id)
        if row is None or row.purpose != SEAL:
            raise SealBroken(f"sealed under data key {key_id}, which is not a sealing key of this database")
        return open_value(self._plain(row), field, row_id, sealed)

    def index(self, session: Session, index: BlindIndex, value: str | None, *,
              now: datetime | None = None) -> str | None:
        """The blind index of `value`, or None when it has nothing to index. A writer passes `now` (the index key
        is made if there is none yet); a reader does not, and gets None when no index key exists: nothing was
        indexed, so nothing can match."""
        if not value or not index.normalise(value):
            return None
        row = self._current(session, INDEX, now)
        if row is None:
            return None
        return index_value(self._plain(row), index, value)

    def indexes(self, session: Session, index: BlindIndex, value: str | None) -> list[str]:
        """The blind index of `value` under every generation of the index key, newest first: what an exact-match
        look-up compares with, so a row indexed before the newest generation is found until it is resealed. Empty
        when there is nothing to index or no index key yet."""
        if not value or not index.normalise(value):
            return []
        found = [index_value(self._plain(row), index, value) for row in self.generations(session, INDEX)]
        return [digest for digest in found if digest is not None]

    def reseal(self, session: Session, field: SealedField, row_id: str, sealed: bytes, *,
               now: datetime) -> tuple[bytes, bytes]:
        """What `sealed` holds, and that sealed under the newest sealing key: `sealed` itself when it already is
        (a fresh nonce would change the bytes for nothing, and a second reseal is to write nothing)."""
        plaintext = self.open(session, field, row_id, sealed)
        row = self._current(session, SEAL, now)
        assert row is not None  # noqa: S101 - made above when missing
        if sealed_key_id(sealed) == row.id:
            return plaintext, sealed
        return plaintext, seal_value(row.id, self._plain(row), field, row_id, plaintext)

    def rewrap(self, session: Session, new: KeyProvider, *, now: datetime) -> int:
        """Every data key not yet under `new`'s KEK unwrapped (through this ring's provider) and wrapped by `new`,
        locked and rewritten in the caller's transaction; how many were. The keys, and so every sealed row and blind
        index, stay as they are."""
        count = 0
        for row in session.scalars(select(DataKey).order_by(DataKey.id).with_for_update()):
            if row.kek_id == new.kek_id:
                continue
            key = self._plain(row)
            wrapped = new.wrap(key)
            if new.unwrap(wrapped, new.kek_id) != key:
                raise KeyUnavailable(f"KEK {new.kek_id} does not give back data key {row.id}")
            row.wrapped, row.kek_id, row.rewrapped_at = wrapped, new.kek_id, now
            count += 1
        return count


def sealed_by_key(session: Session, column: InstrumentedAttribute[bytes | None]) -> dict[int, int]:
    """How many values of a sealed column each data key sealed, by key id, read from the values' headers in SQL
    (nothing is opened): what `fieldcase keys status` says of each generation."""
    key_bytes = func.substr(column, 2, HEADER_BYTES - 1)
    counted = session.execute(select(key_bytes, func.count()).where(column.is_not(None)).group_by(key_bytes))
    return {int.from_bytes(bytes(key), "big"): count for key, count in counted}
