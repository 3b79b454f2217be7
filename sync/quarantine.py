"""Rejected submissions, kept for forensics but bounded (per device, or per officer when no device is known).

What a database text column can hold of a hostile submission is decided here too (`storable_text`): the ledger
and the quarantine store what arrived, never NUL and never a lone surrogate.
"""

from __future__ import annotations

import reprlib
from collections import defaultdict
from datetime import datetime
from typing import Any

from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from backend.core.bulk import insert_rows
from backend.core.crypto import digests
from backend.core.models import Device, Officer, QuarantinedRecord

MAX_DETAIL = 500  # the ledger's and the quarantine's `detail` columns

_REPR = reprlib.Repr()
_REPR.maxlevel, _REPR.maxstring, _REPR.maxother, _REPR.maxlist, _REPR.maxdict = 8, 4096, 4096, 64, 64


def storable_text(value: Any) -> str:
    """What a database text column can hold of a submission: never NUL, never a lone surrogate.

    A record that is not a string is kept as a bounded repr (a list nested as deep as the JSON
    parser allows would exhaust the recursion limit of the builtin one).
    """
    text = value if isinstance(value, str) else _REPR.repr(value)
    if not text.isascii():
        text = text.encode("utf-8", "backslashreplace").decode("utf-8")
    return text.replace("\x00", "\\x00")


# Kept in the quarantine, but not a rejection: a held record replaced by its re-signed version, as PROTOCOL §4
# Recovery asks a phone to do. A device's `quarantined` count, the statistics and the audit leave it out alike.
NOT_REJECTIONS = ("superseded",)


class Quarantine:
    """Rejected submissions, kept for forensics but bounded per device (or per officer when no device)."""

    def __init__(self, session: Session, officer: Officer, now: datetime, limit: int) -> None:
        self.session, self.officer, self.now, self.limit = session, officer, now, limit
        self.rows: list[dict[str, Any]] = []
        self.per_device: dict[str | None, int] = defaultdict(int)  # rows added, to trim
        self.rejected: dict[str | None, int] = defaultdict(int)  # of them, rejections: the device's count

    def add(self, text: Any, code: str, detail: str, device_id: str | None = None, seq: int | None = None,
            op: str | None = None, digest: str | None = None) -> None:
        raw = storable_text(text)
        self.rows.append({
            "device_id": device_id, "officer_id": self.officer.id, "seq": seq, "op": op[:64] if op else None,
            "hash": digest or digests.sha256_hex(raw.encode("utf-8", "replace")),
            "jws": raw[: 300 * 1024], "code": code, "detail": storable_text(detail)[:MAX_DETAIL],
            "received_at": self.now,
        })
        self.per_device[device_id] += 1
        if code not in NOT_REJECTIONS:
            self.rejected[device_id] += 1

    def write(self, known_devices: dict[str, Device]) -> None:
        if not self.rows:
            return
        insert_rows(self.session, QuarantinedRecord, self.rows)
        for device_id in self.per_device:
            if device_id in known_devices:
                known_devices[device_id].quarantined_total += self.rejected[device_id]
            self._trim(device_id)

    def _trim(self, device_id: str | None) -> None:
        """Per device and pushing officer: another officer's `not_owner` pushes naming a device must not
        evict what its owner's own rejected submissions left for the forensic record."""
        pusher = QuarantinedRecord.officer_id == self.officer.id
        owner = (pusher & (QuarantinedRecord.device_id == device_id) if device_id
                 else pusher & QuarantinedRecord.device_id.is_(None))
        cutoff = self.session.scalar(select(QuarantinedRecord.id).where(owner).order_by(QuarantinedRecord.id.desc())
                                     .offset(self.limit).limit(1))
        if cutoff is not None:
            self.session.execute(delete(QuarantinedRecord).where(owner, QuarantinedRecord.id <= cutoff))
