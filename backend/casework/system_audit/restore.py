"""`fieldcase restore-check`: what to run after restoring the database and the bucket, before phones come back.

A restore that passes `custody verify` may still have lost the newest events, and a bucket copy may lack objects
the restored database says were verified; nothing else looks before phones and reviewers rely on it again. Three
checks, each against what the restore cannot have rewritten:

- `tree`: the restored custody log recomputed from its events, and every head it holds (`custody verify`'s own
  check, `tree.check_tree`);
- `saved_head`: the log against a head kept elsewhere, or the newest witnessed checkpoint (`saved_head`): the
  restore lost N events after tree size M, or the log diverges;
- `store`: every verified evidence item's object present in the store at its declared size: a stat on disk or a
  HEAD request on S3, no byte read. A restore loses objects rather than altering them, and re-hashing a city's
  bucket (`fieldcase verify`) takes hours; `sample` checks that many items drawn at random (reservoir sampling
  over one pass), and requests run a few at a time.

The report has the shape of `fieldcase verify --json`'s (`AuditReport`), with these checks, and says what the log
was compared with (`compared_with`).
"""

from __future__ import annotations

import random
import time
from collections.abc import Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from cryptography import x509
from sqlalchemy import select
from sqlalchemy.orm import Session

from backend.casework.system_audit import saved_head
from backend.casework.system_audit.report import AuditReport, Problem
from backend.casework.system_audit.tree import check_tree
from backend.core.models import Evidence
from backend.core.times import Clock
from media.custody import checkpoint
from media.custody.timestamps import load_trust
from media.store import Store, StoreError

RESTORE_CHECKS = ("tree", "saved_head", "store")
PAGE = 500
PARALLEL = 8  # HEAD requests in flight: well under boto3's pool of 10 connections


@dataclass(frozen=True)
class RestoreOptions:
    sample: int | None = None  # check this many verified items drawn at random; None: every one
    seed: int | None = None  # of the draw; None: a fresh one, given in the report so the run can be repeated
    tsa_trust: tuple[x509.Certificate, ...] = ()  # FIELDCASE_TSA_CERT: what the heads' tokens must chain to
    origins: frozenset[str] = frozenset()  # the checkpoint origins this log has signed under
    witnesses: Mapping[tuple[str, bytes], checkpoint.WitnessKey] = field(default_factory=dict)


def restore_options(settings: Any, signer: Any, *, sample: int | None, seed: int | None) -> RestoreOptions:
    """From the deployment's settings: its TSA anchor, its witnesses, and the origins its checkpoints bear (the
    configured one; before it was set, the default of each of its keys, current or retired)."""
    trust = load_trust(settings.tsa_cert_path.read_bytes()) if settings.tsa_cert_path else ()
    origins = {checkpoint.origin_for(settings, signer)}
    origins |= {checkpoint.DEFAULT_ORIGIN_PREFIX + key_id for key_id in signer.public_keys()}
    return RestoreOptions(sample=sample, seed=seed, tsa_trust=tuple(trust), origins=frozenset(origins),
                          witnesses=checkpoint.witness_keys(settings))


@dataclass
class RestoreReport(AuditReport):
    compared_with: dict[str, Any] | None = None  # the reference head and the restored log's size against it

    def problem_counts(self) -> dict[str, int]:
        return {check: sum(1 for p in self.problems if p.check == check) for check in RESTORE_CHECKS}

    def as_dict(self, limit: int | None = None) -> dict[str, Any]:
        """`fieldcase restore-check --json`: `fieldcase verify --json`'s report, and `compared_with`."""
        return {**super().as_dict(limit), "compared_with": self.compared_with}

    def summary_lines(self) -> list[str]:
        """What was checked and how much, problems per check, and the verdict with all of it in one line (the
        line a cron job's mail or a ticket quotes)."""
        c, ref = self.counts, self.compared_with
        items = "every one" if self.sample is None else f"a sample of {self.sample} (seed {self.seed})"
        stored = (f"{c['objects_checked']} of {c['evidence_verified']} verified evidence items' objects checked "
                  f"({items}): {c['objects_missing']} missing, {c['bytes']} bytes present at their size")
        if ref is None:
            compared = "compared with no head kept outside the database"
        elif ref["lost_events"]:
            compared = (f"the {ref['source']} of tree size {ref['tree_size']} is ahead of the restored log "
                        f"({ref['restored_tree_size']} events) by {ref['lost_events']}")
        else:
            compared = (f"compared with the {ref['source']} of tree size {ref['tree_size']} (signed by "
                        f"{ref['signed_by']}); the restored log has {ref['restored_tree_size']} events")
        verdict = "OK" if self.ok else f"{len(self.problems)} problem(s)"
        return [
            f"custody log: {c['leaves']} leaves, {c['heads']} signed tree heads",
            compared,
            f"store: {stored}",
            "problems: " + ", ".join(f"{check} {n}" for check, n in self.problem_counts().items()),
            f"fieldcase restore-check: {verdict}: {c['leaves']} custody leaves and {c['heads']} heads verified, "
            f"{'no saved head' if ref is None else ref['source'] + ' of size ' + str(ref['tree_size'])} compared, "
            f"{c['objects_checked']} of {c['evidence_verified']} objects checked, in {self.elapsed_seconds:.1f} s",
        ]


def restore_check(session: Session, *, store: Store, keys: Mapping[str, bytes], clock: Clock,
                  saved: bytes | None, options: RestoreOptions = RestoreOptions(),
                  sm_keys: Mapping[str, bytes] | None = None) -> RestoreReport:
    """The three checks on the restored system; `saved` is the saved head's file (JSON or checkpoint note)."""
    seed = options.seed
    if options.sample is not None and seed is None:
        seed = random.SystemRandom().randrange(2**31)
    report = RestoreReport(started_at=clock(), sample=options.sample, seed=seed)
    started = time.perf_counter()
    for name in ("leaves", "heads", "evidence_verified", "objects_checked", "objects_missing", "bytes"):
        report.counts[name] = 0
    report.problems.extend(check_tree(session, keys, options.tsa_trust, report.counts, sm_keys=sm_keys))
    report.problems.extend(_against_reference(session, saved, keys, options, report))
    report.problems.extend(StoreCheck(session, store, options.sample, random.Random(seed)).run(report.counts))
    report.finished_at = clock()
    report.elapsed_seconds = time.perf_counter() - started
    return report


def _against_reference(session: Session, saved: bytes | None, keys: Mapping[str, bytes],
                       options: RestoreOptions, report: RestoreReport) -> Iterator[Problem]:
    if saved is not None:
        try:
            reference = saved_head.read_saved(saved, keys, options.origins)
        except saved_head.Refused as exc:
            yield Problem("saved_head", "file", "", str(exc))
            return
    else:
        reference, problems = saved_head.witnessed(session, options.witnesses)
        yield from problems
        if reference is None:
            # Exit 1: a check that compared the log with nothing must not read as a restore proven whole.
            yield Problem("saved_head", "tree_head", "", "nothing outside the restored database to compare its log "
                          "with: give --saved-head (a tree head or checkpoint saved off-site before the failure), "
                          "or configure the witnesses that cosign checkpoints (FIELDCASE_WITNESS_KEYS)")
            return
    report.compared_with, problems = saved_head.compare(session, reference)
    yield from problems


@dataclass(frozen=True)
class _Item:
    evidence_id: str
    key: str
    size: int


class StoreCheck:
    """Every verified item's object (or a sample of them) present at its declared size. Identical bytes are
    stored once: each object is asked for once, and every item naming a missing one is named."""

    def __init__(self, session: Session, store: Store, sample: int | None, rng: random.Random) -> None:
        self.s, self.store, self.sample, self.rng = session, store, sample, rng
        self.reservoir: list[_Item] = []
        self.sizes: dict[str, int | None] = {}

    def run(self, counts) -> Iterator[Problem]:
        try:
            with ThreadPoolExecutor(max_workers=PARALLEL) as pool:
                for page in self._pages():
                    counts["evidence_verified"] += len(page)
                    if self.sample is None:
                        yield from self._check(pool, page, counts)
                    else:
                        self._draw(page, counts["evidence_verified"] - len(page))
                yield from self._check(pool, self.reservoir, counts)
        except StoreError as exc:
            yield Problem("store", "store", "", f"the store does not answer ({exc.message}): the check stopped "
                          f"after {counts['objects_checked']} items")

    def _pages(self) -> Iterator[list[_Item]]:
        last = ""
        while True:
            rows = self.s.execute(select(Evidence.id, Evidence.object_key, Evidence.size)
                                  .where(Evidence.status == "verified", Evidence.id > last)
                                  .order_by(Evidence.id).limit(PAGE)).all()
            if not rows:
                return
            yield [_Item(r.id, r.object_key or "", r.size) for r in rows]
            last = rows[-1].id

    def _draw(self, page: list[_Item], seen: int) -> None:
        """Reservoir sampling (Algorithm R): every item equally likely, in one pass, holding `sample` of them."""
        for item in page:
            seen += 1
            if len(self.reservoir) < (self.sample or 0):
                self.reservoir.append(item)
            else:
                slot = self.rng.randrange(seen)
                if slot < len(self.reservoir):
                    self.reservoir[slot] = item

    def _check(self, pool: ThreadPoolExecutor, items: list[_Item], counts) -> Iterator[Problem]:
        keys = sorted({item.key for item in items if item.key and item.key not in self.sizes})
        self.sizes.update(zip(keys, pool.map(self.store.size_of, keys), strict=True))
        for item in items:
            counts["objects_checked"] += 1
            found = self.sizes.get(item.key) if item.key else None
            if found is None:
                counts["objects_missing"] += 1
                yield Problem("store", "evidence", item.evidence_id, "its verified object is missing from the store")
            elif found != item.size:
                yield Problem("store", "evidence", item.evidence_id, "its stored object's size differs from its "
                              "declared size: the copy is truncated or another file")
            else:
                counts["bytes"] += found
