"""Admin management of officer accounts and certificates."""

from __future__ import annotations

from marshmallow import fields, validate

from backend.casework import accounts
from backend.core.models import ROLES
from backend.web.api.auth import ProfileSchema
from backend.web.api.blueprint import Blueprint
from backend.web.api.context import authenticated, committed, current_officer, now, session, state
from backend.web.api.schemas import Instant, PageArgs, StrictSchema, page_schema, paged

blp = Blueprint("officers", __name__, url_prefix="/api/v1/officers", description="Officer accounts (admin)")

LAST_ADMIN = ("refused, nothing changed: an admin deactivating themself, or the last active admin deactivated or "
              "losing the admin role")
RoleList = fields.List(fields.String(validate=validate.OneOf(ROLES)), validate=validate.Length(min=1))


class OfficerCreateSchema(StrictSchema):
    username = fields.String(required=True, validate=validate.Regexp(r"^[A-Za-z0-9_.-]{3,64}$"))
    password = fields.String(required=True, validate=validate.Length(min=accounts.MIN_PASSWORD_LENGTH, max=256))
    name = fields.String(required=True, validate=validate.Length(min=1, max=64))
    department = fields.String(required=True, validate=validate.Length(max=16))
    region = fields.String(required=True, validate=validate.Length(equal=6))
    roles = RoleList
    cert_number = fields.String(allow_none=True, validate=validate.Length(min=1, max=32))
    cert_valid_from = fields.Date(allow_none=True)
    cert_valid_until = fields.Date(allow_none=True)


class OfficerUpdateSchema(StrictSchema):
    password = fields.String(validate=validate.Length(min=accounts.MIN_PASSWORD_LENGTH, max=256))
    name = fields.String(validate=validate.Length(min=1, max=64))
    department = fields.String(validate=validate.Length(max=16))
    region = fields.String(validate=validate.Length(equal=6))
    roles = RoleList
    active = fields.Boolean()
    cert_number = fields.String(allow_none=True, validate=validate.Length(min=1, max=32))
    cert_valid_from = fields.Date(allow_none=True)
    cert_valid_until = fields.Date(allow_none=True)


class OfficerListArgs(PageArgs):
    department = fields.String()
    region = fields.String()


OfficerPage = page_schema(ProfileSchema, "OfficerPage")


class CertificateEntrySchema(StrictSchema):
    number = fields.String(attribute="cert_number")
    valid_from = fields.Date(attribute="cert_valid_from", allow_none=True)
    valid_until = fields.Date(attribute="cert_valid_until", allow_none=True)
    recorded_at = Instant()
    recorded_by = fields.String(allow_none=True)


class CertificateHistorySchema(StrictSchema):
    items = fields.List(fields.Nested(CertificateEntrySchema))


@blp.get("")
@authenticated("admin")
@blp.arguments(OfficerListArgs, location="query")
@blp.response(200, OfficerPage)
def list_officers(args):
    """Officers within the admin's jurisdiction."""
    rows, total = accounts.list_officers(session(), current_officer(), page=args["page"],
                                         page_size=args["page_size"], department=args.get("department"),
                                         region=args.get("region"))
    return paged(rows, total, args)


@blp.post("")
@authenticated("admin")
@blp.arguments(OfficerCreateSchema)
@blp.response(201, ProfileSchema)
@committed
def create_officer(args):
    """Create an officer (the roles default to `officer`)."""
    args.setdefault("roles", ["officer"])
    return accounts.create_officer_as(session(), current_officer(), kdf=state().settings.password_kdf, now=now(),
                                      **args)


@blp.get("/<officer_id>")
@authenticated("admin")
@blp.response(200, ProfileSchema)
def get_officer(officer_id):
    """One officer's profile, roles and certificate (admins, within their jurisdiction)."""
    return accounts.get_officer(session(), current_officer(), officer_id)


@blp.get("/<officer_id>/certificates")
@authenticated("admin")
@blp.response(200, CertificateHistorySchema)
def certificate_history(officer_id):
    """Every certificate the officer has held, oldest first: the one of a past day judges that day."""
    return {"items": accounts.certificate_history(session(), current_officer(), officer_id)}


@blp.patch("/<officer_id>")
@authenticated("admin")
@blp.arguments(OfficerUpdateSchema)
@blp.response(200, ProfileSchema)
@blp.alt_response(409, description=LAST_ADMIN + "; or a username or certificate taken")
@committed
def update_officer(args, officer_id):
    """Change an officer's details, roles, certificate or password."""
    return accounts.update_officer(session(), current_officer(), officer_id, args, kdf=state().settings.password_kdf,
                                   now=now())


@blp.post("/<officer_id>/deactivate")
@authenticated("admin")
@blp.response(200, ProfileSchema)
@blp.alt_response(409, description=LAST_ADMIN)
@committed
def deactivate_officer(officer_id):
    """Deactivate an officer: their tokens stop working at once."""
    return accounts.deactivate_officer(session(), current_officer(), officer_id, now=now())
