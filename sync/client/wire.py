"""How the phone writes values on the wire, shared by every part of the reference client.

PROTOCOL §2 and §3 fix the bytes: compact UTF-8 JSON (what gets signed), base64url without padding, and
timestamps that always carry an offset (the phone's local +08:00 when a caller gives none). The API's paths are
here too, so the modules that talk to the server agree on them. Nothing here does I/O or keeps state.
"""

from __future__ import annotations

import base64
import json
import uuid
from collections.abc import Mapping
from datetime import date, datetime, timedelta, timezone
from typing import Any

SHANGHAI = timezone(timedelta(hours=8), "Asia/Shanghai")  # no DST since 1991, so a fixed offset is exact

CHUNK = 1024 * 1024

API = "/api/v1"
LOGIN_PATH = API + "/auth/token"  # noqa: S105 - a URL path, not a secret
REFRESH_PATH = API + "/auth/refresh"
DEVICES_PATH = API + "/devices"
PUSH_PATH = API + "/sync/push"
PULL_PATH = API + "/sync/pull"
REFERENCE_PATH = API + "/reference"
CREW_PATH = API + "/reference/officers"


def b64url(data: bytes) -> str:
    """base64url without padding, as JWS (RFC 7515) and PROTOCOL §2 want it."""
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def compact_json(obj: Any) -> bytes:
    """Compact UTF-8 JSON: the bytes that get signed, so they must not depend on whims of the encoder."""
    return json.dumps(obj, separators=(",", ":"), ensure_ascii=False, allow_nan=False).encode("utf-8")


def rfc3339(value: datetime | date | str) -> str:
    """Timestamps on the wire always carry an offset; naive ones are taken as the phone's local +08:00."""
    if isinstance(value, str):
        return value
    if not isinstance(value, datetime):
        return value.isoformat()
    if value.tzinfo is None:
        value = value.replace(tzinfo=SHANGHAI)
    return value.isoformat(timespec="milliseconds" if value.microsecond else "seconds")


def jsonable(obj: Any) -> Any:
    """Let callers hand datetimes and UUIDs straight into bodies."""
    if isinstance(obj, Mapping):
        return {str(k): jsonable(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [jsonable(v) for v in obj]
    if isinstance(obj, datetime | date):
        return rfc3339(obj)
    if isinstance(obj, uuid.UUID):
        return str(obj)
    return obj


def now_shanghai() -> datetime:
    """The phone's default clock: now, in its local +08:00."""
    return datetime.now(SHANGHAI)
