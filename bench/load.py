"""Load: many phones pushing, pulling and uploading at once, then a check that nothing was lost or doubled.

Each simulated phone is the reference client (`sync.client.Phone`) with its own officer, device key and
outbox folder, in a thread of its own, against the production server (gunicorn) on a fresh database
(PostgreSQL by default). For `--seconds` every phone loops like an officer's phone on a busy day:

  1. offline: open a case for one of a few institutions (so phones of the same department merge into one
     case), start an inspection with a colleague, capture evidence (a real small JPEG, or random bytes)
     and record a finding citing it, `--findings` times, end the inspection;
  2. push its outbox, pull the change feed, upload its pending files (plan, PUT content, complete).

With `--visits N` a phone records N inspections offline before it syncs: a backlog whose first push names
several new institutions in random order, which is what makes concurrent first pushes deadlock on PostgreSQL.

Phones belong to several departments (education, market, culture), so the same institutions also get one
case per department. Every HTTP exchange the phones make is timed by a metered `requests.Session`, retries
included: per request type the bench prints count, requests/s, p50/p95/p99 latency, 503 answers (which
the phone retries after back-off) and other error statuses; per phone operation (a whole push, pull,
upload round) latency and failures. It also prints the CPU seconds the server, the PostgreSQL backends and
the bench itself used, and what the server log and PostgreSQL log said (deadlocks, unique-key races).

When the time is up, each phone finishes its loop, then pushes, uploads and pulls until it has nothing
left (the "drain", not timed), and the bench checks the database against the phones:

  * ledger: per device every record the phone made is in the ledger once (same op and hash), seq 1..head
    without gaps, the device head is the phone's last record, every row `applied`; nothing deferred,
    quarantined or released as a gap; no ledger row the phones did not make; nothing dropped on a phone;
  * evidence: every file captured is `verified` on the server with the declared hash and size;
  * merges: exactly one institution per name, exactly one open case per (institution, department), every
    phone's client_case_id aliased to that case (and known to the phone, from push refs or pull), one
    non-merged alias per case; inspections and findings counted once;
  * pull: every phone's pulled copy holds every case, the aliases of its own cases and the verdict
    `verified` on each of its files;
  * self-test: the same checks run on copies of the end state with one planted fault each (a lost ledger
    record, an unverified file, a second open case) must catch every one, or a pass would prove nothing.

It prints "ledger check: OK", "evidence check: OK", "merge check: OK", "pull check: OK", the self-test's
"caught N of N" and finally "load check: OK"; it exits 1 on any mismatch, a missed planted fault, a phone
thread that crashed, or when no cycle completed.

Run from the repository root:

    .venv/bin/python bench/load.py                                  # PostgreSQL, 16 phones, 60 s, 2 workers
    .venv/bin/python bench/load.py --phones 16 --seconds 60 --workers 1
    .venv/bin/python bench/load.py --short                          # the CI form: 4 phones, 15 s
    .venv/bin/python bench/load.py --short --db sqlite
    .venv/bin/python bench/load.py --phones 16 --seconds 20 --visits 4 --institutions 8   # offline backlogs
"""

from __future__ import annotations

import argparse
import glob
import io
import os
import random
import re
import shutil
import struct
import sys
import tempfile
import threading
import time
import traceback
import uuid
from collections import Counter, defaultdict
from contextlib import ExitStack
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, NamedTuple
from urllib.parse import urlsplit

import requests
from common import (
    LOG_DIR,
    PASSWORD,
    CpuMeter,
    fresh_database,
    live_server,
    make_officers,
    percentile,
    print_machine,
    table,
    wait_quiet,
)
from sqlalchemy import func, select
from sqlalchemy.engine import make_url

from backend.core.db import Database
from backend.core.models import (
    Case,
    CaseAlias,
    ChainGap,
    DeferredRecord,
    Device,
    Evidence,
    Finding,
    Inspection,
    Institution,
    LedgerRecord,
    QuarantinedRecord,
)
from sync.client import ApiError, Phone

REGION = "330106"
# Cycled over the phones: several phones per department, so merges happen across phones in each of them.
DEPARTMENTS = ("education", "market", "education", "market", "education", "culture")
INSTITUTIONS = ["明日之星培训中心", "启航教育", "博学书院", "小牛顿科学馆", "青苗艺术学校", "智慧树托管中心",
                "未来之光学堂", "星火编程营"]
CATEGORIES = ["unlicensed", "staff", "content", "hours", "pricing", "fire_safety", "advertising", "fees"]
FINDING_TEXT = "现场检查发现：该机构未取得办学许可，正在面向中小学生开展学科类培训，现场学员约二十人。"
OPEN_STATUSES_EXCLUDED = ("closed", "not_penalised", "transferred", "dismissed")
PG_LOG = os.environ.get("FIELDCASE_BENCH_PG_LOG", "/var/log/postgresql/postgresql-15-main.log")
SHORT = {"phones": 4, "seconds": 15.0}
LONG = {"phones": 16, "seconds": 60.0}


# --- what the phones send ------------------------------------------------------------------------------------

def jpeg_bases(count: int = 8, size: tuple[int, int] = (320, 240)) -> list[bytes]:
    """A few real JPEGs of camera-like noise (tens of KiB each): what a photo upload costs the server."""
    from PIL import Image

    out = []
    for n in range(count):
        bands = [Image.effect_noise(size, 30 + 7 * n + 5 * band) for band in range(3)]
        buf = io.BytesIO()
        Image.merge("RGB", bands).save(buf, format="JPEG", quality=85)
        out.append(buf.getvalue())
    return out


def unique_jpeg(base: bytes, tag: str) -> bytes:
    """The base JPEG with a COM segment right after SOI: still a valid JPEG, but distinct bytes and hash,
    so every capture is a file of its own (the server stores identical bytes once)."""
    comment = tag.encode("ascii")
    return base[:2] + b"\xff\xfe" + struct.pack(">H", len(comment) + 2) + comment + base[2:]


# --- timing every HTTP exchange ------------------------------------------------------------------------------

_EVIDENCE = re.compile(r"^/api/v1/evidence/[^/]+(/[a-z]+)?$")


def request_kind(method: str, url: str) -> str:
    """The operation type of one request, from its method and path."""
    path = urlsplit(url).path
    named = {("POST", "/api/v1/sync/push"): "push", ("GET", "/api/v1/sync/pull"): "pull",
             ("POST", "/api/v1/auth/token"): "login", ("POST", "/api/v1/auth/refresh"): "refresh",
             ("POST", "/api/v1/devices"): "enrol"}
    if (method, path) in named:
        return named[(method, path)]
    match = _EVIDENCE.match(path)
    if match:
        tail = match.group(1) or ""
        return {("POST", "/uploads"): "upload plan", ("PUT", "/content"): "upload PUT",
                ("HEAD", "/content"): "upload HEAD", ("POST", "/complete"): "upload complete",
                ("GET", ""): "evidence GET"}.get((method, tail), f"{method} evidence{tail}")
    return f"{method} {path}"


@dataclass
class Sample:
    kind: str
    status: int        # 0: no answer (connection error, timeout)
    seconds: float
    reason: str = ""   # for a non-2xx answer: the start of its message (a 503 says whether admission or database)


class MeteredSession(requests.Session):
    """A requests.Session that times every exchange, retries included (the phone's `_call` retries through it).

    `sink` is swapped from the timed run's list to the drain's list when the run ends.
    """

    def __init__(self, balance: list[str] | None = None, start: int = 0) -> None:
        super().__init__()
        self.sink: list[Sample] = []
        # --api-processes: a load balancer without affinity, in front of the phone: each request to the API goes
        # to the next process in turn (the phone knows only the first base URL; presigned URLs pass untouched).
        self.balance = balance if balance and len(balance) > 1 else None
        self.turn = start

    def request(self, method: str | bytes, url: str | bytes, *args: Any, **kwargs: Any) -> requests.Response:
        method_, url_ = str(method.decode() if isinstance(method, bytes) else method).upper(), str(url)
        if self.balance and url_.startswith(self.balance[0] + "/"):
            url_ = self.balance[self.turn % len(self.balance)] + url_[len(self.balance[0]):]
            self.turn += 1
            # As a load balancer forwards it: the Host the phone asked for, so URLs the server writes (upload
            # plans) name the balanced address, not the process that happened to answer.
            kwargs["headers"] = {**(kwargs.get("headers") or {}), "Host": urlsplit(self.balance[0]).netloc}
        t0 = time.perf_counter()
        try:
            resp = super().request(method_, url_, *args, **kwargs)
        except requests.RequestException as exc:
            cause = exc.args[0] if exc.args else exc
            reason = getattr(cause, "reason", cause)  # urllib3 wraps the socket error in MaxRetryError.reason
            self.sink.append(Sample(request_kind(method_, url_), 0, time.perf_counter() - t0,
                                    f"{exc.__class__.__name__}: {str(reason)[:80]}"))
            raise
        elapsed = time.perf_counter() - t0
        reason = ""
        if not 200 <= resp.status_code < 300:
            try:
                reason = str(resp.json().get("message", ""))[:60]
            except (ValueError, AttributeError):
                reason = resp.text[:60]
        self.sink.append(Sample(request_kind(method_, url_), resp.status_code, elapsed, reason))
        return resp


# --- one phone -----------------------------------------------------------------------------------------------

@dataclass
class Opened:
    client_case_id: str
    institution: str
    department: str


@dataclass
class Lane:
    """One simulated phone: its officer, client, what it made, and what it saw."""

    n: int
    officer: dict[str, str]
    department: str
    partner_id: str
    phone: Phone
    session: MeteredSession
    rng: random.Random
    opened: list[Opened] = field(default_factory=list)
    inspections: int = 0
    findings: int = 0
    captured: int = 0
    bytes_captured: int = 0
    cycles: int = 0
    run_samples: list[Sample] = field(default_factory=list)
    drain_samples: list[Sample] = field(default_factory=list)
    ops: dict[str, list[float]] = field(default_factory=lambda: defaultdict(list))
    op_failures: list[tuple[str, str]] = field(default_factory=list)
    push_results: Counter[str] = field(default_factory=Counter)
    upload_results: Counter[str] = field(default_factory=Counter)
    unfinished_after_run: bool = False
    crash: str | None = None


@dataclass
class Workload:
    """What a phone records offline in one cycle, before it syncs."""

    institutions: list[dict[str, str]]
    findings: int       # per inspection, each citing one file
    evidence: str       # "jpeg" or "random"
    evidence_kb: int    # size of a random-bytes file
    visits: int         # inspections recorded offline per cycle (a backlog names several institutions per push)
    bases: list[bytes] = field(default_factory=list)


def visit(lane: Lane, work: Workload) -> None:
    """One inspection recorded offline: case.open, inspection.start, findings with evidence, inspection.end."""
    phone, rng = lane.phone, lane.rng
    institution = rng.choice(work.institutions)
    where = {"lat": round(30.27 + rng.random() / 50, 6), "lon": round(120.12 + rng.random() / 50, 6),
             "accuracy_m": 8.0}
    client_case_id = phone.open_case(institution, summary="群众举报无证办学")
    lane.opened.append(Opened(client_case_id, institution["name"], lane.department))
    inspection_id = phone.start_inspection(client_case_id, officers=[lane.partner_id], location=where)
    lane.inspections += 1
    for _ in range(work.findings):
        if work.evidence == "jpeg":
            data, kind, media_type = unique_jpeg(rng.choice(work.bases), uuid.uuid4().hex), "photo", "image/jpeg"
        else:
            data, kind, media_type = rng.randbytes(work.evidence_kb * 1024), "document", "application/octet-stream"
        evidence_id = phone.capture_evidence(data, kind, media_type, inspection_id=inspection_id, location=where)
        lane.captured += 1
        lane.bytes_captured += len(data)
        phone.add_finding(inspection_id, rng.choice(CATEGORIES), FINDING_TEXT, evidence=[evidence_id])
        lane.findings += 1
    phone.end_inspection(inspection_id, "violation_found", notes="已责令停止培训，限期整改")


def _describe(exc: BaseException) -> str:
    if isinstance(exc, ApiError):
        return f"HTTP {exc.status}: {exc.message[:120]}"
    return f"{exc.__class__.__name__}: {str(exc)[:120]}"


def sync_once(lane: Lane) -> None:
    """Push, pull, upload: each timed as a whole; a failure is counted and the next step still runs."""
    for name in ("push", "pull", "upload"):
        t0 = time.perf_counter()
        try:
            if name == "push":
                summary = lane.phone.push()
                lane.push_results.update(summary["counts"])
                if summary["dropped"] or summary["device_error"]:
                    lane.op_failures.append((name, f"dropped {summary['dropped']}, {summary['device_error']}"))
            elif name == "pull":
                lane.phone.pull()
            else:
                for result in lane.phone.upload_pending():
                    lane.upload_results[result["status"]] += 1
                    if result.get("error"):
                        lane.op_failures.append((name, str(result["error"])[:160]))
        except (ApiError, requests.RequestException) as exc:
            lane.op_failures.append((name, _describe(exc)))
        lane.ops[name].append(time.perf_counter() - t0)


def finished(lane: Lane) -> bool:
    """Nothing left to send: every record acknowledged by a head, every file verified."""
    stats = lane.phone.stats()
    return not lane.phone.outbox() and stats["evidence_waiting"] == 0


def run_lane(lane: Lane, go: threading.Barrier, deadline: list[float], work: Workload) -> None:
    try:
        go.wait()
        while time.monotonic() < deadline[0]:
            t0 = time.perf_counter()
            for _ in range(work.visits):
                visit(lane, work)
            sync_once(lane)
            lane.ops["cycle"].append(time.perf_counter() - t0)
            lane.cycles += 1
        lane.unfinished_after_run = not finished(lane)
    except Exception:  # a crashed phone is reported and fails the bench
        lane.crash = traceback.format_exc()


def drain(lane: Lane, rounds: int = 5) -> int:
    """After the run: push, upload and pull until the phone has nothing left, then pull once more so its
    copy of the feed can be checked against the database; returns the rounds needed."""
    lane.session.sink = lane.drain_samples
    needed = rounds
    for n in range(rounds):
        if finished(lane):
            needed = n
            break
        before = len(lane.op_failures)
        sync_once(lane)
        if len(lane.op_failures) > before:
            time.sleep(1.0)
    try:
        lane.phone.pull()
    except (ApiError, requests.RequestException) as exc:
        lane.op_failures.append(("final pull", _describe(exc)))
    return needed


# --- the end checks ------------------------------------------------------------------------------------------

@dataclass
class Checks:
    ledger: list[str] = field(default_factory=list)
    evidence: list[str] = field(default_factory=list)
    merges: list[str] = field(default_factory=list)
    pull: list[str] = field(default_factory=list)
    facts: dict[str, int] = field(default_factory=dict)


class LedgerRow(NamedTuple):
    device_id: str
    seq: int
    op: str
    hash: str
    jws: str
    status: str
    code: str | None


class DeviceRow(NamedTuple):
    head_seq: int
    head_hash: str


class EvidenceRow(NamedTuple):
    status: str
    sha256: str
    size: int


class CaseRow(NamedTuple):
    institution_id: str
    department_code: str
    status: str


class AliasRow(NamedTuple):
    case_id: str
    device_id: str
    merged: bool


@dataclass
class ServerState:
    """What the database holds at the end, as plain values (so the checks can also be run on a copy with
    planted faults, to show they catch them)."""

    ledger: list[LedgerRow]
    devices: dict[str, DeviceRow]
    deferred: int
    quarantined: int
    gaps: int
    evidence: dict[str, EvidenceRow]
    cases: dict[str, CaseRow]
    aliases: dict[str, AliasRow]
    institutions: dict[str, str]  # id -> name
    inspections: int
    findings: int


def read_state(url: str) -> ServerState:
    db = Database(url)
    try:
        with db.session() as s:
            def count(model: Any) -> int:
                return s.scalar(select(func.count()).select_from(model)) or 0

            return ServerState(
                ledger=[LedgerRow(*row) for row in s.execute(select(
                    LedgerRecord.device_id, LedgerRecord.seq, LedgerRecord.op, LedgerRecord.hash, LedgerRecord.jws,
                    LedgerRecord.status, LedgerRecord.code))],
                devices={row.id: DeviceRow(row.head_seq, row.head_hash)
                         for row in s.execute(select(Device.id, Device.head_seq, Device.head_hash))},
                deferred=count(DeferredRecord), quarantined=count(QuarantinedRecord), gaps=count(ChainGap),
                evidence={row.id: EvidenceRow(row.status, row.sha256, row.size)
                          for row in s.execute(select(Evidence.id, Evidence.status, Evidence.sha256, Evidence.size))},
                cases={row.id: CaseRow(row.institution_id, row.department_code, row.status)
                       for row in s.execute(select(Case.id, Case.institution_id, Case.department_code, Case.status))},
                aliases={row.client_case_id: AliasRow(row.case_id, row.device_id, row.merged)
                         for row in s.execute(select(CaseAlias.client_case_id, CaseAlias.case_id,
                                                     CaseAlias.device_id, CaseAlias.merged))},
                institutions={row.id: row.name for row in s.execute(select(Institution.id, Institution.name))},
                inspections=count(Inspection), findings=count(Finding))
    finally:
        db.dispose()


def check(state: ServerState, lanes: list[Lane]) -> Checks:
    """Compare the database with what the phones made (see the module docstring for what is checked)."""
    out = Checks()
    ledger, devices, evidence, cases, aliases = (state.ledger, state.devices, state.evidence, state.cases,
                                                 state.aliases)
    deferred, quarantined, gaps = state.deferred, state.quarantined, state.gaps
    inspections, findings = state.inspections, state.findings

    # Ledger: per device, exactly the phone's records, once, in a chain 1..head.
    by_device: dict[str, list[Any]] = defaultdict(list)
    for row in ledger:
        by_device[row.device_id].append(row)
    made = 0
    for lane in lanes:
        device_id = lane.phone.device_id or ""
        records = lane.phone.records()
        made += len(records)
        if lane.phone.dropped():
            out.ledger.append(f"phone {lane.n}: {len(lane.phone.dropped())} records dropped after a rejection")
        not_acked = Counter(r.status for r in records if r.status != "acked")
        if not_acked:
            out.ledger.append(f"phone {lane.n}: records not acknowledged by a head: {dict(not_acked)}")
        rows = sorted(by_device.pop(device_id, []), key=lambda r: r.seq)
        seqs = [r.seq for r in rows]
        if seqs != list(range(1, len(rows) + 1)):
            missing = sorted(set(range(1, max(seqs, default=0) + 1)) - set(seqs))
            out.ledger.append(f"phone {lane.n}: ledger seqs not 1..{len(rows)} (missing {missing[:10]}, "
                              f"{len(seqs) - len(set(seqs))} doubled)")
        mine = {r.op: (r.seq, r.hash, r.jws) for r in records}
        theirs = {r.op: (r.seq, r.hash, r.jws) for r in rows}
        if len(theirs) != len(rows):
            out.ledger.append(f"phone {lane.n}: an op appears more than once in the ledger")
        if mine != theirs:
            lost = len(mine.keys() - theirs.keys())
            extra = len(theirs.keys() - mine.keys())
            differ = sum(1 for op in mine.keys() & theirs.keys() if mine[op] != theirs[op])
            out.ledger.append(f"phone {lane.n}: ledger differs from the phone: {lost} missing, {extra} extra, "
                              f"{differ} with another seq/hash/text")
        statuses = Counter((r.status, r.code) for r in rows if r.status != "applied")
        if statuses:
            out.ledger.append(f"phone {lane.n}: ledger rows not applied: {dict(statuses)}")
        device = devices.get(device_id)
        last = max(records, key=lambda r: r.seq) if records else None
        if device is None:
            out.ledger.append(f"phone {lane.n}: device {device_id} unknown to the server")
        elif last is not None and (device.head_seq, device.head_hash) != (last.seq, last.hash):
            out.ledger.append(f"phone {lane.n}: device head {device.head_seq} is not the phone's last record "
                              f"{last.seq}")
    for device_id, rows in by_device.items():
        out.ledger.append(f"{len(rows)} ledger rows of device {device_id}, which no phone of the bench made")
    for name, count in (("deferred records", deferred), ("quarantined records", quarantined),
                        ("released chain gaps", gaps)):
        if count:
            out.ledger.append(f"{count} {name}")
    if len(ledger) != made:
        out.ledger.append(f"the ledger holds {len(ledger)} records, the phones made {made}")
    out.facts.update(devices=len(lanes), records=made, ledger=len(ledger))

    # Evidence: every captured file verified with the declared hash and size.
    captured = 0
    for lane in lanes:
        for item in lane.phone.evidence_files():
            captured += 1
            server = evidence.get(item["evidence_id"])
            if server is None:
                out.evidence.append(f"phone {lane.n}: evidence {item['evidence_id']} not declared on the server")
                continue
            if server.status != "verified":
                out.evidence.append(f"phone {lane.n}: evidence {item['evidence_id']} is {server.status} on the "
                                    f"server ({item['status']} on the phone: {item['last_error']})")
            if (server.sha256, server.size) != (item["sha256"], item["size"]):
                out.evidence.append(f"phone {lane.n}: evidence {item['evidence_id']} hash/size differ")
            if item["status"] != "verified":
                out.evidence.append(f"phone {lane.n}: evidence {item['evidence_id']} is {item['status']} on the "
                                    f"phone")
    if len(evidence) != captured:
        out.evidence.append(f"the server holds {len(evidence)} evidence items, the phones captured {captured}")
    out.facts.update(evidence=captured, verified=sum(1 for e in evidence.values() if e.status == "verified"))

    # Merges: one institution per name, one open case per (institution, department), every alias on it.
    by_name: dict[str, list[str]] = defaultdict(list)
    for inst_id, inst_name in state.institutions.items():
        by_name[inst_name].append(inst_id)
    named = {o.institution for lane in lanes for o in lane.opened}
    for name in sorted(named):
        if len(by_name.get(name, [])) != 1:
            out.merges.append(f"institution {name}: {len(by_name.get(name, []))} institutions")
    open_cases: dict[tuple[str, str], list[str]] = defaultdict(list)
    for case_id, case in cases.items():
        if case.status not in OPEN_STATUSES_EXCLUDED:
            open_cases[(case.institution_id, case.department_code)].append(case_id)
    for key, ids in open_cases.items():
        if len(ids) != 1:
            out.merges.append(f"{len(ids)} open cases for institution {key[0]}, department {key[1]}")
    pairs = {(by_name[o.institution][0], o.department) for lane in lanes for o in lane.opened
             if len(by_name.get(o.institution, [])) == 1}
    if set(open_cases) != pairs:
        out.merges.append(f"open cases for {len(open_cases)} (institution, department) pairs, the phones named "
                          f"{len(pairs)}")
    opened = 0
    merged = 0
    for lane in lanes:
        for o in lane.opened:
            opened += 1
            alias = aliases.get(o.client_case_id)
            if alias is None:
                out.merges.append(f"phone {lane.n}: client_case_id {o.client_case_id} has no alias")
                continue
            merged += alias.merged
            expected = open_cases.get((by_name.get(o.institution, ["?"])[0], o.department), [])
            if [alias.case_id] != expected:
                out.merges.append(f"phone {lane.n}: {o.client_case_id} aliased to {alias.case_id}, the open case "
                                  f"of {o.institution}/{o.department} is {expected}")
            if alias.device_id != lane.phone.device_id:
                out.merges.append(f"phone {lane.n}: alias {o.client_case_id} belongs to device {alias.device_id}")
            known = lane.phone.server_case_id(o.client_case_id)
            if known != alias.case_id:
                out.merges.append(f"phone {lane.n}: the phone thinks {o.client_case_id} is case {known}, "
                                  f"the server says {alias.case_id}")
    if len(aliases) != opened:
        out.merges.append(f"{len(aliases)} case aliases, the phones opened {opened} cases")
    openers = Counter(a.case_id for a in aliases.values() if not a.merged)
    for case_id in cases:
        if openers.get(case_id, 0) != 1:
            out.merges.append(f"case {case_id}: {openers.get(case_id, 0)} non-merged aliases, expected 1")
    expected_inspections = sum(lane.inspections for lane in lanes)
    expected_findings = sum(lane.findings for lane in lanes)
    if (inspections, findings) != (expected_inspections, expected_findings):
        out.merges.append(f"{inspections} inspections and {findings} findings on the server, the phones made "
                          f"{expected_inspections} and {expected_findings}")
    out.facts.update(cases=len(cases), pairs=len(pairs), opened=opened, merged=merged,
                     institutions=len(state.institutions), inspections=inspections, findings=findings)

    # Pull: after its last pull every phone (all are district officers of REGION, where every case is) holds
    # every case, the alias of every case it opened, and the final verdict on every file it uploaded.
    for lane in lanes:
        phone = lane.phone
        pulled_cases = {c["id"] for c in phone.changes("case")}
        if pulled_cases != set(cases):
            out.pull.append(f"phone {lane.n}: pulled {len(pulled_cases)} cases, the server has {len(cases)} "
                            f"({len(set(cases) - pulled_cases)} missing)")
        pulled_aliases = {c["id"]: c["data"].get("case_id") for c in phone.changes("case_alias")}
        wrong = [o.client_case_id for o in lane.opened
                 if o.client_case_id in aliases and pulled_aliases.get(o.client_case_id)
                 != aliases[o.client_case_id].case_id]
        if wrong:
            out.pull.append(f"phone {lane.n}: {len(wrong)} of its case aliases missing or wrong in its pulled copy")
        pulled_evidence = {c["id"]: c["data"].get("status") for c in phone.changes("evidence")}
        unverified = [e["evidence_id"] for e in phone.evidence_files()
                      if pulled_evidence.get(e["evidence_id"]) != "verified"]
        if unverified:
            out.pull.append(f"phone {lane.n}: {len(unverified)} of its files not pulled as verified")
    return out


FAULTS = {"ledger": "a lost ledger record", "evidence": "a file left unverified", "merges": "a second open case"}


def plant_faults(state: ServerState) -> dict[str, ServerState]:
    """Copies of the end state with one fault each, as a broken server could leave them: the checks must
    catch every one, or a passing run would prove nothing."""
    out: dict[str, ServerState] = {}
    if state.ledger:
        lost = max(state.ledger, key=lambda r: (r.device_id, r.seq))
        out["ledger"] = replace(state, ledger=[r for r in state.ledger if r is not lost])
    if state.evidence:
        some = next(iter(state.evidence))
        out["evidence"] = replace(state, evidence={**state.evidence,
                                                   some: state.evidence[some]._replace(status="declared")})
    if state.cases:
        case = next(iter(state.cases.values()))
        out["merges"] = replace(state, cases={**state.cases, "case_planted": case})
    return out


def self_test(state: ServerState, lanes: list[Lane]) -> dict[str, bool]:
    """Which planted faults the checks caught."""
    return {kind: bool(getattr(check(faulty, lanes), kind)) for kind, faulty in plant_faults(state).items()}


# --- logs ----------------------------------------------------------------------------------------------------

_APP_LINE = re.compile(r"^\S+ \S+ (WARNING|ERROR|CRITICAL) (\S+): (.*)$")
_GUNICORN_LINE = re.compile(r"^\[[^]]+\] \[\d+\] \[(WARNING|ERROR|CRITICAL)\] (.*)$")


def server_log_summary(name: str) -> Counter[str]:
    """Warnings and errors of the server log, counted by message (key values and pids cut off)."""
    log = LOG_DIR / f"{name}.log"
    out: Counter[str] = Counter()
    if not log.exists():
        return out
    for line in log.read_text(errors="replace").splitlines():
        m = _APP_LINE.match(line)
        if m:
            out[f"{m.group(1)} {m.group(2)}: {_normalise(m.group(3))}"] += 1
            continue
        m = _GUNICORN_LINE.match(line)
        if m:
            out[f"{m.group(1)} gunicorn: {_normalise(m.group(2))}"] += 1
        elif line.startswith("Traceback"):
            out["Traceback"] += 1
    return out


def _normalise(message: str) -> str:
    message = re.sub(r"\(pid:? ?\d+\)|\b\d{3,}\b", "N", message)
    return message[:110]


def pg_log_path() -> Path | None:
    for candidate in [PG_LOG, *sorted(glob.glob("/var/log/postgresql/postgresql-*-main.log"))]:
        path = Path(candidate)
        if path.is_file() and os.access(path, os.R_OK):
            return path
    return None


def pg_log_errors(path: Path | None, offset: int, database: str) -> Counter[str] | None:
    """ERROR lines PostgreSQL logged for this database since `offset`: deadlocks, unique-key races, ..."""
    if path is None:
        return None
    out: Counter[str] = Counter()
    with open(path, "rb") as fh:
        fh.seek(offset)
        for raw in fh:
            line = raw.decode(errors="replace")
            marker = f"@{database} ERROR:"
            if marker in line:
                out[line.split(marker, 1)[1].strip()[:110]] += 1
    return out


# --- the run -------------------------------------------------------------------------------------------------

@dataclass
class Run:
    kind: str
    workers: int
    phones: int
    window: float
    lanes: list[Lane]
    checks: Checks
    cpu: dict[str, float]
    busy: float
    drain_rounds: list[int]
    server_log: Counter[str]
    pg_log: Counter[str] | None
    caught: dict[str, bool]


def versions(url: str) -> str:
    """The software the figures depend on."""
    from importlib.metadata import version

    names = ["gunicorn", "flask", "sqlalchemy", "psycopg", "cryptography", "pillow", "requests"]
    out = [f"{n} {version(n)}" for n in names]
    db = Database(url)
    try:
        with db.engine.connect() as conn:
            if db.engine.dialect.name == "postgresql":
                out.append(f"PostgreSQL {conn.exec_driver_sql('SHOW server_version').scalar()}")
            else:
                out.append(f"SQLite {conn.exec_driver_sql('select sqlite_version()').scalar()}")
    finally:
        db.dispose()
    return ", ".join(out)


def make_lanes(bases: list[str], officers: list[dict[str, str]], departments: list[str], root: Path,
               seed: int) -> list[Lane]:
    lanes = []
    for n, officer in enumerate(officers):
        session = MeteredSession(bases, start=n)
        rng = random.Random(seed * 1000 + n)
        phone = Phone(root / f"phone-{n:02d}", bases[0], session=session, rng=rng.random)
        phone.login(officer["username"], PASSWORD)
        phone.enrol(f"load phone {n}")
        partner = officers[(n + 1) % len(officers)]["id"]
        lanes.append(Lane(n, officer, departments[n], partner, phone, session, rng))
    return lanes


def run(kind: str, phones: int, seconds: float, workers: int, seed: int, work: Workload, quiet_wait: float,
        api_processes: int = 1) -> Run:
    departments = [DEPARTMENTS[n % len(DEPARTMENTS)] for n in range(phones)]
    if work.evidence == "jpeg" and not work.bases:
        work.bases = jpeg_bases()
    name = f"load-{kind}-w{workers}" + (f"-x{api_processes}" if api_processes > 1 else "")
    root = Path(tempfile.mkdtemp(prefix="fieldcase-load-phones-"))
    started = time.perf_counter()
    try:
        with fresh_database(kind) as bdb:
            officers = make_officers(bdb.url, [{"region": REGION, "department": d} for d in departments])
            pg_path = pg_log_path() if kind == "postgres" else None
            pg_offset = pg_path.stat().st_size if pg_path else 0
            print(f"  versions: {versions(bdb.url)}")
            print(f"  database and officers ready after {time.perf_counter() - started:.1f} s", flush=True)
            with ExitStack() as servers:
                bases = [servers.enter_context(live_server(bdb, name if i == 0 else f"{name}-p{i + 1}",
                                                           workers=workers)) for i in range(api_processes)]
                lanes = make_lanes(bases, officers, departments, root, seed)
                print(f"  server up, phones logged in and enrolled after {time.perf_counter() - started:.1f} s",
                      flush=True)
                for lane in lanes:
                    lane.session.sink = lane.run_samples
                busy = wait_quiet(quiet_wait) if quiet_wait > 0 else float("nan")
                go = threading.Barrier(len(lanes) + 1)
                deadline = [float("inf")]
                threads = [threading.Thread(target=run_lane, name=f"phone-{lane.n}",
                                            args=(lane, go, deadline, work))
                           for lane in lanes]
                for t in threads:
                    t.start()
                meter = CpuMeter(bases, bdb.url)
                meter.begin()
                client_cpu = time.process_time()
                deadline[0] = time.monotonic() + seconds
                t0 = time.perf_counter()
                go.wait()
                for t in threads:
                    t.join()
                window = time.perf_counter() - t0
                cpu = {**meter.end(), "client": time.process_time() - client_cpu}
                print(f"  timed part over after {window:.1f} s; draining the phones", flush=True)
                drain_rounds = [drain(lane) for lane in lanes if lane.crash is None]
                for lane in lanes:
                    lane.session.close()  # idle keep-alive connections would hold up gunicorn's graceful stop
            state = read_state(bdb.url)
            checks = check(state, lanes)
            caught = self_test(state, lanes)
            pg_log = pg_log_errors(pg_path, pg_offset, make_url(bdb.url).database or "") if pg_path else None
            for lane in lanes:
                lane.phone.close()
            return Run(kind, workers, phones, window, lanes, checks, cpu, busy, drain_rounds,
                       server_log_summary(name), pg_log, caught)
    finally:
        shutil.rmtree(root, ignore_errors=True)


# --- the report ----------------------------------------------------------------------------------------------

def ms(values: list[float], p: float) -> str:
    return f"{percentile(values, p) * 1000:,.0f}" if values else "–"


def report(r: Run, bdb_kind: str) -> None:
    samples = [s for lane in r.lanes for s in lane.run_samples]
    by_kind: dict[str, list[Sample]] = defaultdict(list)
    for s in samples:
        by_kind[s.kind].append(s)
    order = ["push", "pull", "upload plan", "upload PUT", "upload HEAD", "upload complete", "evidence GET",
             "refresh"]
    kinds = [k for k in order if k in by_kind] + sorted(k for k in by_kind if k not in order)
    rows = []
    for kind in kinds + ["all"]:
        group = samples if kind == "all" else by_kind[kind]
        ok = [s.seconds for s in group if 200 <= s.status < 300]
        times = [s.seconds for s in group]
        retried = sum(1 for s in group if s.status == 503)
        other = Counter(s.status for s in group if not 200 <= s.status < 300 and s.status != 503)
        errors = ", ".join(f"{'no answer' if code == 0 else code}: {n}" for code, n in sorted(other.items()))
        rows.append([kind, f"{len(group):,}", f"{len(group) / r.window:,.1f}", ms(times, 50), ms(times, 95),
                     ms(times, 99), f"{len(ok):,}", str(retried), errors or "0"])
    print()
    print(f"requests in the timed part ({r.window:.1f} s), every attempt counted, latency in ms:")
    print(table(["request", "count", "per s", "p50", "p95", "p99", "2xx", "503 (retried)", "other errors"], rows))

    rows = []
    for op in ("push", "pull", "upload", "cycle"):
        times = [t for lane in r.lanes for t in lane.ops.get(op, [])]
        failed = sum(1 for lane in r.lanes for o, _ in lane.op_failures if o == op)
        rows.append([op, f"{len(times):,}", ms(times, 50), ms(times, 95), ms(times, 99), str(failed)])
    print()
    print("phone operations (a whole push / pull / upload round as the phone's method runs it, back-offs "
          "included; a cycle is record offline + push + pull + upload):")
    print(table(["operation", "count", "p50 ms", "p95 ms", "p99 ms", "failed"], rows))

    cycles = sum(lane.cycles for lane in r.lanes)
    pushed = sum(lane.push_results.total() for lane in r.lanes)
    files = sum(lane.captured for lane in r.lanes)
    megabytes = sum(lane.bytes_captured for lane in r.lanes) / 2**20
    print()
    print(f"cycles: {cycles:,} ({cycles / r.window:.2f}/s, {cycles / max(1, len(r.lanes)):.1f} per phone); "
          f"records pushed: {pushed:,} ({pushed / r.window:,.1f}/s); files uploaded: {files:,} "
          f"({files / r.window:,.1f}/s, {megabytes:.1f} MiB, {megabytes / r.window:.2f} MiB/s)")
    print(f"push results seen by the phones: {dict(sum((lane.push_results for lane in r.lanes), Counter()))}; "
          f"upload results: {dict(sum((lane.upload_results for lane in r.lanes), Counter()))}")
    server_side = r.cpu.get("server", 0.0) + r.cpu.get("database", 0.0)
    cores = os.cpu_count() or 1
    print(f"CPU seconds in the timed part: server {r.cpu.get('server', 0):.1f}, database "
          f"{r.cpu.get('database', 0):.1f}, bench client {r.cpu.get('client', 0):.1f} "
          f"(of {cores * r.window:.0f} core-seconds); server-side CPU per cycle "
          f"{server_side / max(1, cycles) * 1000:.0f} ms (the push, pull and uploads of one cycle)")
    if r.busy == r.busy:  # not NaN: measured
        print(f"other load before the timed part: {r.busy:.0%} of the CPUs")
    unfinished = sum(1 for lane in r.lanes if lane.unfinished_after_run)
    print(f"drain: {unfinished} of {len(r.lanes)} phones had something left after their last cycle; rounds "
          f"needed {dict(Counter(r.drain_rounds))}; drain requests "
          f"{dict(Counter(s.status for lane in r.lanes for s in lane.drain_samples))}")
    answers = Counter((s.kind, s.status, s.reason) for s in samples if not 200 <= s.status < 300)
    if answers:
        print("error answers in the timed part, by message:")
        for (kind, status, reason), n in answers.most_common(12):
            print(f"  {n:5} x {kind} {status or 'no answer'}: {reason}")
    failures = Counter((o, msg) for lane in r.lanes for o, msg in lane.op_failures)
    if failures:
        print("phone operation failures (run and drain):")
        for (o, msg), n in failures.most_common(12):
            print(f"  {n:5} x {o}: {msg}")
    print("server log warnings/errors: " + ("none" if not r.server_log else ""))
    for msg, n in r.server_log.most_common(12):
        print(f"  {n:5} x {msg}")
    if r.pg_log is not None:
        print("PostgreSQL log errors for this database: " + ("none" if not r.pg_log else ""))
        for msg, n in r.pg_log.most_common(12):
            print(f"  {n:5} x {msg}")
    elif bdb_kind == "postgres":
        print("PostgreSQL log: not readable here (set FIELDCASE_BENCH_PG_LOG)")

    f = r.checks.facts
    print()
    for label, problems, fine in (
            ("ledger", r.checks.ledger,
             f"{f.get('devices', 0)} devices, {f.get('records', 0):,} records, each op once, seq 1..head on every "
             f"device, all applied; 0 deferred, 0 quarantined, 0 chain gaps"),
            ("evidence", r.checks.evidence,
             f"{f.get('evidence', 0):,} files verified, hash and size as declared"),
            ("merge", r.checks.merges,
             f"{f.get('institutions', 0)} institutions, {f.get('cases', 0)} open cases for {f.get('pairs', 0)} "
             f"(institution, department) pairs; {f.get('opened', 0):,} case.opens aliased to them "
             f"({f.get('merged', 0):,} merged); {f.get('inspections', 0):,} inspections, "
             f"{f.get('findings', 0):,} findings"),
            ("pull", r.checks.pull,
             f"every phone's pulled copy holds all {f.get('cases', 0)} cases, its own aliases and the verdict "
             f"'verified' on each of its files")):
        if problems:
            print(f"{label} check: FAILED ({len(problems)} problems)")
            for p in problems[:15]:
                print(f"  {p}")
        else:
            print(f"{label} check: OK — {fine}")
    caught = [FAULTS[k] for k, hit in r.caught.items() if hit]
    missed = [FAULTS[k] for k, hit in r.caught.items() if not hit]
    print(f"self-test of the checks: planted {', '.join(FAULTS[k] for k in r.caught)} in copies of the end "
          f"state; caught {len(caught)} of {len(r.caught)}" + (f"; MISSED: {', '.join(missed)}" if missed else ""))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--phones", type=int, help=f"simulated phones (default {LONG['phones']}, "
                                                   f"--short {SHORT['phones']})")
    parser.add_argument("--seconds", type=float, help=f"length of the timed part (default {LONG['seconds']:.0f}, "
                                                      f"--short {SHORT['seconds']:.0f})")
    parser.add_argument("--workers", type=int, default=2, help="gunicorn workers (4 threads each)")
    parser.add_argument("--api-processes", type=int, default=1,
                        help="API processes (each `serve --workers N`) the phones reach through a round-robin "
                             "balancer, as behind a load balancer (docs/deployment.md)")
    parser.add_argument("--db", choices=["postgres", "sqlite"], default="postgres")
    parser.add_argument("--seed", type=int, default=20260714)
    parser.add_argument("--short", action="store_true", help="the CI form: a few phones for ~15 s")
    parser.add_argument("--findings", type=int, default=2, help="findings (each with one file) per inspection")
    parser.add_argument("--institutions", type=int, default=4, choices=range(1, len(INSTITUTIONS) + 1),
                        metavar=f"1..{len(INSTITUTIONS)}", help="how many institutions the phones pick from")
    parser.add_argument("--visits", type=int, default=1,
                        help="inspections recorded offline per cycle before syncing (a backlog)")
    parser.add_argument("--evidence", choices=["jpeg", "random"], default="jpeg",
                        help="real small JPEGs (decoded by the server) or random bytes")
    parser.add_argument("--evidence-kb", type=int, default=64, help="size of a random-bytes file")
    parser.add_argument("--quiet-wait", type=float, default=0.0,
                        help="wait up to this many seconds for other load on the machine to stop first")
    args = parser.parse_args(argv)
    preset = SHORT if args.short else LONG
    phones = args.phones or int(preset["phones"])
    seconds = args.seconds or preset["seconds"]
    if phones < 2:
        parser.error("--phones must be at least 2 (an inspection crew needs a colleague)")

    print_machine()
    print(f"load bench: {phones} phones ({dict(Counter(DEPARTMENTS[n % len(DEPARTMENTS)] for n in range(phones)))}), "
          f"{seconds:.0f} s, {args.db}, {args.api_processes} API process(es) of gunicorn {args.workers} workers x 4 "
          f"threads; per cycle {args.visits} "
          f"inspection(s) with "
          f"{args.findings} findings and {args.evidence} files, {args.institutions} institutions in {REGION}",
          flush=True)
    places = [{"name": name, "region": REGION, "address": f"文三路 {100 + i} 号"}
              for i, name in enumerate(INSTITUTIONS[:args.institutions])]
    work = Workload(places, args.findings, args.evidence, args.evidence_kb, max(1, args.visits))
    r = run(args.db, phones, seconds, args.workers, args.seed, work, args.quiet_wait, args.api_processes)
    report(r, args.db)
    crashed = [lane for lane in r.lanes if lane.crash]
    for lane in crashed:
        print(f"\nphone {lane.n} crashed:\n{lane.crash}", file=sys.stderr)
    cycles = sum(lane.cycles for lane in r.lanes)
    problems = len(r.checks.ledger) + len(r.checks.evidence) + len(r.checks.merges) + len(r.checks.pull)
    missed = sum(1 for hit in r.caught.values() if not hit) + (len(FAULTS) - len(r.caught))
    if crashed or problems or cycles == 0 or missed:
        print(f"\nload check: FAILED ({problems} mismatches, {len(crashed)} crashed phones, {cycles} cycles, "
              f"{missed} planted faults not caught)")
        return 1
    print("\nload check: OK")
    return 0


if __name__ == "__main__":
    sys.exit(main())
