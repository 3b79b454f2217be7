"""Schemas shared by several blueprints: paging and the error body."""

from __future__ import annotations

from marshmallow import Schema, fields, validate


class StrictSchema(Schema):
    """Unknown fields are an error, not silently dropped (marshmallow's default RAISE, made explicit)."""

    class Meta:
        unknown = "raise"
        ordered = True


class PageArgs(StrictSchema):
    page = fields.Integer(load_default=1, validate=validate.Range(min=1, max=100_000))
    page_size = fields.Integer(load_default=50, validate=validate.Range(min=1, max=500))


class ErrorSchema(Schema):
    code = fields.Integer()
    status = fields.String()
    message = fields.String()
    errors = fields.Dict()


def page_schema(item: type[Schema], name: str) -> type[Schema]:
    return Schema.from_dict({
        "items": fields.List(fields.Nested(item)),
        "page": fields.Integer(),
        "page_size": fields.Integer(),
        "total": fields.Integer(),
    }, name=name)


def paged(items: list, total: int, args: dict) -> dict:
    return {"items": items, "page": args["page"], "page_size": args["page_size"], "total": total}
