"""Evidence retention: what has outlived the retention period, and deleting it (custodians only)."""

from __future__ import annotations

from marshmallow import Schema, fields, validate

from backend.core.uow import commit_each
from backend.web.api.blueprint import Blueprint
from backend.web.api.context import authenticated, current_officer, now, session, state
from backend.web.api.schemas import Instant, PageArgs, StrictSchema, page_schema, paged
from media import retention

blp = Blueprint("retention", __name__, url_prefix="/api/v1/retention", description="Evidence retention")


class CandidateSchema(Schema):
    evidence_id = fields.String()
    kind = fields.String()
    media_type = fields.String()
    sha256 = fields.String()
    size = fields.Integer()
    status = fields.String()
    captured_at = Instant()
    declared_at = Instant()
    expired_at = Instant(metadata={"description": "the later of capture and arrival, plus the period"})
    case_id = fields.String(allow_none=True)
    case_status = fields.String(allow_none=True)
    inspection_id = fields.String(allow_none=True)
    officer_id = fields.String()
    region_code = fields.String()
    has_thumbnail = fields.Boolean()


CandidatePage = page_schema(CandidateSchema, "RetentionCandidatePage")


class PurgeArgs(StrictSchema):
    reason = fields.String(required=True, validate=validate.Length(min=1, max=500),
                           metadata={"description": "why the files are deleted; kept in each item's custody log"})
    dry_run = fields.Boolean(load_default=False)
    evidence_ids = fields.List(fields.String(validate=validate.Length(min=1, max=36)),
                               validate=validate.Length(min=1, max=1000),
                               metadata={"description": "only these items (each deleted or skipped with why)"})
    limit = fields.Integer(load_default=200, validate=validate.Range(min=1, max=1000),
                           metadata={"description": "at most this many of the oldest candidates, without evidence_ids"})


class PurgeItemSchema(Schema):
    evidence_id = fields.String()
    result = fields.String(metadata={"description": "deleted, would_delete, skipped or failed"})
    reason = fields.String(allow_none=True, metadata={"description": "the stated reason, or why a skipped item stays"})
    sha256 = fields.String(allow_none=True)
    size = fields.Integer(allow_none=True)
    removed = fields.List(fields.String())
    kept = fields.List(fields.String())
    error = fields.String(allow_none=True)


class PurgeSchema(Schema):
    dry_run = fields.Boolean()
    retention_days = fields.Integer()
    cutoff = Instant()
    deleted = fields.Integer()
    would_delete = fields.Integer()
    skipped = fields.Integer()
    failed = fields.Integer()
    remaining = fields.Integer(metadata={"description": "candidates left after this call"})
    items = fields.List(fields.Nested(PurgeItemSchema))


@blp.get("/candidates")
@authenticated("custodian", "admin")
@blp.arguments(PageArgs, location="query")
@blp.response(200, CandidatePage)
def candidates(args):
    """Stored files past the retention period and linked to no case that keeps them, oldest first."""
    rows, total = retention.expired_candidates(session(), current_officer(), now(),
                                               state().settings.retention_days, page=args["page"],
                                               page_size=args["page_size"])
    return paged(rows, total, args)


@blp.post("/purge")
@authenticated("custodian")
@blp.arguments(PurgeArgs)
@blp.response(200, PurgeSchema)
def purge(args):
    """Delete those files (each item in its own transaction, with a `deleted` custody event); results per item."""
    st, s, custodian, at = state(), session(), current_officer(), now()
    report = retention.plan_purge(s, custodian, args["reason"], st.settings.retention_days, now=at,
                                  dry_run=args["dry_run"], evidence_ids=args.get("evidence_ids"),
                                  limit=None if args.get("evidence_ids") else args["limit"])
    s.commit()  # the plan only read; each item is a transaction of its own
    items = commit_each(s, report.pending,
                        lambda s, eid: retention.purge_item(s, st.store, custodian, report, eid, now=at),
                        retention.purge_failed, retention.PURGE_ERRORS)
    return retention.finish_purge(s, custodian, report, items).as_dict()
