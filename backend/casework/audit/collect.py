"""Which collector gathers which kinds of issue, and running them: for a request's filter, or for one issue key.

The list (`queue`) and the review marks (`reviews`) both need issues as they
stand now; this is the one place that turns a filter or a key into them.
A key is recomputed rather than trusted, so only an issue that exists now can
be found.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime

from sqlalchemy.orm import Session

from backend.casework.audit import evidence, inspections, records
from backend.casework.audit.scan import KINDS, AuditSettings, Issue, IssueFilter, Scan
from backend.core.errors import NotFound
from backend.core.models import Officer

MAX_KEY = 200  # AuditReview.issue_key

COLLECTORS: tuple[tuple[tuple[str, ...], Callable[[Scan], None]], ...] = (
    (("coverage_gap", "no_recording"), inspections.coverage),
    (("inspection_not_ended",), inspections.not_ended),
    (("evidence_mismatch",), evidence.mismatches),
    (("upload_overdue",), evidence.overdue),
    (("exif_disagreement",), evidence.exif),
    (("too_few_certified",), inspections.too_few_certified),
    (("expired_certificate",), inspections.expired_certificates),
    (("clock_skew",), records.clock_skew),
    (("rejected_records", "fork"), records.quarantine),
    (("chain_gap",), records.chain_gaps),
    (("open_conflict",), records.conflicts),
    (("needs_correction",), records.needs_correction),
)


def collect(scan: Scan) -> list[Issue]:
    """Run the collectors of the kinds the scan wants, in this order; the issues they found."""
    for kinds, collector in COLLECTORS:
        if scan.wants(*kinds):
            collector(scan)
    return scan.issues


def find(session: Session, viewer: Officer, key: str, settings: AuditSettings, now: datetime) -> Issue:
    """The issue `key` names, recomputed for the viewer now; `NotFound` when there is none."""
    kind, _, ident = key.partition(":")
    # NUL and other unprintable text can name no issue, and PostgreSQL would refuse it as a parameter.
    if kind not in KINDS or not ident or len(key) > MAX_KEY or not key.isprintable():
        raise NotFound(f"no audit issue {key!r}")
    scan = Scan(session=session, viewer=viewer, filter=IssueFilter(kinds=frozenset({kind})), settings=settings,
                now=now, ident=ident)
    for issue in collect(scan):
        if issue.key == key:
            return issue
    raise NotFound(f"no audit issue {key!r}")
