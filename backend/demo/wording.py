"""How the demo writes times, tallies and hashes in its lines, the same way in the checks' claims and the report.

A claim such as "2 cases opened (education 1, market 1)" and the report's table must agree to the letter,
so both take their wording from here.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import datetime

from sync.client import SHANGHAI


def local_time(stamp: str | datetime | None) -> str:
    """`HH:MM:SS` in Shanghai time; `open` for a time not there yet (an inspection not ended)."""
    if not stamp:
        return "open"
    when = stamp if isinstance(stamp, datetime) else datetime.fromisoformat(stamp)
    return when.astimezone(SHANGHAI).strftime("%H:%M:%S")


def counts(tally: Mapping[str, int]) -> str:
    """`a 1, b 2` for the non-zero entries, in key order."""
    return ", ".join(f"{key} {n}" for key, n in sorted(tally.items()) if n)


def figure(value: float | None) -> str:
    """A statistic as written: `-` when there is none."""
    return "-" if value is None else str(value)


def short_hashes(text: str) -> str:
    """SHA-256 hex digests cut to 12 digits, so a line of the report stays readable."""
    return re.sub(r"\b([0-9a-f]{12})[0-9a-f]{52}\b", "\\1…", text)
