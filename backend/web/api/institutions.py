"""The institution registry: search within jurisdiction; admins create, edit and import."""

from __future__ import annotations

from flask import request
from marshmallow import Schema, fields, validate

from backend.casework import institutions
from backend.core.errors import Invalid
from backend.core.models import CATEGORIES, LICENCE_STATUSES, RISK_LEVELS
from backend.web.api.blueprint import Blueprint
from backend.web.api.context import authenticated, committed, current_officer, session
from backend.web.api.schemas import Instant, PageArgs, StrictSchema, page_schema, paged

blp = Blueprint("institutions", __name__, url_prefix="/api/v1/institutions",
                description="Off-campus tutoring institutions")

MAX_CSV_BYTES = 8 * 1024 * 1024


class InstitutionSchema(StrictSchema):
    id = fields.String(dump_only=True)
    credit_code = fields.String(allow_none=True, validate=validate.Length(equal=18),
                                metadata={"description": "unified social credit code (GB 32100-2015)"})
    name = fields.String(required=True, validate=validate.Length(min=1, max=200))
    address = fields.String(validate=validate.Length(max=400))
    region = fields.String(required=True, attribute="region_code", data_key="region",
                           validate=validate.Length(equal=6))
    licence_number = fields.String(allow_none=True, validate=validate.Length(max=64))
    licence_status = fields.String(validate=validate.OneOf(LICENCE_STATUSES))
    category = fields.String(validate=validate.OneOf(CATEGORIES))
    risk_level = fields.String(validate=validate.OneOf(RISK_LEVELS))
    provisional = fields.Boolean(dump_only=True)
    unmatched = fields.Boolean(dump_only=True, metadata={
        "description": "held for one case whose case.open named an institution the server could not match; "
                       "matched by no later name or code (docs/protocol.md, \"Corrections\")"})
    complaint_count = fields.Integer(dump_only=True)
    violation_count = fields.Integer(dump_only=True)
    created_at = Instant(dump_only=True)
    updated_at = Instant(dump_only=True)


class InstitutionUpdateSchema(InstitutionSchema):
    name = fields.String(validate=validate.Length(min=1, max=200))
    region = fields.String(attribute="region_code", data_key="region", validate=validate.Length(equal=6))


class SearchArgs(PageArgs):
    q = fields.String(validate=validate.Length(min=1, max=200), metadata={"description": "name fragment or code"})
    credit_code = fields.String(validate=validate.Length(max=18))
    region = fields.String(validate=validate.Length(equal=6))
    category = fields.String(validate=validate.OneOf(CATEGORIES))
    risk_level = fields.String(validate=validate.OneOf(RISK_LEVELS))


class ImportReportSchema(Schema):
    created = fields.Integer()
    updated = fields.Integer()
    errors = fields.List(fields.Dict())


InstitutionPage = page_schema(InstitutionSchema, "InstitutionPage")


def _domain_fields(args: dict) -> dict:
    return {("region" if k == "region_code" else k): v for k, v in args.items()}


@blp.get("")
@authenticated()
@blp.arguments(SearchArgs, location="query")
@blp.response(200, InstitutionPage)
def search(args):
    """Search by name fragment, credit code, region, category or risk, within the caller's jurisdiction."""
    paging = {"page": args.pop("page"), "page_size": args.pop("page_size")}
    rows, total = institutions.search_institutions(session(), current_officer(), **args, **paging)
    return paged(rows, total, paging)


@blp.post("")
@authenticated("admin")
@blp.arguments(InstitutionSchema)
@blp.response(201, InstitutionSchema)
@committed
def create(args):
    """Register an institution; a credit code is checked (GB 32100-2015) before it is stored."""
    return institutions.create_institution(session(), current_officer(), _domain_fields(args))


@blp.get("/<institution_id>")
@authenticated()
@blp.response(200, InstitutionSchema)
def get(institution_id):
    """One institution of the registry, within the caller's jurisdiction."""
    return institutions.get_institution(session(), current_officer(), institution_id)


@blp.patch("/<institution_id>")
@authenticated("admin")
@blp.arguments(InstitutionUpdateSchema)
@blp.response(200, InstitutionSchema)
@committed
def update(args, institution_id):
    """Change an institution's details, licence, category or risk level (admins)."""
    return institutions.update_institution(session(), current_officer(), institution_id, _domain_fields(args))


@blp.post("/import")
@authenticated("admin")
@blp.response(200, ImportReportSchema)
@blp.doc(requestBody={"content": {"text/csv": {"schema": {"type": "string"}}}, "required": True})
@committed
def import_csv():
    """Import a CSV (UTF-8, header row); bad rows are reported by line, good rows are imported."""
    raw = request.get_data(cache=False)
    if len(raw) > MAX_CSV_BYTES:
        raise Invalid("CSV larger than 8 MiB")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise Invalid(f"CSV is not UTF-8 (byte {exc.start})") from None
    return institutions.import_csv(session(), current_officer(), text).as_dict()
