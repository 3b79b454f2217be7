"""Cases, inspections and conflicts: the projections of the ledger, read within jurisdiction."""

from __future__ import annotations

from marshmallow import Schema, fields, validate

from backend.casework import conflicts, corrections, queries
from backend.core.models import CASE_STATUSES
from backend.web.api.blueprint import Blueprint
from backend.web.api.context import authenticated, committed, current_officer, now, session
from backend.web.api.schemas import INT32_MAX, Instant, PageArgs, StrictSchema, page_schema, paged

blp = Blueprint("cases", __name__, url_prefix="/api/v1", description="Cases, inspections, conflicts")


class CaseListArgs(PageArgs):
    status = fields.String(validate=validate.OneOf(CASE_STATUSES))
    region = fields.String(validate=validate.Length(equal=6))
    department = fields.String(validate=validate.Length(max=16))
    institution_id = fields.String(validate=validate.Length(max=40))


class CaseSchema(Schema):
    id = fields.String()
    institution_id = fields.String()
    region = fields.String()
    department = fields.String()
    status = fields.String()
    summary = fields.String()
    version = fields.Integer()
    created_by = fields.String()
    created_at = fields.String()
    updated_at = fields.String()


CasePage = page_schema(CaseSchema, "CasePage")


class OverriddenRecordSchema(Schema):
    op = fields.String()
    type = fields.String()
    device_id = fields.String()
    seq = fields.Integer()
    by = fields.String()
    at = fields.String(allow_none=True)
    codes = fields.List(fields.String(), metadata={"description": "the phone's checks the officer signed over"})
    reason = fields.String(allow_none=True)


def overrides_field() -> fields.List:
    return fields.List(fields.Nested(OverriddenRecordSchema), metadata={
        "description": "records signed over the phone's own checks, as signed (docs/protocol.md, \"Overrides\")"})


class NeedSchema(Schema):
    subject = fields.String(metadata={"description": "`case` (its institution) or `finding`"})
    subject_id = fields.String()
    op = fields.String(metadata={"description": "the record applied with the slip"})
    code = fields.String(metadata={"description": "unknown_institution, unknown_region, bad_credit_code, "
                                                  "unknown_category"})
    detail = fields.String()
    field = fields.String(metadata={"description": "what a correction must set: institution, category"})


class CorrectionSchema(Schema):
    id = fields.Integer()
    case_id = fields.String()
    subject = fields.String(metadata={"description": "`case` (its institution) or `finding`"})
    subject_id = fields.String()
    corrects = fields.String(allow_none=True, metadata={"description": "op of the corrected record; null for a "
                                                                       "case opened at the desk"})
    source = fields.String(metadata={"description": "`phone` (a signed record.correct) or `reviewer`"})
    op = fields.String(allow_none=True, metadata={"description": "the record.correct's op (phone only)"})
    device_id = fields.String(allow_none=True)
    by = fields.String()
    at = fields.String()
    fields_ = fields.Dict(data_key="fields", attribute="fields", metadata={"description": "the values as given"})
    changed = fields.Dict(metadata={"description": "{column: [old, new]} of what the correction changed"})
    reason = fields.String()


class CorrectionArgs(StrictSchema):
    subject = fields.String(required=True, validate=validate.OneOf(("case", "finding")))
    subject_id = fields.String(validate=validate.Length(min=1, max=40),
                               metadata={"description": "the finding's id (for `case`: the case's, or omitted)"})
    fields_ = fields.Dict(required=True, data_key="fields", attribute="fields",
                          metadata={"description": "case: `institution`; finding: `category`, `description`"})
    reason = fields.String(required=True, validate=validate.Length(min=1, max=500))


class CaseDetailSchema(CaseSchema):
    flags = fields.List(fields.String(), metadata={"description": "`needs_correction` while its institution does"})
    needs_correction = fields.List(fields.Nested(NeedSchema), metadata={
        "description": "what of the case and its findings still needs correction (docs/protocol.md, \"Corrections\")"})
    corrections = fields.List(fields.Nested(CorrectionSchema), metadata={"description": "oldest first"})
    institution = fields.Dict()
    aliases = fields.List(fields.Dict())
    inspections = fields.List(fields.Dict())
    evidence = fields.List(fields.Dict())
    open_conflicts = fields.Integer()
    overrides = overrides_field()


class InspectionSchema(Schema):
    id = fields.String()
    case_id = fields.String()
    started_at = Instant()
    ended_at = Instant(allow_none=True)
    officers = fields.List(fields.String())
    location = fields.Dict(allow_none=True)
    task_id = fields.String(allow_none=True)
    outcome = fields.String(allow_none=True)
    notes = fields.String(allow_none=True)
    flags = fields.List(fields.String())
    started_by = fields.String()
    findings = fields.List(fields.Dict())
    evidence = fields.List(fields.Dict())
    overrides = overrides_field()


class ConflictListArgs(PageArgs):
    case_id = fields.String(validate=validate.Length(max=40))
    status = fields.String(load_default="open", validate=validate.OneOf(("open", "resolved")))


class ConflictSchema(Schema):
    id = fields.String()
    case_id = fields.String()
    field = fields.String()
    base_version = fields.Integer()
    base_value = fields.Raw(allow_none=True)
    server_value = fields.Raw(allow_none=True)
    phone_value = fields.Raw(allow_none=True)
    status = fields.String()
    resolved_value = fields.Raw(allow_none=True)
    reason = fields.String(allow_none=True)
    resolved_by = fields.String(allow_none=True)
    resolved_at = Instant(allow_none=True)
    created_at = Instant()
    officer_id = fields.String()


ConflictPage = page_schema(ConflictSchema, "ConflictPage")


class ResolveSchema(StrictSchema):
    choice = fields.String(required=True, validate=validate.OneOf(("server", "phone", "custom")))
    value = fields.Raw(allow_none=True)
    reason = fields.String(required=True, validate=validate.Length(min=1, max=500))


@blp.get("/cases")
@authenticated()
@blp.arguments(CaseListArgs, location="query")
@blp.response(200, CasePage)
def list_cases(args):
    """Cases within the caller's jurisdiction, filtered and paged."""
    paging = {"page": args.pop("page"), "page_size": args.pop("page_size")}
    rows, total = queries.list_cases(session(), current_officer(), **args, **paging)
    return paged(rows, total, paging)


@blp.get("/cases/<case_id>")
@authenticated()
@blp.response(200, CaseDetailSchema)
def get_case(case_id):
    """A case with its institution, aliases, inspections (with flags and findings) and evidence."""
    return queries.get_case(session(), current_officer(), case_id, now=now())


@blp.post("/cases/<case_id>/corrections")
@authenticated("reviewer", "admin")
@blp.arguments(CorrectionArgs)
@blp.response(201, CorrectionSchema)
@committed
def post_correction(args, case_id):
    """Correct the case's institution or a finding's category or description, with a reason (docs/protocol.md,
    "Corrections"); kept in the case's corrections and as a `corrected` custody event. 409 when the institution
    already has an open case of the department."""
    return corrections.correct_at_desk(session(), current_officer(), case_id, subject=args["subject"],
                                       subject_id=args.get("subject_id"), fields=args["fields"],
                                       reason=args["reason"], now=now())


@blp.get("/inspections/<inspection_id>")
@authenticated()
@blp.response(200, InspectionSchema)
def get_inspection(inspection_id):
    """One inspection with its flags, findings, evidence and the overrides signed in it."""
    return queries.get_inspection(session(), current_officer(), inspection_id, now=now())


@blp.get("/conflicts")
@authenticated()
@blp.arguments(ConflictListArgs, location="query")
@blp.response(200, ConflictPage)
def list_conflicts(args):
    """Case conflicts within the caller's jurisdiction, open or resolved, paged."""
    paging = {"page": args.pop("page"), "page_size": args.pop("page_size")}
    rows, total = conflicts.list_conflicts(session(), current_officer(), **args, **paging)
    return paged([conflicts.describe(c) for c in rows], total, paging)


@blp.post(f"/conflicts/<int(min=1, max={INT32_MAX}):conflict_id>/resolve")  # CaseConflict.id is an Integer
@authenticated()
@blp.arguments(ResolveSchema)
@blp.response(200, ConflictSchema)
@committed
def resolve_conflict(args, conflict_id):
    """Choose the server's value, the phone's, or a new one, with a reason; all values stay on record."""
    return conflicts.describe(conflicts.resolve(session(), current_officer(), conflict_id, args["choice"],
                                                args["reason"], args.get("value"), now=now()))


class CoverageWindowSchema(Schema):
    start = fields.String(metadata={"description": "RFC 3339: the `at` of `inspection.start`"})
    end = fields.String(allow_none=True, metadata={"description": "the `at` of `inspection.end`; null while open"})


class CoverageGapSchema(Schema):
    start = fields.String()
    end = fields.String()
    seconds = fields.Float()
    explained = fields.Boolean(metadata={"description": "wholly inside signed interruptions, up to the tolerance"})
    reason = fields.String(metadata={"description": "reasons of the interruptions overlapping the gap, if any"})


class ClipIndexGapSchema(Schema):
    camera_serial = fields.String()
    missing = fields.List(fields.Integer(), metadata={"description": "at most the first 1000"})
    missing_count = fields.Integer()


class ClipChainBreakSchema(Schema):
    evidence_id = fields.String()
    camera_serial = fields.String()
    clip_index = fields.Integer()
    prev_sha256 = fields.String()
    declared_previous_sha256 = fields.List(fields.String())
    reason = fields.String(metadata={"description": "`mismatch` or `previous_missing`"})


class CoverageFlagSchema(Schema):
    flag = fields.String(metadata={"description": "zero_length, reversed, outside_window, hash_mismatch, "
                                                  "duplicate_clip_index, reversed_interruption, "
                                                  "window_ends_before_start"})
    evidence_id = fields.String()
    camera_serial = fields.String()
    clip_index = fields.Integer()


class CoverageSchema(Schema):
    window = fields.Nested(CoverageWindowSchema)
    covered_seconds = fields.Float()
    ratio = fields.Float()
    gaps = fields.List(fields.Nested(CoverageGapSchema))
    clip_index_gaps = fields.List(fields.Nested(ClipIndexGapSchema))
    clip_chain_breaks = fields.List(fields.Nested(ClipChainBreakSchema))
    unverified_clips = fields.List(fields.String(), metadata={"description": "evidence ids of clips not verified"})
    status = fields.String(metadata={"description": "complete, explained, gaps, none or open"})
    flags = fields.List(fields.Nested(CoverageFlagSchema))


@blp.get("/inspections/<inspection_id>/coverage")
@authenticated()
@blp.response(200, CoverageSchema)
def get_inspection_coverage(inspection_id):
    """Whether the inspection's verified clips cover its window (PROTOCOL §7; docs: "Coverage, as built")."""
    from datetime import timedelta

    from backend.web.api.context import state
    from media.coverage import inspection_coverage

    # FIELDCASE_COVERAGE_TOLERANCE (Settings.coverage_tolerance_seconds); an override in `extra` on older configs.
    settings = state().settings
    seconds = getattr(settings, "coverage_tolerance_seconds", settings.extra.get("coverage_tolerance_seconds", 5))
    tolerance = timedelta(seconds=float(seconds))
    return inspection_coverage(session(), current_officer(), inspection_id, tolerance=tolerance)
