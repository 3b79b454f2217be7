"""The protocol's tests push as two Xihu officers of different departments, from one test phone."""

from __future__ import annotations

import pytest

from tests.phones import TestPhone


@pytest.fixture
def zhang(officers):
    return officers.make(region="330106", department="education", name="张敏")


@pytest.fixture
def li(officers):
    return officers.make(region="330106", department="market", name="李强")


@pytest.fixture
def phone(client, officers, zhang):
    return TestPhone(client, zhang, officers.headers(zhang))
