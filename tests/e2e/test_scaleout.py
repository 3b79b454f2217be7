"""Scale-out, proven on this machine: two API processes, two job workers, PostgreSQL, S3 and Redis together.

What runs (docs/deployment.md, "What the scale-out test runs", describes the same):

- PostgreSQL: a fresh database on FIELDCASE_TEST_DATABASE_URL's server, migrated once (`prepare`);
- S3: moto's server on loopback, one fresh bucket; Redis: the local one (FIELDCASE_TEST_REDIS_URL), a queue
  name of the test's own;
- two API processes, each `python -m backend serve --workers 1` (gunicorn, 4 threads) on its own port, and
  two `python -m backend worker` processes, all with the same environment: DATABASE_URL,
  FIELDCASE_S3_BUCKET/ENDPOINT_URL, FIELDCASE_JOBS=rq, FIELDCASE_REDIS_URL, FIELDCASE_JOB_QUEUE, one shared
  secrets folder (FIELDCASE_INSTANCE_DIR: the token key and the custody signing key), and access tokens that
  expire after 3 s so that phones refresh them, on whichever process the next request reaches;
- four reference phones (`sync.client.Phone`) of two departments, in threads at once, behind a round-robin
  "load balancer": each API request goes to the other process than the one before, so a phone pushes to one
  and pulls from the other, is given an upload plan by one and completes on the other. Files go to S3 by
  presigned URLs; complete answers `202` and a worker gives the verdict.

Then it checks: every record in the ledger once (per device seq 1..head, exactly the phone's records); one
open case per (institution, department), every alias pointing to it; every file verified once, by one of the
two workers (the custody event names it), stored in the bucket with nothing left in staging; a custody log
that verifies (dense leaves, heads issued by both processes consistent); each phone's feed equal, change for
change, to the rows of `changes` it may see, in id order (nothing read twice, nothing skipped); login
throttling and one-use refresh tokens holding across processes.

Skipped (with the reason) without PostgreSQL or Redis; both exist on the CI machine, so it runs in the
PostgreSQL leg of .ci/run.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
import traceback
import uuid
from collections import Counter
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import requests
from sqlalchemy import func, or_, select

from backend.casework.accounts import create_officer
from backend.core.db import Database
from backend.core.jurisdiction import regions_of
from backend.core.models import (
    Case,
    CaseAlias,
    Change,
    CustodyEvent,
    DeferredRecord,
    Device,
    Evidence,
    Institution,
    LedgerRecord,
    Officer,
    TreeHead,
)
from backend.core.schema import prepare
from backend.liveserver import running_server, running_workers
from media.custody.keys import load_signer
from media.custody.verify import verify_log
from media.s3_store import S3Store
from sync.client import SHANGHAI, Phone
from tests import images
from tests.conftest import PASSWORD, PG_ENV

pytestmark = [pytest.mark.slow, pytest.mark.skipif(not os.environ.get(PG_ENV),
                                reason=f"the scale-out test needs PostgreSQL: set {PG_ENV} (CI's PostgreSQL leg does)")]

REGION = "330106"
HERE = {"lat": 30.2787, "lon": 120.1303, "accuracy_m": 8.0}
INSTITUTIONS = [
    {"name": "西湖区启航学科培训中心", "region": REGION, "address": "文三路 88 号 2 楼"},
    {"name": "西湖区星光艺术培训部", "region": REGION, "address": "教工路 16 号 305 室"},
]
DEPARTMENTS = ["education", "education", "market", "market"]
ROUNDS = 3
DRAIN_SECONDS = 45


class LoadBalancer(requests.Session):
    """Round robin without affinity, on the phone's side: each API request goes to another process than the
    last request of its kind, and the kinds (and phones) start on different processes, so a phone pushes to one
    process and pulls from the other, is given a plan by one and completes on the other. (One turn over all
    requests would lock each kind to one process whenever a sync makes an even number of requests.)

    Presigned S3 URLs go straight to the object store, as from a real phone.
    """

    def __init__(self, bases: list[str], start: int = 0) -> None:
        super().__init__()
        self.bases = bases
        self.start = start
        self.sent: Counter[tuple[str, str]] = Counter()
        self._turns: Counter[str] = Counter()

    def request(self, method: str, url: str, *args: Any, **kwargs: Any) -> requests.Response:
        for base in self.bases:
            if url.startswith(base + "/"):
                route = f"{method} {_route(url)}"
                offset = self.start + (ROUTES.index(route) if route in ROUTES else 0)
                target = self.bases[(self._turns[route] + offset) % len(self.bases)]
                self._turns[route] += 1
                url = target + url[len(base):]
                self.sent[(target, route)] += 1
                # As a load balancer forwards it: the Host the phone asked for (URLs the server writes name it).
                kwargs["headers"] = {**(kwargs.get("headers") or {}), "Host": urlsplit(self.bases[0]).netloc}
                break
        return super().request(method, url, *args, **kwargs)


ROUTES = ["POST /sync/push", "GET /sync/pull", "POST /uploads", "POST /complete", "POST /auth/refresh"]


def _route(url: str) -> str:
    path = urlsplit(url).path
    for suffix in ("/complete", "/uploads", "/sync/push", "/sync/pull", "/auth/refresh", "/auth/token"):
        if path.endswith(suffix):
            return suffix
    return "other"


class FieldClock:
    def __init__(self) -> None:
        self.now = datetime.now(SHANGHAI).replace(microsecond=0) - timedelta(hours=2)

    def __call__(self) -> datetime:
        self.now += timedelta(seconds=7)
        return self.now


def _officer(db: Database, department: str, n: int) -> Officer:
    with db.transaction() as s:
        return create_officer(s, username=f"scale{n}-{uuid.uuid4().hex[:6]}", password=PASSWORD, name=f"警员{n}",
                              department=department, region=REGION, roles=["officer"],
                              cert_number=f"ZJ{uuid.uuid4().hex[:10].upper()}",
                              cert_valid_from=date.today() - timedelta(days=30),
                              cert_valid_until=date.today() + timedelta(days=365), now=datetime.now(UTC))


class FieldPhone:
    """One officer's phone and what it did: records, cases, files, and every change it pulled, in order."""

    def __init__(self, n: int, officer: Officer, bases: list[str], folder: Path) -> None:
        self.n = n
        self.officer = officer
        self.lb = LoadBalancer(bases, start=n)
        self.phone = Phone(folder, bases[0], session=self.lb, clock=FieldClock(), backoff_base=0.2,
                           backoff_cap=2.0)
        self.pulled: list[dict[str, Any]] = []
        self.cases: list[str] = []
        self.files: dict[str, str] = {}  # evidence id -> kind
        self.error: str | None = None

    def sync(self) -> None:
        self.phone.push()
        self.pulled.extend(self.phone.pull())
        self.phone.upload_pending()

    def work(self) -> None:
        try:
            self.phone.login(self.officer.username, PASSWORD)
            self.phone.enrol(f"scale phone {self.n}")
            for r in range(ROUNDS):
                case = self.phone.open_case(INSTITUTIONS[(self.n + r) % len(INSTITUTIONS)], summary=f"round {r}")
                self.cases.append(case)
                inspection = self.phone.start_inspection(case, officers=[], location=HERE)
                photo = self.phone.capture_evidence(images.noisy_jpeg((96, 96), seed=self.n * 10 + r), "photo",
                                                    "image/jpeg", inspection_id=inspection, location=HERE)
                clip = self.phone.capture_evidence(os.urandom(40_000 + r), "video", "video/mp4",
                                                   inspection_id=inspection, location=HERE)
                self.files.update({photo: "photo", clip: "video"})
                self.phone.add_finding(inspection, "unlicensed", "无证办学", evidence=[photo])
                self.phone.end_inspection(inspection, "violation_found")
                self.sync()
            deadline = time.monotonic() + DRAIN_SECONDS
            while not self.done():
                if time.monotonic() > deadline:
                    raise AssertionError(f"phone {self.n}: files not verified in time: {self.phone.evidence_files()}")
                time.sleep(0.3)
                self.sync()
        except Exception:  # reported by the test, with the phone's number
            self.error = traceback.format_exc()

    def done(self) -> bool:
        statuses = {f["evidence_id"]: f["status"] for f in self.phone.evidence_files()}
        return not self.phone.outbox() and all(statuses.get(e) == "verified" for e in self.files)


def _wait_for_workers(db: Database, redis_url: str, queue: str, timeout: float = 30.0) -> None:
    """The photo analyses queued by the last verifications finish (every photo read) before the log is checked."""
    from redis import Redis
    from rq import Queue

    q = Queue(queue, connection=Redis.from_url(redis_url))
    deadline = time.monotonic() + timeout
    while True:
        with db.session() as s:
            unread = s.scalar(select(func.count()).select_from(Evidence).where(Evidence.kind == "photo",
                                                                                Evidence.media_info.is_(None)))
        retries = [j for j in q.scheduled_job_registry.get_job_ids()
                   if not j.startswith(f"{queue}-")]  # periodic runs (system_audit.jobs) wait their time slot
        if not unread and not (q.count or q.started_job_registry.count or retries):
            break
        assert time.monotonic() < deadline, f"the workers did not finish: {unread} photos unread, {q.count} queued"
        time.sleep(0.2)
    assert q.failed_job_registry.count == 0, "a job failed"


def _post(url: str, json: dict[str, Any]) -> requests.Response:
    return requests.post(url, json=json, timeout=30)


def _login_throttle_and_refresh_hold_across(bases: list[str], db: Database) -> None:
    a, b = bases
    victim = _officer(db, "education", 99)
    for i in range(5):  # FIELDCASE_LOGIN_FREE_FAILURES: counted in the database, whichever process saw them
        r = _post(f"{bases[i % 2]}/api/v1/auth/token", json={"username": victim.username, "password": "x"})
        assert r.status_code == 401
    for base in bases:
        r = _post(f"{base}/api/v1/auth/token", json={"username": victim.username, "password": PASSWORD})
        assert r.status_code == 429, r.text
    officer = _officer(db, "education", 98)
    first = _post(f"{a}/api/v1/auth/token", json={"username": officer.username, "password": PASSWORD}).json()
    second = _post(f"{b}/api/v1/auth/refresh", json={"refresh_token": first["refresh_token"]})
    assert second.status_code == 200
    reused = _post(f"{a}/api/v1/auth/refresh", json={"refresh_token": first["refresh_token"]})
    assert reused.status_code == 401  # one use, wherever it is presented; the reuse revokes the family
    revoked = _post(f"{b}/api/v1/auth/refresh", json={"refresh_token": second.json()["refresh_token"]})
    assert revoked.status_code == 401


def test_two_api_processes_and_two_workers_keep_every_promise(fresh_database_url, redis_url, job_queue, s3_server,
                                                               tmp_path):
    started = time.monotonic()
    url = fresh_database_url()
    db = Database(url)
    prepare(db)
    bucket = f"fieldcase-scale-{uuid.uuid4().hex[:8]}"
    store = S3Store(bucket, endpoint_url=s3_server)
    store.ensure_bucket()
    instance = tmp_path / "shared-secrets"
    env = {"DATABASE_URL": url, "FIELDCASE_INSTANCE_DIR": str(instance), "FIELDCASE_S3_BUCKET": bucket,
           "FIELDCASE_S3_ENDPOINT_URL": s3_server, "FIELDCASE_JOBS": "rq", "FIELDCASE_REDIS_URL": redis_url,
           "FIELDCASE_JOB_QUEUE": job_queue, "FIELDCASE_ACCESS_TOKEN_TTL": "3", "FIELDCASE_LOG_LEVEL": "WARNING"}
    logs = tmp_path / "logs"
    logs.mkdir()
    officers = [_officer(db, dept, n) for n, dept in enumerate(DEPARTMENTS)]
    # Hosts sharing a database make no keys of their own: one `fieldcase init-secrets`, shared by all four.
    subprocess.run([sys.executable, "-m", "backend", "init-secrets"], env={**os.environ, **env}, check=True,
                   capture_output=True)

    with running_server(env, workers=1, log_path=logs / "api-a.log") as a, \
            running_server(env, workers=1, log_path=logs / "api-b.log") as b, \
            running_workers(env, 2, log_dir=logs, name_prefix="scale") as worker_names:
        bases = [a, b]
        phones = [FieldPhone(n, o, bases, tmp_path / f"phone-{n}") for n, o in enumerate(officers)]
        threads = [threading.Thread(target=p.work, name=f"phone-{p.n}") for p in phones]
        for t in threads:
            t.start()
        heads = []
        while any(t.is_alive() for t in threads):  # custodians ask both processes for signed heads meanwhile
            time.sleep(1.0)
            heads.append(_tree_head(bases[len(heads) % 2], officers[0]))
        for t in threads:
            t.join()
        errors = [p.error for p in phones if p.error]
        assert not errors, "\n".join(errors) + _tails(logs)
        _wait_for_workers(db, redis_url, job_queue)
        for p in phones:  # the last verdicts and everything the others did: one more pull each
            p.pulled.extend(p.phone.pull())
        heads.append(_tree_head(a, officers[0]))
        _login_throttle_and_refresh_hold_across(bases, db)

    with db.session() as s:
        _check_ledger(s, phones)
        _check_cases(s, phones)
        _check_evidence(s, phones, store, {f"rq:{n}" for n in worker_names})
        _check_custody(s, load_signer(instance), heads)
        _check_feeds(s, phones)
    for p in phones:  # the load balancer really spread each kind of request over both processes
        for route in ROUTES[:4]:
            assert all(p.lb.sent[(base, route)] for base in bases), (p.n, route, p.lb.sent)
        p.phone.close()
    # Which process the phones' own refreshes reach depends on timing (a slow run may need only one), so the
    # shared one-use refresh state is proven deterministically in _login_throttle_and_refresh_hold_across.
    db.dispose()
    assert time.monotonic() - started < 120  # ~40 s here; the bound only catches a hang that timed out late


def _tree_head(base: str, officer: Officer) -> dict[str, Any]:
    token = _post(f"{base}/api/v1/auth/token", json={"username": officer.username,
                                                             "password": PASSWORD}).json()["access_token"]
    r = requests.get(f"{base}/api/v1/custody/tree-head", headers={"Authorization": f"Bearer {token}"}, timeout=30)
    assert r.status_code == 200, r.text
    return r.json()


def _tails(logs: Path) -> str:
    return "".join(f"\n--- {p.name}\n" + p.read_text(errors="replace")[-3000:] for p in sorted(logs.glob("*.log")))


def _check_ledger(s, phones: list[FieldPhone]) -> None:
    """Every record once: per device seq 1..head, exactly the phone's own records, all applied."""
    for p in phones:
        device = s.get(Device, p.phone.device_id)
        mine = [(r.seq, r.op, r.hash) for r in p.phone.records()]
        rows = list(s.execute(select(LedgerRecord.seq, LedgerRecord.op, LedgerRecord.hash, LedgerRecord.status)
                              .where(LedgerRecord.device_id == device.id).order_by(LedgerRecord.seq)))
        assert [(r.seq, r.op, r.hash) for r in rows] == mine
        assert [r.seq for r in rows] == list(range(1, device.head_seq + 1)) and device.head_seq == len(mine)
        assert {r.status for r in rows} == {"applied"}
    assert s.scalar(select(func.count()).select_from(LedgerRecord)) == sum(len(p.phone.records()) for p in phones)
    assert s.scalar(select(func.count()).select_from(DeferredRecord)) == 0


def _check_cases(s, phones: list[FieldPhone]) -> None:
    """One institution per name; one open case per (institution, department); every alias pointing to it."""
    institutions = {i.name: i.id for i in s.scalars(select(Institution))}
    assert sorted(institutions) == sorted(i["name"] for i in INSTITUTIONS)
    cases = list(s.scalars(select(Case)))
    by_key = Counter((c.institution_id, c.department_code) for c in cases)
    assert set(by_key.values()) == {1} and len(by_key) == len(INSTITUTIONS) * len(set(DEPARTMENTS)), by_key
    for p in phones:
        for r, client_case_id in enumerate(p.cases):
            alias = s.get(CaseAlias, client_case_id)
            case = s.get(Case, alias.case_id)
            expected = institutions[INSTITUTIONS[(p.n + r) % len(INSTITUTIONS)]["name"]]
            assert (case.institution_id, case.department_code) == (expected, p.officer.department_code)


def _check_evidence(s, phones: list[FieldPhone], store: S3Store, workers: set[str]) -> None:
    """Every file verified once, by one of the workers; its bytes in the bucket; nothing left in staging."""
    verifiers: Counter[str] = Counter()
    for p in phones:
        for eid, kind in p.files.items():
            evidence = s.get(Evidence, eid)
            assert evidence.status == "verified", (eid, evidence.status)
            events = [e for e in s.scalars(select(CustodyEvent).where(CustodyEvent.evidence_id == eid))]
            actions = Counter(e.action for e in events)
            assert actions["verified"] == 1 and actions["upload_started"] == 1, actions
            assert actions["thumbnail"] == (1 if kind == "photo" else 0), actions
            verified = next(e for e in events if e.action == "verified")
            verifiers[json.loads(verified.leaf)["verifier"]] += 1
            head = store.client.head_object(Bucket=store.bucket, Key=evidence.object_key)
            assert head["ContentLength"] == evidence.size
    assert set(verifiers) == workers, verifiers  # both workers took their share, nobody else verified
    assert store.client.list_objects_v2(Bucket=store.bucket, Prefix="staging/")["KeyCount"] == 0


def _check_custody(s, signer, heads: list[dict[str, Any]]) -> None:
    """One dense log, whichever process appended; every head (from either process) signed and consistent."""
    report = verify_log(s, signer.verification_keys())
    assert report.ok, report.problems
    assert report.leaves == s.scalar(select(func.count()).select_from(CustodyEvent))
    stored = {h.tree_size: h.root_hash for h in s.scalars(select(TreeHead))}
    assert all(stored[h["tree_size"]] == h["root_hash"] for h in heads)
    assert report.heads == len(stored) >= 2


def _check_feeds(s, phones: list[FieldPhone]) -> None:
    """Each phone read exactly the changes it may see, in id order: none twice, none skipped."""
    for p in phones:
        officer = s.get(Officer, p.officer.id)
        regions = regions_of(officer)
        visible = select(Change).order_by(Change.id)
        if regions is not None:
            visible = visible.where(or_(Change.region_code.in_(sorted(regions)), Change.officer_id == officer.id))
        expected = [{"kind": c.kind, "id": c.entity_id, "op": c.op, "data": c.data} for c in s.scalars(visible)]
        if len(p.pulled) != len(expected):
            rows = list(s.scalars(visible))
            got = [(c["kind"], c["id"], json.dumps(c["data"], sort_keys=True)) for c in p.pulled]
            want = [(c.id, c.kind, c.entity_id, json.dumps(c.data, sort_keys=True)) for c in rows]
            missing = [w for w in want if w[1:] not in got]
            extra = Counter(got) - Counter(w[1:] for w in want)
            raise AssertionError(f"phone {p.n}: {len(p.pulled)} pulled, {len(expected)} visible; missing "
                                 f"{[(m[0], m[1], m[2]) for m in missing]}; extra {list(extra)[:5]}; last ids "
                                 f"{[r.id for r in rows][-5:]}")
        for i, (got, want) in enumerate(zip(p.pulled, expected, strict=True)):
            assert got == want, (p.n, i, got, want)


def test_processes_starting_together_migrate_once(fresh_database_url):
    """A new release: every API process runs `prepare` at start; one migrates and seeds, the others wait for it."""
    url = fresh_database_url()
    databases = [Database(url) for _ in range(3)]
    failures: list[str] = []

    def start(db: Database) -> None:
        try:
            prepare(db)
        except Exception:  # reported below
            failures.append(traceback.format_exc())

    threads = [threading.Thread(target=start, args=(db,)) for db in databases]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not failures, failures[0]
    with databases[0].session() as s:
        assert s.scalar(select(func.count()).select_from(Institution)) == 0
        assert s.scalar(select(func.count()).select_from(Officer)) == 0
    for db in databases:
        db.dispose()
