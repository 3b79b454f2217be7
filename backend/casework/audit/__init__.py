"""The reviewers' audit: recording and procedure problems, computed from the projections when asked.

Issues are not stored. Each is what the ledger's projections say at the moment
of asking (coverage, evidence status, procedure flags, quarantine, chain gaps,
conflicts), so the audit can never drift from the data, and a problem that is
put right (a clip uploaded, a conflict resolved) leaves the list by itself.
What is stored is the reviewers' judgement: `AuditReview` rows, append-only,
keyed by an issue key that is stable across requests (`<kind>:<object id>`),
so a mark stays attached to its issue and the marks are themselves an audit log.

The package, each module importing only those above it in this list:

- `scan`: the kinds, the filter, an `Issue`, one request's `Scan`, and the helpers every kind shares;
- `inspections`, `evidence`, `records`: the kinds of issue, grouped by what they look at (inspections and
  their recordings and crews; evidence items; devices and the records they pushed, with open conflicts);
- `collect`: which collector gathers which kinds, run for a whole request or for one issue key;
- `reviews`: who may review, the append-only review marks and the review log;
- `queue`: the issue list as asked for (filtered, newest first, paged) and one issue.

This module only names what the rest of the server imports.
"""

from backend.casework.audit.collect import MAX_KEY
from backend.casework.audit.inspections import judge_coverage
from backend.casework.audit.queue import get_issue, list_issues
from backend.casework.audit.records import ROUTINE_QUARANTINE_CODES
from backend.casework.audit.reviews import MAX_COMMENT, REVIEWER_ROLES, list_reviews, mark_reviewed
from backend.casework.audit.scan import BATCH, KINDS, AuditSettings, IssueFilter

__all__ = [
    "BATCH",
    "KINDS",
    "MAX_COMMENT",
    "MAX_KEY",
    "REVIEWER_ROLES",
    "ROUTINE_QUARANTINE_CODES",
    "AuditSettings",
    "IssueFilter",
    "get_issue",
    "judge_coverage",
    "list_issues",
    "list_reviews",
    "mark_reviewed",
]
