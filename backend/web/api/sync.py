"""PROTOCOL §2, §4, §5: devices, push and pull."""

from __future__ import annotations

from datetime import timedelta

from flask import request
from marshmallow import Schema, fields, validate

from backend.core.errors import PayloadTooLarge
from backend.web.admission import PUSH, admitted
from backend.web.api.blueprint import Blueprint
from backend.web.api.context import authenticated, committed, current_officer, session, state
from backend.web.api.schemas import StrictSchema
from sync import devices, feed
from sync import push as push_domain

PUSH_ATTEMPTS = 3  # a push that lost a race runs again whole, up to this many times

blp = Blueprint("sync", __name__, url_prefix="/api/v1", description="Devices, push and pull (offline sync)")


class EnrolSchema(StrictSchema):
    public_key = fields.String(required=True, validate=validate.Length(min=40, max=64),
                               metadata={"description": "base64url of the raw 32-byte Ed25519 key, no padding"})
    label = fields.String(load_default="", validate=validate.Length(max=120))


class HeadSchema(Schema):
    seq = fields.Integer()
    hash = fields.String()


class DeviceSchema(Schema):
    id = fields.String()
    officer_id = fields.String()
    label = fields.String()
    status = fields.String()
    head = fields.Nested(HeadSchema)
    deferred = fields.Dict()
    quarantined = fields.Integer()
    last_push_at = fields.DateTime(allow_none=True)
    created_at = fields.DateTime()
    revoked_at = fields.DateTime(allow_none=True)


class ReleaseSchema(StrictSchema):
    reason = fields.String(required=True, validate=validate.Length(min=1, max=200))


class ReleaseResultSchema(Schema):
    released_gaps = fields.Integer()
    applied = fields.List(fields.Dict())
    head = fields.Nested(HeadSchema)


class PushSchema(StrictSchema):
    records = fields.List(fields.Raw(), required=True, metadata={"description": "compact JWS strings"})


class PushResultSchema(Schema):
    results = fields.List(fields.Raw(), metadata={"description": "one result object per record, in order"})
    heads = fields.Dict(keys=fields.String(), values=fields.Nested(HeadSchema))


class PullArgs(StrictSchema):
    cursor = fields.String(validate=validate.Length(max=512))
    limit = fields.Integer(load_default=100, validate=validate.Range(min=1, max=500))


class ChangeSchema(Schema):
    kind = fields.String()
    id = fields.String()
    op = fields.String()
    data = fields.Dict()


class PullResultSchema(Schema):
    changes = fields.List(fields.Nested(ChangeSchema))
    cursor = fields.String()
    has_more = fields.Boolean()


@blp.post("/devices")
@authenticated()
@blp.arguments(EnrolSchema)
@blp.response(201, DeviceSchema)
@committed
def enrol(args):
    """Enrol the phone's Ed25519 public key; the device belongs to the caller."""
    device = devices.enrol(session(), current_officer(), args["public_key"], args["label"])
    return devices.describe(session(), device)


@blp.get("/devices/<device_id>")
@authenticated()
@blp.response(200, DeviceSchema)
def get_device(device_id):
    """The device with its ledger head and what is waiting: deferred records and the gaps before them."""
    return devices.get_device(session(), current_officer(), device_id)


@blp.post("/devices/<device_id>/revoke")
@authenticated()
@blp.response(200, DeviceSchema)
@committed
def revoke(device_id):
    """Revoke a device (its owner or an admin); later pushes from it are rejected."""
    return devices.revoke(session(), current_officer(), device_id)


@blp.post("/devices/<device_id>/gaps/release")
@authenticated("reviewer", "admin")
@blp.arguments(ReleaseSchema)
@blp.response(200, ReleaseResultSchema)
@committed
def release_gaps(args, device_id):
    """Acknowledge that a device's missing records will never come: its deferred records are applied."""
    return push_domain.release_gap(session(), current_officer(), device_id, args["reason"],
                                   applier=state().applier, settings=_push_settings())


def _push_settings() -> push_domain.PushSettings:
    s = state().settings
    return push_domain.PushSettings(gap_timeout=timedelta(seconds=s.gap_timeout_seconds),
                                    quarantine_per_device=s.quarantine_per_device)


@blp.post("/sync/push")
@admitted(PUSH)
@authenticated()
@blp.arguments(PushSchema)
@blp.response(200, PushResultSchema)
@blp.alt_response(413, description="more than 500 records or 8 MiB")
@committed(attempts=PUSH_ATTEMPTS)
def push(args):
    """Push signed records; one result per record in the order sent, then any deferred records caught up."""
    # A chunked body has no Content-Length: count what was read (the app's MAX_CONTENT_LENGTH bounded it).
    size = request.content_length if request.content_length is not None else len(request.get_data(cache=True))
    if size > push_domain.MAX_BODY_BYTES:
        raise PayloadTooLarge("a push carries at most 8 MiB")
    if len(args["records"]) > push_domain.MAX_RECORDS:
        raise PayloadTooLarge(f"a push carries at most {push_domain.MAX_RECORDS} records")
    return push_domain.push(session(), current_officer(), args["records"], applier=state().applier,
                            settings=_push_settings())


@blp.get("/sync/pull")
@authenticated()
@blp.arguments(PullArgs, location="query")
@blp.response(200, PullResultSchema)
@blp.alt_response(410, description="cursor no longer honoured: pull again without one")
def pull(args):
    """Changes after the cursor within the caller's jurisdiction and their own, in server order."""
    return feed.pull(session(), current_officer(), args.get("cursor"), args["limit"])
