"""PROTOCOL §6, the small cases a phone meets every day: a file below the multipart threshold goes up in one
request, and a zero-byte file (a signature pad left blank, an empty note) is evidence like any other.

On both stores, through the same plan a phone reads: `PUT` to the plan's URL with the plan's headers, then
`complete` with `{}`.
"""

from __future__ import annotations

import hashlib
import os
from urllib.parse import urlsplit

import pytest
import requests

from tests.media.test_uploads import Field

EMPTY_SHA256 = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"


@pytest.fixture
def field(media_app):
    from tests.conftest import Officers

    db = media_app.extensions["fieldcase"].db
    return Field(media_app, lambda app, client: Officers(db, client))


def put_empty(field: Field, plan: dict) -> int:
    """An empty PUT with `Content-Length: 0`, as HTTP clients send it (Werkzeug's test client leaves the header
    out of an empty body, so it is set on the environ here)."""
    parts = urlsplit(plan["url"])
    if parts.netloc != "localhost":
        return requests.put(plan["url"], data=b"", headers=plan["headers"], timeout=30).status_code
    return field.client.put(parts.path, data=b"", headers={**field.headers, **plan["headers"]},
                            environ_overrides={"CONTENT_LENGTH": "0"}).status_code


def test_given_a_file_below_the_multipart_threshold_when_planned_then_one_put_carries_it_whole(field, media_app):
    threshold = media_app.extensions["fieldcase"].settings.multipart_threshold
    data = os.urandom(threshold)  # exactly at the threshold is still one request
    eid = field.declare(data)

    plan = field.plan(eid)
    status, _headers, _body = field.put(plan["url"], data, plan["headers"])
    answer = field.complete(eid)

    assert plan["method"] == "PUT" and "parts" not in plan
    assert status == 200
    assert answer["status"] == "verified" and answer["purge_allowed"] is True


def test_given_a_zero_byte_file_when_it_is_put_empty_and_completed_then_it_is_verified(field):
    eid = field.declare(b"", kind="document", media_type="text/plain")

    plan = field.plan(eid)
    status = put_empty(field, plan)
    answer = field.complete(eid)

    assert plan["method"] == "PUT"
    assert status == 200
    assert (answer["status"], answer["size"], answer["sha256"]) == ("verified", 0, EMPTY_SHA256)
    got = field.client.get(f"/api/v1/evidence/{eid}/content", headers=field.headers)
    assert got.status_code == 200 and got.data == b"" and hashlib.sha256(got.data).hexdigest() == EMPTY_SHA256


def test_given_a_zero_byte_declaration_when_bytes_arrive_then_they_never_become_the_evidence(field, store_kind):
    eid = field.declare(b"", kind="document", media_type="text/plain")

    plan = field.plan(eid)
    status, _headers, _body = field.put(plan["url"], b"x", plan["headers"])

    if store_kind == "local":
        assert status == 413  # more bytes than declared never reach the staging area
    elif status == 200:  # an object store that does not hold the URL to its signed Content-Length (moto)
        assert field.complete(eid)["status"] == "mismatch"
    else:
        assert status == 403  # S3: the URL was signed for Content-Length: 0
