"""Double random, one public: campaigns, draws and their tasks, and the published results (no login)."""

from __future__ import annotations

from marshmallow import Schema, fields, validate

from backend.casework import draws
from backend.core.models import TASK_STATUSES
from backend.web.api.blueprint import Blueprint
from backend.web.api.context import authenticated, committed, current_officer, now, session
from backend.web.api.schemas import DAY, PageArgs, StrictSchema, day_range, page_schema, paged, region_code

blp = Blueprint("draws", __name__, url_prefix="/api/v1",
                description="Double random, one public: campaigns, draws, tasks, published results")

Code = fields.String(validate=validate.Length(min=1, max=32))


class CampaignArgs(StrictSchema):
    name = fields.String(required=True, validate=validate.Length(min=1, max=200))
    region = region_code("default: the caller's")
    starts_on = fields.Date(required=True, validate=DAY)
    ends_on = fields.Date(required=True, validate=DAY)
    focus_categories = fields.List(Code, load_default=list, validate=validate.Length(max=32),
                                   metadata={"description": "violation categories the campaign targets"})
    description = fields.String(validate=validate.Length(max=4000))


class CampaignSchema(Schema):
    id = fields.String()
    name = fields.String()
    region = fields.String()
    starts_on = fields.String()
    ends_on = fields.String()
    focus_categories = fields.List(fields.String())
    description = fields.String()
    created_by = fields.String()
    created_at = fields.String()


class CampaignListArgs(PageArgs):
    active_on = fields.Date(validate=DAY, metadata={"description": "only campaigns running on this date"})


class DrawArgs(StrictSchema):
    region = region_code("default: the caller's")
    period_start = fields.Date(required=True, validate=DAY)
    period_end = fields.Date(required=True, validate=DAY)
    planned_date = fields.Date(required=True, validate=DAY, metadata={"description": "within the period"})
    departments = fields.List(fields.String(validate=validate.Length(min=1, max=16)), required=True,
                              validate=validate.Length(min=1, max=8))
    count = fields.Integer(required=True, validate=validate.Range(min=1, max=1000))
    joint = fields.Boolean(metadata={"description": "default: more than one department"})
    team_size = fields.Integer(validate=validate.Range(min=2, max=6), metadata={"description": "default 2"})
    campaign_id = fields.String(validate=validate.Length(min=1, max=40))


class TaskSchema(Schema):
    id = fields.String()
    draw_id = fields.String(allow_none=True)
    campaign_id = fields.String(allow_none=True)
    institution_id = fields.String()
    region = fields.String()
    departments = fields.List(fields.String())
    officers = fields.List(fields.String())
    planned_date = fields.String()
    status = fields.String()
    inspection_id = fields.String(allow_none=True)
    created_at = fields.String()
    done_at = fields.String(allow_none=True)


class DrawSchema(Schema):
    id = fields.String()
    region = fields.String()
    period_start = fields.String()
    period_end = fields.String()
    planned_date = fields.String()
    departments = fields.List(fields.String())
    count = fields.Integer()
    joint = fields.Boolean()
    team_size = fields.Integer(allow_none=True)
    campaign_id = fields.String(allow_none=True)
    seed = fields.String(metadata={"description": "64 hex digits: the HMAC key of the draw"})
    algorithm = fields.String()
    inputs = fields.Dict(metadata={"description": "the pools as they were: institutions with weights, officers"})
    result = fields.List(fields.Dict())
    tasks = fields.List(fields.Nested(TaskSchema))
    created_by = fields.String()
    created_at = fields.String()


class DrawListArgs(PageArgs):
    campaign_id = fields.String(validate=validate.Length(min=1, max=40))


class VerifySchema(Schema):
    draw_id = fields.String()
    algorithm = fields.String()
    seed = fields.String()
    matches = fields.Boolean()
    result = fields.List(fields.Dict())


class TaskListArgs(PageArgs):
    mine = fields.Boolean(metadata={"description": "default: true, false for admins and reviewers"})
    status = fields.String(validate=validate.OneOf(TASK_STATUSES))
    draw_id = fields.String(validate=validate.Length(min=1, max=40))
    campaign_id = fields.String(validate=validate.Length(min=1, max=40))
    institution_id = fields.String(validate=validate.Length(min=1, max=40))
    date_from, date_to = day_range()


class TaskCreateArgs(StrictSchema):
    institution_id = fields.String(required=True, validate=validate.Length(min=1, max=40))
    officers = fields.List(fields.String(validate=validate.Length(min=1, max=40)), required=True,
                           validate=validate.Length(min=2, max=10))
    planned_date = fields.Date(required=True, validate=DAY)
    campaign_id = fields.String(validate=validate.Length(min=1, max=40))


class PublicArgs(PageArgs):
    region = region_code()
    date_from, date_to = day_range()


class PublicInspectionSchema(Schema):
    institution_name = fields.String()
    credit_code = fields.String(allow_none=True)
    region = fields.String()
    date = fields.String(metadata={"description": "local (Asia/Shanghai) date of the inspection"})
    outcome = fields.String()
    categories = fields.List(fields.String(), metadata={"description": "violation categories found"})
    campaign = fields.String(allow_none=True)


CampaignPage = page_schema(CampaignSchema, "CampaignPage")
DrawPage = page_schema(DrawSchema, "DrawPage")
TaskPage = page_schema(TaskSchema, "TaskPage")
PublicInspectionPage = page_schema(PublicInspectionSchema, "PublicInspectionPage")


@blp.post("/campaigns")
@authenticated("admin")
@blp.arguments(CampaignArgs)
@blp.response(201, CampaignSchema)
@committed
def post_campaign(args):
    """A special campaign (holidays, weekends, vacations) with focus categories; draws and tasks may belong to it."""
    return draws.create_campaign(session(), current_officer(), args, now=now())


@blp.get("/campaigns")
@authenticated()
@blp.arguments(CampaignListArgs, location="query")
@blp.response(200, CampaignPage)
def list_campaigns(args):
    """Campaigns of the caller's jurisdiction and of the city."""
    items, total = draws.list_campaigns(session(), current_officer(), **args)
    return paged(items, total, args)


@blp.get("/campaigns/<campaign_id>")
@authenticated()
@blp.response(200, CampaignSchema)
def get_campaign(campaign_id):
    """One campaign of the caller's jurisdiction or of the city."""
    return draws.get_campaign(session(), current_officer(), campaign_id)


@blp.post("/draws")
@authenticated("admin")
@blp.arguments(DrawArgs)
@blp.response(201, DrawSchema)
@committed
def post_draw(args):
    """Draw institutions (weighted by risk) and certified teams; the seed is stored and shown (docs: "Draws")."""
    return draws.create_draw(session(), current_officer(), args, now=now())


@blp.get("/draws")
@authenticated("admin", "reviewer", "legal_reviewer")
@blp.arguments(DrawListArgs, location="query")
@blp.response(200, DrawPage)
def list_draws(args):
    """Random draws within the caller's jurisdiction, without their inputs and tasks, paged."""
    items, total = draws.list_draws(session(), current_officer(), **args)
    return paged(items, total, args)


@blp.get("/draws/<draw_id>")
@authenticated("admin", "reviewer", "legal_reviewer")
@blp.response(200, DrawSchema)
def get_draw(draw_id):
    """One random draw with its seed, inputs, result and tasks."""
    return draws.get_draw(session(), current_officer(), draw_id)


@blp.get("/draws/<draw_id>/verify")
@authenticated("admin", "reviewer", "legal_reviewer")
@blp.response(200, VerifySchema)
def verify_draw(draw_id):
    """Re-run the draw from its stored seed and inputs; `matches` says whether it gives the stored result."""
    return draws.verify_draw(session(), current_officer(), draw_id)


@blp.get("/tasks")
@authenticated()
@blp.arguments(TaskListArgs, location="query")
@blp.response(200, TaskPage)
def list_tasks(args):
    """The caller's tasks; admins and reviewers also every task within their jurisdiction (mine=false)."""
    items, total = draws.list_tasks(session(), current_officer(), **args)
    return paged(items, total, args)


@blp.post("/tasks")
@authenticated("admin")
@blp.arguments(TaskCreateArgs)
@blp.response(201, TaskSchema)
@blp.alt_response(404, description="no such institution or campaign within the caller's jurisdiction")
@committed
def post_task(args):
    """A planned inspection outside a draw (e.g. a campaign's targeted check): two certified officers at least."""
    return draws.create_task(session(), current_officer(), args, now=now())


@blp.get("/tasks/<task_id>")
@authenticated()
@blp.response(200, TaskSchema)
def get_task(task_id):
    """One inspection task, for the officers assigned to it and those who may see it."""
    return draws.get_task(session(), current_officer(), task_id)


@blp.post("/tasks/<task_id>/cancel")
@authenticated("admin")
@blp.response(200, TaskSchema)
@committed
def cancel_task(task_id):
    """Cancel an assigned task; its officers' feeds are told."""
    return draws.cancel_task(session(), current_officer(), task_id)


@blp.get("/public/inspections")
@blp.arguments(PublicArgs, location="query")
@blp.response(200, PublicInspectionPage)
def public_inspections(args):
    """Published results of drawn inspections: institution, date, outcome, categories found. No login."""
    items, total = draws.public_inspections(session(), **args)
    return paged(items, total, args)
