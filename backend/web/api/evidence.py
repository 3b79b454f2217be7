"""PROTOCOL §6: upload plans, the local store's resumable PUT, completion, and reading evidence."""

from __future__ import annotations

import re

from flask import Response, request, stream_with_context, url_for
from marshmallow import Schema, fields, validate

from backend.core.errors import RangeNotSatisfiable
from backend.web.admission import UPLOAD, admitted
from backend.web.api.blueprint import Blueprint
from backend.web.api.context import authenticated, committed, current_officer, now, session, state
from backend.web.api.schemas import Instant, StrictSchema
from backend.web.served import file_headers, parse_digest
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
    sha256 = fields.String(allow_none=True, metadata={
        "description": "SHA-256 of the file: as declared (null when only sm3 was), the computed one once verified"})
    sm3 = fields.String(allow_none=True, metadata={
        "description": "SM3 of the file: as declared (null when only sha256 was), the computed one once verified "
                       "(null for items verified before the server computed SM3)"})
    size = fields.Integer()
    kind = fields.String()
    media_type = fields.String()
    inspection_id = fields.String(allow_none=True)
    case_id = fields.String(allow_none=True)
    captured_at = Instant()
    location = fields.Dict(allow_none=True)
    clip = fields.Dict(allow_none=True)
    officer_id = fields.String()
    device_id = fields.String()
    declared_at = Instant()
    verified_at = Instant(allow_none=True)
    deleted_at = Instant(allow_none=True, metadata={"description": "when retention deleted the file"})
    deleted_by = fields.String(allow_none=True, metadata={"description": "the custodian who deleted it"})
    media_info = fields.Dict(allow_none=True)
    flags = fields.List(fields.String())
    has_thumbnail = fields.Boolean()
    uploads = fields.List(fields.Dict())


CONTENT_RANGE = re.compile(r"^bytes (\d+)-(\d+)/(\d+)$")
UPLOAD_OFFSET = {"Upload-Offset": {"description": "bytes of the upload the server holds",
                                   "schema": {"type": "integer"}}}
SERVED_FILE = {
    "Content-Disposition": {"description": "`inline` only for allow-listed picture, video and audio types, else "
                                           "`attachment`", "schema": {"type": "string"}},
    "Content-Security-Policy": {"description": "always `sandbox; ...`", "schema": {"type": "string"}},
    "X-Content-Type-Options": {"description": "always `nosniff`", "schema": {"type": "string"}},
}
FILE_DIGESTS = {
    "ETag": {"description": "the file's SHA-256 (hex), quoted", "schema": {"type": "string"}},
    "Repr-Digest": {"description": "RFC 9530: `sha-256=:<base64>:`", "schema": {"type": "string"}},
    "Digest": {"description": "`sha-256=<hex>` (earlier form, kept)", "schema": {"type": "string"}},
}


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
    return uploads.start_upload(session(), state().store, current_officer(), evidence_id, content_url, now=now())


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
                                   "`Upload-Offset` (nothing held changed: resume from there; the offset is also "
                                   "`errors.offset`)", headers=UPLOAD_OFFSET)
@blp.alt_response(411, description="neither Content-Length nor Content-Range was sent")
@blp.alt_response(416, description="Content-Range is malformed, or not within the declared size")
@blp.alt_response(422, description="a malformed digest field; the body shorter or longer than its range, or not "
                                   "hashing to its Content-Digest (or the completed file to its Repr-Digest): "
                                   "resume from `Upload-Offset`", headers=UPLOAD_OFFSET)
@blp.doc(requestBody={"content": {"application/octet-stream": {"schema": {"type": "string", "format": "binary"}}}},
         parameters=[{"in": "header", "name": "Content-Range", "schema": {"type": "string"},
                      "description": "bytes START-END/TOTAL, to resume; START must be `Upload-Offset`"},
                     {"in": "header", "name": "Content-Digest", "schema": {"type": "string"},
                      "description": "RFC 9530 `sha-256=:<base64>:` of this request's bytes"},
                     {"in": "header", "name": "Repr-Digest", "schema": {"type": "string"},
                      "description": "RFC 9530 `sha-256=:<base64>:` of the whole file, checked when it is whole"}])
def put_content(evidence_id):
    """Bytes for the local store: the whole file, or the rest of it from `Upload-Offset` with `Content-Range`."""
    request.max_content_length = 1 << 62  # the declared size is the limit, checked as bytes arrive
    headers = request.headers
    target = uploads.content_target(session(), state().store, current_officer(), evidence_id,
                                    _content_range(headers.get("Content-Range")), request.content_length,
                                    content_sha256=parse_digest("Content-Digest", headers.get("Content-Digest")),
                                    repr_sha256=parse_digest("Repr-Digest", headers.get("Repr-Digest")))
    session().commit()  # the check only read: no connection is held while a phone's bytes trickle in
    offset = uploads.write_content(state().store, target, request.stream)
    evidence = session().get(uploads.Evidence, evidence_id)
    return {"offset": offset, "size": evidence.size}, 200, {"Upload-Offset": str(offset)}


class ReadArgs(StrictSchema):
    purpose = fields.String(validate=validate.Length(max=500),
                            metadata={"description": "why it is read; kept in the custody log"})


class CustodyEventsSchema(Schema):
    events = fields.List(fields.Dict())


# HEAD is a route of its own, the upload's status probe, not the GET below without its body: registered first, so
# that Flask sends HEAD here rather than to the HEAD it adds to every GET rule (the first rule that allows the method
# wins). Its own operation in the OpenAPI document, too.
@blp.route("/<evidence_id>/content", methods=["HEAD"], endpoint="upload_offset")
@authenticated()
@blp.response(200, description="no body: `Upload-Offset` is how many bytes of the upload the server holds (0 before "
                               "any; the declared size once verified)",
              headers={**UPLOAD_OFFSET, "Cache-Control": {"description": "`no-store`",
                                                          "schema": {"type": "string"}}})
@blp.alt_response(410, description="the file was deleted under the retention policy")
def upload_offset(evidence_id):
    """How many bytes of an upload have arrived: where an interrupted `PUT .../content` resumes.

    For the local store's uploads (PROTOCOL §6). A phone asks before it resumes, and sends the rest with
    `Content-Range: bytes <Upload-Offset>-<size-1>/<size>`. On a store that takes uploads at presigned URLs an
    item with an open upload answers 404: there the phone uploads again by its plan.
    """
    offset = uploads.upload_offset(session(), state().store, current_officer(), evidence_id)
    return Response(status=200, headers={"Upload-Offset": str(offset), "Cache-Control": "no-store"})


@blp.route("/<evidence_id>/content", methods=["GET"], endpoint="content")
@authenticated()
@blp.arguments(ReadArgs, location="query")
@blp.response(200, description="the original bytes (an attachment unless an allow-listed picture, video or audio "
                                "type)",
              headers={**SERVED_FILE, **FILE_DIGESTS})
@blp.alt_response(409, description="only verified evidence has content to read")
@blp.doc(responses={200: {"content": {"*/*": {"schema": {"type": "string", "format": "binary"}}}}})
@committed
def content(args, evidence_id):
    """Stream the verified original; every read is a custody event (`read`, with the stated purpose)."""
    evidence, stream = uploads.open_original(session(), state().store, current_officer(), evidence_id,
                                             args.get("purpose"), now=now())

    return Response(stream_with_context(blocks(stream)),
                    headers=file_headers(evidence.id, evidence.media_type, sha256=evidence.sha256,
                                         size=evidence.size))


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
    """The item: its status, whether the phone may purge its copy, what was read from the file, and its uploads."""
    return uploads.describe(session(), uploads.readable_evidence(session(), current_officer(), evidence_id))


@blp.get("/<evidence_id>/custody")
@authenticated()
@blp.response(200, CustodyEventsSchema)
def custody_events(evidence_id):
    """Every custody event of the item with its leaf index and the exact leaf text that was hashed."""
    return uploads.custody_history(session(), current_officer(), evidence_id)


@blp.get("/<evidence_id>/thumbnail")
@authenticated()
@blp.response(200, description="a derived JPEG, longest side 320 px", headers=SERVED_FILE)
@blp.doc(responses={200: {"content": {"image/jpeg": {"schema": {"type": "string", "format": "binary"}}}}})
def thumbnail(evidence_id):
    """A JPEG derived from a verified photo (orientation applied); the original is never altered."""
    stream = uploads.open_thumbnail(session(), state().store, current_officer(), evidence_id)
    try:
        data = stream.read()
    finally:
        stream.close()
    return Response(data, headers=file_headers(evidence_id, "image/jpeg"))
