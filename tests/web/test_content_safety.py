"""Bytes a phone supplied never act on the server's origin (docs/protocol.md §6, "Evidence upload, as built",
"Security, as built"): only allow-listed picture, video and audio types are shown inline; everything else is an
attachment; every such answer says nosniff and carries a sandboxing CSP; the console's own pages run no inline
script or style. Each test: given a file a phone declared, when it is read through the API or the console, then
the headers say how a browser may treat it.
"""

from __future__ import annotations

import base64
import hashlib
import re
from pathlib import Path

import pytest

from backend.core.models import Officer
from backend.web.console.views.frame import CONSOLE_ROOT
from tests import images
from tests.conftest import Officers
from tests.media.test_uploads import Field
from tests.web.test_console import post_form, sign_in

SCRIPT = b"<!doctype html><script>fetch('/api/v1/officers').then(r => r.text()).then(alert)</script>"
SVG = b'<svg xmlns="http://www.w3.org/2000/svg"><script>alert(document.domain)</script></svg>'


@pytest.fixture
def field(app):
    return Field(app, lambda _app, client: Officers(app.extensions["fieldcase"].db, client))


def uploaded(field: Field, data: bytes, media_type: str, kind: str = "document") -> str:
    eid = field.declare(data, kind=kind, media_type=media_type)
    assert field.upload(eid, data)["status"] == "verified"
    return eid


def read(field: Field, eid: str):
    r = field.client.get(f"/api/v1/evidence/{eid}/content", headers=field.headers)
    assert r.status_code == 200, r.get_data(as_text=True)[:300]
    return r


def assert_sandboxed(r) -> None:
    assert r.headers["X-Content-Type-Options"] == "nosniff"
    policy = r.headers["Content-Security-Policy"]
    assert policy.split(";")[0] == "sandbox" and "default-src 'none'" in policy and "script" not in policy


@pytest.mark.parametrize("media_type", ["text/html", "image/svg+xml", "IMAGE/SVG+XML", "application/xhtml+xml",
                                        "text/xml", "application/pdf", "text/plain"])
def test_given_a_file_of_a_type_a_browser_may_run_then_it_is_only_ever_an_attachment(field, media_type):
    eid = uploaded(field, SVG if "svg" in media_type.lower() else SCRIPT, media_type)
    r = read(field, eid)
    assert r.headers["Content-Disposition"].startswith("attachment;")
    assert r.headers["Content-Type"] == media_type.lower()  # the declared type, never guessed from the bytes
    assert_sandboxed(r)


@pytest.mark.parametrize("media_type", ["image/jpeg", "Image/JPEG", "image/png", "image/heic", "video/mp4",
                                        "video/quicktime", "audio/mp4"])
def test_given_a_picture_clip_or_recording_then_it_may_be_shown_inline_but_still_sandboxed(field, media_type):
    kind = {"image": "photo", "video": "video", "audio": "audio"}[media_type.split("/")[0].lower()]
    data = images.jpeg() if kind == "photo" else b"\x00\x00\x00\x18ftypmp42" + bytes(64)
    eid = uploaded(field, data, media_type, kind)
    r = read(field, eid)
    assert r.headers["Content-Disposition"] == f'inline; filename="{eid}.{media_type.split("/")[1].lower()}"'
    assert r.headers["Content-Type"] == media_type.lower()
    assert_sandboxed(r)


def test_given_a_declared_type_that_is_no_ascii_token_then_it_is_served_as_octet_stream(field):
    eid = uploaded(field, SCRIPT, "text/htmł")
    r = read(field, eid)
    assert r.headers["Content-Type"] == "application/octet-stream"
    assert r.headers["Content-Disposition"].startswith("attachment;")
    assert_sandboxed(r)


def test_given_a_download_then_it_carries_its_digest_as_rfc_9530_says_and_as_before(field):
    eid = uploaded(field, SCRIPT, "text/html")
    r = read(field, eid)
    digest = hashlib.sha256(SCRIPT)
    assert r.headers["Repr-Digest"] == f"sha-256=:{base64.b64encode(digest.digest()).decode()}:"
    assert r.headers["Digest"] == f"sha-256={digest.hexdigest()}"  # the earlier hex form, kept for old readers
    assert r.headers["ETag"] == f'"{digest.hexdigest()}"' and r.data == SCRIPT


def test_given_a_thumbnail_then_it_is_a_sandboxed_jpeg(field):
    eid = uploaded(field, images.jpeg(), "image/jpeg", "photo")
    r = field.client.get(f"/api/v1/evidence/{eid}/thumbnail", headers=field.headers)
    assert r.status_code == 200 and r.headers["Content-Type"] == "image/jpeg"
    assert_sandboxed(r)


def test_given_any_api_answer_then_it_says_nosniff(client):
    r = client.get("/api/v1/me")
    assert r.status_code == 401 and r.headers["X-Content-Type-Options"] == "nosniff"


def test_given_the_console_asked_to_play_an_svg_inline_then_it_downloads_it_sandboxed(app, field):
    with app.extensions["fieldcase"].db.transaction() as s:
        s.get(Officer, field.officer.id).roles = ["officer", "reviewer"]
    eid = uploaded(field, SVG, "image/svg+xml")
    console = app.test_client()
    assert sign_in(console, field.officer).status_code == 303
    r = post_form(console, f"/console/evidence/{eid}", "/console/files",
                  {"file": f"{eid}|inline", "purpose": "复核 review"})
    assert r.status_code == 200 and r.data == SVG
    assert r.headers["Content-Disposition"].startswith("attachment;")
    assert_sandboxed(r)
    thumbnail = uploaded(field, images.jpeg(), "image/jpeg", "photo")
    r = console.get(f"/console/evidence/{thumbnail}/thumbnail")
    assert r.status_code == 200 and r.headers["Content-Type"] == "image/jpeg"
    assert_sandboxed(r)


def test_given_a_console_page_then_its_policy_allows_no_inline_script_style_or_framing(app, field):
    with app.extensions["fieldcase"].db.transaction() as s:
        s.get(Officer, field.officer.id).roles = ["officer", "reviewer"]
    console = app.test_client()
    sign_in(console, field.officer)
    for page in ("/console/login", "/console/cases", "/console/custody"):
        policy = dict(part.strip().split(" ", 1) for part in
                      console.get(page).headers["Content-Security-Policy"].split(";") if part.strip())
        assert policy["default-src"] == "'self'" and policy["script-src"] == "'self'"
        assert policy["style-src"] == "'self'" and policy["object-src"] == "'none'"
        assert policy["frame-ancestors"] == "'none'" and policy["base-uri"] == "'none'"
        assert "unsafe" not in " ".join(policy.values())


INLINE = [
    (re.compile(r"<script(?![^>]*\bsrc=)[^>]*>", re.I), "an inline <script>"),
    (re.compile(r"<style\b", re.I), "a <style> element"),
    (re.compile(r"\sstyle\s*=", re.I), "a style attribute"),
    (re.compile(r"\son[a-z]+\s*=", re.I), "an inline event handler"),
    (re.compile(r"javascript:", re.I), "a javascript: URL"),
]


def test_given_the_console_templates_then_none_holds_script_or_style_the_policy_would_block():
    """The console's policy (no 'unsafe-inline') holds only if nothing inline needs it: the browser test
    (test_console_browser.py) watches the log for violations on the pages it visits; this reads every template."""
    templates = sorted((Path(CONSOLE_ROOT) / "templates").rglob("*.html"))
    assert templates
    found = [(t.name, what) for t in templates for pattern, what in INLINE if pattern.search(t.read_text())]
    assert found == []
