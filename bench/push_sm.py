"""Push throughput with SM2 phones (issue 23, item 8), against the SM2 verify limit measured in the same run.

    .venv/bin/python bench/push_sm.py --db postgres --batches 500 --records 8000 --quiet-wait 5
    .venv/bin/python bench/push.py --suite sm ...          # the same

For each database kind and batch size it runs `bench/push.py`'s configuration twice, one after the other on fresh
databases: with SM2 phones (enrolled with `alg` SM2SM3, records signed SM2 with SM3 over the pinned user ID, raw
r || s, chained by SM3 of the JWS, evidence declared by `sm3`) and, as the peer, with Ed25519 phones (exactly
push.py's). Same record mix, same seed, same checks (every record `applied`, in order, the ledger complete).

Limits measured in the same run, over the same signing inputs and keys the phones pushed:
  * SM2: records verified per second by `backend.core.crypto.SM.verify` (what the server calls for an SM2
    device: GmSSL through gmssl-pyx) on one core, and on as many processes as the server has workers;
  * Ed25519: the same with `cryptography`'s Ed25519 verify (push.py's limit), on one core and on the workers;
  * for scale, OpenSSL's own SM2 verify rate per CPU second (`openssl speed sm2`), the peer of GmSSL's.

Each push rate is printed as a ratio of its own suite's limit (wall-clock), and by CPU: (CPU of one
verification) / (server + database CPU per pushed record), which other load on the machine moves much less.
Signing is not timed, but SM2 signing with GmSSL runs at only a few hundred per second here: 8 000 records per
configuration take about 25 s to pre-sign.
"""

from __future__ import annotations

import argparse
import base64
import multiprocessing
import sys
import time

import push
from common import BenchPhone, median, percentile, print_machine, table, wait_quiet
from sm_common import openssl_sm2_speed, sm3_hex

from backend.core.crypto import SM

SM2_ALG = "SM2SM3"
MAX_LIMIT_ITEMS = 4000  # signing inputs a limit verifies (over and over): the same records, not all of them


class SmBenchPhone(BenchPhone):
    """An SM2 phone (PROTOCOL §2, §3 for `SM2SM3`): enrols its 65-byte point with `alg` SM2SM3, signs each record
    SM2 with SM3 (raw r || s), chains by SM3 of the JWS, and declares evidence by `sm3`."""

    ALG = SM2_ALG

    def _generate(self) -> None:
        self.private, self.public_raw = SM.generate()

    def _sign(self, signing_input: bytes) -> bytes:
        return SM.sign(self.private, self.public_raw, signing_input)

    def _chain_hash(self, jws: str) -> str:
        return sm3_hex(jws.encode("ascii"))

    def evidence_digest(self, data: bytes) -> dict[str, str]:
        return {"sm3": sm3_hex(data)}


# --- the SM2 verify limit: SM.verify over the same signing inputs ------------------------------------------------

_SM_ITEMS: list[tuple[bytes, bytes, bytes]] = []


def _sm_verify_worker(args: tuple[int, int, float]) -> tuple[int, float, float]:
    start, stop, min_seconds = args
    items = _SM_ITEMS[start:stop]
    done, t0, cpu0 = 0, time.perf_counter(), time.process_time()
    while True:
        for key, message, signature in items:
            if not SM.verify(key, message, signature):
                raise AssertionError("an SM2 record the server applied does not verify")
        done += len(items)
        elapsed = time.perf_counter() - t0
        if elapsed >= min_seconds:
            return done, elapsed, time.process_time() - cpu0


def _split(text_: str) -> tuple[bytes, bytes]:
    signing_input, _, signature = text_.rpartition(".")
    return signing_input.encode("ascii"), base64.urlsafe_b64decode(signature + "=" * (-len(signature) % 4))


def sm_verify_limit(texts: list[str], keys_by_device: dict[str, bytes], processes: int,
                    min_seconds: float = 3.0) -> tuple[float, float]:
    """SM2 verifications per second with `SM.verify` on `processes` processes, and CPU seconds per verification."""
    global _SM_ITEMS
    _SM_ITEMS = [(keys_by_device[push.kid_of(t)], *_split(t)) for t in texts]
    share = len(_SM_ITEMS) // processes
    chunks = [(i * share, (i + 1) * share, min_seconds) for i in range(processes)]
    with multiprocessing.get_context("fork").Pool(processes) as pool:
        results = pool.map(_sm_verify_worker, chunks)
    return (sum(done / elapsed for done, elapsed, _cpu in results),
            sum(cpu for _d, _e, cpu in results) / sum(done for done, _e, _c in results))


def ed_verify_limit(texts: list[str], keys_by_device: dict[str, bytes], processes: int) -> tuple[float, float]:
    """push.py's Ed25519 limit (pre-loaded keys, as the server holds an Ed25519 device's key) on `processes`."""
    return push.verify_limit(texts, keys_by_device, [push.kid_of(t) for t in texts], processes)


# --- the run -------------------------------------------------------------------------------------------------

PHONES = {"sm": ("SM2", SmBenchPhone), "intl": ("Ed25519", BenchPhone)}


def run(args: argparse.Namespace) -> int:
    kinds = ["sqlite", "postgres"] if args.db == "both" else [args.db]
    batches = [int(b) for b in args.batches.split(",")]
    print_machine()
    print(f"push bench, SM2 phones beside Ed25519 phones: {args.records} records per configuration, {args.threads} "
          f"client threads, {args.workers} server workers; record mix as bench/push.py")
    runs: list[tuple[str, push.PushRun]] = []
    n = 0
    for kind in kinds:
        for batch in batches:
            # Alternate which suite goes first, so a slow stretch of the machine does not always hit the same one.
            order = ("sm", "intl") if n % 2 == 0 else ("intl", "sm")
            for suite in order:
                name, factory = PHONES[suite]
                t_sign = time.perf_counter()
                r = push.run_push(kind, batch, args.records, args.threads, args.workers, args.seed + n, args.retries,
                                  args.quiet_wait, phone_factory=factory)
                runs.append((suite, r))
                status = "all applied" if not r.failures else f"{len(r.failures)} FAILURES"
                print(f"  {name:7} phones, {kind:8} batch {batch:3}: {r.records} records in {r.seconds:.1f} s = "
                      f"{r.rate:,.0f} records/s; latency median {median(r.latencies) * 1000:.0f} ms, p95 "
                      f"{percentile(r.latencies, 95) * 1000:.0f} ms; server {r.cpu_ms('server'):.2f} + database "
                      f"{r.cpu_ms('database'):.2f} ms CPU/record; {r.retried} retried; {status}; other load before: "
                      f"{r.busy:.0%} (configuration took {time.perf_counter() - t_sign:.0f} s with signing)",
                      flush=True)
            n += 1

    # The limits, over the records of the first configuration of each suite, measured side by side.
    sample = {suite: next(r for s, r in runs if s == suite) for suite in PHONES}
    texts = {suite: r.texts[:MAX_LIMIT_ITEMS] for suite, r in sample.items()}
    limits: dict[tuple[str, int], tuple[float, float]] = {}
    busy = []
    for processes in (1, args.workers):
        for suite in ("sm", "intl"):
            busy.append(wait_quiet(args.quiet_wait))
            measure = sm_verify_limit if suite == "sm" else ed_verify_limit
            limits[(suite, processes)] = measure(texts[suite], sample[suite].keys, processes)
    busy.append(wait_quiet(args.quiet_wait))
    speed = openssl_sm2_speed()
    openssl = speed[1] if speed else None
    print()
    for suite, (name, _f) in PHONES.items():
        one, cpu = limits[(suite, 1)]
        many, _ = limits[(suite, args.workers)]
        print(f"  {name} verify limit: {one:,.0f}/s on 1 core ({cpu * 1e6:.0f} us CPU each), {many:,.0f}/s on "
              f"{args.workers} processes")
    sm_one = limits[("sm", 1)][0]
    if openssl:
        # `openssl speed` divides by its user CPU time (no -elapsed): compare with ours per CPU second too.
        per_cpu = 1 / limits[("sm", 1)][1]
        print(f"  SM.verify (GmSSL) = {per_cpu / openssl:.1%} of OpenSSL's SM2 verify, per CPU second "
              f"({per_cpu:,.0f} vs {openssl:,.0f}/s, `openssl speed sm2`)")
    ed_one = limits[("intl", 1)][0]
    print(f"  SM2 verify limit = {sm_one / ed_one:.1%} of the Ed25519 verify limit (1 core, same run)")

    rows = []
    for suite, r in runs:
        name = PHONES[suite][0]
        one, cpu = limits[(suite, 1)]
        many, _ = limits[(suite, args.workers)]
        rows.append([f"{r.db}, batch {r.batch}", name, f"{r.rate:,.0f}", f"{r.rate / one:.1%}", f"{r.rate / many:.1%}",
                     f"{r.server_side_ms:.2f}", f"{r.server_side_ms * 1000 / (cpu * 1e6):.1f}",
                     f"{cpu * 1000 / r.server_side_ms:.1%}", str(r.retried), "yes" if not r.failures else "NO"])
    print()
    print(table(["configuration", "phones", "push records/s", "push / verify limit (1 core)",
                 f"push / verify limit ({args.workers} processes)", "server + db CPU ms/record",
                 "server-side / one verify", "push / verify limit by CPU", "503 retries", "all applied"], rows))
    print()
    for suite, r in runs:
        if suite != "sm":
            continue
        peer = next(p for s, p in runs if s == "intl" and p.db == r.db and p.batch == r.batch)
        sm_cpu, ed_cpu = limits[("sm", 1)][1], limits[("intl", 1)][1]
        print(f"SM2 push, {r.db} batch {r.batch}: {r.rate:,.0f} records/s = {r.rate / sm_one:.1%} of the SM2 verify "
              f"limit ({sm_one:,.0f}/s on 1 core; {r.rate / limits[('sm', args.workers)][0]:.1%} of "
              f"{limits[('sm', args.workers)][0]:,.0f}/s on {args.workers} processes; by CPU "
              f"{sm_cpu * 1000 / r.server_side_ms:.1%}); Ed25519 peer: {peer.rate:,.0f} records/s = "
              f"{peer.rate / ed_one:.1%} of {ed_one:,.0f}/s on 1 core (by CPU "
              f"{ed_cpu * 1000 / peer.server_side_ms:.1%}); SM2 push / Ed25519 push = {r.rate / peer.rate:.1%}")
    worst = max([*busy, *(r.busy for _s, r in runs)])
    if worst > 0.2:
        print(f"NOTE: other processes used up to {worst:.0%} of the CPUs before the timed parts: wall-clock rates "
              "and their ratios are skewed; the CPU-based ratio is the steadier figure.")
    failed = [f for _s, r in runs for f in r.failures]
    if failed:
        print(f"\nFAILED: {len(failed)} records or pushes were not applied correctly; first ones:", file=sys.stderr)
        for f in failed[:20]:
            print("  " + f, file=sys.stderr)
        return 1
    return 0


def main(argv: list[str] | None = None) -> int:
    return push.main([*(sys.argv[1:] if argv is None else argv), "--suite", "sm"])


if __name__ == "__main__":
    sys.exit(main())
