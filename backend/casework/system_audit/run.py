"""The whole-system audit, check family after check family, in one read of the database.

Order matters only for memory and the progress bar: the custody tree first (it is what the other checks trust),
then the heads as a series, then the ledger in chain order with the derived rows of each page of records, then
each device's chain end, then the derived tables from their side, and last the evidence items and their files
(the slow part on a large store, and the one `sample` shortens). Every table is read a page at a time by its key.
"""

from __future__ import annotations

import random
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import timedelta

from cryptography import x509
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from backend.casework.system_audit import corrections, tables
from backend.casework.system_audit.derived import Derivation
from backend.casework.system_audit.evidence import EvidenceCheck
from backend.casework.system_audit.heads import check_heads, check_timestamps
from backend.casework.system_audit.ledger import LedgerWalk, Said
from backend.casework.system_audit.report import AuditReport, Problem, Progress, Silent
from backend.casework.system_audit.tree import check_tree, log_size
from backend.core.models import CustodyEvent, Evidence, LedgerRecord
from backend.core.times import Clock
from media.store import Store


@dataclass(frozen=True)
class AuditOptions:
    head_interval: timedelta = timedelta(hours=1)  # FIELDCASE_HEAD_INTERVAL
    sample: int | None = None  # re-hash this many stored files chosen at random; None: every one
    seed: int | None = None  # for the sample; None: a fresh one, given in the report so the run can be repeated
    tsa_required: bool = False  # a TSA is configured (FIELDCASE_TSA_URL): every head needs its token
    tsa_trust: tuple[x509.Certificate, ...] = ()  # FIELDCASE_TSA_CERT: what tokens must chain to
    # With job workers a periodic head is signed by a worker just after its commit: one may be missing that long.
    signing_grace: timedelta = timedelta(0)


def audit(session: Session, *, store: Store, keys: Mapping[str, bytes], clock: Clock,
          options: AuditOptions = AuditOptions(), progress: Progress | None = None,
          sm_keys: Mapping[str, bytes] | None = None) -> AuditReport:
    """Check everything (docs/deployment.md, "The whole-system audit"); the report lists every problem found.
    `sm_keys` (SM2 key id to point) when the deployment keeps the SM custody tree: it is checked too."""
    progress = progress or Silent()
    seed = options.seed
    if options.sample is not None and seed is None:
        seed = random.SystemRandom().randrange(2**31)
    report = AuditReport(started_at=clock(), sample=options.sample, seed=seed)
    started = time.perf_counter()
    counts = report.counts
    progress.begin(sum(session.scalar(select(func.count()).select_from(model)) or 0
                       for model in (CustodyEvent, LedgerRecord, Evidence)))

    def add(problems: Iterable[Problem]) -> None:
        report.problems.extend(problems)

    add(check_tree(session, keys, options.tsa_trust, counts, sm_keys))
    progress.advance("custody log", counts["leaves"])
    add(check_heads(session, log_size(session), options.head_interval, report.started_at, options.signing_grace))
    add(check_timestamps(session, options.tsa_required, options.head_interval, report.started_at))

    walk, derivation = LedgerWalk(session), Derivation(session)
    for page in walk.pages():
        said: list[Said] = []
        add(walk.check_page(page, said))
        add(derivation.check_page(said))
        counts["records"] += len(page)
        progress.advance("ledger", len(page))
    add(walk.check_devices(counts))
    add(tables.check_inspections(session, derivation, counts))
    add(tables.check_unmade(session, counts))
    add(tables.check_aliases(session, derivation))
    add(tables.check_cases(session, derivation, counts))
    add(corrections.check_rows(session, counts))
    add(EvidenceCheck(session, store, options.sample, random.Random(seed)).run(counts, progress))

    report.finished_at = clock()
    report.elapsed_seconds = time.perf_counter() - started
    return report
