"""PROTOCOL §2, §4, §5: devices, push and pull."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from datetime import timedelta
from functools import wraps
from typing import Any

from flask import request
from marshmallow import Schema, fields, validate

from backend.core.errors import PayloadTooLarge
from backend.web.admission import PUSH, admitted
from backend.web.api.blueprint import Blueprint
from backend.web.api.context import authenticated, committed, current_officer, now, session, state
from backend.web.api.schemas import Instant, StrictSchema
from backend.web.metrics import note_push
from sync import devices, feed
from sync import push as push_domain

PUSH_ATTEMPTS = 3  # a push that lost a race runs again whole, up to this many times

push_log = logging.getLogger("fieldcase.push")

blp = Blueprint("sync", __name__, url_prefix="/api/v1", description="Devices, push and pull (offline sync)")


class EnrolSchema(StrictSchema):
    public_key = fields.String(required=True, validate=validate.Length(min=40, max=88),
                               metadata={"description": "base64url, no padding, of the raw 32-byte Ed25519 key, or "
                                                        "(alg SM2SM3) of the 65-byte uncompressed SM2 point"})
    alg = fields.String(load_default="EdDSA", validate=validate.OneOf(devices.ENROL_ALGS),
                        metadata={"description": "what the device's records are signed with: EdDSA or Ed25519 (the "
                                                 "default: an Ed25519 key), or SM2SM3 (an SM2 key; PROTOCOL §3)"})
    label = fields.String(load_default="", validate=validate.Length(max=120))


class HeadSchema(Schema):
    seq = fields.Integer()
    hash = fields.String()


class DeviceSchema(Schema):
    id = fields.String()
    officer_id = fields.String()
    label = fields.String()
    status = fields.String()
    alg = fields.String(metadata={"description": "what its records are signed with: EdDSA (Ed25519) or SM2SM3"})
    head = fields.Nested(HeadSchema)
    deferred = fields.Dict()
    quarantined = fields.Integer()
    last_push_at = Instant(allow_none=True)
    created_at = Instant()
    revoked_at = Instant(allow_none=True)


class ReleaseSchema(StrictSchema):
    reason = fields.String(required=True, validate=validate.Length(min=1, max=200))


STATUSES = ("applied", "duplicate", "conflict", "invalid", "deferred", "rejected")
# What `refs` may name, by record type (docs/protocol.md §4 and "Result fields beyond §4"). Documented as properties
# of an open object rather than a nested schema: a nested schema writes only the fields it declares, and a ref a
# record type adds must never vanish from the answer on its way out.
REFS = {
    "case_id": {"type": "string", "description": "the case the record resolved to or opened"},
    "merged": {"type": "boolean", "description": "an offline case.open merged into an existing open case"},
    "institution_id": {"type": "string"},
    "inspection_id": {"type": "string"},
    "finding_id": {"type": "string"},
    "evidence_id": {"type": "string"},
    "clue_id": {"type": "string"},
    "tracking_code": {"type": "string", "description": "clue.report: the code the complainant follows it by"},
    "duplicate_of": {"type": "string", "description": "clue.report: the open clue it duplicates"},
    "version": {"type": "integer", "description": "case.update: the case's version afterwards"},
    "conflicts": {"type": "array", "items": {"type": "string"}, "description": "case.update: fields that conflicted"},
    "needs_correction": {"type": "array", "items": {"type": "object"},
                         "description": "case.open, inspection.finding: what was applied with a slip and needs a "
                                        "correction (`code`, `field`, `detail`; docs/protocol.md, \"Corrections\")"},
    "corrects": {"type": "string", "description": "record.correct: the op of the record it corrected"},
    "changed": {"type": "array", "items": {"type": "string"},
                "description": "record.correct: the columns it changed (institution_id, region_code; category, "
                               "description); empty when the values were already so"},
    "unknown_evidence": {"type": "array", "items": {"type": "string"},
                         "description": "inspection.finding: cited evidence ids with no evidence.capture on the "
                                        "server when the finding was applied (flag `unknown_evidence`)"},
}


class PushResultEntrySchema(Schema):
    """One record's outcome (docs/protocol.md §4). Every field the server writes in a result is declared here."""

    op = fields.String(allow_none=True, metadata={"description": "null when the record could not be parsed"})
    device = fields.String(allow_none=True, metadata={"description": "the record's kid; null when unparsable"})
    seq = fields.Integer(allow_none=True, metadata={"description": "null when the record could not be parsed"})
    status = fields.String(required=True, validate=validate.OneOf(STATUSES))
    code = fields.String(metadata={"description": "why: the rejection or invalid code (for a duplicate, the first "
                                                  "outcome's)"})
    detail = fields.String(metadata={"description": "a human sentence about `code`, at most 500 characters"})
    refs = fields.Dict(keys=fields.String(), metadata={"properties": REFS,
                                                       "description": "what the record resolved to"})
    flags = fields.List(fields.String(), metadata={"description": "procedure flags the record raised; never a "
                                                                  "refusal"})
    first_status = fields.String(validate=validate.OneOf(STATUSES),
                                 metadata={"description": "a duplicate: the status the first copy got"})
    caught_up = fields.Boolean(metadata={"description": "a held record applied during this push, listed after the "
                                                       "results of the records sent"})


class ReleaseResultSchema(Schema):
    released_gaps = fields.Integer()
    applied = fields.List(fields.Nested(PushResultEntrySchema))
    head = fields.Nested(HeadSchema)


class PushSchema(StrictSchema):
    records = fields.List(fields.Raw(), required=True, metadata={"description": "compact JWS strings"})


class PushResultSchema(Schema):
    results = fields.List(fields.Nested(PushResultEntrySchema),
                          metadata={"description": "one result per record, in the order sent, then the held records "
                                                   "caught up"})
    heads = fields.Dict(keys=fields.String(), values=fields.Nested(HeadSchema),
                        metadata={"description": "per device of the push: its last ledgered record"})


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
    """Enrol the phone's public key (Ed25519, or SM2 with `alg` SM2SM3); the device belongs to the caller."""
    device = devices.enrol(session(), current_officer(), args["public_key"], args["label"], args["alg"])
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
    return devices.revoke(session(), current_officer(), device_id, now=now())


@blp.post("/devices/<device_id>/gaps/release")
@authenticated("reviewer", "admin")
@blp.arguments(ReleaseSchema)
@blp.response(200, ReleaseResultSchema)
@committed
def release_gaps(args, device_id):
    """Acknowledge that a device's missing records will never come: its deferred records are applied."""
    return push_domain.release_gap(session(), current_officer(), device_id, args["reason"],
                                   applier=state().applier, now=now(), settings=_push_settings())


def _push_settings() -> push_domain.PushSettings:
    s = state().settings
    return push_domain.PushSettings(gap_timeout=timedelta(seconds=s.gap_timeout_seconds),
                                    quarantine_per_device=s.quarantine_per_device)


def _summarised(view: Callable[..., Any]) -> Callable[..., Any]:
    """One log line per push, once it has committed (or failed): its devices, its records counted by status, how
    long it took (ms) and, when it failed, the exception's class; the request's id comes with every line."""

    @wraps(view)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        started = time.perf_counter()
        try:
            answer = view(*args, **kwargs)
        except Exception as exc:
            push_log.warning("push", extra={"officer": current_officer().id, "outcome": "failed",
                                            "error": type(exc).__name__, "duration_ms": _ms_since(started)})
            raise
        push_log.info("push", extra={"officer": current_officer().id, "outcome": "done",
                                     **push_domain.summary(answer), "duration_ms": _ms_since(started)})
        return answer

    return wrapper


def _ms_since(started: float) -> float:
    return round((time.perf_counter() - started) * 1000, 1)


@blp.post("/sync/push")
@admitted(PUSH)
@authenticated()
@blp.arguments(PushSchema)
@blp.response(200, PushResultSchema)
@blp.alt_response(413, description="more than 500 records or 8 MiB")
@_summarised
@committed(attempts=PUSH_ATTEMPTS)
def push(args):
    """Push signed records; one result per record in the order sent, then any deferred records caught up."""
    # A chunked body has no Content-Length: count what was read (the app's MAX_CONTENT_LENGTH bounded it).
    size = request.content_length if request.content_length is not None else len(request.get_data(cache=True))
    if size > push_domain.MAX_BODY_BYTES:
        raise PayloadTooLarge("a push carries at most 8 MiB")
    if len(args["records"]) > push_domain.MAX_RECORDS:
        raise PayloadTooLarge(f"a push carries at most {push_domain.MAX_RECORDS} records")
    answer = push_domain.push(session(), current_officer(), args["records"], applier=state().applier, now=now(),
                              settings=_push_settings())
    note_push(answer, len(args["records"]), size)  # counted once the request answers 200 (a retry replaces it)
    return answer


@blp.get("/sync/pull")
@authenticated()
@blp.arguments(PullArgs, location="query")
@blp.response(200, PullResultSchema)
@blp.alt_response(410, description="cursor no longer honoured: pull again without one")
def pull(args):
    """Changes after the cursor within the caller's jurisdiction and their own, in server order."""
    return feed.pull(session(), current_officer(), args.get("cursor"), args["limit"])
