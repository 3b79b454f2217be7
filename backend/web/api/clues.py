"""Clues: intake at the desk, triage, becoming a case or closing, and the complainant's public status page; the
complainant masked in every answer, looked up by phone number, and unmasked with a purpose (on record)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from marshmallow import Schema, ValidationError, fields, validate, validates_schema

from backend.casework import clues, personal_data
from backend.casework.audit import REVIEWER_ROLES
from backend.casework.masking import PERSONAL_FIELDS
from backend.core.models import Clue
from backend.core.models.personal_data import MAX_PURPOSE
from backend.web.api.audit import PRINTABLE, DayOrTime
from backend.web.api.blueprint import Blueprint
from backend.web.api.context import authenticated, committed, current_officer, now, session, state
from backend.web.api.schemas import Instant, PageArgs, StrictSchema, page_schema, paged
from sync.records import CLUE_SOURCES, Hex64, InstitutionRef, Uuid

blp = Blueprint("clues", __name__, url_prefix="/api/v1", description="Clues: intake, triage, tracking")


class ClueAttachmentSchema(StrictSchema):
    evidence_id = Uuid(metadata={"description": "an evidence item a phone declared"})
    name = fields.String(validate=validate.Length(min=1, max=200), metadata={"description": "a file's name"})
    media_type = fields.String(validate=validate.Length(min=1, max=100))
    sha256 = Hex64(metadata={"description": "the file's hash, as the channel received it"})
    size = fields.Integer(validate=validate.Range(min=0))

    @validates_schema
    def _one_way(self, data, **kwargs):
        if "evidence_id" in data:
            if len(data) > 1:
                raise ValidationError("give either evidence_id alone, or a file's name and sha256")
        elif not ("name" in data and "sha256" in data):
            raise ValidationError("a file attachment needs name and sha256")


class ComplainantSchema(StrictSchema):
    name = fields.String(validate=validate.Length(max=100))
    phone = fields.String(validate=validate.Length(max=personal_data.MAX_PHONE))
    email = fields.String(validate=validate.Length(max=200))
    address = fields.String(validate=validate.Length(max=400))
    anonymous = fields.Boolean()


class ClueIntakeArgs(StrictSchema):
    source = fields.String(required=True, validate=validate.OneOf(CLUE_SOURCES))
    institution = fields.Nested(InstitutionRef, required=True,
                                metadata={"description": "`{id}`, or `{credit_code?, name, address?, region}`"})
    description = fields.String(required=True, validate=validate.Length(min=1, max=8000))
    category = fields.String(validate=validate.Length(min=1, max=32),
                             metadata={"description": "a violation catalogue code; routes the clue"})
    attachments = fields.List(fields.Nested(ClueAttachmentSchema), validate=validate.Length(max=50))
    complainant = fields.Nested(ComplainantSchema, metadata={"description": "personal data: never public"})
    reported_at = fields.AwareDateTime(metadata={"description": "when the channel received it; default now"})


class ClueListArgs(PageArgs):
    status = fields.String(validate=validate.OneOf(clues.CLUE_STATUSES))
    department = fields.String(validate=validate.Length(max=16))
    category = fields.String(validate=validate.Length(max=32))
    source = fields.String(validate=validate.OneOf(CLUE_SOURCES))
    institution_id = fields.String(validate=validate.Length(max=40))


class TriageArgs(StrictSchema):
    category = fields.String(required=True, validate=validate.Length(min=1, max=32))
    department = fields.String(validate=validate.Length(min=1, max=16),
                               metadata={"description": "one the catalogue names for the category; default its first"})


class ConvertArgs(StrictSchema):
    summary = fields.String(validate=validate.Length(max=4000))


class CloseArgs(StrictSchema):
    outcome = fields.String(required=True, validate=validate.OneOf(clues.CLOSING_OUTCOMES),
                            metadata={"description": "what the complainant's status page says"})
    reason = fields.String(required=True, validate=validate.Length(min=1, max=2000),
                           metadata={"description": "stays inside"})


class ClueSchema(Schema):
    id = fields.String()
    source = fields.String()
    institution_id = fields.String()
    region = fields.String()
    description = fields.String()
    status = fields.String()
    category = fields.String(allow_none=True)
    department = fields.String(allow_none=True)
    tracking_code = fields.String(allow_none=True)
    duplicate_of = fields.String(allow_none=True)
    case_id = fields.String(allow_none=True)
    attachments = fields.List(fields.Dict())
    outcome = fields.String(allow_none=True)
    closed_reason = fields.String(allow_none=True)
    reported_by = fields.String()
    reported_at = fields.String()
    updated_at = fields.String(allow_none=True)
    closed_at = fields.String(allow_none=True)


ClueListPage = page_schema(ClueSchema, "ClueListPage")


class ClueDetailSchema(ClueSchema):
    duplicates = fields.List(fields.String())
    transfers = fields.List(fields.Dict())
    complainant = fields.Dict(allow_none=True, metadata={
        "description": "only for those who handle the clue, and masked (name 张＊＊, phone 138****5678); in clear "
                       "only through POST /clues/{id}/complainant/unmask"})


class ConvertResultSchema(Schema):
    clue = fields.Nested(ClueDetailSchema)
    case = fields.Dict()
    existing = fields.Boolean(metadata={"description": "true when the department's open case was joined"})


class PublicDepartmentSchema(Schema):
    code = fields.String()
    name_zh = fields.String()
    name_en = fields.String()


class PublicClueSchema(Schema):
    """Exactly what a tracking code reveals; nothing here may name or describe a person."""

    tracking_code = fields.String()
    status = fields.String()
    reported_at = fields.String()
    updated_at = fields.String()
    closed_at = fields.String(allow_none=True)
    department = fields.Nested(PublicDepartmentSchema, allow_none=True)
    outcome = fields.String(allow_none=True)
    case_status = fields.String(allow_none=True)


class LookupArgs(StrictSchema):
    complainant_phone = fields.String(
        required=True, validate=validate.Length(min=1, max=personal_data.MAX_PHONE),
        metadata={"description": "as the complainant gave it, written any way: only its digits count"})


class FoundClueSchema(ClueSchema):
    complainant = fields.Dict(metadata={"description": "masked, as in GET /clues/{id}"})


class LookupResultSchema(Schema):
    items = fields.List(fields.Nested(FoundClueSchema), metadata={"description": "oldest first"})


class UnmaskArgs(StrictSchema):
    purpose = fields.String(required=True, validate=[validate.Length(min=1, max=MAX_PURPOSE), PRINTABLE],
                            metadata={"description": "why the clear values are needed; kept in the record"})
    field_names = fields.List(fields.String(validate=validate.OneOf(PERSONAL_FIELDS)), data_key="fields",
                              validate=validate.Length(min=1, max=len(PERSONAL_FIELDS)),
                              metadata={"description": "which to show in clear; default all the complainant gave"})


class UnmaskingSchema(Schema):
    id = fields.String()
    clue_id = fields.String()
    region = fields.String()
    shown = fields.List(fields.String(), attribute="fields", data_key="fields",
                        metadata={"description": "the fields shown in clear"})
    purpose = fields.String()
    by = fields.String(metadata={"description": "the officer who unmasked"})
    by_name = fields.String(allow_none=True)
    at = Instant()


UnmaskingPage = page_schema(UnmaskingSchema, "ComplainantUnmaskingPage")


class UnmaskedSchema(UnmaskingSchema):
    complainant = fields.Dict(metadata={"description": "`fields` in clear, the rest masked"})


class UnmaskingListArgs(PageArgs):
    clue_id = fields.String(validate=[validate.Length(max=40), PRINTABLE])
    by = fields.String(validate=[validate.Length(max=40), PRINTABLE], metadata={"description": "an officer's id"})
    since = DayOrTime(data_key="from", metadata={"description": "`at` on or after this (a date: 00:00 Hangzhou)"})
    until = DayOrTime(data_key="to", metadata={"description": "`at` before this (a date: 00:00 Hangzhou)"})


def _described(act: Callable[..., Clue], *subject: str, **args: Any) -> dict[str, Any]:
    """Every clue change answers with the clue as `GET /clues/<id>` shows it to the same caller, so a desk sees
    the tracking code, duplicates and routing its action produced without asking again."""
    s, officer = session(), current_officer()
    return clues.describe(s, officer, act(s, officer, *subject, **args, now=now()), keys=state().keys)


@blp.post("/clues")
@authenticated()
@blp.arguments(ClueIntakeArgs)
@blp.response(201, ClueDetailSchema)
@committed
def take_clue(args):
    """Take a clue from a complaint channel; the answer carries the tracking code for the complainant."""
    return _described(clues.intake, **args, keys=state().keys)


@blp.get("/clues")
@authenticated()
@blp.arguments(ClueListArgs, location="query")
@blp.response(200, ClueListPage)
def list_clues(args):
    """Clues within the caller's jurisdiction, filtered and paged."""
    rows, total = clues.list_clues(session(), current_officer(), **args)
    return paged(rows, total, args)


@blp.get("/clues/<clue_id>")
@authenticated()
@blp.response(200, ClueDetailSchema)
def get_clue(clue_id):
    """One clue with its duplicates and transfers; the complainant only for those who handle it."""
    return clues.get_clue(session(), current_officer(), clue_id, keys=state().keys)


@blp.post("/clues/lookup")
@authenticated()
@blp.arguments(LookupArgs)
@blp.response(200, LookupResultSchema)
@committed
def lookup_clues(args):
    """Clues the caller handles whose complainant gave this phone number, the complainant masked.

    A POST, so that the number is in no URL (access logs record URLs); found by the blind index, never in clear.
    """
    return {"items": personal_data.lookup_by_phone(session(), current_officer(), args["complainant_phone"],
                                                   keys=state().keys)}


@blp.post("/clues/<clue_id>/complainant/unmask")
@authenticated()
@blp.arguments(UnmaskArgs)
@blp.response(200, UnmaskedSchema)
@committed
def unmask_complainant(args, clue_id):
    """The clue's complainant in clear, for a stated purpose; the unmasking is recorded before the answer leaves."""
    shown = personal_data.unmask_complainant(session(), current_officer(), clue_id, purpose=args["purpose"],
                                             fields=args.get("field_names"), keys=state().keys, now=now())
    return shown, {"Cache-Control": "no-store"}


@blp.get("/clues/unmaskings")
@authenticated(*REVIEWER_ROLES)
@blp.arguments(UnmaskingListArgs, location="query")
@blp.response(200, UnmaskingPage)
def list_unmaskings(args):
    """Who saw which complainant's data in clear, and why: newest first, within the caller's jurisdiction."""
    paging = {"page": args.pop("page"), "page_size": args.pop("page_size")}
    rows, total = personal_data.list_unmaskings(session(), current_officer(), **args, **paging)
    return paged(rows, total, paging)


@blp.post("/clues/<clue_id>/triage")
@authenticated()
@blp.arguments(TriageArgs)
@blp.response(200, ClueDetailSchema)
@committed
def triage_clue(args, clue_id):
    """Set the category and route the clue by the catalogue; its duplicates follow."""
    return _described(clues.triage, clue_id, **args)


@blp.post("/clues/<clue_id>/case")
@authenticated()
@blp.arguments(ConvertArgs)
@blp.response(201, ConvertResultSchema)
@committed
def convert_clue(args, clue_id):
    """The clue becomes a case of its department, or joins that department's open case on the institution."""
    return clues.convert(session(), current_officer(), clue_id, **args, keys=state().keys, now=now())


@blp.post("/clues/<clue_id>/close")
@authenticated()
@blp.arguments(CloseArgs)
@blp.response(200, ClueDetailSchema)
@committed
def close_clue(args, clue_id):
    """Close a clue with the outcome the public page shows and the reason kept inside."""
    return _described(clues.close, clue_id, **args)


@blp.get("/public/clues/<code>")
@blp.response(200, PublicClueSchema)
def public_clue(code):
    """A clue's progress by its tracking code, without login and without personal data."""
    return clues.public_status(session(), code), {"Cache-Control": "no-store"}
