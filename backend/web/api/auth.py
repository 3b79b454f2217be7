"""PROTOCOL §1: tokens and the caller's profile."""

from __future__ import annotations

from marshmallow import fields, validate

from backend.casework import tokens
from backend.web import auth as auth_domain
from backend.web.api.blueprint import RETRY_AFTER, Blueprint
from backend.web.api.context import authenticated, client_address, committed, current_officer, now, session, state
from backend.web.api.schemas import StrictSchema

blp = Blueprint("auth", __name__, url_prefix="/api/v1", description="Authentication and the caller's profile")


class LoginSchema(StrictSchema):
    username = fields.String(required=True, validate=validate.Length(min=1, max=64))
    password = fields.String(required=True, validate=validate.Length(min=1, max=1024))


class RefreshSchema(StrictSchema):
    refresh_token = fields.String(required=True, validate=validate.Length(min=1, max=512))


class TokenPairSchema(StrictSchema):
    access_token = fields.String(required=True)
    refresh_token = fields.String(required=True)
    token_type = fields.String(required=True)
    expires_in = fields.Integer(required=True)


class CertificateSchema(StrictSchema):
    number = fields.String(allow_none=True)
    valid_from = fields.Date(allow_none=True)
    valid_until = fields.Date(allow_none=True)


class ProfileSchema(StrictSchema):
    id = fields.String()
    username = fields.String()
    name = fields.String()
    department = fields.String(attribute="department_code")
    region = fields.String(attribute="region_code")
    roles = fields.List(fields.String())
    active = fields.Boolean()
    certificate = fields.Method("_certificate")

    def _certificate(self, officer) -> dict:
        return {"number": officer.cert_number,
                "valid_from": officer.cert_valid_from.isoformat() if officer.cert_valid_from else None,
                "valid_until": officer.cert_valid_until.isoformat() if officer.cert_valid_until else None}


@blp.post("/auth/token")
@blp.arguments(LoginSchema)
@blp.response(200, TokenPairSchema)
@blp.alt_response(401, description="wrong username or password")
@blp.alt_response(429, description="too many failed logins", headers=RETRY_AFTER)
@committed
def token(args):
    """Exchange a username and password for an access and a refresh token."""
    st, s = state(), session()
    attempt = auth_domain.count_attempt(s, st.settings, args["username"], client_address(), now=now())
    s.commit()  # counted before the password is checked, and counted still when the login fails
    return auth_domain.finish_login(s, st.settings, st.issuer, attempt, args["password"], now=now())


@blp.post("/auth/refresh")
@blp.arguments(RefreshSchema)
@blp.response(200, TokenPairSchema)
@blp.alt_response(401, description="invalid, expired or reused refresh token")
@committed
def refresh(args):
    """Spend a refresh token for a new pair; a reused one revokes its whole family."""
    return tokens.rotate_refresh(session(), state().issuer, args["refresh_token"], now=now())


@blp.get("/me")
@authenticated()
@blp.response(200, ProfileSchema)
@blp.alt_response(401, description="missing or invalid token")
def me():
    """The caller's profile."""
    return current_officer()
