"""How the server writes time: the one home for timestamp formats and the local time zone.

Two spellings are in use on the wire, each fixed by the protocol, so both live here:
- `utc_iso`: API answers and the change feed; UTC with the offset written (`+00:00`) and full precision, so
  an instant reads the same whether it was just written or loaded back;
- `utc_millis`: the custody log's leaves and tree heads and the packages built from them; UTC to the
  millisecond with `Z` (these bytes are hashed and signed, so they never change shape).
Days (certificate validity, statistics periods) are local dates in `LOCAL_TZ`.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta, timezone
from typing import overload
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

try:
    LOCAL_TZ: timezone | ZoneInfo = ZoneInfo("Asia/Shanghai")
except ZoneInfoNotFoundError:  # pragma: no cover - no tz database; China has had no DST since 1991
    LOCAL_TZ = timezone(timedelta(hours=8), "Asia/Shanghai")


@overload
def utc_iso(value: date) -> str: ...
@overload
def utc_iso(value: None) -> None: ...
def utc_iso(value: date | None) -> str | None:
    """An instant in UTC (`2026-12-06T04:00:00.123456+00:00`); a day stays a day (`2026-12-06`)."""
    if value is None:
        return None
    if isinstance(value, datetime):
        return value.astimezone(UTC).isoformat()
    return value.isoformat()


@overload
def utc_millis(at: datetime) -> str: ...
@overload
def utc_millis(at: None) -> None: ...
def utc_millis(at: datetime | None) -> str | None:
    """An instant in UTC to the millisecond, with `Z` (`2026-12-06T04:00:00.123Z`): custody leaves and heads."""
    if at is None:
        return None
    return at.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
