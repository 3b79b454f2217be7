"""The server's clock in a test: `create_app(settings, clock=...)` runs the whole app on it.

A test moves it on with `advance` instead of waiting (or backdating rows) for time to pass.
"""

from __future__ import annotations

from datetime import datetime, timedelta

import pytest

from tests.conftest import Officers, app_on


class SteppingClock:
    """Stands at `now` until the test steps it: every reading between two steps is the same instant."""

    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now

    def advance(self, **delta: float) -> None:
        self.now += timedelta(**delta)


# The app, its client and its officers on the test module's `clock` fixture (each module sets its own start):
# a module imports these three to run every test of it on that clock.

@pytest.fixture
def clocked(settings, clock):
    """The app under test, on the test's clock."""
    with app_on(settings, clock=clock) as application:
        yield application


@pytest.fixture
def client(clocked):
    return clocked.test_client()


@pytest.fixture
def officers(clocked, client) -> Officers:
    return Officers(clocked.extensions["fieldcase"].db, client)
