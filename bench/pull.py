"""Pull cost: time per page of the change feed through the HTTP API, at 10 000 and 100 000 changes.

One fresh database per feed size; its `changes` table is filled directly (bulk
inserts of realistic change rows spread over the 13 districts, the smaller feed
being the start of the larger), and the production server (gunicorn, 2 workers)
serves GET /api/v1/sync/pull from it to a district officer (330106: their
district and their own changes) and a city officer (330100: everything).
The bench reads one page (limit 100) at three positions of the officer's feed:
the start (no cursor), the middle, and the end (150 changes before the last
one the officer sees), 3 untimed then 50 timed reads each, alternating between
the sizes so that other load on the machine weighs on every size alike. It
reports median and p95 wall-clock time per page and the server-side CPU per
page (workers plus, on PostgreSQL, the database backends). PROTOCOL §5 promises
a page costs the same however long the feed is: the ratio 100k/10k should be ~1.

Run from the repository root:  .venv/bin/python bench/pull.py [--db postgres|sqlite|both]
"""

from __future__ import annotations

import argparse
import random
import sys
import time
import uuid
from contextlib import ExitStack
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import requests
from common import (
    BenchDatabase,
    CpuMeter,
    cpu_busy,
    fresh_database,
    live_server,
    login,
    make_officers,
    median,
    percentile,
    print_machine,
    table,
)
from sqlalchemy import func, insert, or_, select, text

from backend.core.db import Database
from backend.core.models import Change
from sync.feed import encode_cursor

DISTRICTS = ["330102", "330105", "330106", "330108", "330109", "330110", "330111", "330112", "330113", "330114",
             "330122", "330127", "330182"]
DISTRICT, CITY = "330106", "330100"
OWN_SHARE = 0.01  # changes that belong to the district officer (their case aliases, evidence), in any region


def change_row(n: int, rng: random.Random, owners: list[str], me: str, at: datetime) -> dict[str, Any]:
    """A change as the server writes it: a kind, the entity, its region and owner, a snapshot."""
    region = rng.choice(DISTRICTS)
    owner = me if rng.random() < OWN_SHARE else rng.choice(owners)
    kind = rng.choices(["case", "case_alias", "institution", "evidence"], weights=[2, 3, 1, 6])[0]
    entity = uuid.UUID(int=rng.getrandbits(128)).hex
    if kind == "case":
        data = {"id": f"case_{entity}", "institution_id": f"ins_{entity[:16]}", "region": region,
                "department": "education", "status": "registered", "summary": "群众举报无证办学", "version": 1,
                "created_by": owner, "created_at": at.isoformat(), "updated_at": at.isoformat()}
    elif kind == "case_alias":
        data = {"client_case_id": str(uuid.UUID(entity)), "case_id": f"case_{entity[::-1]}", "merged": n % 3 == 0}
    elif kind == "institution":
        data = {"id": f"ins_{entity}", "credit_code": None, "name": f"第{n}号培训中心", "address": f"文三路 {n} 号",
                "region": region, "licence_status": "unknown", "category": "other", "risk_level": "medium",
                "provisional": True}
    else:
        data = {"id": str(uuid.UUID(entity)), "status": "declared", "purge_allowed": False,
                "sha256": (entity * 2), "size": rng.randint(800_000, 4_000_000), "kind": "photo",
                "inspection_id": str(uuid.uuid4()), "case_id": f"case_{entity[:20]}"}
    officer = owner if kind in ("case", "case_alias", "evidence") else None
    return {"kind": kind, "entity_id": data.get("id") or data["client_case_id"], "op": "upsert",
            "region_code": region, "officer_id": officer, "data": data, "created_at": at}


def fill(url: str, upto: int, rng: random.Random, owners: list[str], me: str) -> float:
    """Bulk-insert change rows until the feed holds `upto`; returns the seconds it took."""
    db = Database(url)
    t0 = time.perf_counter()
    try:
        with db.engine.begin() as conn:
            have = conn.scalar(select(func.count()).select_from(Change)) or 0
        at = datetime(2026, 9, 1, tzinfo=UTC) + timedelta(seconds=have)
        while have < upto:
            chunk = min(5000, upto - have)
            rows = [change_row(have + i, rng, owners, me, at + timedelta(seconds=i)) for i in range(chunk)]
            with db.engine.begin() as conn:
                conn.execute(insert(Change), rows)
            have += chunk
            at += timedelta(seconds=chunk)
        with db.engine.connect() as conn:  # what autovacuum/autoanalyze would have done by now
            conn.execute(text("ANALYZE changes"))
            conn.commit()
    finally:
        db.dispose()
    return time.perf_counter() - t0


def positions(url: str, officer: dict[str, str], page: int) -> dict[str, tuple[str | None, int]]:
    """Cursors for the start, middle and end of what the officer sees, and how many changes that is."""
    db = Database(url)
    try:
        with db.session() as s:
            audience = select(Change.id)
            if officer["region"] != CITY:
                audience = audience.where(or_(Change.region_code == officer["region"],
                                              Change.officer_id == officer["id"]))
            seen = s.scalar(select(func.count()).select_from(audience.subquery())) or 0

            def cursor_at(index: int) -> str | None:
                after = s.scalar(audience.order_by(Change.id).offset(index - 1).limit(1)) if index > 0 else None
                return encode_cursor(after) if after else None

            if seen < 2 * page + 50:
                raise RuntimeError(f"the officer sees only {seen} changes: too few for {page}-change pages")
            last_full = seen - page - 50
            return {"start": (None, seen), "middle": (cursor_at(min(seen // 2, last_full)), seen),
                    "end": (cursor_at(last_full), seen)}
    finally:
        db.dispose()


def read_page(http: requests.Session, base: str, headers: dict[str, str], cursor: str | None, page: int) -> float:
    params: dict[str, Any] = {"limit": page}
    if cursor:
        params["cursor"] = cursor
    t0 = time.perf_counter()
    r = http.get(f"{base}/api/v1/sync/pull", params=params, headers=headers, timeout=60)
    elapsed = time.perf_counter() - t0
    if r.status_code != 200:
        raise RuntimeError(f"pull answered {r.status_code}: {r.text[:300]}")
    got = len(r.json()["changes"])
    if got != page:
        raise RuntimeError(f"expected a full page of {page}, got {got}")
    return elapsed


@dataclass
class Feed:
    """One database holding a feed of one size, its server, and its two officers."""

    size: int
    bdb: BenchDatabase
    base: str = ""
    officers: dict[str, dict[str, str]] = field(default_factory=dict)
    headers: dict[str, dict[str, str]] = field(default_factory=dict)


def run(kind: str, sizes: list[int], page: int, reads: int, seed: int, warmup: int = 3) -> list[dict[str, Any]]:
    """One database per size, each with its own server; the reads alternate between the sizes, so whatever
    else runs on the machine weighs on every size alike."""
    owners_rng = random.Random(seed)
    owners = [f"ofc_{uuid.UUID(int=owners_rng.getrandbits(128)).hex}" for _ in range(60)]
    results = []
    with ExitStack() as stack:
        feeds = []
        for size in sizes:
            feed = Feed(size, stack.enter_context(fresh_database(kind)))
            district, city = make_officers(feed.bdb.url, [{"region": DISTRICT, "department": "education"},
                                                          {"region": CITY, "department": "education"}])
            feed.officers = {"district": district, "city": city}
            # The same seed: the smaller feed is the start of the larger one.
            seconds = fill(feed.bdb.url, size, random.Random(seed), owners, district["id"])
            print(f"  {kind}: filled {size:,} changes in {seconds:.1f} s", flush=True)
            feed.base = stack.enter_context(live_server(feed.bdb, f"pull-{kind}-{size}"))
            feed.headers = {who: login(feed.base, o["username"]) for who, o in feed.officers.items()}
            feeds.append(feed)
        http = requests.Session()
        for who, label in (("district", f"district {DISTRICT}"), ("city", f"city {CITY}")):
            cursors = {f.size: positions(f.bdb.url, f.officers[who], page) for f in feeds}
            for where in ("start", "middle", "end"):
                for f in feeds:
                    for _ in range(warmup):
                        read_page(http, f.base, f.headers[who], cursors[f.size][where][0], page)
                meters = {f.size: CpuMeter(f.base, f.bdb.url) for f in feeds}
                busy = cpu_busy(0.5)
                for meter in meters.values():
                    meter.begin()
                times: dict[int, list[float]] = {f.size: [] for f in feeds}
                for _ in range(reads):
                    for f in feeds:
                        times[f.size].append(read_page(http, f.base, f.headers[who], cursors[f.size][where][0], page))
                for f in feeds:
                    cpu = meters[f.size].end()
                    cpu_ms = (cpu["server"] + cpu["database"]) / reads * 1000
                    seen = cursors[f.size][where][1]
                    results.append({"db": kind, "size": f.size, "officer": label, "position": where, "seen": seen,
                                    "times": times[f.size], "cpu_ms": cpu_ms, "busy": busy})
                    print(f"  {kind:8} {f.size:>7,} changes  {label:16} {where:6} (sees {seen:,}): "
                          f"median {median(times[f.size]) * 1000:.1f} ms, "
                          f"p95 {percentile(times[f.size], 95) * 1000:.1f} ms, "
                          f"server-side CPU {cpu_ms:.1f} ms/page; other load before: {busy:.0%}", flush=True)
        http.close()
    return results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--db", choices=["sqlite", "postgres", "both"], default="postgres")
    parser.add_argument("--sizes", default="10000,100000", help="feed sizes, comma-separated, ascending")
    parser.add_argument("--limit", type=int, default=100, help="page size")
    parser.add_argument("--reads", type=int, default=50, help="timed reads per position")
    parser.add_argument("--seed", type=int, default=20260714)
    args = parser.parse_args(argv)
    kinds = ["postgres", "sqlite"] if args.db == "both" else [args.db]
    sizes = sorted(int(s) for s in args.sizes.split(","))

    print_machine()
    print(f"pull bench: page limit {args.limit}, {args.reads} timed reads at each of start/middle/end, "
          f"feed sizes {', '.join(f'{s:,}' for s in sizes)}; {len(DISTRICTS)} districts")
    results = []
    for kind in kinds:
        results += run(kind, sizes, args.limit, args.reads, args.seed)

    print()
    rows = []
    for kind in kinds:
        for who in (f"district {DISTRICT}", f"city {CITY}"):
            per_size, per_cpu = {}, {}
            for size in sizes:
                times = [t for r in results if (r["db"], r["officer"], r["size"]) == (kind, who, size)
                         for t in r["times"]]
                per_size[size] = median(times)
                by_pos = {r["position"]: median(r["times"]) * 1000 for r in results
                          if (r["db"], r["officer"], r["size"]) == (kind, who, size)}
                cpu = [r["cpu_ms"] for r in results if (r["db"], r["officer"], r["size"]) == (kind, who, size)]
                per_cpu[size] = sum(cpu) / len(cpu)
                rows.append([kind, who, f"{size:,}", f"{median(times) * 1000:.1f}",
                             f"{percentile(times, 95) * 1000:.1f}",
                             " / ".join(f"{by_pos[p]:.1f}" for p in ("start", "middle", "end")),
                             f"{per_size[size] / per_size[sizes[0]]:.2f}", f"{per_cpu[size]:.1f}",
                             f"{per_cpu[size] / per_cpu[sizes[0]]:.2f}"])
    print(table(["db", "officer", "changes", "median ms/page", "p95 ms/page", "median start / middle / end",
                 f"ratio to {sizes[0]:,}", "server CPU ms/page", f"CPU ratio to {sizes[0]:,}"], rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
