"""The records an officer makes in the field (PROTOCOL §3): each type's body, shaped before the chain signs it.

Opening a case, an inspection with its findings and end, a captured evidence file, a case update, a clue, a
camera's interruption: the phone checks what it can know offline (an outcome, an evidence kind, the shape of a
case or institution reference) and leaves the rest (the catalogue, jurisdiction) to the server. An evidence
file is declared by hash and size, so the server can later tell whether the uploaded bytes are the ones signed.
"""

from __future__ import annotations

import hashlib
import json
import os
import uuid
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives import hashes

from sync.client.chain import Chain
from sync.client.outbox import Outbox
from sync.client.wire import CHUNK, rfc3339

KINDS = frozenset({"photo", "video", "audio", "document", "signature"})
OUTCOMES = frozenset({"no_violation", "violation_found", "rectification_ordered", "not_inspected"})

When = datetime | str | None
# The digests a declaration may carry (PROTOCOL §3), each made by a streaming hasher: SM3 is cryptography's
# (OpenSSL's), since the reference phone is built from the protocol alone and imports no server code.
DIGESTS: dict[str, Callable[[], Any]] = {"sha256": hashlib.sha256, "sm3": lambda: hashes.Hash(hashes.SM3())}
Overriding = Any  # a reason, a sync.client.checks.Override, or {"reason", "codes"?}: see Phone.record


def _hex(hasher: Any) -> str:
    """hashlib's hexdigest, or cryptography's finalize, as hex."""
    return hasher.hexdigest() if hasattr(hasher, "hexdigest") else hasher.finalize().hex()


class RecordTypes:
    """Builds each record type's body and appends it to the chain; returns the ids the app refers to later."""

    def __init__(self, outbox: Outbox, chain: Chain, evidence_dir: Path) -> None:
        self._outbox = outbox
        self._chain = chain
        self._evidence_dir = evidence_dir
        # The digests an evidence.capture declares (PROTOCOL §3): ("sha256",) as every phone did, ("sm3",) for a phone
        # held to the national algorithms, or both. The phone's own outbox keeps the SHA-256 either way, for its check
        # that the file has not changed since capture.
        self.evidence_digests: tuple[str, ...] = ("sha256",)

    def case_ref(self, ref: str | Mapping[str, Any]) -> dict[str, Any]:
        """A dict passes through; a bare string is this phone's client_case_id if it opened it, else a server id."""
        if isinstance(ref, Mapping):
            ref = dict(ref)
            if not ({"id", "client_case_id"} & ref.keys()):
                raise ValueError("a case reference is {'id'} or {'client_case_id'}")
            return ref
        ref = str(ref)
        for row in self._outbox.q("SELECT body FROM records WHERE type = 'case.open'"):
            if json.loads(row["body"]).get("client_case_id") == ref:
                return {"client_case_id": ref}
        return {"id": ref}

    @staticmethod
    def institution(inst: str | Mapping[str, Any]) -> dict[str, Any]:
        """An institution reference: a dict as given (checked), or a bare server id."""
        if isinstance(inst, Mapping):
            inst = dict(inst)
            if "id" not in inst and not ({"name", "region"} <= inst.keys()):
                raise ValueError("an institution is {'id'} or {'name', 'region', 'credit_code'?, 'address'?}")
            return inst
        return {"id": str(inst)}

    def open_case(self, institution: str | Mapping[str, Any], summary: str | None = None, *,
                  at: When = None, override: Overriding = None) -> str:
        """case.open; returns its client_case_id."""
        client_case_id = str(uuid.uuid4())
        body: dict[str, Any] = {"client_case_id": client_case_id, "institution": self.institution(institution)}
        if summary is not None:
            body["summary"] = summary
        self._chain.append("case.open", body, at, override=override)
        return client_case_id

    def start_inspection(self, case_ref: str | Mapping[str, Any], officers: Sequence[str],
                         location: Mapping[str, Any] | None = None, task_id: str | None = None, *,
                         at: When = None, override: Overriding = None) -> str:
        """inspection.start, with the device owner among the officers present; returns the inspection_id."""
        owner = self._outbox.officer_id
        present = [str(o) for o in officers]
        if owner and owner not in present:
            present.insert(0, owner)  # PROTOCOL: the device owner is always among them
        inspection_id = str(uuid.uuid4())
        body: dict[str, Any] = {"inspection_id": inspection_id, "case": self.case_ref(case_ref),
                                "officers": present}
        if location is not None:
            body["location"] = dict(location)
        if task_id is not None:
            body["task_id"] = task_id
        self._chain.append("inspection.start", body, at, override=override)
        return inspection_id

    def add_finding(self, inspection_id: str, category: str, description: str,
                    evidence: Sequence[str] = (), *, at: When = None, override: Overriding = None) -> str:
        """inspection.finding; returns its finding_id."""
        finding_id = str(uuid.uuid4())
        self._chain.append("inspection.finding", {"inspection_id": inspection_id, "finding_id": finding_id,
                                                  "category": category, "description": description,
                                                  "evidence": [str(e) for e in evidence]}, at, override=override)
        return finding_id

    def end_inspection(self, inspection_id: str, outcome: str, notes: str | None = None, *,
                       at: When = None) -> str:
        """inspection.end; returns the record's op."""
        if outcome not in OUTCOMES:
            raise ValueError(f"outcome must be one of {sorted(OUTCOMES)}")
        body: dict[str, Any] = {"inspection_id": inspection_id, "outcome": outcome}
        if notes is not None:
            body["notes"] = notes
        return self._chain.append("inspection.end", body, at).op

    def capture_evidence(self, path_or_bytes: str | os.PathLike[str] | bytes | bytearray | memoryview,
                         kind: str, media_type: str, inspection_id: str | None = None,
                         case: str | Mapping[str, Any] | None = None,
                         captured_at: When = None,
                         location: Mapping[str, Any] | None = None,
                         clip: Mapping[str, Any] | None = None, *,
                         at: When = None, digests: Sequence[str] | None = None) -> str:
        """evidence.capture, and the file's row in the outbox, in one transaction; returns the evidence_id.

        `digests`: which the declaration carries, `sha256`, `sm3` or both (default `evidence_digests`); all are
        computed in one read of the file."""
        outbox = self._outbox
        outbox.require_device()
        if kind not in KINDS:
            raise ValueError(f"kind must be one of {sorted(KINDS)}")
        declared = tuple(dict.fromkeys(self.evidence_digests if digests is None else digests))
        if not declared or not set(declared) <= set(DIGESTS):
            raise ValueError(f"digests must be one or more of {list(DIGESTS)}")
        evidence_id = str(uuid.uuid4())
        if isinstance(path_or_bytes, bytes | bytearray | memoryview):
            path = self._evidence_dir / evidence_id
            data = bytes(path_or_bytes)
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "wb") as fh:
                fh.write(data)
                fh.flush()
                os.fsync(fh.fileno())
            owned = True
        else:
            path = Path(path_or_bytes).resolve()
            owned = False
        hashers = {name: make() for name, make in DIGESTS.items() if name == "sha256" or name in declared}
        size = 0
        with open(path, "rb") as fh:
            while chunk := fh.read(CHUNK):
                for hasher in hashers.values():
                    hasher.update(chunk)
                size += len(chunk)
        hexes = {name: _hex(hasher) for name, hasher in hashers.items()}
        body: dict[str, Any] = {"evidence_id": evidence_id}
        if inspection_id is not None:
            body["inspection_id"] = inspection_id
        if case is not None:
            body["case"] = self.case_ref(case)
        body.update({"kind": kind, "media_type": media_type, **{name: hexes[name] for name in declared},
                     "size": size, "captured_at": rfc3339(captured_at if captured_at is not None else outbox.clock())})
        if location is not None:
            body["location"] = dict(location)
        if clip is not None:
            body["clip"] = dict(clip)
        with outbox.tx() as db:
            rec = self._chain.append("evidence.capture", body, at)
            db.execute("INSERT INTO evidence (evidence_id, op, path, owned, sha256, size, kind, media_type, "
                       "status, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, 'captured', ?)",
                       (evidence_id, rec.op, str(path), int(owned), hexes["sha256"], size, kind, media_type,
                        outbox.stamp()))
        return evidence_id

    def update_case(self, case_ref: str | Mapping[str, Any], base_version: int,
                    fields: Mapping[str, Any], *, at: When = None) -> str:
        """case.update against the version the phone saw; returns the record's op."""
        if not fields:
            raise ValueError("update_case needs at least one changed field")
        return self._chain.append("case.update", {"case": self.case_ref(case_ref), "base_version": base_version,
                                                  "fields": dict(fields)}, at).op

    def correct_record(self, op: str, fields: Mapping[str, Any], reason: str, *, at: When = None,
                       override: Overriding = None) -> str:
        """record.correct of one of this officer's records (its op); returns the correction's op."""
        if not fields:
            raise ValueError("correct_record needs at least one corrected field")
        return self._chain.append("record.correct", {"op": op, "fields": dict(fields), "reason": reason}, at,
                                  override=override).op

    def report_clue(self, source: str, institution: str | Mapping[str, Any], description: str, *,
                    at: When = None, override: Overriding = None) -> str:
        """clue.report; returns its clue_id."""
        clue_id = str(uuid.uuid4())
        self._chain.append("clue.report", {"clue_id": clue_id, "source": source,
                                           "institution": self.institution(institution),
                                           "description": description}, at, override=override)
        return clue_id

    def recording_interruption(self, inspection_id: str, camera_serial: str, started_at: datetime | str,
                               ended_at: datetime | str, reason: str, *, at: When = None) -> str:
        """recording.interruption; returns the record's op."""
        return self._chain.append("recording.interruption", {
            "inspection_id": inspection_id, "camera_serial": camera_serial,
            "started_at": rfc3339(started_at), "ended_at": rfc3339(ended_at), "reason": reason}, at).op
