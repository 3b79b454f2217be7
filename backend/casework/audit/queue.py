"""The issues a reviewer asks for: checked, filtered, each with its latest review, newest first, paged; or one.

Filtering by review status can only follow the reviews, so the whole match is
gathered, reviewed, sorted and then cut to the page here, above both the
collectors and the review marks.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy.orm import Session

from backend.casework.audit.collect import collect, find
from backend.casework.audit.reviews import require_reviewer, with_reviews
from backend.casework.audit.scan import KINDS, AuditSettings, IssueFilter, Scan
from backend.core.errors import Invalid
from backend.core.models import Officer


def list_issues(session: Session, viewer: Officer, filters: IssueFilter, settings: AuditSettings, *,
                page: int = 1, page_size: int = 50, now: datetime) -> tuple[list[dict[str, Any]], int]:
    """The issues within the viewer's jurisdiction that match, newest first (ties by key), and their total."""
    require_reviewer(viewer)
    unknown = set(filters.kinds) - set(KINDS)
    if unknown:
        raise Invalid("unknown issue kind", errors={"kind": [f"not a kind: {', '.join(sorted(unknown))}"]})
    scan = Scan(session=session, viewer=viewer, filter=filters, settings=settings, now=now)
    issues = with_reviews(session, collect(scan))
    if filters.reviewed is not None:
        issues = [i for i in issues if i["reviewed"] is filters.reviewed]
    issues.sort(key=lambda i: (i["at"], i["key"]), reverse=True)
    start = (page - 1) * page_size
    return issues[start:start + page_size], len(issues)


def get_issue(session: Session, viewer: Officer, key: str, settings: AuditSettings, *,
              now: datetime) -> dict[str, Any]:
    """One issue as it stands now; `NotFound` when it does not (or no longer) exist or lies outside jurisdiction."""
    require_reviewer(viewer)
    return with_reviews(session, [find(session, viewer, key, settings, now)])[0]
