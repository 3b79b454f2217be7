"""PROTOCOL §6 on both stores: a phone declares a file, uploads it by the plan, and the server verifies it."""

from __future__ import annotations

import base64
import hashlib
import io
import os
import threading
from datetime import UTC, datetime, timedelta, timezone
from urllib.parse import urlsplit

import pytest
import requests
from PIL import Image
from sqlalchemy import select

from backend.core.models import Evidence, Upload
from tests import images
from tests.phones import TestPhone, uid


class Field:
    """One officer's phone against the app under test; PUTs go to the API or to the object store."""

    def __init__(self, app, officers_factory):
        self.app = app
        self.client = app.test_client()
        officers = officers_factory(app, self.client)
        self.officer = officers.make()
        self.phone = TestPhone(self.client, self.officer, officers.headers(self.officer))
        self.headers = self.phone.headers

    def declare(self, data: bytes, *, kind="video", media_type="video/mp4", declared: bytes | None = None,
                **extra) -> str:
        body = {"evidence_id": uid(), "inspection_id": None, "kind": kind, "media_type": media_type,
                "sha256": hashlib.sha256(declared if declared is not None else data).hexdigest(),
                "size": len(declared if declared is not None else data),
                "captured_at": self.phone.clock.isoformat(), **extra}
        result = self.phone.push([self.phone.record("evidence.capture", body)])["results"][0]
        assert result["status"] == "applied", result
        return body["evidence_id"]

    def plan(self, eid: str):
        r = self.client.post(f"/api/v1/evidence/{eid}/uploads", headers=self.headers)
        assert r.status_code == 200, r.json
        return r.json

    def put(self, url: str, data: bytes, headers: dict | None = None):
        parts = urlsplit(url)
        if parts.netloc == "localhost":
            r = self.client.put(parts.path, data=data, headers={**self.headers, **(headers or {})})
            return r.status_code, r.headers, (r.json if r.is_json else None)
        r = requests.put(url, data=data, headers=headers or {}, timeout=30)
        return r.status_code, r.headers, None

    def upload(self, eid: str, data: bytes) -> dict:
        plan = self.plan(eid)
        if plan["method"] == "PUT":
            status, _h, body = self.put(plan["url"], data, plan["headers"])
            assert status == 200, body
            return self.complete(eid)
        parts = []
        for part in plan["parts"]:
            start = (part["number"] - 1) * plan["part_size"]
            status, headers, _ = self.put(part["url"], data[start:start + plan["part_size"]])
            assert status == 200
            parts.append({"number": part["number"], "etag": headers["ETag"]})
        return self.complete(eid, parts)

    def complete(self, eid: str, parts=None) -> dict:
        r = self.client.post(f"/api/v1/evidence/{eid}/complete", json={"parts": parts} if parts else {},
                             headers=self.headers)
        assert r.status_code == 200, r.json
        return r.json


@pytest.fixture
def field(media_app):
    from tests.conftest import Officers

    db = media_app.extensions["fieldcase"].db
    return Field(media_app, lambda app, client: Officers(db, client))


def test_a_file_equal_to_its_declaration_is_verified_and_may_be_purged(field, media_app):
    data = os.urandom(300_000)
    eid = field.declare(data)
    answer = field.upload(eid, data)
    assert answer["status"] == "verified" and answer["purge_allowed"] is True
    got = field.client.get(f"/api/v1/evidence/{eid}/content", headers=field.headers)
    assert got.status_code == 200 and hashlib.sha256(got.data).hexdigest() == answer["sha256"]
    changes = field.client.get("/api/v1/sync/pull", headers=field.headers).json["changes"]
    evidence_changes = [c["data"] for c in changes if c["kind"] == "evidence" and c["id"] == eid]
    assert evidence_changes[-1]["status"] == "verified" and evidence_changes[-1]["purge_allowed"] is True


def test_other_bytes_are_a_mismatch_kept_apart_and_a_fresh_upload_is_allowed(field, media_app):
    declared = os.urandom(50_000)
    eid = field.declare(declared)
    tampered = bytearray(declared)
    tampered[100] ^= 0xFF
    answer = field.upload(eid, bytes(tampered))
    assert answer["status"] == "mismatch" and answer["purge_allowed"] is False
    (upload,) = answer["uploads"]
    assert upload["received_sha256"] == hashlib.sha256(bytes(tampered)).hexdigest()
    assert field.client.get(f"/api/v1/evidence/{eid}/content", headers=field.headers).status_code == 409
    # The mismatched bytes are kept for forensics, not as the evidence.
    store = media_app.extensions["fieldcase"].store
    with media_app.extensions["fieldcase"].db.session() as s:
        kept = s.scalars(select(Upload.mismatch_key).where(Upload.evidence_id == eid)).one()
    stream = store.open(kept)
    assert hashlib.sha256(stream.read()).hexdigest() == upload["received_sha256"]
    stream.close()
    again = field.upload(eid, declared)
    assert again["status"] == "verified" and len(again["uploads"]) == 2


def test_a_large_file_goes_up_in_parts(field, store_kind):
    data = os.urandom(11 * 1024 * 1024 + 123)
    eid = field.declare(data)
    plan = field.plan(eid)
    if store_kind == "s3":
        assert plan["method"] == "multipart" and len(plan["parts"]) == 3
    answer = field.upload(eid, data)
    assert answer["status"] == "verified"


def test_identical_bytes_declared_twice_are_stored_once(field, media_app):
    data = os.urandom(20_000)
    first, second = field.declare(data), field.declare(data)
    assert field.upload(first, data)["status"] == "verified"
    assert field.upload(second, data)["status"] == "verified"
    with media_app.extensions["fieldcase"].db.session() as s:
        keys = {s.get(Evidence, first).object_key, s.get(Evidence, second).object_key}
    assert keys == {f"objects/{hashlib.sha256(data).hexdigest()[:2]}/{hashlib.sha256(data).hexdigest()[2:4]}/"
                    f"{hashlib.sha256(data).hexdigest()}"}


def test_uploads_for_unknown_or_foreign_evidence_are_404(field, media_app):
    from tests.conftest import Officers

    eid = field.declare(b"x" * 10)
    assert field.client.post(f"/api/v1/evidence/{uid()}/uploads", headers=field.headers).status_code == 404
    others = Officers(media_app.extensions["fieldcase"].db, field.client)
    stranger = others.make()
    r = field.client.post(f"/api/v1/evidence/{eid}/uploads", headers=others.headers(stranger))
    assert r.status_code == 404
    assert field.client.post("/api/v1/evidence/..%2F..%2Fetc/uploads", headers=field.headers).status_code == 404


def test_completing_twice_repeats_the_verdict_and_a_verified_item_takes_no_new_upload(field):
    data = b"evidence bytes"
    eid = field.declare(data)
    assert field.upload(eid, data)["status"] == "verified"
    assert field.complete(eid)["status"] == "verified"
    r = field.client.post(f"/api/v1/evidence/{eid}/uploads", headers=field.headers)
    assert r.status_code == 409


@pytest.mark.parametrize("store_kind", ["local"])  # presigned PUTs are single requests: nothing to resume
@pytest.mark.parametrize("cut", [1, 4096, 65_536, 99_999])
def test_local_upload_resumes_from_the_offset_after_an_interruption(field, store_kind, cut):
    data = os.urandom(100_000)
    eid = field.declare(data)
    plan = field.plan(eid)
    path = urlsplit(plan["url"]).path
    total = len(data)
    # The connection drops after `cut` bytes: what arrived is kept.
    r = field.client.put(path, data=data[:cut], headers={**field.headers,
                                                         "Content-Range": f"bytes 0-{cut - 1}/{total}"})
    assert r.status_code == 200 and r.headers["Upload-Offset"] == str(cut)
    head = field.client.head(path, headers=field.headers)
    assert head.headers["Upload-Offset"] == str(cut)
    early = field.client.post(f"/api/v1/evidence/{eid}/complete", json={}, headers=field.headers)
    assert early.status_code == 409 and early.headers["Upload-Offset"] == str(cut)
    # Asking for a plan again continues the same upload.
    assert field.plan(eid)["url"] == plan["url"]
    r = field.client.put(path, data=data[cut:], headers={**field.headers,
                                                         "Content-Range": f"bytes {cut}-{total - 1}/{total}"})
    assert r.status_code == 200 and r.json["offset"] == total
    assert field.complete(eid)["status"] == "verified"


@pytest.mark.parametrize("store_kind", ["local"])  # ranges are the local store's
def test_local_upload_refuses_bad_ranges_and_extra_bytes(field, store_kind):
    data = os.urandom(1000)
    eid = field.declare(data)
    path = urlsplit(field.plan(eid)["url"]).path
    h = field.headers
    assert field.client.put(path, data=data + b"more", headers=h).status_code == 413
    r = field.client.put(path, data=data[:10], headers={**h, "Content-Range": "bytes 0-9/999"})
    assert r.status_code == 416
    r = field.client.put(path, data=data[:10], headers={**h, "Content-Range": "bytes 500-509/1000"})
    assert r.status_code == 409 and r.headers["Upload-Offset"] == "0"
    r = field.client.put(path, data=data[:10], headers={**h, "Content-Range": "bytes 995-1004/1000"})
    assert r.status_code == 416
    r = field.client.put(path, data=data[:10], headers={**h, "Content-Range": "nonsense"})
    assert r.status_code == 416 and r.is_json
    assert field.client.head(path, headers=h).headers["Upload-Offset"] == "0"
    assert field.client.put(path, data=data, headers=h).status_code == 200
    assert field.complete(eid)["status"] == "verified"


def _sf(data: bytes) -> str:
    """An RFC 9530 digest field value: `sha-256=:<base64>:`."""
    return "sha-256=:" + base64.b64encode(hashlib.sha256(data).digest()).decode() + ":"


def _half_uploaded(field, size: int = 10_000, cut: int = 4096) -> tuple[bytes, str, str]:
    data = os.urandom(size)
    eid = field.declare(data)
    path = urlsplit(field.plan(eid)["url"]).path
    r = field.client.put(path, data=data[:cut], headers={**field.headers,
                                                         "Content-Range": f"bytes 0-{cut - 1}/{size}"})
    assert r.status_code == 200 and r.json["offset"] == cut
    return data, eid, path


def _staged(field, eid: str) -> bytes:
    with field.app.extensions["fieldcase"].db.session() as s:
        upload_id = s.scalars(select(Upload.id).where(Upload.evidence_id == eid)).one()
    path = field.app.extensions["fieldcase"].store.root / "staging" / upload_id
    return path.read_bytes()


@pytest.mark.parametrize("store_kind", ["local"])
@pytest.mark.parametrize("start", [0, 100, 5000])
def test_given_bytes_received_when_a_resume_does_not_start_at_the_offset_then_409_and_nothing_changes(field,
                                                                                                   store_kind, start):
    """A resume from byte 0 used to start the upload over silently; now a range starting anywhere but the offset
    is refused, with the offset in `Upload-Offset` and in the body, and the bytes held stay as they were."""
    data, eid, path = _half_uploaded(field)
    held = _staged(field, eid)
    r = field.client.put(path, data=data[start:], headers={**field.headers,
                                                           "Content-Range": f"bytes {start}-9999/10000"})
    assert r.status_code == 409 and r.headers["Upload-Offset"] == "4096"
    assert r.json["errors"] == {"offset": 4096} and "4096" in r.json["message"]
    assert _staged(field, eid) == held
    assert field.client.head(path, headers=field.headers).headers["Upload-Offset"] == "4096"
    r = field.client.put(path, data=data[4096:], headers={**field.headers, "Content-Range": "bytes 4096-9999/10000"})
    assert r.status_code == 200 and field.complete(eid)["status"] == "verified"


@pytest.mark.parametrize("store_kind", ["local"])
def test_given_a_put_without_content_range_then_it_still_starts_the_upload_over(field, store_kind):
    data, eid, path = _half_uploaded(field)
    assert field.client.put(path, data=data, headers=field.headers).json["offset"] == len(data)
    assert field.complete(eid)["status"] == "verified"


@pytest.mark.parametrize("store_kind", ["local"])
def test_given_content_and_repr_digests_that_hold_then_the_upload_goes_on_as_without_them(field, store_kind):
    data, eid, path = _half_uploaded(field)
    rest = data[4096:]
    r = field.client.put(path, data=rest, headers={**field.headers, "Content-Range": "bytes 4096-9999/10000",
                                                   "Content-Digest": _sf(rest) + ", sha-512=:AAAA:",
                                                   "Repr-Digest": _sf(data)})
    assert r.status_code == 200 and r.json["offset"] == len(data)
    assert field.complete(eid)["status"] == "verified"


@pytest.mark.parametrize("store_kind", ["local"])
def test_given_bytes_that_do_not_hash_to_their_content_digest_then_422_and_none_of_them_is_kept(field, store_kind):
    data, eid, path = _half_uploaded(field)
    damaged = bytearray(data[4096:])
    damaged[10] ^= 1
    r = field.client.put(path, data=bytes(damaged), headers={**field.headers, "Content-Range": "bytes 4096-9999/10000",
                                                             "Content-Digest": _sf(data[4096:])})
    assert r.status_code == 422 and r.headers["Upload-Offset"] == "4096" and r.json["errors"] == {"offset": 4096}
    assert _staged(field, eid) == data[:4096]
    r = field.client.put(path, data=data[4096:], headers={**field.headers, "Content-Range": "bytes 4096-9999/10000",
                                                          "Content-Digest": _sf(data[4096:])})
    assert r.status_code == 200 and field.complete(eid)["status"] == "verified"


@pytest.mark.parametrize("store_kind", ["local"])
def test_given_a_whole_file_that_does_not_hash_to_its_repr_digest_then_422_and_it_starts_over(field, store_kind):
    """The first part was damaged on the way (no Content-Digest caught it): which part cannot be told, so nothing
    is kept, and the phone sends the file again from byte 0."""
    data = os.urandom(10_000)
    eid = field.declare(data)
    path = urlsplit(field.plan(eid)["url"]).path
    damaged = bytearray(data[:4096])
    damaged[0] ^= 1
    field.client.put(path, data=bytes(damaged), headers={**field.headers, "Content-Range": "bytes 0-4095/10000"})
    r = field.client.put(path, data=data[4096:], headers={**field.headers, "Content-Range": "bytes 4096-9999/10000",
                                                          "Repr-Digest": _sf(data)})
    assert r.status_code == 422 and r.headers["Upload-Offset"] == "0" and r.json["errors"] == {"offset": 0}
    assert _staged(field, eid) == b""
    assert field.client.put(path, data=data, headers={**field.headers, "Repr-Digest": _sf(data)}).status_code == 200
    assert field.complete(eid)["status"] == "verified"


@pytest.mark.parametrize("store_kind", ["local"])
@pytest.mark.parametrize("value", ["sha-256=abc", "sha-256=:not base64!:", "sha-256=:AAAA:", "sha-256",
                                   "sha-256=:" + "A" * 43 + "=:, sha-256=:" + "B" * 43 + "=:"])
def test_given_a_digest_field_the_server_cannot_read_then_422_naming_it_and_nothing_is_written(field, store_kind,
                                                                                              value):
    data, eid, path = _half_uploaded(field)
    r = field.client.put(path, data=data[4096:], headers={**field.headers, "Content-Range": "bytes 4096-9999/10000",
                                                          "Content-Digest": value})
    assert r.status_code == 422 and list(r.json["errors"]["headers"]) == ["Content-Digest"]
    assert _staged(field, eid) == data[:4096]


def test_a_second_concurrent_upload_of_one_item_is_refused(tmp_path):
    """Two writers on one staged upload: the second is turned away while the first holds it."""
    from media.store import LocalStore, StoreError
    from media.uploads import _store_error

    store = LocalStore(tmp_path / "evidence")
    data = os.urandom(2 * 1024 * 1024)
    store.plan("upl_x", len(data), hashlib.sha256(data).hexdigest(), "http://x")
    halfway, release = threading.Event(), threading.Event()

    class SlowBody:
        def __init__(self):
            self.sent = 0

        def read(self, n=-1):
            if self.sent >= len(data) // 2 and not release.is_set():
                halfway.set()
                release.wait(10)
            block = data[self.sent:self.sent + min(n, 256 * 1024)]
            self.sent += len(block)
            return block

    results = {}
    t = threading.Thread(target=lambda: results.setdefault("first", store.write("upl_x", SlowBody(), 0, len(data),
                                                                                 len(data))))
    t.start()
    assert halfway.wait(10)
    with pytest.raises(StoreError) as refused:
        store.write("upl_x", io.BytesIO(data), 0, len(data), len(data))
    release.set()
    t.join(10)
    assert refused.value.code == "busy"
    assert _store_error(refused.value).status == 409
    assert results["first"] == len(data)
    assert store.staged_digest("upl_x").sha256 == hashlib.sha256(data).hexdigest()


TAKEN = datetime(2026, 7, 14, 9, 30, 5, tzinfo=timezone(timedelta(hours=8)))


def _photo(field, data, *, captured_at=TAKEN, location=None):
    eid = field.declare(data, kind="photo", media_type="image/jpeg", captured_at=captured_at.isoformat(),
                        location=location or {"lat": images.WEST_LAKE[0], "lon": images.WEST_LAKE[1],
                                              "accuracy_m": 10})
    return eid, field.upload(eid, data)


def test_a_photo_is_read_by_pillow_and_gets_a_thumbnail(field):
    data = images.jpeg_with_exif((800, 600))
    eid, answer = _photo(field, data)
    assert answer["status"] == "verified"
    info = answer["media_info"]
    assert info["decodable"] is True and info["width"] == 800
    assert info["camera_make"] == "HUAWEI"
    assert "exif_time_differs" not in answer["flags"] and "gps_differs" not in answer["flags"]
    assert answer["has_thumbnail"] is True
    thumb = field.client.get(f"/api/v1/evidence/{eid}/thumbnail", headers=field.headers)
    assert thumb.status_code == 200 and thumb.mimetype == "image/jpeg"
    with Image.open(io.BytesIO(thumb.data)) as im:
        assert max(im.size) == 320
    original = field.client.get(f"/api/v1/evidence/{eid}/content", headers=field.headers)
    assert original.data == data  # the original is never altered


def test_a_photo_whose_exif_disagrees_with_its_declaration_is_flagged(field):
    data = images.jpeg_with_exif(taken=datetime(2026, 7, 14, 9, 45, 0), lat=30.30, lon=120.10)
    _eid, answer = _photo(field, data)
    assert answer["status"] == "verified"
    assert {"exif_time_differs", "gps_differs"} <= set(answer["flags"])


def test_a_truncated_photo_stays_verified_and_is_flagged(field):
    data = images.truncated_jpeg()
    eid, answer = _photo(field, data)
    assert answer["status"] == "verified" and "undecodable" in answer["flags"]
    assert field.client.get(f"/api/v1/evidence/{eid}/thumbnail", headers=field.headers).status_code == 404


def test_a_non_image_declared_as_photo_is_flagged(field):
    _eid, answer = _photo(field, images.not_an_image())
    assert answer["status"] == "verified" and "not_an_image" in answer["flags"]


def test_evidence_verified_more_than_a_day_after_capture_is_flagged_late(field):
    data = b"late clip bytes"
    eid = field.declare(data, captured_at=(datetime.now(UTC) - timedelta(hours=30)).isoformat())
    assert "late_upload" in field.upload(eid, data)["flags"]
    prompt = field.declare(b"prompt clip bytes")
    assert "late_upload" not in field.upload(prompt, b"prompt clip bytes")["flags"]
