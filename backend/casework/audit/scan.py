"""What every kind of audit issue is built from: the kinds, the filter, an `Issue`, and one request's `Scan`.

The collectors (`inspections`, `evidence`, `records`) each gather their kinds
of issue into a `Scan`, and share the helpers here rather than each having
its own: the links an issue carries, the wording of spans and counts, a flag
in a JSON list, batches of rows and of ids, and officers by id.

Every kind is gathered by its own query, filtered in SQL by jurisdiction,
region, department and time wherever the database can decide (`Scan.place`,
`Scan.within`); only what SQL cannot judge (recording coverage, certificates
against the day of an inspection, clock skew in seconds) is finished in Python,
over rows the WHERE clause already narrowed, loaded in batches (`batches`,
`chunks`) rather than one query per row.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Select, String, cast, select
from sqlalchemy.orm import Session
from sqlalchemy.sql.elements import ColumnElement

from backend.core.jurisdiction import scope
from backend.core.models import AuditReview, Officer
from media.coverage import DEFAULT_TOLERANCE

KINDS = (
    "coverage_gap",
    "no_recording",
    "inspection_not_ended",
    "evidence_mismatch",
    "upload_overdue",
    "exif_disagreement",
    "too_few_certified",
    "expired_certificate",
    "clock_skew",
    "rejected_records",
    "fork",
    "chain_gap",
    "open_conflict",
    "needs_correction",
)
# Rows per batch for the kinds finished in Python: bounded memory, and IN lists every database accepts.
BATCH = 500


@dataclass(frozen=True)
class AuditSettings:
    upload_deadline: timedelta = timedelta(hours=24)
    coverage_tolerance: timedelta = DEFAULT_TOLERANCE


@dataclass(frozen=True)
class IssueFilter:
    """`since` is inclusive and `until` exclusive, both on the issue's `at`; `reviewed` None means both."""

    kinds: frozenset[str] = frozenset(KINDS)
    region: str | None = None
    department: str | None = None
    since: datetime | None = None
    until: datetime | None = None
    reviewed: bool | None = None


@dataclass
class Issue:
    key: str
    kind: str
    at: datetime
    region_code: str
    department_code: str | None
    summary: str
    details: dict[str, Any]
    links: list[dict[str, str]]
    # Set for issues that sum up a history: a review older than this is a review of an earlier state.
    changed_at: datetime | None = None

    def as_dict(self, review: AuditReview | None, names: dict[str, str]) -> dict[str, Any]:
        reviewed = review is not None and (self.changed_at is None or review.reviewed_at >= self.changed_at)
        return {"key": self.key, "kind": self.kind, "at": self.at, "region_code": self.region_code,
                "department_code": self.department_code, "summary": self.summary, "details": self.details,
                "links": self.links, "reviewed": reviewed,
                "review": review_data(review, names) if review is not None else None}


def review_data(review: AuditReview, names: dict[str, str]) -> dict[str, Any]:
    return {"id": str(review.id), "issue_key": review.issue_key, "kind": review.kind,
            "region_code": review.region_code, "by": review.reviewed_by, "by_name": names.get(review.reviewed_by),
            "at": review.reviewed_at, "comment": review.comment}


@dataclass
class Scan:
    """One request's view: who asks, which issues, and (for marking) the one object to look at."""

    session: Session
    viewer: Officer
    filter: IssueFilter
    settings: AuditSettings
    now: datetime
    ident: str | None = None
    issues: list[Issue] = field(default_factory=list)

    def wants(self, *kinds: str) -> bool:
        return any(k in self.filter.kinds for k in kinds)

    def place(self, stmt: Select[Any], region: ColumnElement[Any], department: ColumnElement[Any]) -> Select[Any]:
        stmt = scope(stmt, region, self.viewer)
        if self.filter.region:
            stmt = stmt.where(region == self.filter.region)
        if self.filter.department:
            stmt = stmt.where(department == self.filter.department)
        return stmt

    def within(self, stmt: Select[Any], column: ColumnElement[Any], shift: timedelta = timedelta(0)) -> Select[Any]:
        """Filter on `at`, where `at` is `column + shift`: the shift moves to the bounds so indexes still serve."""
        if self.filter.since is not None:
            stmt = stmt.where(column >= self.filter.since - shift)
        if self.filter.until is not None:
            stmt = stmt.where(column < self.filter.until - shift)
        return stmt

    def in_range(self, at: datetime) -> bool:
        return ((self.filter.since is None or at >= self.filter.since)
                and (self.filter.until is None or at < self.filter.until))

    def add(self, issue: Issue) -> None:
        if issue.kind in self.filter.kinds:
            self.issues.append(issue)


# ---------------------------------------------------------------------------------------------------- helpers


def link(rel: str, ident: str, href: str | None) -> dict[str, str]:
    out = {"rel": rel, "id": ident}
    if href is not None:
        out["href"] = href
    return out


def device_links(device_id: str | None, officer_id: str | None) -> list[dict[str, str]]:
    links = []
    if device_id:
        links.append(link("device", device_id, f"/api/v1/devices/{device_id}"))
    if officer_id:
        links.append(link("officer", officer_id, f"/api/v1/officers/{officer_id}"))
    return links


def has_flag(column: ColumnElement[Any], flag: str) -> ColumnElement[bool]:
    """A JSON list holding `flag`, as text: the same on SQLite and PostgreSQL. Callers re-check in Python."""
    return cast(column, String).contains(json.dumps(flag), autoescape=True)


def chunks(items: Sequence[Any], size: int = BATCH) -> Iterator[Sequence[Any]]:
    for start in range(0, len(items), size):
        yield items[start:start + size]


def batches(session: Session, stmt: Select[Any], id_column: ColumnElement[Any],
            id_of: Callable[[Any], Any]) -> Iterator[list[Any]]:
    """Keyset pages of `stmt` by id: memory stays bounded however many rows match."""
    last = None
    while True:
        page = stmt if last is None else stmt.where(id_column > last)
        rows = list(session.execute(page.order_by(id_column).limit(BATCH)))
        if rows:
            yield rows
        if len(rows) < BATCH:
            return
        last = id_of(rows[-1])


def officers_by_id(session: Session, ids: Iterable[str]) -> dict[str, Officer]:
    wanted = sorted(set(ids))
    found: dict[str, Officer] = {}
    for chunk in chunks(wanted):
        found.update((o.id, o) for o in session.scalars(select(Officer).where(Officer.id.in_(list(chunk)))))
    return found


def duration(seconds: float) -> str:
    seconds = int(round(seconds))
    if seconds < 60:
        return f"{seconds} s"
    if seconds < 3600:
        return f"{seconds // 60} min {seconds % 60} s"
    return f"{seconds // 3600} h {seconds % 3600 // 60} min"


def plural(n: int, word: str) -> str:
    return f"{n} {word}" if n == 1 else f"{n} {word}s"
