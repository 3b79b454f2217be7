"""A phone for protocol tests: a real Ed25519 key, records signed and chained by hand.

The reference client (sync/client/) drives the end-to-end tests; this one
lets a test build exactly the record it needs, including broken ones.
"""

from __future__ import annotations

import base64
import hashlib
import json
import uuid
from datetime import datetime, timedelta, timezone
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

SHANGHAI = timezone(timedelta(hours=8))
ZERO = "0" * 64


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def compact(obj: Any) -> bytes:
    return json.dumps(obj, separators=(",", ":"), ensure_ascii=False).encode()


def jws_hash(text: str) -> str:
    return hashlib.sha256(text.encode("ascii")).hexdigest()


def uid() -> str:
    return str(uuid.uuid4())


def field_day_start() -> datetime:
    """When a phone made now starts its field day: two hours ago, by its (Shanghai) clock. Its date is the day the
    server judges its inspections on, which is not UTC's date between 16:00 and 24:00 UTC."""
    return (datetime.now(SHANGHAI) - timedelta(hours=2)).replace(microsecond=0)


class TestPhone:
    __test__ = False

    def __init__(self, client, officer, headers: dict[str, str], label: str = "test phone") -> None:
        self.client, self.officer, self.headers = client, officer, headers
        self.key = Ed25519PrivateKey.generate()
        r = client.post("/api/v1/devices", json={"public_key": self.public_key, "label": label}, headers=headers)
        assert r.status_code == 201, r.json
        self.device_id = r.json["id"]
        self.seq, self.prev = 0, ZERO
        self.clock = field_day_start()

    @property
    def public_key(self) -> str:
        return b64(self.key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw))

    def sign(self, payload: dict[str, Any], header: dict[str, Any] | None = None, key=None) -> str:
        header = header or {"alg": "EdDSA", "kid": self.device_id, "typ": "fieldcase-record"}
        signing_input = f"{b64(compact(header))}.{b64(compact(payload))}"
        signature = (key or self.key).sign(signing_input.encode("ascii"))
        return f"{signing_input}.{b64(signature)}"

    def payload(self, type_: str, body: dict[str, Any], *, at: datetime | None = None, seq: int | None = None,
                prev: str | None = None, op: str | None = None) -> dict[str, Any]:
        self.clock += timedelta(seconds=30)
        return {"v": 1, "op": op or uid(), "seq": seq if seq is not None else self.seq + 1,
                "prev": prev if prev is not None else self.prev, "at": (at or self.clock).isoformat(),
                "by": self.officer.id, "type": type_, "body": body}

    def record(self, type_: str, body: dict[str, Any], **kw) -> str:
        """Sign the next record of this phone's chain and advance the chain."""
        text = self.sign(self.payload(type_, body, **kw))
        self.seq += 1
        self.prev = jws_hash(text)
        return text

    def push(self, records: list[Any], headers: dict[str, str] | None = None) -> dict[str, Any]:
        r = self.client.post("/api/v1/sync/push", json={"records": records}, headers=headers or self.headers)
        assert r.status_code == 200, r.json
        return r.json

    # Convenience builders for the common record types.
    def open_case(self, institution: dict[str, Any], client_case_id: str | None = None, **kw) -> tuple[str, str]:
        cid = client_case_id or uid()
        return cid, self.record("case.open", {"client_case_id": cid, "institution": institution}, **kw)

    def start(self, client_case_id: str, officers: list[str], inspection_id: str | None = None,
              **kw) -> tuple[str, str]:
        iid = inspection_id or uid()
        return iid, self.record("inspection.start", {"inspection_id": iid, "case": {"client_case_id": client_case_id},
                                                     "officers": officers}, **kw)

    def finding(self, inspection_id: str, category: str = "unlicensed", **kw) -> str:
        return self.record("inspection.finding", {"inspection_id": inspection_id, "finding_id": uid(),
                                                  "category": category, "description": "现场发现无证培训",
                                                  "evidence": []}, **kw)

    def end(self, inspection_id: str, outcome: str = "violation_found", **kw) -> str:
        return self.record("inspection.end", {"inspection_id": inspection_id, "outcome": outcome}, **kw)

    def evidence(self, inspection_id: str | None, data: bytes = b"photo-bytes", **kw) -> tuple[str, str]:
        eid = uid()
        body = {"evidence_id": eid, "inspection_id": inspection_id, "kind": "photo", "media_type": "image/jpeg",
                "sha256": hashlib.sha256(data).hexdigest(), "size": len(data),
                "captured_at": (self.clock + timedelta(seconds=1)).isoformat()}
        return eid, self.record("evidence.capture", body, **kw)
