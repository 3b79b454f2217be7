"""The record payload (PROTOCOL §3): the envelope, and one marshmallow schema per record type."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Any

from marshmallow import Schema, ValidationError, fields, validate, validates_schema

from backend.core.json_text import contains_nul
from backend.core.models import CASE_STATUSES

# Match these with fullmatch: "$" also matches before a final newline, and "<uuid>\n" is 37 characters in a
# 36-character column. (The patterns keep "$": the OpenAPI document publishes them as ECMA-262 patterns.)
UUID_RE = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")
HEX64_RE = re.compile(r"^[0-9a-f]{64}$")
RFC3339_RE = re.compile(r"^\d{4}-\d{2}-\d{2}[Tt]\d{2}:\d{2}:\d{2}(\.\d{1,9})?([Zz]|[+-]\d{2}:\d{2})$", re.ASCII)
# Timestamps outside these years are refused: a reset phone clock still says 1970, and nothing real is
# later than 3000, while arithmetic on years near 1 or 9999 (to UTC, plus a retention period) overflows.
MIN_YEAR, MAX_YEAR = 1900, 2999
INT32_MAX = 2**31 - 1

KINDS = ("photo", "video", "audio", "document", "signature")
# The digests an evidence.capture may declare of its file, each 64 lower-case hex digits; at least one.
EVIDENCE_DIGESTS = ("sha256", "sm3")
OUTCOMES = ("no_violation", "violation_found", "rectification_ordered", "not_inspected")
CLUE_SOURCES = ("complaint", "hotline", "grid_worker", "social_supervisor", "transfer", "inspection",
                "random_check", "media", "other")
UPDATABLE_CASE_FIELDS = {"summary": fields.String(validate=validate.Length(max=4000)),
                         "status": fields.String(validate=validate.OneOf(CASE_STATUSES))}


def parse_rfc3339(value: str) -> datetime:
    if not isinstance(value, str) or not RFC3339_RE.fullmatch(value):
        raise ValueError("not an RFC 3339 timestamp with an offset")
    text = value.upper().replace("Z", "+00:00")
    if "." in text:  # Python takes at most 6 fractional digits
        head, _, rest = text.partition(".")
        digits = re.match(r"\d+", rest).group(0)  # type: ignore[union-attr]
        text = f"{head}.{digits[:6].ljust(6, '0')}{rest[len(digits):]}"
    parsed = datetime.fromisoformat(text)
    if not MIN_YEAR <= parsed.year <= MAX_YEAR or not MIN_YEAR <= parsed.astimezone(UTC).year <= MAX_YEAR:
        raise ValueError(f"timestamps must lie in the years {MIN_YEAR}-{MAX_YEAR}")
    return parsed


class Timestamp(fields.Field):
    def _deserialize(self, value, attr, data, **kwargs):
        try:
            return parse_rfc3339(value)
        except ValueError as exc:
            raise ValidationError(str(exc)) from None


class FullMatch(validate.Regexp):
    """The whole value must match (Regexp's re.match lets a final newline follow a pattern ending in "$")."""

    def __call__(self, value):
        if self.regex.fullmatch(value) is None:
            raise ValidationError(self._format_error(value))
        return value


class Uuid(fields.String):
    def __init__(self, **kwargs):
        super().__init__(validate=FullMatch(UUID_RE, error="not a lower-case UUID"), **kwargs)


class Hex64(fields.String):
    def __init__(self, **kwargs):
        super().__init__(validate=FullMatch(HEX64_RE, error="not 64 lower-case hex digits"), **kwargs)


class Strict(Schema):
    class Meta:
        unknown = "raise"


class LocationSchema(Strict):
    lat = fields.Float(required=True, validate=validate.Range(-90, 90))
    lon = fields.Float(required=True, validate=validate.Range(-180, 180))
    accuracy_m = fields.Float(validate=validate.Range(min=0))


class InstitutionRef(Strict):
    id = fields.String(validate=validate.Length(min=1, max=40))
    credit_code = fields.String(validate=validate.Length(equal=18))
    name = fields.String(validate=validate.Length(min=1, max=200))
    address = fields.String(validate=validate.Length(max=400))
    region = fields.String(validate=validate.Length(equal=6))

    @validates_schema
    def _one_way(self, data, **kwargs):
        if "id" in data:
            if len(data) > 1:
                raise ValidationError("give either id alone, or name and region")
        elif not ("name" in data and "region" in data):
            raise ValidationError("an unknown institution needs name and region")


class CaseRef(Strict):
    id = fields.String(validate=validate.Length(min=1, max=40))
    client_case_id = Uuid()

    @validates_schema
    def _exactly_one(self, data, **kwargs):
        if len(data) != 1:
            raise ValidationError("give exactly one of id, client_case_id")


class ClipSchema(Strict):
    camera_serial = fields.String(required=True, validate=validate.Length(min=1, max=64))
    clip_index = fields.Integer(required=True, strict=True, validate=validate.Range(min=0, max=INT32_MAX))
    started_at = Timestamp(required=True)
    ended_at = Timestamp(required=True)
    prev_sha256 = Hex64(allow_none=True)

    @validates_schema
    def _ordered(self, data, **kwargs):
        if data["ended_at"] < data["started_at"]:
            raise ValidationError("ended_at is before started_at", "ended_at")


OVERRIDE_CODE_RE = re.compile(r"^[a-z][a-z0-9_]{0,39}$")


class OverrideSchema(Strict):
    """The phone's checks the officer signed over, and why (docs/protocol.md, "Overrides").

    The server does not judge the override: it keeps it as signed and flags what it touched. It changes what the
    server does in one way only: a credit code failing GB 32100-2015 in a record whose override names
    `bad_credit_code` is set aside rather than refused (see `overridden`).
    """

    codes = fields.List(fields.String(validate=FullMatch(OVERRIDE_CODE_RE, error="not a lower-case code")),
                        required=True, validate=validate.Length(min=1, max=20))
    reason = fields.String(required=True, validate=validate.Length(min=1, max=500))

    @validates_schema
    def _meant(self, data, **kwargs):
        if not data["reason"].strip():
            raise ValidationError("an override needs a reason", "reason")
        if len(set(data["codes"])) != len(data["codes"]):
            raise ValidationError("codes repeat", "codes")


class Body(Strict):
    """Every record type's body may carry `override`: the officer signed it over the phone's own checks."""

    override = fields.Nested(OverrideSchema)


def overridden(body: dict[str, Any], code: str) -> bool:
    """Whether the record's signer acknowledged the phone's check `code` and signed anyway."""
    return code in ((body.get("override") or {}).get("codes") or ())


class CaseOpen(Body):
    client_case_id = Uuid(required=True)
    institution = fields.Nested(InstitutionRef, required=True)
    summary = fields.String(validate=validate.Length(max=4000))


class InspectionStart(Body):
    inspection_id = Uuid(required=True)
    case = fields.Nested(CaseRef, required=True)
    officers = fields.List(fields.String(validate=validate.Length(min=1, max=40)), required=True,
                           validate=validate.Length(min=1, max=20))
    location = fields.Nested(LocationSchema, allow_none=True)
    task_id = fields.String(allow_none=True, validate=validate.Length(max=40))


class InspectionFinding(Body):
    inspection_id = Uuid(required=True)
    finding_id = Uuid(required=True)
    category = fields.String(required=True, validate=validate.Length(min=1, max=32))
    description = fields.String(required=True, validate=validate.Length(max=8000))
    evidence = fields.List(Uuid(), load_default=list, validate=validate.Length(max=200))


class InspectionEnd(Body):
    inspection_id = Uuid(required=True)
    outcome = fields.String(required=True, validate=validate.OneOf(OUTCOMES))
    notes = fields.String(allow_none=True, validate=validate.Length(max=8000))


class EvidenceCapture(Body):
    evidence_id = Uuid(required=True)
    inspection_id = Uuid(allow_none=True)
    case = fields.Nested(CaseRef, allow_none=True)
    kind = fields.String(required=True, validate=validate.OneOf(KINDS))
    media_type = fields.String(required=True, validate=[validate.Length(max=100),
                                                        FullMatch(r"^[\w.+-]+/[\w.+-]+$")])
    # The file's digests: `sha256`, `sm3` or both, at least one (docs/protocol.md "evidence.capture, field by field").
    sha256 = Hex64()
    sm3 = Hex64()
    size = fields.Integer(required=True, strict=True, validate=validate.Range(min=0, max=2**50))
    captured_at = Timestamp(required=True)
    location = fields.Nested(LocationSchema, allow_none=True)
    clip = fields.Nested(ClipSchema, allow_none=True)

    @validates_schema
    def _a_digest(self, data, **kwargs):
        if not any(name in data for name in EVIDENCE_DIGESTS):
            raise ValidationError("declare the file's sha256, its sm3, or both", "sha256")


class CaseUpdate(Body):
    case = fields.Nested(CaseRef, required=True)
    base_version = fields.Integer(required=True, strict=True, validate=validate.Range(min=0, max=INT32_MAX))
    fields_ = fields.Dict(required=True, data_key="fields", validate=validate.Length(min=1))

    @validates_schema
    def _known_fields(self, data, **kwargs):
        _check_named_fields(data.get("fields_", {}), UPDATABLE_CASE_FIELDS, "not a field a phone may update")


def _check_named_fields(changed: dict[str, Any], allowed: dict[str, fields.Field], unknown: str) -> None:
    """A `fields` object of a case.update or a record.correct: each name one of `allowed`, each value valid for it."""
    errors: dict[str, Any] = {}
    for name, value in changed.items():
        field = allowed.get(name)
        if field is None:
            errors[name] = [unknown]
            continue
        try:
            field.deserialize(value)
        except ValidationError as exc:
            errors[name] = exc.messages
    if errors:
        raise ValidationError(errors, "fields")


class ClueReport(Body):
    clue_id = Uuid(required=True)
    source = fields.String(required=True, validate=validate.OneOf(CLUE_SOURCES))
    institution = fields.Nested(InstitutionRef, required=True)
    description = fields.String(required=True, validate=validate.Length(min=1, max=8000))


# What a `record.correct` may change, per type of the record it corrects (docs/protocol.md, "Corrections"): the
# institution a case.open named, a finding's category and description. Nothing a court reads as what happened
# (times, officers, evidence) is correctable: a record that got those wrong is answered by another record.
CORRECTABLE: dict[str, tuple[str, ...]] = {"case.open": ("institution",),
                                           "inspection.finding": ("category", "description")}
CORRECTION_FIELDS: dict[str, fields.Field] = {
    "institution": fields.Nested(InstitutionRef),
    "category": fields.String(validate=validate.Length(min=1, max=32)),
    "description": fields.String(validate=validate.Length(max=8000)),
}


class RecordCorrect(Body):
    """A signed correction of an earlier record's content: the ledger keeps both, the tables take the new values."""

    op = Uuid(required=True)
    fields_ = fields.Dict(required=True, data_key="fields", validate=validate.Length(min=1, max=3))
    reason = fields.String(required=True, validate=validate.Length(min=1, max=500))

    @validates_schema
    def _meant(self, data, **kwargs):
        if not data["reason"].strip():
            raise ValidationError("a correction needs a reason", "reason")
        _check_named_fields(data.get("fields_", {}), CORRECTION_FIELDS, "not a correctable field")


class RecordingInterruptionBody(Body):
    inspection_id = Uuid(required=True)
    camera_serial = fields.String(required=True, validate=validate.Length(min=1, max=64))
    started_at = Timestamp(required=True)
    ended_at = Timestamp(required=True)
    reason = fields.String(required=True, validate=validate.Length(min=1, max=500))

    @validates_schema
    def _ordered(self, data, **kwargs):
        if data["ended_at"] < data["started_at"]:
            raise ValidationError("ended_at is before started_at", "ended_at")


BODY_SCHEMAS: dict[str, Schema] = {
    "case.open": CaseOpen(),
    "inspection.start": InspectionStart(),
    "inspection.finding": InspectionFinding(),
    "inspection.end": InspectionEnd(),
    "evidence.capture": EvidenceCapture(),
    "case.update": CaseUpdate(),
    "clue.report": ClueReport(),
    "recording.interruption": RecordingInterruptionBody(),
    "record.correct": RecordCorrect(),
}
ENVELOPE_KEYS = {"v", "op", "seq", "prev", "at", "by", "type", "body"}


class ChainFields:
    """What a record needs to find its place in the chain; without these it is `malformed`."""

    __slots__ = ("op", "seq", "prev")

    def __init__(self, payload: dict[str, Any]) -> None:
        op, seq, prev = payload.get("op"), payload.get("seq"), payload.get("prev")
        if not isinstance(op, str) or not UUID_RE.fullmatch(op):
            raise ValueError("op must be a lower-case UUID")
        if type(seq) is not int or not 1 <= seq < 2**31:
            raise ValueError("seq must be an integer from 1")
        if not isinstance(prev, str) or not HEX64_RE.fullmatch(prev):
            raise ValueError("prev must be 64 lower-case hex digits")
        self.op, self.seq, self.prev = op, seq, prev


class ContentError(Exception):
    """Authentic and in its chain, but not applicable: the record is ledgered as `invalid`."""

    def __init__(self, code: str, detail: str) -> None:
        super().__init__(detail)
        self.code = code
        self.detail = detail


def load_content(payload: dict[str, Any], nul_escape: bool = True) -> tuple[datetime, str, str, dict[str, Any]]:
    """Validate the rest of the envelope and the body; returns (at, by, type, body).

    `nul_escape=False` says the payload's JSON text has no `\\u0000` (jws.parse knows), so no
    string in it can hold NUL and the walks looking for one are skipped.
    """
    extra = set(payload) - ENVELOPE_KEYS
    if extra:
        raise ContentError("bad_envelope", "unknown envelope fields: " + ", ".join(map(repr, sorted(extra)))[:400])
    if nul_escape and contains_nul({k: v for k, v in payload.items() if k != "body"}):
        raise ContentError("bad_envelope", "text must not contain NUL characters (U+0000)")
    if payload.get("v") != 1 or type(payload.get("v")) is not int:
        raise ContentError("unsupported_version", "v must be 1")
    try:
        at = parse_rfc3339(payload.get("at"))  # type: ignore[arg-type]
    except ValueError:
        raise ContentError("bad_envelope", "at must be an RFC 3339 timestamp with an offset") from None
    by = payload.get("by")
    if not isinstance(by, str) or not by:
        raise ContentError("bad_envelope", "by must be an officer id")
    rtype = payload.get("type")
    schema = BODY_SCHEMAS.get(rtype) if isinstance(rtype, str) else None
    if schema is None:
        raise ContentError("unknown_type", f"unknown record type {rtype!r}")
    body = payload.get("body")
    if not isinstance(body, dict):
        raise ContentError("bad_body", "body must be an object")
    if nul_escape and contains_nul(body):
        raise ContentError("bad_body", "text must not contain NUL characters (U+0000)")
    try:
        loaded = schema.load(body)
    except ValidationError as exc:
        raise ContentError("bad_body", _summarise(exc.messages)) from None
    if "fields_" in loaded:
        loaded["fields"] = loaded.pop("fields_")
    return at, by, rtype, loaded  # type: ignore[return-value]


def _summarise(messages: Any, prefix: str = "") -> str:
    if isinstance(messages, dict):
        return "; ".join(_summarise(v, f"{prefix}{k}." if prefix or k != "_schema" else prefix)
                         for k, v in messages.items())[:480]
    if isinstance(messages, list):
        return ", ".join(_summarise(m, prefix) if not isinstance(m, str) else f"{prefix.rstrip('.')}: {m}"
                         for m in messages)
    return f"{prefix}{messages}"
