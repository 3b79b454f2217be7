"""The reviewers' judgements: who may review, the append-only review marks, and the review log.

A mark is an `AuditReview` row keyed by its issue's key, never changed or
deleted; an issue's review is its newest mark, and the marks listed are the
audit log of the audit itself. Marking recomputes the issue first (`collect.find`).
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from backend.casework.audit.collect import find
from backend.casework.audit.scan import AuditSettings, Issue, chunks, officers_by_id, review_data
from backend.core.errors import Forbidden, Invalid
from backend.core.jurisdiction import scope
from backend.core.models import AuditReview, Officer
from backend.core.paging import paginate

REVIEWER_ROLES = ("reviewer", "legal_reviewer", "admin")
MAX_COMMENT = 2000


def require_reviewer(viewer: Officer) -> None:
    if not viewer.has_role(*REVIEWER_ROLES):
        raise Forbidden("the audit is for reviewers: this needs one of the roles " + ", ".join(REVIEWER_ROLES))


def _latest_reviews(session: Session, keys: Iterable[str]) -> dict[str, AuditReview]:
    latest: dict[str, AuditReview] = {}
    for chunk in chunks(sorted(set(keys))):
        newest = (select(func.max(AuditReview.id)).where(AuditReview.issue_key.in_(list(chunk)))
                  .group_by(AuditReview.issue_key))
        latest.update((r.issue_key, r) for r in session.scalars(select(AuditReview).where(AuditReview.id.in_(newest))))
    return latest


def _names(session: Session, reviews: Iterable[AuditReview]) -> dict[str, str]:
    return {oid: o.name for oid, o in officers_by_id(session, (r.reviewed_by for r in reviews)).items()}


def with_reviews(session: Session, issues: list[Issue]) -> list[dict[str, Any]]:
    """The issues as dicts, each with its latest review (and that reviewer's name)."""
    reviews = _latest_reviews(session, (i.key for i in issues))
    names = _names(session, reviews.values())
    return [i.as_dict(reviews.get(i.key), names) for i in issues]


def mark_reviewed(session: Session, viewer: Officer, key: str, comment: str, settings: AuditSettings, *,
                  now: datetime) -> dict[str, Any]:
    """Append the viewer's review of an issue that exists now and that they may see; answer the issue with it.

    The issue is recomputed rather than trusted from the key, so nobody can
    mark (and so pre-empt) an issue that has not arisen or that belongs to
    another jurisdiction.
    """
    require_reviewer(viewer)
    text = (comment or "").strip()
    if not text:
        raise Invalid("a review needs a comment", errors={"comment": ["must not be empty"]})
    if "\x00" in text:
        raise Invalid("a comment cannot hold NUL characters", errors={"comment": ["contains NUL"]})
    if len(text) > MAX_COMMENT:
        raise Invalid("comment too long", errors={"comment": [f"at most {MAX_COMMENT} characters"]})
    issue = find(session, viewer, key, settings, now)
    review = AuditReview(issue_key=issue.key, kind=issue.kind, region_code=issue.region_code,
                         reviewed_by=viewer.id, reviewed_at=now, comment=text)
    session.add(review)
    session.flush()
    return issue.as_dict(review, {viewer.id: viewer.name})


def list_reviews(session: Session, viewer: Officer, *, issue_key: str | None = None, kind: str | None = None,
                 region: str | None = None, reviewed_by: str | None = None, since: datetime | None = None,
                 until: datetime | None = None, page: int = 1, page_size: int = 50
                 ) -> tuple[list[dict[str, Any]], int]:
    """The review log itself, newest first, within the viewer's jurisdiction (by the reviewed issue's region)."""
    require_reviewer(viewer)
    stmt = scope(select(AuditReview), AuditReview.region_code, viewer)
    for column, value in ((AuditReview.issue_key, issue_key), (AuditReview.kind, kind),
                          (AuditReview.region_code, region), (AuditReview.reviewed_by, reviewed_by)):
        if value:
            stmt = stmt.where(column == value)
    if since is not None:
        stmt = stmt.where(AuditReview.reviewed_at >= since)
    if until is not None:
        stmt = stmt.where(AuditReview.reviewed_at < until)
    rows, total = paginate(session, stmt, AuditReview.id.desc(), page=page, page_size=page_size)
    names = _names(session, rows)
    return [review_data(r, names) for r in rows], total
