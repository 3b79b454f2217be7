"""The case lifecycle: move a case through the administrative-penalty procedure, and read its steps."""

from __future__ import annotations

from datetime import timedelta

from marshmallow import Schema, fields, validate

from backend.casework import lifecycle, procedure
from backend.core.models import CASE_STATUSES
from backend.web.api.blueprint import Blueprint
from backend.web.api.context import authenticated, committed, current_officer, now, session, state
from backend.web.api.schemas import StrictSchema

blp = Blueprint("lifecycle", __name__, url_prefix="/api/v1", description="Case lifecycle (penalty procedure)")


class DecisionSchema(StrictSchema):
    fine_yuan = fields.Integer(validate=validate.Range(min=0, max=1_000_000_000),
                               metadata={"description": "whole yuan; above FIELDCASE_MAJOR_FINE_YUAN is major"})
    licence_revocation = fields.Boolean()
    ordered_closure = fields.Boolean()
    category = fields.String(validate=validate.Length(min=1, max=32),
                             metadata={"description": "violation category: the fine is checked against its "
                                                      "discretion benchmark"})
    first_offence = fields.Boolean()
    rectified_in_time = fields.Boolean()
    amount_involved_yuan = fields.Integer(validate=validate.Range(min=0, max=10_000_000_000))
    discretion_reason = fields.String(validate=validate.Length(min=1, max=2000),
                                      metadata={"description": "required (with legal approval on record) for a "
                                                               "fine outside the benchmark"})


class TransitionArgs(StrictSchema):
    to = fields.String(required=True, validate=validate.OneOf(CASE_STATUSES))
    reason = fields.String(required=True, validate=validate.Length(min=1, max=2000))
    decision = fields.Nested(DecisionSchema, metadata={"description": "only (and required) for `decided`"})
    transfer_to = fields.String(validate=validate.Length(min=1, max=16),
                                metadata={"description": "for `transferred`: a department code, city or judiciary"})
    override_reason = fields.String(validate=validate.Length(min=1, max=2000),
                                    metadata={"description": "a reviewer closing over an incomplete file"})


class TransitionSchema(Schema):
    id = fields.String()
    case_id = fields.String()
    from_ = fields.String(data_key="from", attribute="from")
    to = fields.String()
    actor = fields.String()
    at = fields.String()
    reason = fields.String()
    decision = fields.Dict(allow_none=True)
    transfer_to = fields.String(allow_none=True)
    legal_approval = fields.Boolean()
    override_reason = fields.String(allow_none=True)
    missing = fields.List(fields.Dict(), allow_none=True)
    case_version = fields.Integer()


class TransitionResultSchema(Schema):
    case = fields.Dict()
    transition = fields.Nested(TransitionSchema)


class TransitionListSchema(Schema):
    case_id = fields.String()
    status = fields.String()
    version = fields.Integer()
    next = fields.List(fields.String())
    transitions = fields.List(fields.Nested(TransitionSchema))


@blp.post("/cases/<case_id>/transitions")
@authenticated()
@blp.arguments(TransitionArgs)
@blp.response(201, TransitionResultSchema)
@committed
def post_transition(args, case_id):
    """Move the case one step (docs: "Case lifecycle, as built"); 409 for a step not allowed from its status."""
    settings = state().settings
    return procedure.transition(
        session(), current_officer(), case_id, **args,
        major_fine_threshold=settings.major_fine_yuan,
        tolerance=timedelta(seconds=float(settings.coverage_tolerance_seconds)), now=now())


@blp.get("/cases/<case_id>/transitions")
@authenticated()
@blp.response(200, TransitionListSchema)
def get_transitions(case_id):
    """The case's transitions, oldest first, its status and the statuses it may go to next."""
    return lifecycle.list_transitions(session(), current_officer(), case_id)
