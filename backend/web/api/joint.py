"""Joint enforcement: participating departments of a case, and transfers of clues and cases with their answers."""

from __future__ import annotations

from marshmallow import Schema, fields, validate

from backend.casework import joint
from backend.core.models import TRANSFER_STATUSES, TRANSFER_TARGETS
from backend.web.api.blueprint import Blueprint
from backend.web.api.context import authenticated, committed, current_officer, now, session
from backend.web.api.schemas import PageArgs, StrictSchema, page_schema, paged
from sync.records import Uuid

blp = Blueprint("joint", __name__, url_prefix="/api/v1", description="Joint enforcement and transfers")


class ParticipantArgs(StrictSchema):
    department = fields.String(required=True, validate=validate.Length(min=1, max=16))
    reason = fields.String(required=True, validate=validate.Length(min=1, max=2000))


class ParticipantSchema(Schema):
    case_id = fields.String()
    department = fields.String()
    added_by = fields.String()
    added_at = fields.String()
    reason = fields.String()


class ParticipantsSchema(Schema):
    case_id = fields.String()
    lead = fields.String()
    participants = fields.List(fields.Nested(ParticipantSchema))


class ClueTransferArgs(StrictSchema):
    to = fields.String(required=True, validate=validate.OneOf(TRANSFER_TARGETS))
    department = fields.String(validate=validate.Length(min=1, max=16),
                               metadata={"description": "required for `department`; at the `city`, default the "
                                                        "sender's own; none for `judiciary`"})
    reason = fields.String(required=True, validate=validate.Length(min=1, max=2000))


class CaseTransferArgs(ClueTransferArgs):
    package_id = Uuid(metadata={"description": "an evidence package exported for this case, handed over with it"})


class TransferViewSchema(Schema):
    id = fields.String()
    subject_kind = fields.String()
    subject_id = fields.String()
    region = fields.String()
    from_department = fields.String()
    to = fields.String()
    to_department = fields.String(allow_none=True)
    reason = fields.String()
    status = fields.String()
    requested_by = fields.String()
    requested_at = fields.String()
    decided_by = fields.String(allow_none=True)
    decided_at = fields.String(allow_none=True)
    decision_reason = fields.String(allow_none=True)
    successor_case_id = fields.String(allow_none=True)


class TransferDetailViewSchema(TransferViewSchema):
    sent = fields.Dict(allow_none=True, metadata={"description": "what was handed over, as it was"})


TransferPage = page_schema(TransferViewSchema, "TransferPage")


class TransferListArgs(PageArgs):
    status = fields.String(validate=validate.OneOf(TRANSFER_STATUSES))
    subject_kind = fields.String(validate=validate.OneOf(("clue", "case")))
    subject_id = fields.String(validate=validate.Length(max=40))
    direction = fields.String(validate=validate.OneOf(("incoming", "outgoing")),
                              metadata={"description": "incoming: for the caller's department to answer"})


class AcceptArgs(StrictSchema):
    reason = fields.String(validate=validate.Length(min=1, max=2000))


class RefuseArgs(StrictSchema):
    reason = fields.String(required=True, validate=validate.Length(min=1, max=2000))


@blp.get("/cases/<case_id>/departments")
@authenticated()
@blp.response(200, ParticipantsSchema)
def get_participants(case_id):
    """The case's lead department and the departments taking part in it."""
    return joint.participants(session(), current_officer(), case_id)


@blp.post("/cases/<case_id>/departments")
@authenticated()
@blp.arguments(ParticipantArgs)
@blp.response(201, ParticipantSchema)
@committed
def add_participant(args, case_id):
    """A department joins the case; its officers work on it."""
    return joint.add_participant(session(), current_officer(), case_id, **args, now=now())


@blp.delete("/cases/<case_id>/departments/<department>")
@authenticated()
@blp.response(204)
@committed
def remove_participant(case_id, department):
    """Take a participating department off a case."""
    joint.remove_participant(session(), current_officer(), case_id, department)


@blp.post("/cases/<case_id>/transfers")
@authenticated()
@blp.arguments(CaseTransferArgs)
@blp.response(201, TransferDetailViewSchema)
@committed
def transfer_case(args, case_id):
    """Ask for the case to go to another department or the city (answered there), or send it to the judiciary."""
    return joint.request_case_transfer(session(), current_officer(), case_id, **args, now=now())


@blp.post("/clues/<clue_id>/transfers")
@authenticated()
@blp.arguments(ClueTransferArgs)
@blp.response(201, TransferDetailViewSchema)
@committed
def transfer_clue(args, clue_id):
    """Hand a clue to another department, up to the city level, or to the judiciary."""
    return joint.request_clue_transfer(session(), current_officer(), clue_id, **args, now=now())


@blp.get("/transfers")
@authenticated()
@blp.arguments(TransferListArgs, location="query")
@blp.response(200, TransferPage)
def list_transfers(args):
    """Transfers within the caller's jurisdiction, incoming or outgoing, paged."""
    rows, total = joint.list_transfers(session(), current_officer(), **args)
    return paged(rows, total, args)


@blp.get("/transfers/<transfer_id>")
@authenticated()
@blp.response(200, TransferDetailViewSchema)
def get_transfer(transfer_id):
    """One transfer with what was handed over (`sent`), as it was then."""
    return joint.get_transfer(session(), current_officer(), transfer_id)


@blp.post("/transfers/<transfer_id>/accept")
@authenticated()
@blp.arguments(AcceptArgs)
@blp.response(200, TransferDetailViewSchema)
@committed
def accept_transfer(args, transfer_id):
    """The receiver takes the matter: a case closes as transferred and a successor case carries it on."""
    return joint.accept(session(), current_officer(), transfer_id, **args, now=now())


@blp.post("/transfers/<transfer_id>/refuse")
@authenticated()
@blp.arguments(RefuseArgs)
@blp.response(200, TransferDetailViewSchema)
@committed
def refuse_transfer(args, transfer_id):
    """The sender keeps the matter; a case that closed when it was sent comes back as a successor case."""
    return joint.refuse(session(), current_officer(), transfer_id, **args, now=now())
