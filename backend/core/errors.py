"""Typed domain errors; `backend.web.api.errors` is the one place that maps them to HTTP."""

from __future__ import annotations

from typing import Any


class DomainError(Exception):
    """A refusal. With `commit_first`, what the domain wrote while refusing must stay although the call is refused
    (a reused refresh token's family revoked): the edge commits, then answers the error (`backend.core.uow`)."""

    status = 400
    reason = "bad_request"

    def __init__(self, message: str, *, errors: dict[str, Any] | None = None,
                 headers: dict[str, str] | None = None, commit_first: bool = False) -> None:
        super().__init__(message)
        self.message = message
        self.errors = errors
        self.headers = headers or {}
        self.commit_first = commit_first


class Invalid(DomainError):
    status = 422
    reason = "invalid"


class NotFound(DomainError):
    """Also what a caller gets for something outside their jurisdiction: existence is not leaked."""

    status = 404
    reason = "not_found"


class Conflict(DomainError):
    status = 409
    reason = "conflict"


class Unauthorized(DomainError):
    status = 401
    reason = "unauthorized"


class Forbidden(DomainError):
    status = 403
    reason = "forbidden"


class TooManyRequests(DomainError):
    status = 429
    reason = "too_many_requests"

    def __init__(self, message: str, retry_after: int, *, commit_first: bool = False) -> None:
        super().__init__(message, headers={"Retry-After": str(max(1, retry_after))}, commit_first=commit_first)
        self.retry_after = retry_after


class PayloadTooLarge(DomainError):
    status = 413
    reason = "payload_too_large"


class RangeNotSatisfiable(DomainError):
    status = 416
    reason = "range_not_satisfiable"


class LengthRequired(DomainError):
    status = 411
    reason = "length_required"


class Gone(DomainError):
    status = 410
    reason = "gone"


class RetentionMisconfigured(DomainError):
    """The server's own setting is unlawful: no request can fix it, and nothing is deleted until it is changed."""

    status = 503
    reason = "misconfigured"


class TimestampFailed(DomainError):
    """A Time-Stamping Authority (RFC 3161) did not answer, refused, or gave a token that does not check; or a
    stored or packaged token does not check. The message names why."""

    status = 502
    reason = "timestamp_failed"
