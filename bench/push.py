"""Push throughput: signed records per second accepted through the HTTP API, against this machine's limits.

For each database kind (SQLite, PostgreSQL) and batch size (100, 500) the bench
starts the production server (gunicorn, 2 workers) on a fresh database, creates
officers, enrols one device per client thread, pre-signs every record (signing
is not timed), then times client threads pushing their device's chain in
batches, each push on a fresh connection (a kept-alive connection stays on the
worker that accepted it, and four phones on two workers then often leave one
core idle). Every result must be `applied`, or the bench exits 1.

The same run measures two limits of this machine:
  * verify: Ed25519 verifications per second on as many processes as the server
    has workers (`cryptography`, the same signing inputs): the cryptographic floor;
  * insert: a plain SQLAlchemy Core insert of the same records' texts as
    ledger-sized rows into the same kind of database, same batch size, one
    commit per batch, one client.

Run from the repository root:  .venv/bin/python bench/push.py [--db sqlite|postgres|both] [--records N]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import multiprocessing
import random
import sys
import threading
import time
from dataclasses import dataclass, field

import requests
from common import (
    BenchPhone,
    CpuMeter,
    fresh_database,
    live_server,
    login,
    make_officers,
    median,
    percentile,
    print_machine,
    server_errors,
    table,
    uid,
    wait_quiet,
)
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from sqlalchemy import Column, Integer, MetaData, String, Table, Text, func, insert, select

from backend.core.db import Database
from backend.core.models import Case, LedgerRecord

TARGET_SHARE_OF_VERIFY = 0.20
REGION = "330106"
INSTITUTION_NAMES = ["明日之星培训中心", "启航教育", "博学书院", "小牛顿科学馆", "青苗艺术学校", "智慧树托管中心"]
CATEGORIES = ["unlicensed", "staff", "content", "hours", "pricing", "fire_safety", "advertising", "fees"]
FINDING_TEXT = "现场检查发现：该机构未取得办学许可，正在面向中小学生开展学科类培训，现场学员约二十人。"
RECORDS_PER_INSPECTION = 15  # case.open, inspection.start, 6 x (evidence.capture, inspection.finding), inspection.end


# --- records -------------------------------------------------------------------------------------------------

def inspection_records(phone: BenchPhone, partner_id: str, institution: dict[str, str], rng: random.Random
                       ) -> list[str]:
    """One inspection as a phone records it: 15 signed, chained records."""
    client_case_id, inspection_id = uid(), uid()
    where = {"lat": round(30.27 + rng.random() / 50, 6), "lon": round(120.12 + rng.random() / 50, 6),
             "accuracy_m": 8.0}
    out = [
        phone.record("case.open", {"client_case_id": client_case_id, "institution": institution,
                                   "summary": "群众举报无证办学"}),
        phone.record("inspection.start", {"inspection_id": inspection_id,
                                          "case": {"client_case_id": client_case_id},
                                          "officers": [phone.officer["id"], partner_id], "location": where}),
    ]
    for _ in range(6):
        evidence_id = uid()
        data = rng.randbytes(32)
        out.append(phone.record("evidence.capture", {
            "evidence_id": evidence_id, "inspection_id": inspection_id, "kind": "photo",
            "media_type": "image/jpeg", **phone.evidence_digest(data),
            "size": rng.randint(800_000, 4_000_000), "captured_at": phone.clock.isoformat(), "location": where}))
        out.append(phone.record("inspection.finding", {
            "inspection_id": inspection_id, "finding_id": uid(), "category": rng.choice(CATEGORIES),
            "description": FINDING_TEXT, "evidence": [evidence_id]}))
    out.append(phone.record("inspection.end", {"inspection_id": inspection_id, "outcome": "violation_found",
                                               "notes": "已责令停止培训，限期整改"}))
    return out


def phone_records(phone: BenchPhone, partner_id: str, count: int, rng: random.Random) -> list[str]:
    institutions = [{"name": name, "region": REGION, "address": f"文三路 {100 + i} 号"}
                    for i, name in enumerate(INSTITUTION_NAMES)]
    records: list[str] = []
    while len(records) < count:
        records += inspection_records(phone, partner_id, rng.choice(institutions), rng)
    return records[:count]  # a trailing inspection may stay open: still a valid chain


# --- the push run --------------------------------------------------------------------------------------------

@dataclass
class Lane:
    """One client thread: an officer, their device, the pre-encoded request bodies."""

    headers: dict[str, str]
    device_id: str
    warmup: bytes
    batches: list[list[str]]
    bodies: list[bytes]
    responses: list[tuple[int, bytes]] = field(default_factory=list)
    latencies: list[float] = field(default_factory=list)
    retried: int = 0


@dataclass
class PushRun:
    db: str
    batch: int
    records: int
    seconds: float
    latencies: list[float]
    failures: list[str]
    merged: int
    cases: int
    texts: list[str]
    keys: dict[str, bytes]
    retried: int = 0
    busy: float = 0.0
    cpu: dict[str, float] = field(default_factory=dict)  # CPU seconds of the timed part: server, database, client
    server_errors: list[str] = field(default_factory=list)
    insert_rate: float = 0.0

    @property
    def rate(self) -> float:
        return self.records / self.seconds

    def cpu_ms(self, side: str) -> float:
        return self.cpu.get(side, 0.0) / self.records * 1000

    @property
    def server_side_ms(self) -> float:
        """CPU per record on the server's side: the workers plus, on PostgreSQL, its backends."""
        return self.cpu_ms("server") + self.cpu_ms("database")


def _body(records: list[str]) -> bytes:
    return json.dumps({"records": records}, separators=(",", ":")).encode()


def _post(http: requests.Session, url: str, body: bytes, headers: dict[str, str], lane: Lane,
          retries: int) -> requests.Response:
    """POST a push; a 503 ("busy, retry shortly") is retried as a phone would, and counted."""
    for attempt in range(retries + 1):
        r = http.post(url, data=body, headers=headers, timeout=300)
        if r.status_code != 503 or attempt == retries:
            return r
        lane.retried += 1
        time.sleep(0.05 * (attempt + 1))
    raise AssertionError("unreachable")


def _push_lane(base: str, lane: Lane, ready: threading.Barrier, go: threading.Barrier, retries: int) -> None:
    http = requests.Session()
    url = f"{base}/api/v1/sync/push"
    headers = {**lane.headers, "Content-Type": "application/json", "Connection": "close"}
    r = _post(http, url, lane.warmup, headers, lane, retries)
    lane.responses.append((r.status_code, r.content))
    ready.wait()
    go.wait()
    for body in lane.bodies:
        if r.status_code != 200:
            break  # the rest of this chain could only be deferred behind the gap: stop here, reported as failed
        t0 = time.perf_counter()
        r = _post(http, url, body, headers, lane, retries)
        lane.latencies.append(time.perf_counter() - t0)
        lane.responses.append((r.status_code, r.content))
    http.close()


def _check_lane(lane: Lane, warmup_records: list[str], failures: list[str]) -> int:
    """Every record of every push must be `applied`, in order, with the head following. Returns merges."""
    merged = 0
    sent = [warmup_records, *lane.batches]
    if len(lane.responses) != len(sent):
        failures.append(f"{lane.device_id}: stopped after {len(lane.responses)} of {len(sent)} pushes")
    first = 1
    for records, (status, content) in zip(sent, lane.responses, strict=False):
        last = first + len(records) - 1
        if status != 200:
            failures.append(f"{lane.device_id} seq {first}-{last}: HTTP {status}: {content[:300]!r}")
            first = last + 1
            continue
        answer = json.loads(content)
        results = answer["results"]
        if len(results) != len(records):
            failures.append(f"{lane.device_id}: {len(results)} results for {len(records)} records")
        for seq, r in enumerate(results, start=first):
            if r.get("status") != "applied" or r.get("seq") != seq or r.get("device") != lane.device_id:
                failures.append(f"{lane.device_id} seq {seq}: {r}")
            elif (r.get("refs") or {}).get("merged"):
                merged += 1
        if answer["heads"].get(lane.device_id, {}).get("seq") != last:
            failures.append(f"{lane.device_id}: head {answer['heads'].get(lane.device_id)} after seq {last}")
        first = last + 1
    return merged


def run_push(kind: str, batch: int, total: int, threads: int, workers: int, seed: int, retries: int,
             quiet_wait: float, phone_factory: type[BenchPhone] = BenchPhone) -> PushRun:
    """One configuration; `phone_factory` makes each lane's phone (bench/push_sm.py passes SM2 phones)."""
    rng = random.Random(seed)
    per_lane = total // threads
    with fresh_database(kind) as bdb:
        officers = make_officers(bdb.url, [{"region": REGION, "department": "education"} for _ in range(threads)])
        with live_server(bdb, f"push-{kind}-{batch}", workers=workers) as base:
            lanes: list[Lane] = []
            warmups: list[list[str]] = []
            keys: dict[str, bytes] = {}
            texts: list[str] = []
            for n, officer in enumerate(officers):
                headers = login(base, officer["username"])
                phone = phone_factory(base, officer, headers, label=f"bench lane {n}")
                partner = officers[(n + 1) % len(officers)]["id"]
                keys[phone.device_id] = phone.public_raw
                # Pre-sign everything before the clock starts.
                warmup = inspection_records(phone, partner, {"name": "热身培训中心", "region": REGION}, rng)
                records = phone_records(phone, partner, per_lane, rng)
                texts += records
                batches = [records[i:i + batch] for i in range(0, len(records), batch)]
                lanes.append(Lane(headers, phone.device_id, _body(warmup), batches, [_body(b) for b in batches]))
                warmups.append(warmup)
            busy = wait_quiet(quiet_wait)
            ready, go = threading.Barrier(len(lanes) + 1), threading.Barrier(len(lanes) + 1)
            workers_ = [threading.Thread(target=_push_lane, args=(base, lane, ready, go, retries)) for lane in lanes]
            for t in workers_:
                t.start()
            ready.wait()  # every lane has pushed its warm-up inspection
            meter = CpuMeter(base, bdb.url)
            meter.begin()
            client_cpu = time.process_time()
            go.wait()
            t0 = time.perf_counter()
            for t in workers_:
                t.join()
            seconds = time.perf_counter() - t0
            cpu = {**meter.end(), "client": time.process_time() - client_cpu}
            split = [round(x, 2) for x in meter.server_split]
            print(f"    (server CPU per process, busiest first: {split} s in {seconds:.1f} s)", flush=True)
        failures: list[str] = []
        merged = sum(_check_lane(lane, w, failures) for lane, w in zip(lanes, warmups, strict=True))
        db = Database(bdb.url)
        try:
            with db.session() as s:
                ledgered = s.scalar(select(func.count()).select_from(LedgerRecord)) or 0
                cases = s.scalar(select(func.count()).select_from(Case)) or 0
        finally:
            db.dispose()
        expected = per_lane * threads + sum(len(w) for w in warmups)
        if ledgered != expected:
            failures.append(f"ledger holds {ledgered} records, expected {expected}")
        run = PushRun(kind, batch, per_lane * threads, seconds, [x for lane in lanes for x in lane.latencies],
                      failures, merged, cases, texts, keys, retried=sum(lane.retried for lane in lanes), busy=busy,
                      cpu=cpu,
                      server_errors=server_errors(f"push-{kind}-{batch}"))
        wait_quiet(quiet_wait)
        run.insert_rate = insert_limit(bdb.url, texts, batch)
    return run


# --- limit (b): a plain Core insert of ledger-sized rows -----------------------------------------------------

def insert_limit(url: str, texts: list[str], batch: int) -> float:
    """Rows like a ledger row (the same JWS texts, a few short strings, two ints), one commit per batch."""
    metadata = MetaData()
    bench = Table("bench_plain_insert", metadata,
                  Column("id", Integer, primary_key=True, autoincrement=True),
                  Column("seq", Integer, nullable=False),
                  Column("device_id", String(40), nullable=False),
                  Column("op", String(36), nullable=False),
                  Column("hash", String(64), nullable=False),
                  Column("type", String(40), nullable=False),
                  Column("status", String(16), nullable=False),
                  Column("jws", Text, nullable=False))
    rows = [{"seq": n + 1, "device_id": "dev_" + uid().replace("-", ""), "op": uid(),
             "hash": hashlib.sha256(t.encode()).hexdigest(), "type": "inspection.finding", "status": "applied",
             "jws": t} for n, t in enumerate(texts)]
    db = Database(url)
    try:
        metadata.create_all(db.engine)
        t0 = time.perf_counter()
        for i in range(0, len(rows), batch):
            with db.engine.begin() as conn:
                conn.execute(insert(bench), rows[i:i + batch])
        seconds = time.perf_counter() - t0
        metadata.drop_all(db.engine)
    finally:
        db.dispose()
    return len(rows) / seconds


# --- limit (a): Ed25519 verification on as many processes as workers ----------------------------------------

_VERIFY_ITEMS: list[tuple[bytes, bytes, bytes]] = []


def _verify_worker(args: tuple[int, int, float]) -> tuple[int, float, float]:
    start, stop, min_seconds = args
    items = [(Ed25519PublicKey.from_public_bytes(k), m, s) for k, m, s in _VERIFY_ITEMS[start:stop]]
    done, t0, cpu0 = 0, time.perf_counter(), time.process_time()
    while True:
        for key, message, signature in items:
            key.verify(signature, message)
        done += len(items)
        elapsed = time.perf_counter() - t0
        if elapsed >= min_seconds:
            return done, elapsed, time.process_time() - cpu0


def verify_limit(texts: list[str], keys_by_device: dict[str, bytes], kids: list[str], processes: int,
                 min_seconds: float = 3.0) -> tuple[float, float]:
    """Verifications per second (every process verifies its share of the records, over and over), and the
    CPU seconds one verification costs."""
    import base64

    global _VERIFY_ITEMS
    _VERIFY_ITEMS = []
    for text_, kid in zip(texts, kids, strict=True):
        signing_input, _, signature = text_.rpartition(".")
        _VERIFY_ITEMS.append((keys_by_device[kid], signing_input.encode("ascii"),
                              base64.urlsafe_b64decode(signature + "=" * (-len(signature) % 4))))
    share = len(_VERIFY_ITEMS) // processes
    chunks = [(i * share, (i + 1) * share, min_seconds) for i in range(processes)]
    with multiprocessing.get_context("fork").Pool(processes) as pool:
        results = pool.map(_verify_worker, chunks)
    # Each process's own rate, summed: they ran side by side on the same cores.
    return (sum(done / elapsed for done, elapsed, _cpu in results),
            sum(cpu for _d, _e, cpu in results) / sum(done for done, _e, _c in results))


def kid_of(text_: str) -> str:
    import base64

    header = text_.split(".", 1)[0]
    return json.loads(base64.urlsafe_b64decode(header + "=" * (-len(header) % 4)))["kid"]


# --- main ----------------------------------------------------------------------------------------------------

def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--db", choices=["sqlite", "postgres", "both"], default="both")
    parser.add_argument("--records", type=int, default=20000, help="timed records per configuration")
    parser.add_argument("--batches", default="100,500", help="batch sizes, comma-separated (at most 500)")
    parser.add_argument("--threads", type=int, default=4, help="client threads, one officer and device each")
    parser.add_argument("--workers", type=int, default=2, help="gunicorn workers (also the verify processes)")
    parser.add_argument("--retries", type=int, default=3,
                        help="times a push answered 503 (database busy) is retried, as a phone would; counted")
    parser.add_argument("--quiet-wait", type=float, default=0.0,
                        help="before each timed part, wait up to this many seconds for other load to stop")
    parser.add_argument("--seed", type=int, default=20260714)
    parser.add_argument("--suite", choices=["intl", "sm"], default="intl",
                        help="sm: SM2 phones against the SM2 verify limit, beside Ed25519 phones (bench/push_sm.py)")
    args = parser.parse_args(argv)
    if args.suite == "sm":
        import push_sm  # SM2 phones (issue 23): their own run and report, which reuse this module's

        return push_sm.run(args)
    kinds = ["sqlite", "postgres"] if args.db == "both" else [args.db]
    batches = [int(b) for b in args.batches.split(",")]

    print_machine()
    print(f"push bench: {args.records} records per configuration, {args.threads} client threads, "
          f"{args.workers} server workers; record mix per inspection: case.open, inspection.start (2 officers), "
          f"6 x evidence.capture, 6 x inspection.finding, inspection.end; {len(INSTITUTION_NAMES)} institutions")
    runs: list[PushRun] = []
    for kind in kinds:
        for batch in batches:
            run = run_push(kind, batch, args.records, args.threads, args.workers, args.seed + len(runs),
                           args.retries, args.quiet_wait)
            runs.append(run)
            status = "all applied" if not run.failures else f"{len(run.failures)} FAILURES"
            print(f"  {kind:8} batch {batch:3}: {run.records} records in {run.seconds:.1f} s = "
                  f"{run.rate:,.0f} records/s; push latency median {median(run.latencies) * 1000:.0f} ms, "
                  f"p95 {percentile(run.latencies, 95) * 1000:.0f} ms; {run.merged} case.open merged "
                  f"into {run.cases} cases; plain insert {run.insert_rate:,.0f} rows/s; {status}; "
                  f"other load before: {run.busy:.0%} of the CPUs", flush=True)
            if run.retried:
                print(f"    WARNING: {run.retried} pushes answered 503 and were retried; server log says:")
                for line in run.server_errors[:6]:
                    print("      " + line[:200])

    sample = runs[0]
    mean_len = sum(len(t) for t in sample.texts) / len(sample.texts)
    wait_quiet(args.quiet_wait)
    verify_busy = wait_quiet(args.quiet_wait)
    verify, verify_cpu = verify_limit(sample.texts, sample.keys, [kid_of(t) for t in sample.texts], args.workers)
    print(f"  verify limit: {verify:,.0f} Ed25519 verifications/s on {args.workers} processes "
          f"({verify_cpu * 1e6:.0f} us CPU each; records average {mean_len:.0f} bytes of JWS); "
          f"other load before: {verify_busy:.0%} of the CPUs")

    rows = []
    for run in runs:
        rows.append([f"{run.db}, batch {run.batch}", f"{run.rate:,.0f}", f"{run.insert_rate:,.0f}",
                     f"{run.rate / verify:.1%}", f"{run.rate / run.insert_rate:.1%}", str(run.retried),
                     "yes" if not run.failures else "NO"])
    print()
    print(f"verify limit ({args.workers} processes): {verify:,.0f}/s")
    print(table(["configuration", "push records/s", "plain insert rows/s", "push / verify limit",
                 "push / insert limit", "503 retries", "all applied"], rows))
    print()
    print("CPU per record in the timed part (CPU seconds / records; does not depend on other load the way")
    print(f"wall-clock rates do). One verification costs {verify_cpu * 1e6:.0f} us CPU; 'CPU-bound rate' is "
          f"{args.workers} cores / (server + database CPU per record).")
    rows = []
    for run in runs:
        rows.append([f"{run.db}, batch {run.batch}", f"{run.cpu_ms('server'):.2f}", f"{run.cpu_ms('database'):.2f}",
                     f"{run.cpu_ms('client'):.2f}", f"{run.server_side_ms * 1000 / (verify_cpu * 1e6):.1f}",
                     f"{args.workers * 1000 / run.server_side_ms:,.0f}",
                     f"{verify_cpu * 1000 / run.server_side_ms:.1%}"])
    print(table(["configuration", "server ms/record", "database ms/record", "client ms/record",
                 "server-side / one verify", "CPU-bound rate /s", "push / verify limit by CPU"], rows))
    print()
    busy = max([verify_busy, *(run.busy for run in runs)])
    if busy > 0.2:
        print(f"NOTE: other processes used up to {busy:.0%} of the CPUs before the timed parts: wall-clock rates "
              "and their ratios are skewed; the CPU-based ratio is the steadier figure.")
    for run in runs:
        if run.db == "postgres":
            for how, share in (("wall-clock", run.rate / verify), ("by CPU", verify_cpu * 1000 / run.server_side_ms)):
                verdict = "MET" if share >= TARGET_SHARE_OF_VERIFY else "NOT MET"
                print(f"target push >= {TARGET_SHARE_OF_VERIFY:.0%} of the verify limit on PostgreSQL, "
                      f"batch {run.batch}, {how}: {share:.1%} -> {verdict}")
    failed = [f for run in runs for f in run.failures]
    if failed:
        print(f"\nFAILED: {len(failed)} records or pushes were not applied correctly; first ones:", file=sys.stderr)
        for f in failed[:20]:
            print("  " + f, file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
