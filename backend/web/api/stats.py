"""Statistics for a period within the caller's jurisdiction, as JSON or as CSV for a spreadsheet."""

from __future__ import annotations

import csv
import io
from datetime import timedelta
from typing import Any

from flask import Response, request
from marshmallow import Schema, fields, validate

from backend.casework import stats
from backend.core.times import LOCAL_TZ
from backend.web.api.blueprint import Blueprint
from backend.web.api.context import authenticated, current_officer, now, session, state
from backend.web.api.schemas import DAY, DEPARTMENT_CODE, SIX_DIGIT_REGION, StrictSchema

blp = Blueprint("stats", __name__, url_prefix="/api/v1", description="Statistics: clues, cases, recording, evidence")

FORMATS = ("json", "csv")


class StatsArgs(StrictSchema):
    first = fields.Date(data_key="from", validate=DAY,
                        metadata={"description": "first day (YYYY-MM-DD, Hangzhou), included; default: the first "
                                                 "day of `to`'s month"})
    last = fields.Date(data_key="to", validate=DAY,
                       metadata={"description": "last day (YYYY-MM-DD, Hangzhou), included; default: today"})
    region = fields.String(validate=SIX_DIGIT_REGION)
    department = fields.String(validate=DEPARTMENT_CODE)
    format = fields.String(validate=validate.OneOf(FORMATS),
                           metadata={"description": "`csv` for text/csv (also chosen by `Accept: text/csv`)"})


def _counts(description: str) -> fields.Dict:
    return fields.Dict(keys=fields.String(), values=fields.Integer(), metadata={"description": description})


class PeriodSchema(Schema):
    first = fields.String(attribute="from", data_key="from")
    last = fields.String(attribute="to", data_key="to")
    start = fields.String(metadata={"description": "00:00 of `from` in Hangzhou, RFC 3339"})
    end = fields.String(metadata={"description": "00:00 of the day after `to` in Hangzhou (excluded)"})
    timezone = fields.String()


class ScopeSchema(Schema):
    jurisdiction = fields.List(fields.String(), allow_none=True,
                               metadata={"description": "the caller's regions; null for the whole city"})
    region = fields.String(allow_none=True)
    department = fields.String(allow_none=True)


class DistributionSchema(Schema):
    count = fields.Integer()
    median = fields.Float(allow_none=True)
    mean = fields.Float(allow_none=True)


class DelaySchema(DistributionSchema):
    p90 = fields.Float(allow_none=True)


class ClueStatsSchema(Schema):
    received = fields.Integer()
    duplicates = fields.Integer()
    converted = fields.Integer()
    conversion_rate = fields.Float(allow_none=True)
    by_status = _counts("every clue status, zeros included")
    to_case_hours = fields.Nested(DistributionSchema)
    linked_to_earlier_case = fields.Integer()


class CaseStatsSchema(Schema):
    opened = fields.Integer()
    by_status = _counts("current status of the cases opened; every status, zeros included")
    by_category = _counts("cases with at least one finding of the category")
    without_findings = fields.Integer()
    by_region = _counts("cases opened per region")
    by_department = _counts("cases opened per department")
    closed = fields.Integer()
    closed_by_status = _counts("closing status of the cases closed in the period")
    to_close_days = fields.Nested(DistributionSchema)


class RecordingStatsSchema(Schema):
    inspections_ended = fields.Integer()
    by_status = _counts("coverage status (complete, explained, gaps, none)")
    complete_or_explained = fields.Integer()
    share = fields.Float(allow_none=True)


class EvidenceStatsSchema(Schema):
    verified = fields.Integer()
    verification_delay_seconds = fields.Nested(DelaySchema)
    mismatch = fields.Integer()


class RejectedStatsSchema(Schema):
    quarantined = fields.Integer()
    quarantined_by_code = _counts("rejected records by rejection code")
    invalid = fields.Integer()
    invalid_by_code = _counts("invalid ledger records by code")


class RegionStatsSchema(Schema):
    region = fields.String()
    name_zh = fields.String(allow_none=True)
    name_en = fields.String(allow_none=True)
    clues_received = fields.Integer()
    clues_converted = fields.Integer()
    conversion_rate = fields.Float(allow_none=True)
    cases_opened = fields.Integer()
    cases_closed = fields.Integer()
    inspections_ended = fields.Integer()
    inspections_recorded = fields.Integer()
    recording_share = fields.Float(allow_none=True)
    evidence_verified = fields.Integer()
    evidence_mismatch = fields.Integer()
    rejected_records = fields.Integer()
    invalid_records = fields.Integer()


class StatsSchema(Schema):
    period = fields.Nested(PeriodSchema)
    scope = fields.Nested(ScopeSchema)
    clues = fields.Nested(ClueStatsSchema)
    cases = fields.Nested(CaseStatsSchema)
    recording = fields.Nested(RecordingStatsSchema)
    evidence = fields.Nested(EvidenceStatsSchema)
    rejected = fields.Nested(RejectedStatsSchema)
    regions = fields.List(fields.Nested(RegionStatsSchema),
                          metadata={"description": "one row per region within scope, zeros included"})


def flatten(data: dict[str, Any]) -> list[tuple[str, Any]]:
    """The answer as `figure,value` rows: dotted paths, regions keyed by their code. Lossless, and a pivot away
    from any table a spreadsheet user wants."""
    rows: list[tuple[str, Any]] = []

    def walk(prefix: str, value: Any) -> None:
        if isinstance(value, dict):
            for key, inner in value.items():
                walk(f"{prefix}.{key}" if prefix else str(key), inner)
        elif isinstance(value, list) and prefix == "regions":
            for row in value:
                walk(f"regions.{row['region']}", {k: v for k, v in row.items() if k != "region"})
        elif isinstance(value, list):
            rows.append((prefix, " ".join(str(v) for v in value)))
        else:
            rows.append((prefix, value))

    walk("", data)
    return rows


def _csv(data: dict[str, Any]) -> Response:
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\r\n")
    writer.writerow(("figure", "value"))
    writer.writerows((figure, "" if value is None else value) for figure, value in flatten(data))
    period = data["period"]
    # With a BOM, as the evidence lists: spreadsheet programs in China otherwise misread the region names.
    return Response("\ufeff" + buf.getvalue(), mimetype="text/csv", headers={
        "Content-Disposition": f'attachment; filename="stats-{period["from"]}-{period["to"]}.csv"',
        "Vary": "Accept"})


def _wants_csv(args: dict[str, Any]) -> bool:
    if "format" in args:
        return args["format"] == "csv"
    return request.accept_mimetypes.best_match(["application/json", "text/csv"]) == "text/csv"


@blp.get("/stats")
@authenticated(*stats.STATS_ROLES)
@blp.arguments(StatsArgs, location="query")
@blp.response(200, StatsSchema)
@blp.doc(responses={200: {"content": {"text/csv": {"schema": {"type": "string"}}}}})
def get_stats(args):
    """Clue conversion, cases, recording, evidence verification and rejected records for a period.

    Figures are computed when asked, within the caller's jurisdiction (a city-level caller sees every
    district, one row each in `regions`). `?format=csv` or `Accept: text/csv` answers the same figures
    as `figure,value` rows.
    """
    last = args.get("last") or now().astimezone(LOCAL_TZ).date()
    period = stats.Period(args.get("first") or last.replace(day=1), last)
    data = stats.statistics(session(), current_officer(), period, region=args.get("region"),
                            department=args.get("department"),
                            coverage_tolerance=timedelta(seconds=float(state().settings.coverage_tolerance_seconds)))
    if _wants_csv(args):
        return _csv(StatsSchema().dump(data))
    return data
