"""PROTOCOL §9: the shared reference codes."""

from __future__ import annotations

from marshmallow import Schema, fields

from backend.core.reference import reference_document
from backend.web.api.blueprint import Blueprint
from backend.web.api.context import authenticated, session

blp = Blueprint("reference", __name__, url_prefix="/api/v1/reference", description="Reference codes")


class NamedCode(Schema):
    code = fields.String()
    name_zh = fields.String()
    name_en = fields.String()


class RegionSchema(NamedCode):
    level = fields.String()
    parent = fields.String(allow_none=True)


class DepartmentSchema(NamedCode):
    lead = fields.Boolean()
    levels = fields.List(fields.String())


class AgencySchema(Schema):
    id = fields.String()
    department = fields.String()
    region = fields.String()
    name_zh = fields.String()
    name_en = fields.String()


class CategorySchema(NamedCode):
    description_zh = fields.String()
    departments = fields.List(fields.String(), metadata={"description": "responsible departments, lead first"})


class ReferenceSchema(Schema):
    regions = fields.List(fields.Nested(RegionSchema))
    departments = fields.List(fields.Nested(DepartmentSchema))
    agencies = fields.List(fields.Nested(AgencySchema))
    violation_categories = fields.List(fields.Nested(CategorySchema))
    institution_categories = fields.List(fields.String())
    roles = fields.List(fields.String())


@blp.get("")
@authenticated()
@blp.response(200, ReferenceSchema)
def get_reference():
    """Regions, departments and their agencies, the violation catalogue, roles."""
    return reference_document(session())
