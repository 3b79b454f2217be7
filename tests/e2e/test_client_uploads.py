"""PROTOCOL §6 end to end through the reference phone (`sync.client.Phone`), on the local store and on S3.

The phone captures real files (a JPEG with EXIF time and GPS, body-camera
clips of random bytes, one clip big enough for S3 multipart), pushes their
declarations and uploads them by the server's plan: to the API's own
`PUT .../content` on the local store, to presigned URLs on moto's S3. What
goes over the wire is recorded, so a resumed upload can be shown to send only
the rest of the file, and an S3 upload to never pass through the API.
"""

from __future__ import annotations

import base64
import hashlib
import os
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
import requests
from requests.adapters import HTTPAdapter
from sqlalchemy import select

from backend.core.models import CustodyEvent
from sync.client import SHANGHAI, Phone
from tests import images
from tests.conftest import PASSWORD, Officers
from tests.wsgi_transport import WSGIAdapter

BASE = "http://fieldcase.test"
CENTRE = {"name": "西湖区明日之星培训中心", "region": "330106", "address": "文三路 199 号 3 楼"}
HERE = {"lat": 30.2787, "lon": 120.1303, "accuracy_m": 8.0}
MiB = 1024 * 1024


# --------------------------------------------------------------------------- the wire


class AppWire(WSGIAdapter):
    """The app in-process; records every PUT of evidence bytes, and drops connections on cue."""

    def __init__(self, app) -> None:
        super().__init__(app)
        self.puts: list[dict[str, Any]] = []
        self.cut_after: int | None = None  # the next content PUT delivers this many bytes, then the line drops
        self.lose_complete_answers = False  # POST .../complete reaches the server, its answer never comes back

    def send(self, request, **kwargs):
        path = urlsplit(request.url).path
        if request.method == "PUT" and path.endswith("/content"):
            body = request.body
            data = body.read() if hasattr(body, "read") else bytes(body or b"")
            cut, self.cut_after = self.cut_after, None
            if cut is not None:
                data = data[:cut]  # Content-Length still announces the whole body: the rest never comes
            sent = request.copy()
            sent.body = data
            self.puts.append({"range": request.headers.get("Content-Range"), "bytes": len(data),
                              "length": int(request.headers["Content-Length"])})
            resp = super().send(sent, **kwargs)
            if cut is not None:
                raise requests.ConnectionError(f"connection lost after {cut} bytes (simulated)")
            return resp
        if self.lose_complete_answers and request.method == "POST" and path.endswith("/complete"):
            super().send(request, **kwargs)
            raise requests.ConnectionError("the answer was lost on the way back (simulated)")
        return super().send(request, **kwargs)


class ObjectStoreWire(HTTPAdapter):
    """Real HTTP to moto's S3; records the PUTs. `enforce_checksum` makes it refuse bytes whose SHA-256 is not
    the `x-amz-checksum-sha256` header, as AWS S3 does (moto 5 accepts them); `refuse_puts` makes it refuse
    every PUT, as a store that checks bytes by some means of its own would refuse changed ones."""

    def __init__(self) -> None:
        super().__init__()
        self.puts: list[dict[str, Any]] = []
        self.enforce_checksum = False
        self.refuse_puts = False

    def send(self, request, **kwargs):
        if request.method == "PUT":
            body = request.body
            data = body.read() if hasattr(body, "read") else bytes(body or b"")
            request.body = data
            query = parse_qs(urlsplit(request.url).query)
            self.puts.append({"part": int(query["partNumber"][0]) if "partNumber" in query else None,
                              "bytes": len(data), "authorization": request.headers.get("Authorization")})
            claimed = request.headers.get("x-amz-checksum-sha256")
            actual = base64.b64encode(hashlib.sha256(data).digest()).decode()
            if (self.enforce_checksum and claimed and actual != claimed) or self.refuse_puts:
                return refusal(request, "BadDigest", "The SHA256 you specified did not match the calculated checksum.")
        return super().send(request, **kwargs)


def refusal(request, code: str, message: str) -> requests.Response:
    resp = requests.Response()
    resp.status_code = 400
    resp.reason = "Bad Request"
    resp.headers = requests.structures.CaseInsensitiveDict({"Content-Type": "application/xml"})
    resp._content = f"<Error><Code>{code}</Code><Message>{message}</Message></Error>".encode()
    resp.url = request.url
    resp.request = request
    return resp


class FieldClock:
    """A phone clock that starts a few hours ago and ticks on every reading."""

    def __init__(self) -> None:
        self.now = datetime.now(SHANGHAI).replace(microsecond=0) - timedelta(hours=3)

    def __call__(self) -> datetime:
        self.now += timedelta(seconds=20)
        return self.now


class Field:
    """One officer, their phone (talking to the app and to the object store), and the phone's camera folder."""

    def __init__(self, app, tmp_path: Path) -> None:
        self.app = app
        self.client = app.test_client()
        officers = Officers(app.extensions["fieldcase"].db, self.client)
        self.officer = officers.make(name="张敏")
        self.headers = officers.headers(self.officer)
        self.wire = AppWire(app)
        self.s3 = ObjectStoreWire()
        self.dir = tmp_path / "phone"
        self.camera = tmp_path / "DCIM"
        self.camera.mkdir()
        self.clock = FieldClock()
        self.phone = self._open()

    def _open(self) -> Phone:
        session = requests.Session()
        session.mount("http://", self.s3)
        session.mount(BASE, self.wire)  # the longest prefix wins: only the API's own origin goes in-process
        phone = Phone(self.dir, BASE, session=session, clock=self.clock, sleep=lambda _s: None)
        phone.login(self.officer.username, PASSWORD)
        phone.enrol("张敏的手机")
        return phone

    def reopen(self) -> Phone:
        """The app restarts: a new Phone on the same folder, logged in again."""
        self.phone.close()
        self.phone = self._open()
        return self.phone

    def inspection(self) -> str:
        cid = self.phone.open_case(CENTRE, summary="无证校外培训举报核查")
        return self.phone.start_inspection(cid, officers=[], location=HERE)

    def file(self, name: str, data: bytes) -> Path:
        path = self.camera / name
        path.write_bytes(data)
        return path

    def clip(self, iid: str, name: str, data: bytes, index: int, **extra: Any) -> tuple[str, Path]:
        path = self.file(name, data)
        start = self.clock()
        eid = self.phone.capture_evidence(
            path, "video", "video/mp4", inspection_id=iid, captured_at=start, location=HERE,
            clip={"camera_serial": "CAM-0042", "clip_index": index, "started_at": start.isoformat(),
                  "ended_at": (start + timedelta(seconds=60)).isoformat(), **extra})
        return eid, path

    def push(self) -> None:
        summary = self.phone.push()
        assert set(summary["counts"]) == {"applied"} and not self.phone.outbox(), summary

    def evidence(self, eid: str) -> dict[str, Any]:
        r = self.client.get(f"/api/v1/evidence/{eid}", headers=self.headers)
        assert r.status_code == 200, r.json
        return r.json

    def content(self, eid: str):
        return self.client.get(f"/api/v1/evidence/{eid}/content?purpose=test", headers=self.headers)

    def offset(self, eid: str) -> int:
        r = self.client.head(f"/api/v1/evidence/{eid}/content", headers=self.headers)
        assert r.status_code == 200
        return int(r.headers["Upload-Offset"])


@pytest.fixture
def field(media_app, tmp_path) -> Iterator[Field]:
    f = Field(media_app, tmp_path)
    yield f
    f.phone.close()


def statuses(phone: Phone) -> dict[str, str]:
    return {f["evidence_id"]: f["status"] for f in phone.evidence_files()}


# --------------------------------------------------------------------------- a day's files


def test_captured_files_go_up_by_the_plan_are_verified_and_purged_only_once_allowed(field, store_kind):
    phone = field.phone
    iid = field.inspection()
    taken = field.clock()
    photo_bytes = images.jpeg_with_exif((640, 480), taken=taken.replace(tzinfo=None), lat=HERE["lat"],
                                        lon=HERE["lon"])
    photo_path = field.file("IMG_20260714_093005.jpg", photo_bytes)
    photo = phone.capture_evidence(photo_path, "photo", "image/jpeg", inspection_id=iid, captured_at=taken,
                                   location=HERE)
    clip, clip_path = field.clip(iid, "CAM0042_0001.mp4", os.urandom(300_000), 1)
    big, big_path = field.clip(iid, "CAM0042_0002.mp4", os.urandom(7 * MiB + 123), 2,
                               prev_sha256=hashlib.sha256(clip_path.read_bytes()).hexdigest())
    phone.end_inspection(iid, "no_violation")
    files = {photo: photo_path, clip: clip_path, big: big_path}
    originals = {eid: path.read_bytes() for eid, path in files.items()}

    # Offline: nothing can go up, and nothing may be deleted.
    assert phone.upload_pending() == []
    assert phone.purgeable() == [] and not any(phone.purge(eid) for eid in files)
    field.push()
    # Declared, not uploaded: still nothing may be deleted.
    assert phone.purgeable() == [] and not any(phone.purge(eid) for eid in files)
    assert all(path.exists() for path in files.values())

    results = phone.upload_pending()

    assert sorted(results, key=lambda r: r["evidence_id"]) == sorted(
        ({"evidence_id": eid, "status": "verified", "purge_allowed": True} for eid in files),
        key=lambda r: r["evidence_id"])
    sizes = sorted(len(b) for b in originals.values())
    if store_kind == "local":
        assert sorted(p["bytes"] for p in field.wire.puts) == sizes and field.s3.puts == []
        assert all(p["range"] is None for p in field.wire.puts)
    else:
        # The bytes never pass through the API; the big clip goes in 5 MiB parts; no bearer token leaves.
        assert field.wire.puts == []
        assert sorted((p["part"] or 0, p["bytes"]) for p in field.s3.puts) == sorted(
            [(0, len(originals[photo])), (0, len(originals[clip])), (1, 5 * MiB), (2, 2 * MiB + 123)])
        assert all(not (p["authorization"] or "").startswith("Bearer") for p in field.s3.puts)
    for eid in originals:
        answer = field.evidence(eid)
        assert answer["status"] == "verified" and answer["purge_allowed"] is True
        assert answer["uploads"][-1]["method"] == ("multipart" if store_kind == "s3" and eid == big else "put")
    info = field.evidence(photo)["media_info"]
    assert info["exif_captured_at"] is not None and info["time_difference_s"] == 0
    assert info["distance_m"] < 1 and info["width"] == 640
    assert field.evidence(photo)["flags"] == [] and field.evidence(photo)["has_thumbnail"] is True

    # Verified and allowed: now, and only now, the copies may go.
    assert sorted(p["evidence_id"] for p in phone.purgeable()) == sorted(files)
    assert all(phone.purge(eid) for eid in files)
    assert not any(path.exists() for path in files.values())
    assert set(statuses(phone).values()) == {"purged"}
    # The server keeps the originals, byte for byte.
    for eid, data in originals.items():
        got = field.content(eid)
        assert got.status_code == 200 and got.data == data
    # Pulling the same verdicts later neither offers the purged files again nor sends anything again.
    phone.pull()
    assert phone.purgeable() == [] and set(statuses(phone).values()) == {"purged"}
    assert phone.upload_pending() == []


@pytest.mark.parametrize("learns_by", ["pull", "upload_pending"])
def test_a_lost_verdict_keeps_the_copy_until_the_server_says_purge_allowed(field, learns_by):
    phone = field.phone
    iid = field.inspection()
    eid, path = field.clip(iid, "CAM0042_0007.mp4", os.urandom(120_000), 7)
    field.push()
    field.wire.lose_complete_answers = True

    (result,) = phone.upload_pending()

    # The server verified it, but the phone has not heard so: it keeps the file.
    assert field.evidence(eid)["status"] == "verified"
    assert result["status"] == "uploaded" and result["purge_allowed"] is False and "lost" in result["error"]
    assert phone.purgeable() == [] and phone.purge(eid) is False and path.exists()

    field.wire.lose_complete_answers = False
    puts = len(field.wire.puts) + len(field.s3.puts)
    if learns_by == "pull":
        phone.pull()
    else:
        assert phone.upload_pending() == [{"evidence_id": eid, "status": "verified", "purge_allowed": True}]
    assert len(field.wire.puts) + len(field.s3.puts) == puts  # the bytes were not sent again
    assert phone.purgeable() == [{"evidence_id": eid, "path": str(path), "size": 120_000}]
    assert phone.purge(eid) is True and not path.exists()


# --------------------------------------------------------------------------- interrupted uploads


@pytest.mark.parametrize("store_kind", ["local"])  # presigned PUTs are single requests: nothing to resume
@pytest.mark.parametrize("resumed_by", ["the same call", "the next call, after an app restart"])
def test_an_interrupted_upload_resumes_from_the_servers_offset(field, store_kind, resumed_by):
    size = 3 * MiB + 4321
    cut = size // 2 + 17
    data = os.urandom(size)
    iid = field.inspection()
    eid, _path = field.clip(iid, "CAM0042_0003.mp4", data, 3)
    field.push()
    field.wire.cut_after = cut

    if resumed_by == "the same call":
        (result,) = field.phone.upload_pending()
    else:
        field.phone.max_attempts = 1  # the network is gone after the drop
        (failed,) = field.phone.upload_pending()
        assert failed["status"] == "uploading" and failed["purge_allowed"] is False
        assert "connection lost" in failed["error"]
        assert field.offset(eid) == cut  # the server kept what arrived
        assert field.evidence(eid)["status"] == "declared"
        (result,) = field.reopen().upload_pending()

    assert result == {"evidence_id": eid, "status": "verified", "purge_allowed": True}
    # The second PUT carried only the rest, from the server's offset: the file went up once in all.
    assert [(p["range"], p["bytes"]) for p in field.wire.puts] == [
        (None, cut), (f"bytes {cut}-{size - 1}/{size}", size - cut)]
    assert field.wire.puts[1]["length"] == size - cut
    assert sum(p["bytes"] for p in field.wire.puts) == size
    assert field.content(eid).data == data
    assert field.offset(eid) == size


@pytest.mark.parametrize("store_kind", ["local"])
def test_when_only_the_answer_to_a_whole_put_is_lost_nothing_is_sent_again(field, store_kind):
    size = 2 * MiB + 5
    data = os.urandom(size)
    iid = field.inspection()
    eid, _path = field.clip(iid, "CAM0042_0008.mp4", data, 8)
    field.push()
    field.wire.cut_after = size  # every byte arrives, then the line drops before the answer

    (result,) = field.phone.upload_pending()

    assert result == {"evidence_id": eid, "status": "verified", "purge_allowed": True}
    assert [(p["range"], p["bytes"]) for p in field.wire.puts] == [(None, size)]  # HEAD said all is there


# --------------------------------------------------------------------------- files that changed


@pytest.mark.parametrize("size", [200_000, 7 * MiB], ids=["single PUT", "multipart on S3"])
def test_a_file_changed_after_capture_ends_mismatch_is_kept_and_reported(field, store_kind, size):
    phone = field.phone
    iid = field.inspection()
    data = os.urandom(size)
    eid, path = field.clip(iid, "CAM0042_0004.mp4", data, 4)
    field.push()
    tampered = bytearray(data)
    tampered[size // 3] ^= 0xFF  # same size, one byte different: only the hash tells
    path.write_bytes(tampered)
    tampered_sha = hashlib.sha256(tampered).hexdigest()

    (result,) = phone.upload_pending()

    assert result["status"] == "mismatch" and result["purge_allowed"] is False
    assert result["error"].startswith("mismatch: the server received") and tampered_sha in result["error"]
    assert "now hashes to" in result["error"]  # the phone tells it was its own copy that changed
    assert phone.purgeable() == [] and phone.purge(eid) is False
    assert path.read_bytes() == tampered
    (row,) = phone.evidence_files()
    assert row["status"] == "mismatch" and row["last_error"] == result["error"]
    answer = field.evidence(eid)
    assert answer["status"] == "mismatch" and answer["purge_allowed"] is False
    assert answer["sha256"] == hashlib.sha256(data).hexdigest()  # the declaration stays
    assert answer["uploads"][-1]["received_sha256"] == tampered_sha
    assert field.content(eid).status_code == 409  # never served as if it were the declared file
    # Pulling the verdict changes nothing, and the phone does not keep sending the same wrong bytes.
    phone.pull()
    assert phone.purgeable() == [] and statuses(phone) == {eid: "mismatch"}
    assert phone.upload_pending() == []


def test_a_file_cut_short_after_capture_is_reported_and_not_sent(field, store_kind):
    phone = field.phone
    iid = field.inspection()
    data = os.urandom(100_000)
    eid, path = field.clip(iid, "CAM0042_0005.mp4", data, 5)
    field.push()
    path.write_bytes(data[:60_000])

    (result,) = phone.upload_pending()

    # A body shorter than its Content-Length would leave the server waiting: nothing is sent at all.
    assert result["status"] == "changed" and result["purge_allowed"] is False
    assert "60000 bytes, 100000 were declared" in result["error"]
    assert field.wire.puts == [] and field.s3.puts == []
    assert phone.purgeable() == [] and phone.purge(eid) is False and path.exists()
    assert field.evidence(eid)["status"] == "declared"
    assert phone.upload_pending() == []


def _changed_after_declaration(field) -> tuple[str, bytes]:
    """A clip declared and pushed, then changed on the phone (same size, one bit) before its upload."""
    iid = field.inspection()
    data = os.urandom(50_000)
    eid, path = field.clip(iid, "CAM0042_0006.mp4", data, 6)
    field.push()
    tampered = bytearray(data)
    tampered[10] ^= 0x01
    path.write_bytes(tampered)
    return eid, bytes(tampered)


@pytest.mark.parametrize("store_kind", ["s3"])
def test_a_changed_file_refused_by_the_object_store_is_reported_not_retried(field, store_kind):
    eid, _tampered = _changed_after_declaration(field)
    field.s3.refuse_puts = True

    (result,) = field.phone.upload_pending()

    assert result["status"] == "changed" and result["purge_allowed"] is False
    assert "now hashes to" in result["error"] and "BadDigest" in result["error"]
    assert field.phone.purgeable() == []
    assert field.phone.upload_pending() == []  # not sent again and again
    assert len(field.s3.puts) == 1


@pytest.mark.parametrize("store_kind", ["s3"])
def test_a_changed_file_on_an_s3_that_checks_checksums_ends_mismatch_on_the_server(field, store_kind, media_app):
    """AWS S3 refuses bytes whose SHA-256 differs from an `x-amz-checksum-sha256` the request carries; the plan
    carries none, so the changed bytes are staged, hashed on `complete` and kept apart as PROTOCOL §6 says."""
    eid, tampered = _changed_after_declaration(field)
    field.s3.enforce_checksum = True

    (result,) = field.phone.upload_pending()

    assert result["status"] == "mismatch" and result["purge_allowed"] is False
    answer = field.evidence(eid)
    assert answer["status"] == "mismatch"
    assert answer["uploads"][-1]["received_sha256"] == hashlib.sha256(tampered).hexdigest()
    with media_app.extensions["fieldcase"].db.session() as s:
        actions = set(s.scalars(select(CustodyEvent.action).where(CustodyEvent.evidence_id == eid)))
    assert "mismatch" in actions
