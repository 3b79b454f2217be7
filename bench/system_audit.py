"""Whole-system audit throughput: `fieldcase verify` over a seeded server, against this machine's limits.

    .venv/bin/python bench/system_audit.py [--db sqlite|postgres|both] [--records 100000] [--devices 50]

Seeding (not timed): officers, one device each, and records signed and chained by hand as phones do, pushed
through the real push path (`sync.push.push` with the casework's `RecordApplier`, 500 records a transaction, on a
database whose commits sign custody tree heads as the API's do); each inspection is case.open, inspection.start,
one evidence.capture, five inspection.finding, a recording.interruption and inspection.end, so 10 % of the
records declare evidence. Every declared file (small, 1-4 KiB of random bytes) is then uploaded for real to the
local store and verified (`media.uploads.start_upload`, the store's resumable write, `verify_upload`).

Timed: `backend.casework.system_audit.audit` over everything, one process, every file re-hashed. Its progress
callbacks split the time: the custody log and heads, the ledger pass (JWS, chains, statuses and the derived rows
of each page of records), the derived tables from their side, the evidence items (custody events and files).

The same run measures two limits of this machine, one process each (the audit runs in one):
  * verify: Ed25519 verifications per second (`cryptography`) over the same records' signing inputs: the
    ledger pass must verify every one of them;
  * files: plain open + read + SHA-256 of the same stored files, per second (and SHA-256 MB/s over 64 MiB in
    memory, for scale).
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import io
import json
import os
import random
import sys
import time
import uuid
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

from common import SHANGHAI, ZERO, b64, compact, fresh_database, print_machine, table
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from sqlalchemy import func, select

from backend.bootstrap import database as signing_database
from backend.bootstrap import make_store, media_settings
from backend.casework.accounts import create_officer
from backend.casework.apply import RecordApplier
from backend.casework.system_audit import AuditOptions, audit
from backend.core.config import Settings
from backend.core.models import Evidence, LedgerRecord, Officer, Upload
from media import uploads
from media.custody.keys import signer_for
from sync.devices import enrol
from sync.push import push

PER_INSPECTION = 10
FINDINGS = 5
BATCH = 500
CATEGORIES = ["unlicensed", "staff", "content", "hours", "pricing", "fire_safety", "advertising", "fees"]


class Phone:
    """Signs and chains records by hand (PROTOCOL §3), and remembers the files it declared."""

    def __init__(self, officer_id: str, device_id: str, key: Ed25519PrivateKey, rng: random.Random) -> None:
        self.officer_id, self.device_id, self.key, self.rng = officer_id, device_id, key, rng
        self.seq, self.prev = 0, ZERO
        self.clock = datetime(2026, 11, 2, 8, 30, tzinfo=SHANGHAI)
        self.files: list[tuple[str, bytes]] = []

    def record(self, type_: str, body: dict) -> str:
        self.clock += timedelta(seconds=20)
        self.seq += 1
        payload = {"v": 1, "op": str(uuid.uuid4()), "seq": self.seq, "prev": self.prev, "at": self.clock.isoformat(),
                   "by": self.officer_id, "type": type_, "body": body}
        head = b64(compact({"alg": "EdDSA", "kid": self.device_id, "typ": "fieldcase-record"}))
        signing_input = f"{head}.{b64(compact(payload))}"
        text = f"{signing_input}.{b64(self.key.sign(signing_input.encode('ascii')))}"
        self.prev = hashlib.sha256(text.encode("ascii")).hexdigest()
        return text

    def inspection(self, partner: str, n: int) -> list[str]:
        cid, iid, eid = str(uuid.uuid4()), str(uuid.uuid4()), str(uuid.uuid4())
        data = self.rng.randbytes(self.rng.randint(1024, 4096))
        self.files.append((eid, data))
        out = [self.record("case.open", {"client_case_id": cid, "summary": "群众举报无证办学", "institution": {
                   "name": f"西湖区第{n % 400}培训中心", "region": "330106", "address": f"文三路 {n % 400} 号"}}),
               self.record("inspection.start", {"inspection_id": iid, "case": {"client_case_id": cid},
                                                "officers": [self.officer_id, partner],
                                                "location": {"lat": 30.27, "lon": 120.12, "accuracy_m": 8.0}}),
               self.record("evidence.capture", {"evidence_id": eid, "inspection_id": iid, "kind": "photo",
                                                "media_type": "image/jpeg", "sha256": hashlib.sha256(data).hexdigest(),
                                                "size": len(data), "captured_at": self.clock.isoformat()})]
        for _ in range(FINDINGS):
            out.append(self.record("inspection.finding", {
                "inspection_id": iid, "finding_id": str(uuid.uuid4()), "category": self.rng.choice(CATEGORIES),
                "description": "现场检查发现：该机构未取得办学许可，正在开展学科类培训。", "evidence": [eid]}))
        start = self.clock
        out.append(self.record("recording.interruption", {
            "inspection_id": iid, "camera_serial": f"CAM-{self.device_id[-4:]}", "started_at": start.isoformat(),
            "ended_at": (start + timedelta(seconds=30)).isoformat(), "reason": "battery"}))
        out.append(self.record("inspection.end", {"inspection_id": iid, "outcome": "violation_found"}))
        return out


@dataclass
class Seeded:
    records: list[str] = field(default_factory=list)
    keys: dict[str, bytes] = field(default_factory=dict)
    files: int = 0
    seconds: float = 0.0


def seed(settings: Settings, records: int, devices: int, rng: random.Random) -> Seeded:
    db = signing_database(settings, signing=True)
    store, media = make_store(settings), media_settings(settings)
    applier, out = RecordApplier(), Seeded()
    started = time.perf_counter()
    with db.transaction() as s:
        officers = [create_officer(s, username=f"bench{n}", password="bench-password-1234", name=f"警员{n}",
                                   department="education", region="330106", roles=["officer"],
                                   cert_number=f"ZJ-BENCH-{n}", cert_valid_from=date(2025, 1, 1),
                                   cert_valid_until=date(2029, 12, 31), kdf="scrypt:1024:8:1",
                                   now=datetime.now(UTC))
                    for n in range(devices + 1)]
        phones = []
        for officer in officers[:devices]:
            key = Ed25519PrivateKey.generate()
            raw = key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
            device = enrol(s, officer, b64(raw), "bench phone")
            phones.append(Phone(officer.id, device.id, key, rng))
            out.keys[device.id] = raw
        partner = officers[-1].id
    per_phone = records // devices
    n = 0
    for phone in phones:
        texts: list[str] = []
        while len(texts) < per_phone:
            texts += phone.inspection(partner, n)
            n += 1
        for start in range(0, len(texts), BATCH):
            with db.transaction() as s:
                officer = s.get(Officer, phone.officer_id)
                answer = push(s, officer, texts[start:start + BATCH], applier=applier, now=datetime.now(UTC))
            bad = [r for r in answer["results"] if r["status"] != "applied"]
            if bad:
                sys.exit(f"seeding failed: {bad[:3]}")
        out.records += texts
        print(f"  pushed {len(out.records):,} records", end="\r", flush=True)
    print()
    for phone in phones:
        for start in range(0, len(phone.files), 200):
            with db.transaction() as s:
                officer = s.get(Officer, phone.officer_id)
                for eid, data in phone.files[start:start + 200]:
                    now = datetime.now(UTC)
                    uploads.start_upload(s, store, officer, eid, "http://bench/content", now=now)
                    upload_id = s.scalar(select(Upload.id).where(Upload.evidence_id == eid, Upload.status == "open"))
                    store.write(upload_id, io.BytesIO(data), 0, len(data), len(data))
                    uploads.verify_upload(s, store, upload_id, media, now=now)
                    out.files += 1
        print(f"  uploaded {out.files:,} files", end="\r", flush=True)
    print()
    out.seconds = time.perf_counter() - started
    db.dispose()
    return out


class Stages:
    """The audit's progress callbacks, as the wall-clock time each stage ended."""

    def __init__(self) -> None:
        self.t0 = time.perf_counter()
        self.last: dict[str, float] = {}
        self.first: dict[str, float] = {}

    def begin(self, total: int) -> None:
        self.t0 = time.perf_counter()

    def advance(self, stage: str, steps: int) -> None:
        now = time.perf_counter()
        self.first.setdefault(stage, now)
        self.last[stage] = now


def verify_limit(texts: list[str], keys: dict[str, bytes], min_seconds: float = 3.0) -> float:
    items = []
    for text in texts[:20000]:
        head, payload, signature = text.split(".")
        kid = json.loads(base64.urlsafe_b64decode(head + "=" * (-len(head) % 4)))["kid"]
        items.append((Ed25519PublicKey.from_public_bytes(keys[kid]), f"{head}.{payload}".encode("ascii"),
                      base64.urlsafe_b64decode(signature + "==")))
    done, t0 = 0, time.perf_counter()
    while time.perf_counter() - t0 < min_seconds:
        for key, message, signature in items:
            key.verify(signature, message)
        done += len(items)
    return done / (time.perf_counter() - t0)


def files_limit(root: Path) -> tuple[float, float]:
    """Plain open + read + SHA-256 of every stored object, per second; and SHA-256 MB/s in memory."""
    paths = [p for p in (root / "objects").rglob("*") if p.is_file()]
    t0 = time.perf_counter()
    for path in paths:
        with open(path, "rb") as fh:
            hashlib.sha256(fh.read()).hexdigest()
    per_file = len(paths) / (time.perf_counter() - t0)
    block = os.urandom(64 * 1024 * 1024)
    t0 = time.perf_counter()
    hashlib.sha256(block).hexdigest()
    return per_file, 64 / (time.perf_counter() - t0)


def run(kind: str, records: int, devices: int, seed_value: int) -> list[str]:
    with fresh_database(kind) as bdb:
        settings = Settings.from_env({**bdb.env, "FIELDCASE_INSTANCE_DIR": str(bdb.instance_dir)})
        print(f"{kind}: seeding {records:,} records from {devices} devices ...", flush=True)
        seeded = seed(settings, records, devices, random.Random(seed_value))
        print(f"  seeded in {seeded.seconds:.0f} s (not timed)")
        db = signing_database(settings)
        stages = Stages()
        with db.session() as s:
            total_records = s.scalar(select(func.count()).select_from(LedgerRecord))
            items = s.scalar(select(func.count()).select_from(Evidence))
            started = time.perf_counter()
            report = audit(s, store=make_store(settings), keys=signer_for(settings).verification_keys(),
                           clock=lambda: datetime.now(UTC), options=AuditOptions(head_interval=timedelta(days=1)),
                           progress=stages)
            elapsed = time.perf_counter() - started
        db.dispose()
        if not report.ok:
            for problem in report.problems[:10]:
                print("  " + problem.line())
            sys.exit(f"the audit of a healthy server found {len(report.problems)} problem(s)")
        tree = stages.last["custody log"] - stages.t0
        ledger = stages.last["ledger"] - stages.last["custody log"]
        tables = stages.first["evidence"] - stages.last["ledger"]
        evidence = elapsed - (stages.first["evidence"] - stages.t0)
        verify_rate = verify_limit(seeded.records, seeded.keys)
        file_rate, sha_mb = files_limit(settings.instance_dir / "evidence")
        c = report.counts
        print(f"  audit: {elapsed:.1f} s, OK: {c['leaves']:,} leaves, {c['heads']:,} heads, {total_records:,} records, "
              f"{items:,} evidence items, {c['files']:,} files ({c['bytes'] / 1e6:.1f} MB)")
        print(f"  stages: custody log {tree:.1f} s, ledger + derived rows {ledger:.1f} s, derived tables "
              f"{tables:.1f} s, evidence + files {evidence:.1f} s")
        print(f"  limits (one process): {verify_rate:,.0f} Ed25519 verifies/s; plain open+read+SHA-256 "
              f"{file_rate:,.0f} files/s; SHA-256 {sha_mb:,.0f} MB/s in memory")
        return [kind, f"{total_records:,}", f"{items:,}", f"{elapsed:.0f} s", f"{total_records / ledger:,.0f}",
                f"{total_records / ledger / verify_rate:.0%}", f"{items / evidence:,.0f}",
                f"{items / evidence / file_rate:.0%}", f"{total_records / elapsed:,.0f}"]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--db", choices=["sqlite", "postgres", "both"], default="sqlite")
    parser.add_argument("--records", type=int, default=100_000)
    parser.add_argument("--devices", type=int, default=50)
    parser.add_argument("--seed", type=int, default=20261208)
    args = parser.parse_args(argv)
    print_machine()
    print(f"system audit bench: {args.records:,} records ({PER_INSPECTION} a inspection, one evidence item each), "
          f"{args.devices} devices; every file re-hashed")
    kinds = ["sqlite", "postgres"] if args.db == "both" else [args.db]
    rows = [run(kind, args.records, args.devices, args.seed) for kind in kinds]
    print()
    print(table(["database", "records", "evidence items", "audit", "ledger records/s", "of verify limit",
                 "evidence items/s", "of plain file hashing", "overall records/s"], rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
