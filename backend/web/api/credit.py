"""Credit and risk: integrity records, risk scores, and the discretion benchmarks decisions are weighed against."""

from __future__ import annotations

from marshmallow import Schema, fields, validate

from backend.casework import credit
from backend.web.api.blueprint import Blueprint
from backend.web.api.context import authenticated, committed, current_officer, now, session
from backend.web.api.schemas import INT64_MAX, StrictSchema, region_code

blp = Blueprint("credit", __name__, url_prefix="/api/v1",
                description="Credit and risk: integrity records, risk scores, discretion benchmarks")


class RiskSchema(Schema):
    score = fields.Integer()
    level = fields.String()
    standing = fields.List(fields.Dict())
    stored_score = fields.Integer()
    stored_level = fields.String()
    updated_at = fields.String(allow_none=True)
    interval_days = fields.Integer()
    last_inspected_at = fields.String(allow_none=True)
    next_due_on = fields.String(allow_none=True)
    overdue = fields.Boolean()


class IntegritySchema(Schema):
    institution_id = fields.String()
    name = fields.String()
    region = fields.String()
    risk = fields.Nested(RiskSchema)
    counts = fields.Dict(keys=fields.String(), values=fields.Integer())
    record = fields.List(fields.Dict(), metadata={"description": "dated events, newest first, with their points"})


class RecomputedSchema(Schema):
    institution_id = fields.String()
    score = fields.Integer()
    level = fields.String()
    previous_level = fields.String()
    updated_at = fields.String()
    complaint_count = fields.Integer()
    violation_count = fields.Integer()
    interval_days = fields.Integer()
    last_inspected_at = fields.String(allow_none=True)
    next_due_on = fields.String(allow_none=True)
    overdue = fields.Boolean()


class BulkRiskArgs(StrictSchema):
    region = region_code("default: all of yours")


class BulkRiskSchema(Schema):
    institutions = fields.Integer()
    changed = fields.Integer()
    levels = fields.Dict(keys=fields.String(), values=fields.Integer())


class BenchmarkSchema(StrictSchema):
    id = fields.Integer(dump_only=True)
    category = fields.String(required=True, validate=validate.Length(min=1, max=32))
    first_offence = fields.Boolean(allow_none=True, metadata={"description": "null: either way"})
    rectified_in_time = fields.Boolean(allow_none=True, metadata={"description": "null: either way"})
    amount_min_yuan = fields.Integer(allow_none=True, validate=validate.Range(min=0))
    amount_max_yuan = fields.Integer(allow_none=True, validate=validate.Range(min=0))
    fine_min_yuan = fields.Integer(required=True, validate=validate.Range(min=0, max=10_000_000_000))
    fine_max_yuan = fields.Integer(required=True, validate=validate.Range(min=0, max=10_000_000_000))
    measures = fields.String(validate=validate.Length(max=4000))
    basis = fields.String(required=True, validate=validate.Length(min=1, max=4000))


class BenchmarkUpdateSchema(BenchmarkSchema):
    category = fields.String(validate=validate.Length(min=1, max=32))
    fine_min_yuan = fields.Integer(validate=validate.Range(min=0, max=10_000_000_000))
    fine_max_yuan = fields.Integer(validate=validate.Range(min=0, max=10_000_000_000))
    basis = fields.String(validate=validate.Length(min=1, max=4000))


class BenchmarkListArgs(StrictSchema):
    category = fields.String(validate=validate.Length(min=1, max=32))


class BenchmarkListSchema(Schema):
    items = fields.List(fields.Nested(BenchmarkSchema))


class MatchArgs(StrictSchema):
    category = fields.String(required=True, validate=validate.Length(min=1, max=32))
    first_offence = fields.Boolean()
    rectified_in_time = fields.Boolean()
    amount_involved_yuan = fields.Integer(validate=validate.Range(min=0, max=10_000_000_000))


class MatchSchema(Schema):
    category = fields.String()
    first_offence = fields.Boolean(allow_none=True)
    rectified_in_time = fields.Boolean(allow_none=True)
    amount_involved_yuan = fields.Integer(allow_none=True)
    benchmark = fields.Nested(BenchmarkSchema, allow_none=True)


@blp.get("/institutions/<institution_id>/integrity")
@authenticated()
@blp.response(200, IntegritySchema)
def get_integrity(institution_id):
    """The institution's integrity record (complaints, findings, decisions, rectifications) and today's score."""
    return credit.integrity(session(), current_officer(), institution_id, now=now())


@blp.post("/institutions/<institution_id>/risk")
@authenticated("admin", "reviewer")
@blp.response(200, RecomputedSchema)
@committed
def post_risk(institution_id):
    """Recompute and store the risk score and level; a changed level reaches phones as an institution change."""
    return credit.recompute_one(session(), current_officer(), institution_id, now=now())


@blp.post("/risk/recompute")
@authenticated("admin")
@blp.arguments(BulkRiskArgs)
@blp.response(200, BulkRiskSchema)
@committed
def post_bulk_risk(args):
    """Recompute every institution within the caller's jurisdiction (or one region of it)."""
    return credit.recompute_region(session(), current_officer(), args.get("region"), now=now())


@blp.get("/discretion-benchmarks")
@authenticated()
@blp.arguments(BenchmarkListArgs, location="query")
@blp.response(200, BenchmarkListSchema)
def list_benchmarks(args):
    """The discretion benchmarks (裁量基准), by category."""
    return {"items": [credit.benchmark_data(b) for b in credit.list_benchmarks(session(), args.get("category"))]}


@blp.get("/discretion-benchmarks/match")
@authenticated()
@blp.arguments(MatchArgs, location="query")
@blp.response(200, MatchSchema)
def match_benchmark(args):
    """The benchmark that applies to a category in given circumstances (null when none does)."""
    category = args.pop("category")
    return credit.suggest(session(), category, **args)


@blp.post("/discretion-benchmarks")
@authenticated("admin")
@blp.arguments(BenchmarkSchema)
@blp.response(201, BenchmarkSchema)
@committed
def post_benchmark(args):
    """Add a benchmark (city-level admins: one table for the whole city)."""
    return credit.benchmark_data(credit.create_benchmark(session(), current_officer(), args))


@blp.patch(f"/discretion-benchmarks/<int(min=1, max={INT64_MAX}):benchmark_id>")  # a BigInteger id
@authenticated("admin")
@blp.arguments(BenchmarkUpdateSchema)
@blp.response(200, BenchmarkSchema)
@committed
def patch_benchmark(args, benchmark_id):
    """Change a discretion benchmark (city-level admins only: one table for the whole city)."""
    return credit.benchmark_data(credit.update_benchmark(session(), current_officer(), benchmark_id, args))
