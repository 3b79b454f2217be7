"""Schemas shared by several blueprints: paging, the filters lists have in common, and the error body.

A filter defined here is defined once so that every list taking it validates and documents it alike; where two
routes really differ (a region checked for length versus for digits) both variants live here, named apart.
"""

from __future__ import annotations

from datetime import date, datetime

from marshmallow import Schema, fields, validate

from backend.core.times import utc_millis

# The ranges of the integer id columns (SQLAlchemy Integer, BigInteger), for `int` path converters: a path
# id beyond its column's range is no such resource (404), not a value the database driver refuses (a 500).
INT32_MAX = 2**31 - 1
INT64_MAX = 2**63 - 1

# Days far enough from datetime's limits that midnight in Hangzhou still converts to UTC at either end, and a
# day can still be added: 0001-01-01 or 9999-12-31 are no day anyone inspects, but arithmetic on them raises.
FIRST_DAY, LAST_DAY = date(1900, 1, 1), date(9000, 12, 31)
DAY = validate.Range(min=FIRST_DAY, max=LAST_DAY, error=f"a day between {FIRST_DAY} and {LAST_DAY}")

# Stricter than `region_code`, with their own messages, as the statistics filters have always checked them.
SIX_DIGIT_REGION = validate.Regexp(r"^[0-9]{6}$", error="a six-digit region code")
DEPARTMENT_CODE = validate.Regexp(r"^[a-z_]{1,16}$", error="a department code")


def region_code(description: str | None = None) -> fields.String:
    """A region filter or target; the description says what leaving it out means, which differs by route."""
    return fields.String(validate=validate.Length(equal=6),
                         metadata={"description": description} if description else {})


def day_range() -> tuple[fields.Date, fields.Date]:
    """`date_from, date_to = day_range()`: declared in place, so a list's parameters keep their documented order."""
    return fields.Date(validate=DAY), fields.Date(validate=DAY)


class Instant(fields.DateTime):
    """An instant in an answer, spelled by the protocol's one rule (`backend.core.times.utc_millis`).

    marshmallow's own DateTime writes `isoformat()`: microseconds, `+00:00`, and no offset at all for a naive
    value, so the same instant came out differently from a schema, from the change feed and from the custody log.
    A stored JSON document may hold an instant as text (a clip's times as the phone signed them): it is read and
    written the same way.
    """

    def _serialize(self, value, attr, obj, **kwargs):
        if isinstance(value, str):
            value = datetime.fromisoformat(value.replace("Z", "+00:00"))
        return utc_millis(value)


class StrictSchema(Schema):
    """Unknown fields are an error, not silently dropped (marshmallow's default RAISE, made explicit)."""

    class Meta:
        unknown = "raise"
        ordered = True


class PageArgs(StrictSchema):
    """The one paging every list takes; a list adds its filters by subclassing, never by redefining these."""

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
    """`args` may be a list route's whole parsed query: only its paging is echoed back."""
    return {"items": items, "page": args["page"], "page_size": args["page_size"], "total": total}
