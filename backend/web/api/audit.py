"""The reviewers' audit: issues computed from the projections, and the append-only log of their reviews."""

from __future__ import annotations

import re
from datetime import date, datetime, time, timedelta
from typing import Any

from marshmallow import Schema, ValidationError, fields, validate, validates_schema

from backend.casework import audit
from backend.core.times import LOCAL_TZ
from backend.web.api.blueprint import Blueprint
from backend.web.api.context import authenticated, committed, current_officer, now, session, state
from backend.web.api.schemas import Instant, PageArgs, StrictSchema, page_schema, paged

blp = Blueprint("audit", __name__, url_prefix="/api/v1/audit", description="Reviewers' audit: recording, procedure")

ROLES = audit.REVIEWER_ROLES
_DAY = re.compile(r"^\d{4}-\d{2}-\d{2}$", re.ASCII)
MIN_YEAR, MAX_YEAR = 1900, 9000
# PostgreSQL refuses NUL in text parameters: such input is a 422 here, not an error there.
PRINTABLE = validate.Regexp(r"^[^\x00-\x1f\x7f]*$", error="must not contain control characters")
REGION = validate.Regexp(r"^[0-9]{6}$", error="a six-digit region code")
DEPARTMENT = validate.Regexp(r"^[a-z_]{1,16}$", error="a department code")


class DayOrTime(fields.String):
    """An RFC 3339 time with its offset, or a bare date meaning that day's midnight in Hangzhou."""

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> datetime:
        text = str(value).strip()
        try:
            if _DAY.match(text):
                parsed = datetime.combine(date.fromisoformat(text), time(0), LOCAL_TZ)
            else:
                parsed = datetime.fromisoformat(text.replace("Z", "+00:00"))
        except ValueError:
            raise ValidationError("not an RFC 3339 time or a YYYY-MM-DD date") from None
        if parsed.tzinfo is None or parsed.utcoffset() is None:
            raise ValidationError("a time needs its UTC offset (e.g. +08:00)")
        # Far enough from datetime's limits that the bounds can still be shifted by a deadline.
        if not MIN_YEAR <= parsed.year <= MAX_YEAR:
            raise ValidationError(f"the year must be between {MIN_YEAR} and {MAX_YEAR}")
        return parsed


class IssueListArgs(PageArgs):
    kind = fields.List(fields.String(validate=validate.OneOf(audit.KINDS)),
                       metadata={"description": "one or more kinds (repeat the parameter); all when absent"})
    region = fields.String(validate=REGION)
    department = fields.String(validate=DEPARTMENT)
    since = DayOrTime(data_key="from", metadata={"description": "`at` on or after this (a date: 00:00 Hangzhou)"})
    until = DayOrTime(data_key="to", metadata={"description": "`at` before this (a date: 00:00 Hangzhou)"})
    reviewed = fields.Boolean(metadata={"description": "only reviewed (true) or unreviewed (false) issues"})

    @validates_schema
    def _ordered(self, data: dict[str, Any], **_kwargs: Any) -> None:
        if "since" in data and "until" in data and data["since"] > data["until"]:
            raise ValidationError("must not be before `from`", field_name="to")


class ReviewListArgs(PageArgs):
    issue_key = fields.String(validate=[validate.Length(max=audit.MAX_KEY), PRINTABLE])
    kind = fields.String(validate=validate.OneOf(audit.KINDS))
    region = fields.String(validate=REGION)
    reviewed_by = fields.String(validate=[validate.Length(max=40), PRINTABLE])
    since = DayOrTime(data_key="from")
    until = DayOrTime(data_key="to")


class LinkSchema(Schema):
    rel = fields.String(metadata={"description": "what the object is: inspection, coverage, case, evidence, ..."})
    id = fields.String()
    href = fields.String(metadata={"description": "API path of the object, when it has one"})


class ReviewSchema(Schema):
    id = fields.String()
    issue_key = fields.String()
    kind = fields.String()
    region_code = fields.String()
    by = fields.String()
    by_name = fields.String(allow_none=True)
    at = Instant()
    comment = fields.String()


class IssueSchema(Schema):
    key = fields.String(metadata={"description": "stable: `<kind>:<object id>`"})
    kind = fields.String()
    at = Instant(metadata={"description": "when the issue arose (per kind, see docs)"})
    region_code = fields.String()
    department_code = fields.String(allow_none=True)
    summary = fields.String()
    details = fields.Dict()
    links = fields.List(fields.Nested(LinkSchema))
    reviewed = fields.Boolean()
    review = fields.Nested(ReviewSchema, allow_none=True, metadata={"description": "the latest review, if any"})


IssuePage = page_schema(IssueSchema, "AuditIssuePage")
ReviewPage = page_schema(ReviewSchema, "AuditReviewPage")


class MarkSchema(StrictSchema):
    comment = fields.String(required=True, validate=validate.Length(min=1, max=audit.MAX_COMMENT))


def _settings() -> audit.AuditSettings:
    app = state()
    return audit.AuditSettings(upload_deadline=app.media.upload_deadline,
                               coverage_tolerance=timedelta(seconds=float(app.settings.coverage_tolerance_seconds)))


@blp.get("/issues")
@authenticated(*ROLES)
@blp.arguments(IssueListArgs, location="query")
@blp.response(200, IssuePage)
def list_issues(args):
    """Recording and procedure problems within the caller's jurisdiction, newest first."""
    filters = audit.IssueFilter(kinds=frozenset(args.get("kind") or audit.KINDS), region=args.get("region"),
                                department=args.get("department"), since=args.get("since"),
                                until=args.get("until"), reviewed=args.get("reviewed"))
    rows, total = audit.list_issues(session(), current_officer(), filters, _settings(), page=args["page"],
                                    page_size=args["page_size"], now=now())
    return paged(rows, total, args)


@blp.get("/issues/<key>")
@authenticated(*ROLES)
@blp.response(200, IssueSchema)
def get_issue(key):
    """One issue as it stands now; 404 once it has been put right, or outside the caller's jurisdiction."""
    return audit.get_issue(session(), current_officer(), key, _settings(), now=now())


@blp.post("/issues/<key>/reviews")
@authenticated(*ROLES)
@blp.arguments(MarkSchema)
@blp.response(201, IssueSchema)
@committed
def mark_reviewed(args, key):
    """Mark an issue reviewed, with a comment; the mark is appended to the review log, never changed."""
    return audit.mark_reviewed(session(), current_officer(), key, args["comment"], _settings(), now=now())


@blp.get("/reviews")
@authenticated(*ROLES)
@blp.arguments(ReviewListArgs, location="query")
@blp.response(200, ReviewPage)
def list_reviews(args):
    """The review log, newest first, for issues within the caller's jurisdiction."""
    paging = {"page": args.pop("page"), "page_size": args.pop("page_size")}
    rows, total = audit.list_reviews(session(), current_officer(), **args, **paging)
    return paged(rows, total, paging)
