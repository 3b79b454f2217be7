"""PROTOCOL §6: upload plans, the local store's resumable PUT, completion, and reading evidence."""

from __future__ import annotations

import re

from flask import Response, request, stream_with_context, url_for
from marshmallow import Schema, fields, validate

from backend.core.errors import RangeNotSatisfiable
from backend.web.admission import UPLOAD, admitted
from backend.web.api.blueprint import Blueprint
from backend.web.api.context import authenticated, committed, current_officer, session, state
from backend.web.api.schemas import StrictSchema
from media import uploads
from media.store import blocks

blp = Blueprint("evidence", __name__, url_prefix="/api/v1/evidence", description="Evidence files")


class PartSchema(StrictSchema):
    number = fields.Integer(required=True, validate=validate.Range(min=1, max=10000))
    etag = fields.String(required=True, validate=validate.Length(min=1, max=200))


class CompleteSchema(StrictSchema):
    parts = fields.List(fields.Nested(PartSchema), validate=validate.Length(max=10000))


class PlanSchema(Schema):
    method = fields.String(metadata={"description": "PUT or multipart"})
    url = fields.String()
    headers = fields.Dict(keys=fields.String(), values=fields.String())
    upload_id = fields.String()
    part_size = fields.Integer()
    parts = fields.List(fields.Dict())


class EvidenceSchema(Schema):
    id = fields.String()
    status = fields.String()
    purge_allowed = fields.Boolean()
    sha256 = fields.String()
    size = fields.Integer()
    kind = fields.String()
    media_type = fields.String()
    inspection_id = fields.String(allow_none=True)
    case_id = fields.String(allow_none=True)
    captured_at = fields.DateTime()
    location = fields.Dict(allow_none=True)
    clip = fields.Dict(allow_none=True)
    officer_id = fields.String()
    device_id = fields.String()
    declared_at = fields.DateTime()
    verified_at = fields.DateTime(allow_none=True)
    deleted_at = fields.DateTime(allow_none=True, metadata={"description": "when retention deleted the file"})
    deleted_by = fields.String(allow_none=True, metadata={"description": "the custodian who deleted it"})
    media_info = fields.Dict(allow_none=True)
    flags = fields.List(fields.String())
    has_thumbnail = fields.Boolean()
    uploads = fields.List(fields.Dict())


CONTENT_RANGE = re.compile(r"^bytes (\d+)-(\d+)/(\d+)$")
UPLOAD_OFFSET = {"Upload-Offset": {"description": "bytes of the upload the server holds",
                                   "schema": {"type": "integer"}}}


class OffsetSchema(Schema):
    offset = fields.Integer()
    size = fields.Integer()


@blp.post("/<evidence_id>/uploads")
@authenticated()
@blp.response(200, PlanSchema)
@committed
def plan(evidence_id):
    """An upload plan: one PUT, or multipart parts. Asked again while an upload is open, the same upload resumes."""
    content_url = url_for("evidence.content", evidence_id=evidence_id, _external=True)
    return uploads.start_upload(session(), state().store, current_officer(), evidence_id, content_url)


def _content_range(header: str | None) -> uploads.ByteRange | None:
    """`Content-Range: bytes START-END/TOTAL` (RFC 9110 §14.4); what the numbers must be is the upload's rule."""
    if not header:
        return None
    m = CONTENT_RANGE.match(header.strip())
    if not m:
        raise RangeNotSatisfiable("Content-Range must be 'bytes START-END/TOTAL'")
    return uploads.ByteRange(*(int(g) for g in m.groups()))


@blp.route("/<evidence_id>/content", methods=["PUT"], endpoint="put_content")
@admitted(UPLOAD)
@authenticated()
@blp.response(200, OffsetSchema, headers=UPLOAD_OFFSET)
@blp.alt_response(409, description="no upload open, the item already verified, or the bytes do not start at "
                                   "`Upload-Offset` (resume from there)", headers=UPLOAD_OFFSET)
@blp.alt_response(411, description="neither Content-Length nor Content-Range was sent")
@blp.alt_response(416, description="Content-Range is malformed, or not within the declared size")
@blp.doc(requestBody={"content": {"application/octet-stream": {"schema": {"type": "string", "format": "binary"}}}},
         parameters=[{"in": "header", "name": "Content-Range", "schema": {"type": "string"},
                      "description": "bytes START-END/TOTAL, to resume"}])
def put_content(evidence_id):
    """Bytes for the local store: the whole file, or the rest of it from `Upload-Offset` with `Content-Range`."""
    request.max_content_length = 1 << 62  # the declared size is the limit, checked as bytes arrive
    offset = uploads.receive_content(session(), state().store, current_officer(), evidence_id, request.stream,
                                     _content_range(request.headers.get("Content-Range")), request.content_length)
    evidence = session().get(uploads.Evidence, evidence_id)
    return {"offset": offset, "size": evidence.size}, 200, {"Upload-Offset": str(offset)}


class ReadArgs(StrictSchema):
    purpose = fields.String(validate=validate.Length(max=500),
                            metadata={"description": "why it is read; kept in the custody log"})


class CustodyEventsSchema(Schema):
    events = fields.List(fields.Dict())


@blp.route("/<evidence_id>/content", methods=["GET"], endpoint="content")
@authenticated()
@blp.arguments(ReadArgs, location="query")
@blp.response(200, description="the original bytes; HEAD answers `Upload-Offset` for an upload in progress")
@blp.alt_response(409, description="only verified evidence has content to read")
@blp.doc(responses={200: {"content": {"*/*": {"schema": {"type": "string", "format": "binary"}}}}})
@committed
def content(args, evidence_id):
    """Stream the verified original; HEAD tells how many bytes of an upload in progress have arrived."""
    if request.method == "HEAD":
        offset = uploads.upload_offset(session(), state().store, current_officer(), evidence_id)
        return Response(status=200, headers={"Upload-Offset": str(offset), "Cache-Control": "no-store"})
    evidence, stream = uploads.open_original(session(), state().store, current_officer(), evidence_id,
                                             args.get("purpose"))

    return Response(stream_with_context(blocks(stream)), mimetype=evidence.media_type,
                    headers={"Content-Length": str(evidence.size), "ETag": f'"{evidence.sha256}"',
                             "Digest": f"sha-256={evidence.sha256}"})


@blp.post("/<evidence_id>/complete")
@admitted(UPLOAD)
@authenticated()
@blp.arguments(CompleteSchema)
@blp.response(200, EvidenceSchema)
@blp.alt_response(202, schema=EvidenceSchema,
                  description="accepted: a job worker verifies the bytes (the upload's status is `verifying`); the "
                              "verdict comes with GET /evidence/{id} and the change feed")
@committed
def complete(args, evidence_id):
    """Read the stored bytes back, hash them, and answer `verified` or `mismatch` (or `202` while a worker does)."""
    st = state()
    evidence = uploads.complete(session(), st.store, current_officer(), evidence_id, args.get("parts"), st.media,
                                st.runner)
    pending = uploads.verification_pending(session(), evidence)
    return uploads.describe(session(), evidence), 202 if pending else 200


@blp.get("/<evidence_id>")
@authenticated()
@blp.response(200, EvidenceSchema)
def get_evidence(evidence_id):
    return uploads.describe(session(), uploads.readable_evidence(session(), current_officer(), evidence_id))


@blp.get("/<evidence_id>/custody")
@authenticated()
@blp.response(200, CustodyEventsSchema)
def custody_events(evidence_id):
    """Every custody event of the item with its leaf index and the exact leaf text that was hashed."""
    return uploads.custody_history(session(), current_officer(), evidence_id)


@blp.get("/<evidence_id>/thumbnail")
@authenticated()
@blp.response(200, description="a derived JPEG, longest side 320 px")
@blp.doc(responses={200: {"content": {"image/jpeg": {"schema": {"type": "string", "format": "binary"}}}}})
def thumbnail(evidence_id):
    stream = uploads.open_thumbnail(session(), state().store, current_officer(), evidence_id)
    try:
        data = stream.read()
    finally:
        stream.close()
    return Response(data, mimetype="image/jpeg")
