"""The cost of the custody log's second tree (issue 23, item 8): leaves appended with FIELDCASE_CUSTODY_SUITES=intl
against intl,sm, on the same kind of database, in the same run.

    .venv/bin/python bench/custody_sm.py [--db sqlite|postgres|both] [--leaves 5000] [--commits 41,201]

For each database kind and commit size the bench makes two fresh databases, one whose signer keeps the SHA-256 tree
only (`intl`) and one that keeps the SM3 tree with SM2-signed heads too (`intl,sm`), both opened as a script opens
them (`backend.bootstrap.database(..., signing=True)`: tree heads signed inline at every 256th leaf, as the API's
inline job runner does). Then it appends `--leaves` leaves to each, in transactions of `--commits` leaves, the two
databases taking turns commit by commit (which goes first alternates), so other load on the machine weighs on both
alike. The leaves are `declared` events shaped as a push writes them (op, record hash, device, sha256 and sm3,
size, kind, capture time). Commit sizes default to what bench/push.py's pushes append: per push of 100 / 500
records, 40 / 200 `declared` leaves (6 evidence.capture in 15 records) and one `device_head`.

Per configuration it prints ms per leaf (wall-clock; and CPU: this process plus, on PostgreSQL, the backends of the
bench database) for each, and the ratio intl,sm / intl. Afterwards the SM tree must hold every leaf and have a head
(SM2 signature valid) wherever the intl tree has one.

It also times, alternating, one SM head signature (`SmSigner.sign`: SM2 over the head's canonical JSON) against one
Ed25519 head signature (`Signer.sign`), and an SM3 Merkle node hash against a SHA-256 one, over the same inputs.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime

from common import cpu_busy, fresh_database, print_machine, process_cpu, table, wait_quiet
from sm_common import openssl_sm2_speed
from sqlalchemy import create_engine, func, select, text
from sqlalchemy.engine import make_url

from backend.bootstrap import database as signing_database
from backend.core.config import Settings
from backend.core.db import Database
from backend.core.models import CustodyEvent, SmMerkleNode, SmTreeHead, TreeHead
from backend.core.secret_files import init_secrets
from media.custody import log as custody
from media.custody import merkle
from media.custody.keys import head_payload, signer_for, verify_sm_head

RECORDS_PER_INSPECTION, CAPTURES_PER_INSPECTION = 15, 6


def push_commit(batch: int) -> int:
    """Leaves one push of `batch` bench records appends: its `declared` events and one device_head."""
    return round(batch * CAPTURES_PER_INSPECTION / RECORDS_PER_INSPECTION) + 1


@dataclass
class Side:
    suites: str
    db: Database
    url: str
    leaves: int = 0
    wall: float = 0.0
    client_cpu: float = 0.0
    backend_cpu: float = 0.0
    commits: list[float] = field(default_factory=list)

    def ms(self, what: str = "wall") -> float:
        seconds = {"wall": self.wall, "cpu": self.client_cpu + self.backend_cpu}[what]
        return seconds * 1000 / self.leaves


def _backends(url: str) -> dict[int, float]:
    """CPU seconds so far of each PostgreSQL backend serving the database at `url` (empty on SQLite)."""
    if make_url(url).get_backend_name() != "postgresql":
        return {}
    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            pids = list(conn.scalars(text("SELECT pid FROM pg_stat_activity WHERE datname = current_database() "
                                          "AND pid <> pg_backend_pid()")))
    finally:
        engine.dispose()
    return {pid: process_cpu(pid) for pid in pids}


def _leaf_details(n: int) -> dict[str, object]:
    data = os.urandom(16)
    return {"op": str(uuid.uuid4()), "record_hash": hashlib.sha256(data).hexdigest(),
            "device": f"dev_{uuid.UUID(int=n % 4).hex}", "sha256": hashlib.sha256(data + b"f").hexdigest(),
            "sm3": hashlib.sha256(data + b"s").hexdigest(),  # any 64 hex digits: the leaf's shape is what counts
            "size": 800_000 + n, "kind": "photo",
            "captured_at": "2026-11-25T03:00:00.000Z"}


def _commit(side: Side, count: int, actor: str) -> None:
    cpu0, t0 = time.process_time(), time.perf_counter()
    with side.db.transaction() as s:
        now = datetime.now(UTC)
        for _ in range(count):
            custody.record(s, "declared", str(uuid.uuid4()), actor, at=now, **_leaf_details(side.leaves))
    elapsed = time.perf_counter() - t0
    side.wall += elapsed
    side.client_cpu += time.process_time() - cpu0
    side.commits.append(elapsed)
    side.leaves += count


def _open(kind_db, suites: str) -> tuple[Settings, Database]:
    settings = Settings.from_env({**kind_db.env, "FIELDCASE_CUSTODY_SUITES": suites})
    init_secrets(settings)  # the SM2 head key too (a shared database's hosts make none themselves)
    return settings, signing_database(settings, signing=True)


def run_config(kind: str, commit: int, leaves: int, quiet_wait: float) -> tuple[Side, Side, dict[str, object]]:
    actor = "officer-bench-custody"
    with fresh_database(kind) as a, fresh_database(kind) as b:
        _sa, db_a = _open(a, "intl")
        settings_b, db_b = _open(b, "intl,sm")
        sides = [Side("intl", db_a, a.url), Side("intl,sm", db_b, b.url)]
        try:
            for side in sides:  # warm-up, untimed: connections, statement caches, the first nodes
                _commit(side, commit, actor)
                side.leaves, side.wall, side.client_cpu, side.commits = 0, 0.0, 0.0, []
            busy = wait_quiet(quiet_wait)
            start = {id(side): _backends(side.url) for side in sides}
            rounds = -(-leaves // commit)
            for r in range(rounds):
                count = min(commit, leaves - r * commit)
                for side in sides if r % 2 == 0 else sides[::-1]:
                    _commit(side, count, actor)
            for side in sides:
                now = _backends(side.url)
                side.backend_cpu = sum(cpu - start[id(side)].get(pid, 0.0) for pid, cpu in now.items())
            check = _check(db_b, settings_b)
            check["busy"] = busy
        finally:
            db_a.dispose()
            db_b.dispose()
    return sides[0], sides[1], check


def _check(db: Database, settings: Settings) -> dict[str, object]:
    """The SM tree holds every leaf, and has a valid SM2-signed head wherever the intl tree has a head."""
    sm_point = signer_for(settings).sm.public_raw  # type: ignore[union-attr]
    with db.session() as s:  # read from the tables: the module layout of media.custody may change, they do not
        size = s.scalar(select(func.count()).select_from(CustodyEvent)) or 0
        sm_size = s.scalar(select(func.count()).select_from(SmMerkleNode).where(SmMerkleNode.level == 0)) or 0
        intl_heads = set(s.scalars(select(TreeHead.tree_size)))
        sm_heads = {h.tree_size: {"tree_size": h.tree_size, "root_hash": h.root_hash, "timestamp": h.timestamp,
                                  "signature": h.signature} for h in s.scalars(select(SmTreeHead))}
    good = all(verify_sm_head(sm_point, head) for head in sm_heads.values())
    ok = size == sm_size and intl_heads == set(sm_heads) and good and bool(sm_heads)
    return {"ok": ok, "leaves": size, "sm_leaves": sm_size, "heads": len(intl_heads), "sm_heads": len(sm_heads),
            "signatures_valid": good}


def _rate(fn, seconds: float) -> tuple[float, float]:
    """(calls per second, CPU seconds per call) of `fn` over about `seconds`."""
    n, cpu0, t0 = 0, time.process_time(), time.perf_counter()
    while time.perf_counter() - t0 < seconds:
        for _ in range(20):
            fn()
        n += 20
    return n / (time.perf_counter() - t0), (time.process_time() - cpu0) / n


def alternate(pair: dict[str, object], rounds: int = 6, seconds: float = 0.4) -> dict[str, tuple[float, float]]:
    """Best rate (and its CPU per call) of each function, timed in turns."""
    best: dict[str, tuple[float, float]] = {}
    for r in range(rounds):
        for name in (list(pair) if r % 2 == 0 else list(pair)[::-1]):
            rate, cpu = _rate(pair[name], seconds)
            if name not in best or rate > best[name][0]:
                best[name] = (rate, cpu)
    return best


def micro(instance_env: dict[str, str]) -> None:
    settings = Settings.from_env({**instance_env, "FIELDCASE_CUSTODY_SUITES": "intl,sm"})
    init_secrets(settings)
    signer = signer_for(settings)
    payload = head_payload(4096, hashlib.sha256(b"root").hexdigest(), "2026-11-25T03:00:00.000Z")
    busy = cpu_busy(1.0)
    sig = alternate({"SM2 head signature (SmSigner.sign)": lambda: signer.sm.sign(payload),  # type: ignore[union-attr]
                     "Ed25519 head signature (Signer.sign)": lambda: signer.sign(payload)})
    left, right = hashlib.sha256(b"l").digest(), hashlib.sha256(b"r").digest()
    leaf = b'{"action":"declared","actor":"officer-bench-custody","at":"2026-11-25T03:00:00.000Z"}' * 4
    nodes = alternate({"SM3 node hash": lambda: merkle.SM3_TREE.node_hash(left, right),
                       "SHA-256 node hash": lambda: merkle.SHA256_TREE.node_hash(left, right),
                       "SM3 leaf hash": lambda: merkle.SM3_TREE.leaf_hash(leaf),
                       "SHA-256 leaf hash": lambda: merkle.SHA256_TREE.leaf_hash(leaf)})
    print(f"\nper call, best of 6 turns (other load before: {busy:.0%} of the CPUs):")
    for name, (rate, cpu) in {**sig, **nodes}.items():
        print(f"  {name}: {rate:,.0f}/s, {cpu * 1e6:.1f} us CPU")
    sm, ed = sig["SM2 head signature (SmSigner.sign)"], sig["Ed25519 head signature (Signer.sign)"]
    print(f"SM2 head signature: {1e6 / sm[0]:,.0f} us = {ed[0] / sm[0]:.1f} x one Ed25519 head signature "
          f"({1e6 / ed[0]:,.0f} us) by wall-clock; by CPU {sm[1] * 1e6:,.0f} us = {sm[1] / ed[1]:.1f} x "
          f"({ed[1] * 1e6:,.0f} us); per leaf (one head per {custody.HEAD_EVERY}) "
          f"{sm[1] * 1e6 / custody.HEAD_EVERY:.1f} us CPU")
    speed = openssl_sm2_speed()
    if speed:
        # `openssl speed` divides by its user CPU time (no -elapsed): compare per CPU second.
        print(f"SM2 head signature (GmSSL via gmssl-pyx) = {1 / sm[1] / speed[0]:.1%} of OpenSSL's SM2 sign rate, "
              f"per CPU second ({1 / sm[1]:,.0f} vs {speed[0]:,.0f}/s, `openssl speed sm2`)")
    for what in ("node", "leaf"):
        s3, s2 = nodes[f"SM3 {what} hash"], nodes[f"SHA-256 {what} hash"]
        print(f"SM3 Merkle {what} hash: {s3[1] * 1e6:.2f} us CPU = {s3[1] / s2[1]:.1f} x one SHA-256 {what} hash "
              f"({s2[1] * 1e6:.2f} us; by wall-clock {s2[0] / s3[0]:.1f} x)")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--db", choices=["sqlite", "postgres", "both"], default="both")
    parser.add_argument("--leaves", type=int, default=5000, help="timed leaves per configuration and suite")
    parser.add_argument("--commits", default=f"{push_commit(100)},{push_commit(500)}",
                        help="leaves per commit, comma-separated (default: what a push of 100 / 500 appends)")
    parser.add_argument("--quiet-wait", type=float, default=0.0,
                        help="before each timed part, wait up to this many seconds for other load to stop")
    args = parser.parse_args(argv)
    kinds = ["sqlite", "postgres"] if args.db == "both" else [args.db]
    commits = [int(c) for c in args.commits.split(",")]
    print_machine()
    print(f"custody bench: {args.leaves} leaves per configuration and suite, commits of {commits} leaves, a tree "
          f"head every {custody.HEAD_EVERY} leaves signed inline; intl and intl,sm databases take turns")
    rows, failures = [], []
    for kind in kinds:
        for commit in commits:
            intl, both, check = run_config(kind, commit, args.leaves, args.quiet_wait)
            if not check["ok"]:
                failures.append(f"{kind}, commits of {commit}: {check}")
            ratio, ratio_cpu = both.ms() / intl.ms(), both.ms("cpu") / intl.ms("cpu")
            rows.append([f"{kind}, commits of {commit}", f"{intl.ms():.3f}", f"{both.ms():.3f}", f"{ratio:.2f}",
                         f"{both.ms() - intl.ms():+.3f}", f"{intl.ms('cpu'):.3f}", f"{both.ms('cpu'):.3f}",
                         f"{ratio_cpu:.2f}", f"{check['heads']} / {check['sm_heads']}",
                         "yes" if check["ok"] else "NO", f"{check['busy']:.0%}"])
            print(f"second tree, {kind}, commits of {commit}: intl,sm {both.ms():.3f} ms/leaf = {ratio:.2f} x intl "
                  f"{intl.ms():.3f} ms/leaf (+{both.ms() - intl.ms():.3f} ms per leaf); by CPU {both.ms('cpu'):.3f} / "
                  f"{intl.ms('cpu'):.3f} ms = {ratio_cpu:.2f} x; {check['leaves']} leaves, {check['heads']} intl and "
                  f"{check['sm_heads']} SM heads; SM tree in step and every SM head valid: "
                  f"{'yes' if check['ok'] else 'NO'}", flush=True)
    print()
    print(table(["configuration", "intl ms/leaf", "intl,sm ms/leaf", "ratio", "second tree ms/leaf",
                 "intl CPU ms/leaf", "intl,sm CPU ms/leaf", "CPU ratio", "heads intl / SM", "SM tree checked",
                 "other load"], rows))
    with tempfile.TemporaryDirectory(prefix="fieldcase-bench-keys-") as keys:
        micro({"FIELDCASE_INSTANCE_DIR": keys, "DATABASE_URL": ""})
    if failures:
        print("\nFAILED: " + "; ".join(failures), file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
