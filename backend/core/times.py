"""How the server writes time: the one home for timestamp formats and the local time zone.

The server writes every instant one way (docs/protocol.md, "Times"): RFC 3339 in UTC, to the millisecond,
with `Z` (`2026-12-06T04:00:00.123Z`), whatever the answer: API bodies, the change feed, custody leaves and tree
heads, packages. One spelling means a client parses one shape, compares instants as text (they sort), and a time
it read from one answer matches the same instant in another. `utc_millis` is that spelling, the one home of it;
`utc_iso` is the same for an instant and leaves a day a day (`2026-12-06`: certificate validity, planned dates and
statistics periods are local dates in `LOCAL_TZ`). The custody log's bytes are hashed and signed, so this shape
never changes. Milliseconds, not microseconds: no phone's or camera's clock is better than that, and digits
beyond it would only make one instant two spellings (a value written, then read back from a database that
keeps fewer digits).

And how the server reads time: a `Clock`. The composition root (`backend.bootstrap`) makes one per process and
hands it to the edges (the app state, the job context, the database's services, the command line); each edge
reads it once per request, job or command and passes the instant down as `now`. Nothing below the edges reads
the wall clock, so a test (or a replay) runs the whole server on a clock of its own.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, date, datetime, timedelta, timezone
from typing import overload
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

try:
    LOCAL_TZ: timezone | ZoneInfo = ZoneInfo("Asia/Shanghai")
except ZoneInfoNotFoundError:  # pragma: no cover - no tz database; China has had no DST since 1991
    LOCAL_TZ = timezone(timedelta(hours=8), "Asia/Shanghai")

Clock = Callable[[], datetime]  # an aware instant in UTC, each time it is called


def system_clock() -> datetime:
    """The wall clock: what every process serves with unless it was built with another."""
    return datetime.now(UTC)


@overload
def utc_iso(value: date) -> str: ...
@overload
def utc_iso(value: None) -> None: ...
def utc_iso(value: date | None) -> str | None:
    """An instant as `utc_millis` writes it (`2026-12-06T04:00:00.123Z`); a day stays a day (`2026-12-06`)."""
    if value is None:
        return None
    if isinstance(value, datetime):
        return utc_millis(value)
    return value.isoformat()


@overload
def utc_millis(at: datetime) -> str: ...
@overload
def utc_millis(at: None) -> None: ...
def utc_millis(at: datetime | None) -> str | None:
    """THE spelling of an instant: UTC to the millisecond (truncated), with `Z` (`2026-12-06T04:00:00.123Z`).

    A naive value is taken as UTC, as the database's UTCDateTime columns mean it (Python would take it as the
    host's local time).
    """
    if at is None:
        return None
    if at.tzinfo is None:
        at = at.replace(tzinfo=UTC)
    return at.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
