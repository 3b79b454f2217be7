"""PROTOCOL §9: the shared reference codes."""

from __future__ import annotations

from marshmallow import Schema, fields

from backend.casework.accounts import crew_directory
from backend.core.reference import reference_document
from backend.web.api.blueprint import Blueprint
from backend.web.api.context import authenticated, current_officer, session

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


class OfficerCertificateSchema(Schema):
    number = fields.String(attribute="cert_number", allow_none=True)
    valid_from = fields.Date(attribute="cert_valid_from", allow_none=True)
    valid_until = fields.Date(attribute="cert_valid_until", allow_none=True)


class CrewOfficerSchema(Schema):
    id = fields.String()
    name = fields.String()
    department = fields.String(attribute="department_code")
    region = fields.String(attribute="region_code")
    certificate = fields.Nested(OfficerCertificateSchema,
                                metadata={"description": "the law-enforcement certificate (执法证); no number: none"})

    def get_attribute(self, obj, attr, default):
        """The certificate is the officer's own `cert_*` columns."""
        return obj if attr == "certificate" else super().get_attribute(obj, attr, default)


class CrewSchema(Schema):
    officers = fields.List(fields.Nested(CrewOfficerSchema))


@blp.get("/officers")
@authenticated()
@blp.response(200, CrewSchema)
def get_crew():
    """Active officers of your jurisdiction and of the city, with their certificates: what a phone needs to check
    the officers present before it signs an `inspection.start`."""
    return {"officers": crew_directory(session(), current_officer())}
