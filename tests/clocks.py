"""The server's clock in a test: `create_app(settings, clock=...)` runs the whole app on it.

A test moves it on with `advance` instead of waiting (or backdating rows) for time to pass.
"""

from __future__ import annotations

from datetime import datetime, timedelta


class SteppingClock:
    """Stands at `now` until the test steps it: every reading between two steps is the same instant."""

    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now

    def advance(self, **delta: float) -> None:
        self.now += timedelta(**delta)
