"""`fieldcase demo`: a simulated field day, played by reference phones against the real server.

The demo is the quickest proof that the pieces fit: it starts the production
server (gunicorn, SQLite and an instance folder in a temporary directory),
and lets `sync.client.Phone` — the client written from PROTOCOL.md alone —
talk to it over real HTTP, exactly as an officer's phone would. Every step
that matters is checked, so a broken merge, a record applied twice or a lost
record makes the command fail instead of printing a cheerful report.

The cast: 张敏 and 王芳 of the Xihu district education bureau and 李强 of
market regulation, all holding valid enforcement certificates. There is no
signal at the tutoring centre all day, so each phone opens its own case.
PROTOCOL §4 merges an offline `case.open` into the open case *of the
officer's department*: the two education phones end up with one case, while
market regulation keeps its own.

Back at the office the files go up (PROTOCOL §6): the photos (real JPEGs
whose EXIF time and GPS agree with their declarations), the three clips of
张敏's body camera, and a scan of the signed on-site record that an app
rewrote after it was declared. The line drops half way through the biggest
clip; the phone resumes it from the server's `Upload-Offset`. The scan comes
out `mismatch` and stays on the phone; everything else is `verified` and
purged. The camera was off for 45 seconds in the middle of the inspection,
and no `recording.interruption` explains it: PROTOCOL §7 coverage says `gaps`.

The day starts with a parent's call to the 12345 hotline: a clue for the
centre, routed to the education bureau, with a tracking code for the parent;
once the phones have synced, the desk links it to the merged case and the
public status page says so, without a word of personal data. 周慧, a
reviewer, then reads the audit: the coverage gap, the inspection with no
recording at all and the mismatched scan, and marks the gap reviewed.

Last, 陈静, the bureau's evidence custodian, exports the case's evidence
package (PROTOCOL §8) and checks it the way a court would: offline, with
`fieldcase verify-package` and the server's published custody key. A copy
with one byte of one photo changed must fail the same check.
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import zipfile
from collections import Counter
from collections.abc import Callable, Iterator, Mapping
from contextlib import suppress
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from fractions import Fraction
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import click
import requests
from PIL import Image, ImageDraw
from PIL.ExifTags import GPS, IFD, Base
from PIL.TiffImagePlugin import IFDRational
from requests.adapters import HTTPAdapter
from sqlalchemy import select

from backend.casework.accounts import create_officer
from backend.core.config import Settings
from backend.core.db import Database
from backend.core.models import LedgerRecord
from backend.core.schema import prepare
from backend.liveserver import running_server
from sync.client import SHANGHAI, ApiError, Phone, SimulatedCutOff

PASSWORD = "demo-password-2026"  # noqa: S105 - throwaway accounts in a temporary database
DISTRICT = "330106"
CENTRE = {"name": "西湖区明日之星培训中心", "region": DISTRICT, "address": "文三路 199 号 3 楼"}
HERE = {"lat": 30.2787, "lon": 120.1303, "accuracy_m": 8.0}
CUT_BATCH = 3  # records per push call in the cut-off push, so the cut lands half way
CAMERA = "DSJ-Z8-0042"  # 张敏's body camera
# The camera's clips: its own counter, start and end in seconds from the start of the inspection, size in bytes.
# The inspection lasts 9 minutes; between clips 2 and 3 the camera was off for 45 s (tolerance: 5 s).
INSPECTION_SECONDS = 540
CLIPS = ((1, -4, 200, 384 * 1024), (2, 200, 340, 256 * 1024), (3, 385, 543, 3 * 1024 * 1024))
GAP = (340, 385)


@dataclass(frozen=True)
class Person:
    """One account of the demo; `english` keeps the report readable for those who do not read Chinese."""

    username: str
    name: str
    english: str
    department: str
    region: str
    roles: tuple[str, ...]
    cert: str | None
    id: str = ""

    @property
    def label(self) -> str:
        return f"{self.name} {self.english} ({self.department})"


CAST = (
    Person("admin", "系统管理员", "System Admin", "education", "330100", ("officer", "admin"), None),
    Person("zhang.min", "张敏", "Zhang Min", "education", DISTRICT, ("officer",), "ZJ330106-E-0007"),
    Person("wang.fang", "王芳", "Wang Fang", "education", DISTRICT, ("officer",), "ZJ330106-E-0021"),
    Person("li.qiang", "李强", "Li Qiang", "market", DISTRICT, ("officer",), "ZJ330106-M-0113"),
    Person("chen.jing", "陈静", "Chen Jing", "education", DISTRICT, ("custodian",), None),
    Person("zhou.hui", "周慧", "Zhou Hui", "education", DISTRICT, ("reviewer",), None),
)
COMPLAINANT = {"name": "陈女士", "phone": "13800000000"}  # personal data: must never reach the public page
PACKAGE_PURPOSE = "移送法制审核 (for the legal review of the case file)"


class StoryFailed(Exception):
    """A step of the story could not even be played (as opposed to a check that came out wrong)."""


class Clock:
    """A phone clock set back to earlier today, ticking per reading: records get distinct, plausible times
    that are never ahead of the server (which would earn a `clock_ahead` flag)."""

    def __init__(self, start: datetime, step: timedelta = timedelta(seconds=40)) -> None:
        self.now = start
        self.step = step

    def __call__(self) -> datetime:
        self.now += self.step
        return self.now


def _dms(value: float) -> tuple[IFDRational, IFDRational, IFDRational]:
    """Decimal degrees as EXIF degree/minute/second rationals (seconds to 1/10000)."""
    value = abs(value)
    degrees = int(value)
    minutes = int((value - degrees) * 60)
    seconds = Fraction(round((value - degrees - minutes / 60) * 3600 * 10000), 10000)
    return IFDRational(degrees, 1), IFDRational(minutes, 1), IFDRational(seconds.numerator, seconds.denominator)


def photo(caption: str, colour: tuple[int, int, int], taken: datetime, where: Mapping[str, float] = HERE) -> bytes:
    """A real JPEG with EXIF as a phone camera writes it (capture time with its offset, GPS position), so the
    declared SHA-256 and size are those of a real file and the server's Pillow check has something to read."""
    image = Image.new("RGB", (320, 240), colour)
    draw = ImageDraw.Draw(image)
    draw.rectangle((12, 12, 308, 228), outline=(255, 255, 255), width=3)
    draw.text((24, 24), caption, fill=(255, 255, 255))
    local = taken.astimezone(SHANGHAI)
    exif = Image.Exif()
    exif[Base.Make] = "fieldcase-demo"
    exif[Base.Model] = "phone camera"
    exif[Base.DateTime] = local.strftime("%Y:%m:%d %H:%M:%S")
    sub = exif.get_ifd(IFD.Exif)
    sub[Base.DateTimeOriginal] = local.strftime("%Y:%m:%d %H:%M:%S")
    sub[Base.OffsetTimeOriginal] = "+08:00"
    gps = exif.get_ifd(IFD.GPSInfo)
    gps[GPS.GPSVersionID] = b"\x02\x03\x00\x00"
    gps[GPS.GPSLatitudeRef] = "N" if where["lat"] >= 0 else "S"
    gps[GPS.GPSLongitudeRef] = "E" if where["lon"] >= 0 else "W"
    gps[GPS.GPSLatitude], gps[GPS.GPSLongitude] = _dms(where["lat"]), _dms(where["lon"])
    buf = io.BytesIO()
    image.save(buf, format="JPEG", quality=80, exif=exif)
    return buf.getvalue()


class LineDropped(Exception):
    """Raised inside a request body: the connection goes down with the upload half sent."""


class FlakyLine(HTTPAdapter):
    """张敏's line to the server, over real HTTP: it drops once, half way through one upload.

    The first PUT to `target` sends `cut` bytes of its body (with the whole file's Content-Length) and the
    connection closes, as when the phone leaves the Wi-Fi. What the phone sends afterwards is recorded, so
    the report can show that it asked the server how far it got (HEAD) and sent only the rest.
    """

    def __init__(self, target: str, cut: int) -> None:
        super().__init__()
        self.target, self.cut = target, cut
        self.dropped = False
        self.puts: list[tuple[str | None, int]] = []  # (Content-Range, bytes sent)
        self.probes: list[int] = []  # Upload-Offset answers to the phone's HEAD

    def send(self, request: requests.PreparedRequest, **kwargs: Any) -> requests.Response:
        if urlsplit(request.url or "").path != self.target:
            return super().send(request, **kwargs)
        if request.method == "HEAD":
            resp = super().send(request, **kwargs)
            self.probes.append(int(resp.headers.get("Upload-Offset", "-1")))
            return resp
        if request.method != "PUT":
            return super().send(request, **kwargs)
        content_range = request.headers.get("Content-Range")
        if self.dropped:
            self.puts.append((content_range, int(request.headers.get("Content-Length", "0"))))
            return super().send(request, **kwargs)
        self.dropped = True
        first = request.body.read(self.cut)  # type: ignore[union-attr]  # the phone streams a file slice

        def half_then_drop() -> Iterator[bytes]:
            yield first
            raise LineDropped

        request.body = half_then_drop()
        with suppress(LineDropped):  # urllib3 closes the connection: the server sees the body end early
            super().send(request, **kwargs)
        self.puts.append((content_range, len(first)))
        self._settle(request)
        raise requests.ConnectionError(f"line dropped after {len(first)} bytes (simulated)")

    @staticmethod
    def _settle(request: requests.PreparedRequest) -> None:
        """Give the server the moment it needs to notice the drop, so the demo is the same on every run."""
        headers = {"Authorization": request.headers.get("Authorization", "")}
        last, deadline = None, time.monotonic() + 5
        while time.monotonic() < deadline:
            offset = requests.head(request.url or "", headers=headers, timeout=5).headers.get("Upload-Offset")
            if offset not in (None, "0") and offset == last:
                return
            last = offset
            time.sleep(0.05)


def _create_cast(db: Database) -> dict[str, Person]:
    today = date.today()
    cast: dict[str, Person] = {}
    with db.transaction() as session:
        for p in CAST:
            officer = create_officer(
                session, username=p.username, password=PASSWORD, name=p.name, department=p.department,
                region=p.region, roles=list(p.roles), cert_number=p.cert,
                cert_valid_from=today - timedelta(days=400) if p.cert else None,
                cert_valid_until=today + timedelta(days=700) if p.cert else None)
            cast[p.username] = Person(**{**p.__dict__, "id": officer.id})
    return cast


@dataclass
class Checks:
    """Everything the story promises, with what actually happened when it did not come true."""

    results: list[tuple[bool, str]] = field(default_factory=list)

    def expect(self, ok: bool, claim: str, actual: Any = None) -> bool:
        self.results.append((bool(ok), claim if ok or actual is None else f"{claim} (got: {actual})"))
        return bool(ok)

    @property
    def failed(self) -> list[str]:
        return [claim for ok, claim in self.results if not ok]


@dataclass
class Visit:
    phone: Phone
    client_case_id: str
    inspection_id: str
    records: int


class FieldDay:
    """Plays the story against a running server and checks it; `echo` is where the report goes."""

    def __init__(self, base: str, workdir: Path, cast: dict[str, Person], db: Database,
                 echo: Callable[[str], None]) -> None:
        self.base, self.workdir, self.cast, self.db, self.echo = base, workdir, cast, db, echo
        self.checks = Checks()
        self.phones: dict[str, Phone] = {}
        self.pushes: list[tuple[str, str, dict[str, Any] | None, str]] = []
        self.http = requests.Session()
        self.admin_headers: dict[str, str] = {}
        self.items: dict[str, tuple[str, str]] = {}  # evidence id -> (username, what it is)

    # ------------------------------------------------------------------ plumbing

    def _get(self, path: str) -> Any:
        resp = self.http.get(self.base + path, headers=self.admin_headers, timeout=15)
        if not resp.ok:
            raise StoryFailed(f"GET {path} answered {resp.status_code}: {resp.text[:200]}")
        return resp.json()

    def _headers(self, username: str) -> dict[str, str]:
        token = self.http.post(self.base + "/api/v1/auth/token", timeout=15,
                               json={"username": username, "password": PASSWORD})
        if not token.ok:
            raise StoryFailed(f"{username}'s login answered {token.status_code}")
        return {"Authorization": "Bearer " + token.json()["access_token"]}

    def _phone(self, username: str, start: datetime) -> Phone:
        person = self.cast[username]
        phone = Phone(self.workdir / "phones" / username, self.base, clock=Clock(start))
        phone.login(username, PASSWORD)
        phone.enrol(f"{person.name}的手机 ({person.english}'s phone)")
        self.phones[username] = phone
        return phone

    def _ledger(self, device_id: str) -> tuple[int, int, Counter[str]]:
        """Rows, distinct ops and statuses the server's ledger holds for a device, read from the database."""
        with self.db.session() as s:
            rows = s.execute(select(LedgerRecord.op, LedgerRecord.status)
                             .where(LedgerRecord.device_id == device_id)).all()
        return len(rows), len({r.op for r in rows}), Counter(r.status for r in rows)

    def _push(self, username: str, what: str, **kwargs: Any) -> dict[str, Any] | None:
        try:
            summary = self.phones[username].push(**kwargs)
        except SimulatedCutOff as exc:
            self.pushes.append((username, what, None, str(exc)))
            return None
        self.pushes.append((username, what, summary, ""))
        return summary

    def _photo(self, username: str, iid: str, caption: str, colour: tuple[int, int, int], taken: datetime) -> str:
        """Take a photo: declared with the time and place its EXIF carries."""
        eid = self.phones[username].capture_evidence(
            photo(caption, colour, taken), "photo", "image/jpeg", inspection_id=iid, captured_at=taken,
            location=HERE, at=taken)
        self.items[eid] = (username, f"photo '{caption}'")
        return eid

    def _told(self, when: str, username: str, what: str) -> None:
        phone = self.phones[username]
        self.echo(f"offline, {when}: {self.cast[username].name}'s phone {what} "
                  f"-> {len(phone.outbox())} signed record(s) queued")

    def close(self) -> None:
        for phone in self.phones.values():
            phone.close()
        self.http.close()

    # ------------------------------------------------------------------ the story

    def play(self) -> None:
        token = self.http.post(self.base + "/api/v1/auth/token", timeout=15,
                               json={"username": "admin", "password": PASSWORD})
        if not token.ok:
            raise StoryFailed(f"admin login answered {token.status_code}")
        self.admin_headers = {"Authorization": "Bearer " + token.json()["access_token"]}
        zhang, wang, li = (self.cast[u] for u in ("zhang.min", "wang.fang", "li.qiang"))
        now = datetime.now(SHANGHAI).replace(microsecond=0)
        self.hotline()

        # Offline, in the morning: 张敏 (education) and 李强 (market) inspect together on 张敏's phone. The
        # inspection's times are explicit: its window (start `at` to end `at`) is what the body camera must cover.
        phone = self._phone("zhang.min", now - timedelta(hours=6))
        self.window_start = start = now.replace(second=0) - timedelta(hours=6) + timedelta(minutes=2)
        self.window_end = start + timedelta(seconds=INSPECTION_SECONDS)
        cid = phone.open_case(CENTRE, summary="群众举报无证开展学科类培训 (complaint: unlicensed academic tutoring)",
                              at=start - timedelta(minutes=2))
        iid = phone.start_inspection(cid, officers=[zhang.id, li.id], location=HERE, at=start)
        classroom = self._photo("zhang.min", iid, "classroom, 23 pupils", (150, 60, 50), start + timedelta(seconds=90))
        phone.add_finding(iid, "unlicensed", "未取得办学许可证, 现场 23 名学生上数学课 "
                          "(no school licence; 23 pupils in a maths class)", evidence=[classroom],
                          at=start + timedelta(seconds=150))
        exit_photo = self._photo("zhang.min", iid, "emergency exit blocked", (60, 60, 150),
                                 start + timedelta(seconds=250))
        phone.add_finding(iid, "fire_safety", "安全出口被课桌堵塞 (emergency exit blocked by desks)",
                          evidence=[exit_photo], at=start + timedelta(seconds=300))
        phone.end_inspection(iid, "violation_found", notes="责令立即停止培训 (ordered to stop teaching at once)",
                             at=self.window_end)
        self.morning = Visit(phone, cid, iid, len(phone.outbox()))
        self._told("morning", "zhang.min", "opened a case, inspected with 李强, 2 photos, 2 findings, ended")

        # 李强's phone opens market regulation's own case for the same centre.
        li_phone = self._phone("li.qiang", now - timedelta(hours=5))
        self.market_cid = li_phone.open_case(CENTRE, summary="无照经营 (operating without a business licence)")
        self._told("morning", "li.qiang", "opened market regulation's own case for the centre")

        # Offline, in the afternoon: 王芳 (education) comes back with 李强; her phone never heard of the case.
        phone = self._phone("wang.fang", now - timedelta(hours=2))
        cid = phone.open_case(CENTRE, summary="复查: 停止令执行情况 (follow-up on the stop order)")
        iid = phone.start_inspection(cid, officers=[wang.id, li.id], location=HERE)
        notice = self._photo("wang.fang", iid, "class still running", (50, 130, 60), phone.clock())
        phone.add_finding(iid, "unlicensed", "停止令下达后仍在上课 (still teaching after the stop order)",
                          evidence=[notice])
        phone.end_inspection(iid, "rectification_ordered", notes="限期整改 (rectify by the deadline)")
        self.afternoon = Visit(phone, cid, iid, len(phone.outbox()))
        self._told("afternoon", "wang.fang", "opened a case (no signal: she cannot know of 张敏's), "
                   "inspected with 李强, 1 photo, 1 finding, ended")
        self.echo("")
        self.echo("back in signal: push (张敏's first push is cut off after its first batch), then pull")

        # Back in signal. 张敏's push is cut off after its first batch reached the server; then retried.
        device = self.morning.phone.device_id or ""
        cut = self._push("zhang.min", f"cut off after batch 1 (batches of {CUT_BATCH})",
                         batch_size=CUT_BATCH, fail_after_batches=1)
        self.checks.expect(cut is None, "the first push of 张敏's phone was cut off")
        rows, _, _ = self._ledger(device)
        self.checks.expect(rows == CUT_BATCH and len(self.morning.phone.outbox()) == self.morning.records,
                           f"the cut-off push left {CUT_BATCH} records on the server and the whole outbox "
                           "on the phone", f"{rows} ledgered, outbox {len(self.morning.phone.outbox())}")
        self.retry = self._push("zhang.min", "retry", batch_size=CUT_BATCH)
        self.wang_push = self._push("wang.fang", "push", batch_size=CUT_BATCH)
        self.li_push = self._push("li.qiang", "push")
        for phone in self.phones.values():
            phone.pull()

    # ------------------------------------------------------------------ checking and reporting

    def check(self) -> None:
        c = self.checks
        retry, wang_push = self.retry or {}, self.wang_push or {}
        c.expect(retry.get("counts") == {"duplicate": CUT_BATCH, "applied": self.morning.records - CUT_BATCH},
                 f"the retry answered {CUT_BATCH} duplicates and applied the other "
                 f"{self.morning.records - CUT_BATCH}", retry.get("counts"))
        c.expect(wang_push.get("counts") == {"applied": self.afternoon.records},
                 f"王芳's {self.afternoon.records} records were all applied", wang_push.get("counts"))
        opened = next((r for r in wang_push.get("results", []) if r.get("seq") == 1), {})
        c.expect((opened.get("refs") or {}).get("merged") is True,
                 "王芳's case.open answered refs.merged == true", opened.get("refs"))
        self.case_id = self.morning.phone.server_case_id(self.morning.client_case_id)
        c.expect(bool(self.case_id), "张敏's phone knows the server's case id")
        c.expect(self.afternoon.phone.server_case_id(self.afternoon.client_case_id) == self.case_id,
                 "王芳's phone resolves its own case id to the same case")
        c.expect(self.morning.phone.server_case_id(self.afternoon.client_case_id) == self.case_id,
                 "after pulling, 张敏's phone resolves 王芳's case id too (case_alias)")
        for username, phone in self.phones.items():
            rows, ops, statuses = self._ledger(phone.device_id or "")
            made = len(phone.records())
            c.expect(rows == ops == made and not phone.outbox(),
                     f"{self.cast[username].name}'s {made} record(s) each in the ledger exactly once, "
                     "outbox empty", f"{rows} rows, {ops} ops, outbox {len(phone.outbox())}")
        if not self.case_id:
            return
        self.case = case = self._get(f"/api/v1/cases/{self.case_id}")
        edu_cases = self._get(f"/api/v1/cases?institution_id={case['institution']['id']}&department=education")
        c.expect(edu_cases["total"] == 1, "the education bureau has ONE case for the centre", edu_cases["total"])
        c.expect({a["client_case_id"] for a in case["aliases"]}
                 == {self.morning.client_case_id, self.afternoon.client_case_id},
                 "both phones' case ids are aliases of it", case["aliases"])
        inspections = {i["id"]: i for i in case["inspections"]}
        c.expect(set(inspections) == {self.morning.inspection_id, self.afternoon.inspection_id},
                 "both inspections are attached to it", sorted(inspections))
        c.expect(all(i["flags"] == [] for i in inspections.values()),
                 "no inspection is flagged (two certified officers each, clocks fine)",
                 {k: v["flags"] for k, v in inspections.items()})
        c.expect(len(case["evidence"]) == 3 and all(e["status"] == "declared" for e in case["evidence"]),
                 "three photos are declared on the case", [e["status"] for e in case["evidence"]])
        market = self.phones["li.qiang"].server_case_id(self.market_cid)
        c.expect(bool(market) and market != self.case_id,
                 "market regulation keeps its own case (PROTOCOL §4 merges within a department)", market)
        self.market_case_id = market

    # ------------------------------------------------------------------ back at the office: the files

    def office(self) -> None:
        """Dock the body camera, scan the signed on-site record, upload everything, purge what the server allows."""
        phone = self.phones["zhang.min"]
        iid, start = self.morning.inspection_id, self.window_start
        at = self.window_end + timedelta(minutes=40)
        dock = self.workdir / "dock" / CAMERA
        dock.mkdir(parents=True)
        self.clips: dict[int, str] = {}
        previous: str | None = None
        for n, (index, begin, finish, size) in enumerate(CLIPS):
            path = dock / f"CLIP{index:04d}.MP4"
            path.write_bytes(os.urandom(size))  # stands in for the video: only its bytes matter here
            clip: dict[str, Any] = {"camera_serial": CAMERA, "clip_index": index,
                                    "started_at": start + timedelta(seconds=begin),
                                    "ended_at": start + timedelta(seconds=finish)}
            if previous is not None:
                clip["prev_sha256"] = previous  # the camera chains each clip to the one before
            eid = phone.capture_evidence(path, "video", "video/mp4", inspection_id=iid, captured_at=clip["started_at"],
                                         location=HERE, clip=clip, at=at + timedelta(seconds=5 * n))
            previous = hashlib.sha256(path.read_bytes()).hexdigest()
            self.clips[index] = eid
            self.items[eid] = ("zhang.min", f"clip {CAMERA} #{index} {_local(clip['started_at'])}-"
                                            f"{_local(clip['ended_at'])}")
        scan_path = self.workdir / "scans" / "现场检查笔录.pdf"
        scan_path.parent.mkdir()
        scan_path.write_bytes(b"%PDF-1.4\n% fieldcase demo: signed on-site record\n" + os.urandom(60_000))
        scanned = at + timedelta(minutes=2)
        self.scan = phone.capture_evidence(scan_path, "document", "application/pdf", inspection_id=iid,
                                           captured_at=scanned, at=scanned)
        self.items[self.scan] = ("zhang.min", "scan of the signed on-site record (现场检查笔录)")
        rewritten = bytearray(scan_path.read_bytes())
        rewritten[len(rewritten) // 2] ^= 0x20  # the scanning app "improves" the file after it was declared
        scan_path.write_bytes(bytes(rewritten))
        self.office_push = self._push("zhang.min", "3 clips and a scan imported at the office")
        self.echo("")
        self.echo(f"back at the office: 张敏 docks body camera {CAMERA} ({len(CLIPS)} clips) and scans the signed "
                  "on-site record (the scanning app rewrites it after it was declared); pushed, then both phones "
                  f"upload their files (the line drops once, half way through clip #{CLIPS[-1][0]})")

        # Upload. The line drops half way through the biggest clip; the phone resumes it in the same call.
        big_index, _, _, big_size = CLIPS[-1]
        self.line = FlakyLine(f"/api/v1/evidence/{self.clips[big_index]}/content", big_size // 2)
        phone.session.mount(self.base, self.line)
        self.uploads: dict[str, dict[str, Any]] = {}
        for username in ("zhang.min", "wang.fang"):
            for result in self.phones[username].upload_pending():
                self.uploads[result["evidence_id"]] = result
        self.purged: dict[str, dict[str, Any]] = {}
        for p in self.phones.values():
            for item in p.purgeable():
                if p.purge(item["evidence_id"]):
                    self.purged[item["evidence_id"]] = item
        self.kept = {f["evidence_id"]: f for p in self.phones.values() for f in p.evidence_files()
                     if f["status"] != "purged"}
        self.server_items = {eid: self._get(f"/api/v1/evidence/{eid}") for eid in self.items}
        self.coverage = self._get(f"/api/v1/inspections/{iid}/coverage")
        self.check_office()

    def check_office(self) -> None:
        c, start = self.checks, self.window_start
        push = self.office_push or {}
        c.expect(push.get("counts") == {"applied": len(CLIPS) + 1} and not self.phones["zhang.min"].outbox(),
                 f"张敏's {len(CLIPS) + 1} office records ({len(CLIPS)} clips, 1 scan) were applied",
                 push.get("counts"))
        good = [eid for eid in self.items if eid != self.scan]
        wrong = {self.items[e][1]: (self.uploads.get(e), self.server_items[e]["status"]) for e in good
                 if self.uploads.get(e) != {"evidence_id": e, "status": "verified", "purge_allowed": True}
                 or self.server_items[e]["status"] != "verified" or not self.server_items[e]["purge_allowed"]}
        c.expect(not wrong, f"all {len(good)} photos and clips are verified, with purge_allowed", wrong)
        size = CLIPS[-1][3]
        cut = size // 2
        c.expect(self.line.puts == [(None, cut), (f"bytes {cut}-{size - 1}/{size}", size - cut)]
                 and self.line.probes[-1:] == [cut],
                 f"clip #{CLIPS[-1][0]}'s upload dropped after {cut} bytes and resumed from Upload-Offset {cut}: "
                 f"only the other {size - cut} bytes were sent again",
                 {"puts": self.line.puts, "probes": self.line.probes})
        scan, server = self.uploads.get(self.scan) or {}, self.server_items[self.scan]
        c.expect(scan.get("status") == "mismatch" and scan.get("purge_allowed") is False
                 and str(scan.get("error", "")).startswith("mismatch") and server["status"] == "mismatch"
                 and server["purge_allowed"] is False,
                 "the scan rewritten after its declaration is a mismatch, not purgeable, and the phone reports it",
                 {"phone": scan, "server": server["status"]})
        kept_path = Path(self.kept[self.scan]["path"]) if self.scan in self.kept else None
        c.expect(set(self.purged) == set(good) and set(self.kept) == {self.scan} and kept_path is not None
                 and kept_path.exists() and not any(Path(i["path"]).exists() for i in self.purged.values()),
                 f"the phones purged exactly the {len(good)} verified files and kept the mismatched scan",
                 {"purged": len(self.purged), "kept": [self.items.get(e, ("", e))[1] for e in self.kept]})
        photos = {eid: self.server_items[eid] for eid, (_, what) in self.items.items() if what.startswith("photo")}
        c.expect(all(p["flags"] == [] and (p["media_info"] or {}).get("time_difference_s") == 0
                     and (p["media_info"] or {}).get("distance_m", 1e9) < 5 for p in photos.values()),
                 f"the {len(photos)} photos' EXIF time and GPS agree with their declarations: no flags",
                 {self.items[e][1]: (p["flags"], p["media_info"]) for e, p in photos.items()})
        cov = self.coverage
        window = (_when(cov["window"]["start"]), _when(cov["window"]["end"]))
        c.expect(window == (start, self.window_end),
                 f"the coverage window is the inspection's, {_local(start)}-{_local(self.window_end)}", cov["window"])
        gap = (start + timedelta(seconds=GAP[0]), start + timedelta(seconds=GAP[1]))
        c.expect([(_when(g["start"]), _when(g["end"]), g["seconds"], g["explained"], g.get("reason"))
                  for g in cov["gaps"]] == [(*gap, float(GAP[1] - GAP[0]), False, None)],
                 f"exactly one gap: the {GAP[1] - GAP[0]} s between clips #2 and #3, not explained", cov["gaps"])
        covered = INSPECTION_SECONDS - (GAP[1] - GAP[0])
        c.expect(cov["status"] == "gaps" and cov["covered_seconds"] == covered
                 and cov["ratio"] == round(covered / INSPECTION_SECONDS, 4),
                 f"coverage status gaps: {covered} of {INSPECTION_SECONDS} s covered",
                 {k: cov[k] for k in ("status", "covered_seconds", "ratio")})
        c.expect(not (cov["clip_index_gaps"] or cov["clip_chain_breaks"] or cov["unverified_clips"] or cov["flags"]),
                 "no clip is missing, unverified, flagged or out of the camera's hash chain",
                 {k: cov[k] for k in ("clip_index_gaps", "clip_chain_breaks", "unverified_clips", "flags")})

    def hotline(self) -> None:
        """A parent's call to the hotline becomes a clue, routed by category; the parent gets a tracking code."""
        r = self.http.post(self.base + "/api/v1/clues", headers=self.admin_headers, timeout=15, json={
            "source": "hotline", "institution": CENTRE, "category": "unlicensed", "complainant": COMPLAINANT,
            "description": "家长来电: 该中心无证开展学科类培训 (a parent reports unlicensed academic tutoring)"})
        if r.status_code != 201:
            raise StoryFailed(f"filing the hotline clue answered {r.status_code}: {r.text[:200]}")
        self.clue = r.json()
        self.echo(f"hotline, before the field day: a parent's complaint is clue {self.clue['id']}, routed to "
                  f"{self.clue['department']}; the parent's tracking code is {self.clue['tracking_code']}")

    def clue_to_case(self) -> None:
        """Back at the desk: the clue is linked to the case the phones opened; the parent looks it up."""
        if not getattr(self, "case_id", None):
            return
        r = self.http.post(self.base + f"/api/v1/clues/{self.clue['id']}/case", headers=self.admin_headers,
                           json={}, timeout=15)
        if r.status_code != 201:
            raise StoryFailed(f"turning the clue into a case answered {r.status_code}: {r.text[:200]}")
        self.linked = r.json()
        public = self.http.get(self.base + f"/api/v1/public/clues/{self.clue['tracking_code']}", timeout=15)
        self.public_clue = public.json() if public.ok else {"error": public.status_code}
        self.public_text = public.text
        c = self.checks
        c.expect(self.clue["department"] == "education" and self.linked["existing"] is True
                 and self.linked["case"]["id"] == self.case_id and self.linked["clue"]["status"] == "case",
                 "the hotline clue was routed to education and linked to the merged case, not a new one",
                 {k: self.linked.get(k) for k in ("existing",)} | {"case": self.linked.get("case", {}).get("id")})
        leaked = [v for v in (*COMPLAINANT.values(), CENTRE["name"]) if v in self.public_text]
        c.expect(public.ok and self.public_clue["status"] == "case" and self.public_clue["case_status"] == "registered"
                 and not leaked,
                 "the parent's tracking code shows status case (registered) on the public page, "
                 "with no name, phone number or institution", {"public": self.public_clue, "leaked": leaked})

    def audit(self) -> None:
        """周慧 reads the reviewers' audit of the day and marks the coverage gap reviewed."""
        if not getattr(self, "case_id", None):
            return
        headers = self._headers("zhou.hui")
        day = self.window_start.astimezone(SHANGHAI).date().isoformat()
        issues = self.http.get(self.base + "/api/v1/audit/issues", headers=headers, timeout=30,
                               params={"from": day, "page_size": 100})
        if not issues.ok:
            raise StoryFailed(f"the audit answered {issues.status_code}: {issues.text[:200]}")
        self.issues = issues.json()["items"]
        kinds = {(i["kind"], link["id"]) for i in self.issues for link in i["links"]
                 if link["rel"] in ("inspection", "evidence")}
        expected = {("coverage_gap", self.morning.inspection_id), ("no_recording", self.afternoon.inspection_id),
                    ("evidence_mismatch", self.scan)}
        gap = next((i for i in self.issues if i["kind"] == "coverage_gap"), None)
        self.review = None
        if gap is not None:
            comment = "摄像机换电池 45 秒, 已约谈当事执法人员 (battery change; officer interviewed)"
            r = self.http.post(self.base + f"/api/v1/audit/issues/{gap['key']}/reviews", headers=headers, timeout=15,
                               json={"comment": comment})
            self.review = r.json() if r.status_code == 201 else {"error": r.status_code}
        left = self.http.get(self.base + "/api/v1/audit/issues", headers=headers, timeout=30,
                             params={"from": day, "reviewed": "false", "page_size": 100}).json()["items"]
        self.unreviewed = [i["kind"] for i in left]
        c = self.checks
        c.expect(expected <= kinds, "the audit shows 张敏's coverage gap, 王芳's inspection with no recording at all "
                 "and the mismatched scan", sorted(kinds))
        c.expect(bool(self.review) and (self.review or {}).get("reviewed") is True
                 and "coverage_gap" not in self.unreviewed,
                 "周慧's review of the gap is logged and the gap leaves the unreviewed list",
                 {"review": self.review, "unreviewed": self.unreviewed})

    def report_desk(self) -> None:
        echo = self.echo
        echo("")
        echo("== The hotline clue ==")
        echo(f"clue {self.clue['id']} ({self.clue['source']}, category {self.clue['category']}) routed to "
             f"{self.clue['department']}, tracking code {self.clue['tracking_code']}")
        echo(f"linked to case {self.linked['case']['id']} (existing case: {str(self.linked['existing']).lower()})")
        echo(f"public page GET /api/v1/public/clues/{self.clue['tracking_code']}: {self.public_text.strip()}")
        echo("")
        echo("== Reviewers' audit (周慧) ==")
        for issue in self.issues:
            echo(f"{issue['kind']}: {issue['summary']}")
        if self.review:
            echo(f"reviewed {self.review.get('key')}: {(self.review.get('review') or {}).get('comment')}")
        echo(f"still unreviewed: {', '.join(self.unreviewed) or 'nothing'}")

    def archive(self) -> None:
        """The custodian exports the case package; `fieldcase verify-package` checks it, and a tampered copy."""
        if not getattr(self, "case_id", None):
            return
        headers = self._headers("chen.jing")
        key = self.http.get(self.base + "/api/v1/custody/public-key", timeout=15).json()
        self.server_key = key["public_key"]
        folder = self.workdir / "package"
        folder.mkdir()
        self.package = folder / f"case-{self.case_id}.zip"
        with self.http.get(self.base + f"/api/v1/cases/{self.case_id}/package", headers=headers, stream=True,
                           params={"purpose": PACKAGE_PURPOSE}, timeout=60) as resp:
            if not resp.ok:
                raise StoryFailed(f"the package export answered {resp.status_code}: {resp.text[:200]}")
            with self.package.open("wb") as out:
                for chunk in resp.iter_content(64 * 1024):
                    out.write(chunk)
        with zipfile.ZipFile(self.package) as zf:
            self.package_names = zf.namelist()
            self.manifest = json.loads(zf.read("manifest.json"))
        self.verdict = self._verify_package(self.package)
        self.tampered = folder / f"case-{self.case_id}-one-byte-changed.zip"
        self.tampered_name = _tamper_one_photo(self.package, self.tampered)
        self.tampered_verdict = self._verify_package(self.tampered)
        self.exported = [e for eid in self.items for e in self._get(f"/api/v1/evidence/{eid}/custody")["events"]
                         if e["action"] == "exported"]
        self.check_archive()

    def _verify_package(self, path: Path) -> subprocess.CompletedProcess[str]:
        """Exactly what a legal reviewer runs: the CLI in a fresh process, no server, no database."""
        return subprocess.run([sys.executable, "-m", "backend", "verify-package", str(path),
                               "--public-key", self.server_key],
                              capture_output=True, text=True, timeout=120, check=False,
                              env={**os.environ, "DATABASE_URL": "", "FIELDCASE_INSTANCE_DIR": str(self.workdir)})

    def check_archive(self) -> None:
        c, verdict, tampered = self.checks, self.verdict, self.tampered_verdict
        files = [n for n in self.package_names if n.startswith("files/")]
        c.expect({"manifest.json", "evidence-list.csv", "evidence-list.html"} <= set(self.package_names)
                 and len(files) == len(self.items) - 1,
                 f"the package holds the manifest, the evidence list (CSV and HTML) and the {len(self.items) - 1} "
                 "verified files (the mismatched scan is listed, its bytes are not the evidence)",
                 sorted(self.package_names))
        c.expect(verdict.returncode == 0 and verdict.stdout.rstrip().endswith(": OK"),
                 "fieldcase verify-package accepts the package with the server's published key",
                 (verdict.returncode, verdict.stdout[-300:], verdict.stderr[-300:]))
        c.expect(tampered.returncode == 1 and "PROBLEM" in tampered.stdout
                 and self.tampered_name.rsplit("/", 1)[-1] in tampered.stdout,
                 f"a copy with one byte of {self.tampered_name} changed fails verification, naming the file",
                 (tampered.returncode, tampered.stdout[-300:]))
        c.expect(len(self.exported) == len(self.items)
                 and all(e.get("purpose") == PACKAGE_PURPOSE and e["actor"] == self.cast["chen.jing"].id
                         for e in self.exported),
                 "the export is a custody event of every item, with who asked and why",
                 [(e["actor"], e.get("purpose")) for e in self.exported])

    def report_archive(self) -> None:
        echo = self.echo
        echo("")
        echo("== Evidence package, checked offline (PROTOCOL §8) ==")
        head = self.manifest["custody"]["tree_head"]
        echo(f"陈静 (custodian) exported {self.package.name}: {self.package.stat().st_size:,} bytes, "
             f"{len(self.package_names)} entries; purpose: {PACKAGE_PURPOSE}")
        echo(f"signed tree head: size {head['tree_size']}, root {head['root_hash'][:16]}…, "
             f"custody key {self.manifest['custody']['key_id']}")
        echo(f"$ fieldcase verify-package {self.package.name} --public-key {self.server_key}")
        for line in (self.verdict.stderr + self.verdict.stdout).splitlines():
            echo(f"  {_short_hashes(line)}")
        echo(f"$ fieldcase verify-package {self.tampered.name} ...   (one byte of {self.tampered_name} changed)")
        for line in self.tampered_verdict.stdout.splitlines():
            echo(f"  {_short_hashes(line)}")
        echo(f"  (exit status {self.tampered_verdict.returncode})")

    def report_evidence(self) -> None:
        echo = self.echo
        echo("")
        echo("== Evidence: uploaded, verified, purged (PROTOCOL §6) ==")
        size = CLIPS[-1][3]
        for username in ("zhang.min", "wang.fang"):
            echo(f"{self.cast[username].name}'s phone:")
            for eid, (owner, what) in self.items.items():
                if owner != username:
                    continue
                server = self.server_items[eid]
                fate = "purged from the phone" if eid in self.purged else "KEPT on the phone"
                echo(f"  {what}: {server['size']:,} bytes, {server['status']}, "
                     f"purge_allowed {str(server['purge_allowed']).lower()}, {fate}")
                if eid == self.clips.get(CLIPS[-1][0]) and self.line.puts:
                    resumed = self.line.puts[1:]
                    echo(f"    the line dropped after {self.line.puts[0][1]:,} of {size:,} bytes; HEAD answered "
                         f"Upload-Offset {self.line.probes[-1] if self.line.probes else '?'}; "
                         + (f"the phone resumed with Content-Range {resumed[0][0]} ({resumed[0][1]:,} bytes)"
                            if resumed else "the phone did not resume"))
                info = server.get("media_info") or {}
                if what.startswith("photo") and info:
                    echo(f"    EXIF: taken {_local(info.get('exif_captured_at'))} "
                         f"({info.get('time_difference_s')} s from the declaration), GPS {info.get('distance_m')} m "
                         f"from it, camera {info.get('camera_make')}; flags: {', '.join(server['flags']) or 'none'}")
                if server["status"] == "mismatch":
                    up = server["uploads"][-1]
                    echo(f"    declared sha256 {server['sha256'][:16]}…; the server received {up['received_size']:,} "
                         f"bytes with sha256 {(up['received_sha256'] or '')[:16]}… (kept apart, never served as "
                         "the evidence)")
                    error = (self.uploads.get(eid) or {}).get("error") or ""
                    echo(f"    the phone reports: {_short_hashes(error)}")
        purged_bytes = sum(int(i["size"]) for i in self.purged.values())
        echo(f"the phones purged {len(self.purged)} file(s), {purged_bytes:,} bytes; kept: "
             + (", ".join(self.items.get(e, ("", e))[1] for e in self.kept) or "nothing"))
        cov = self.coverage
        echo("")
        echo("== Body-camera coverage of 张敏's inspection (PROTOCOL §7) ==")
        echo(f"window {_local(cov['window']['start'])}-{_local(cov['window']['end'])} ({INSPECTION_SECONDS} s), "
             f"clips of {CAMERA} #{CLIPS[0][0]}-#{CLIPS[-1][0]}")
        echo(f"covered {cov['covered_seconds']} s, ratio {cov['ratio']}, status {cov['status']}")
        for g in cov["gaps"]:
            why = f"explained: {g['reason']}" if g["explained"] else "NOT explained (no recording.interruption)"
            echo(f"gap {_local(g['start'])}-{_local(g['end'])}: {g['seconds']} s, {why}")
        echo(f"clip numbers missing: {len(cov['clip_index_gaps']) or 'none'}; hash chain breaks: "
             f"{len(cov['clip_chain_breaks']) or 'none'}; unverified clips: {len(cov['unverified_clips']) or 'none'}")

    def report(self) -> None:
        echo, names = self.echo, {p.id: p for p in self.cast.values()}
        echo("")
        echo("== The merged case (one case, two phones) ==")
        case = getattr(self, "case", None)
        if case:
            inst = case["institution"]
            echo(f"case {case['id']}  status {case['status']}, department {case['department']}, "
                 f"region {case['region']} 西湖区 Xihu, version {case['version']}")
            echo(f"institution {inst['name']} ({inst['id']}; {inst['address']}; "
                 f"{'provisional, not in the registry' if inst['provisional'] else 'registered'})")
            by_device = {p.device_id: u for u, p in self.phones.items()}
            for alias in case["aliases"]:
                who = self.cast[by_device.get(alias["device_id"], "admin")].name
                how = "merged into it" if alias["merged"] else "opened it"
                echo(f"  alias {alias['client_case_id']}  from {who}'s phone: {how}")
            echo("")
            echo("== Inspections ==")
            for n, insp in enumerate(case["inspections"], 1):
                crew = ", ".join(names[o].label if o in names else o for o in insp["officers"])
                start, end = _local(insp["started_at"]), _local(insp["ended_at"])
                echo(f"{n}. {insp['id']}  {start}-{end}  outcome {insp['outcome']}")
                echo(f"   officers: {crew}")
                echo(f"   flags: {', '.join(insp['flags']) or 'none'}")
                for f in insp["findings"]:
                    echo(f"   finding [{f['category']}] {f['description']}  ({len(f['evidence'])} photo)")
            if getattr(self, "market_case_id", None):
                echo("")
                echo(f"market regulation's own case for the centre: {self.market_case_id} "
                     "(PROTOCOL §4 merges only within a department)")
        if getattr(self, "server_items", None):
            self.report_evidence()
        if getattr(self, "issues", None) is not None and getattr(self, "linked", None):
            self.report_desk()
        if getattr(self, "tampered_verdict", None):
            self.report_archive()
        echo("")
        echo("== Pushes ==")
        for username, what, summary, error in self.pushes:
            who = f"{self.cast[username].name}'s phone, {what}:"
            if summary is None:
                echo(f"{who} no answer ({error})")
                continue
            counts = Counter(summary["counts"])
            echo(f"{who} applied {counts['applied']}, duplicate {counts['duplicate']}, "
                 f"deferred {counts['deferred']}, conflict {counts['conflict']}, invalid {counts['invalid']}, "
                 f"rejected {counts['rejected']}  in {summary['batches']} batch(es)")
        echo("")
        echo("== Ledger heads per device ==")
        for username, phone in self.phones.items():
            device = self._get(f"/api/v1/devices/{phone.device_id}")
            rows, _, statuses = self._ledger(phone.device_id or "")
            echo(f"{self.cast[username].name}'s phone {device['id']}: head seq {device['head']['seq']} "
                 f"hash {device['head']['hash'][:12]}…, ledger {rows} ({dict(statuses)}), "
                 f"deferred {device['deferred']['count']}, quarantined {device['quarantined']}, "
                 f"outbox {len(phone.outbox())}")
        if getattr(self, "stats", None):
            self.report_statistics()

    # ------------------------------------------------------------------ the day in figures

    def statistics(self) -> None:
        """The admin's `GET /api/v1/stats` for the story's day(s), checked against what the story itself did.

        The expected figures come from the story's own answers (the cases, their findings, each inspection's
        own coverage answer, the evidence statuses, the push counts), so the check shows the statistics agree
        with the rest of the server rather than with numbers written down here.
        """
        if not (getattr(self, "case_id", None) and getattr(self, "market_case_id", None)):
            return
        first = self.window_start.astimezone(SHANGHAI).date()
        last = datetime.now(SHANGHAI).date()
        self.stats = self._get(f"/api/v1/stats?from={first.isoformat()}&to={last.isoformat()}")
        market = self._get(f"/api/v1/cases/{self.market_case_id}")
        departments = Counter((self.case["department"], market["department"]))
        categories = Counter({f["category"] for i in self.case["inspections"] for f in i["findings"]})
        ended = [i["id"] for i in self.case["inspections"] if i["ended_at"]]
        recording = Counter(self._get(f"/api/v1/inspections/{iid}/coverage")["status"] for iid in ended)
        recorded = recording["complete"] + recording["explained"]
        statuses = Counter(item["status"] for item in self.server_items.values())
        answered = [Counter(summary["counts"]) for _, _, summary, _ in self.pushes if summary]
        rejected, invalid = sum(c["rejected"] for c in answered), sum(c["invalid"] for c in answered)
        st = self.stats
        got = {"cases": (st["cases"]["opened"], st["cases"]["by_department"], st["cases"]["by_category"],
                         st["cases"]["without_findings"]),
               "recording": (st["recording"]["inspections_ended"], st["recording"]["complete_or_explained"],
                             {k: v for k, v in st["recording"]["by_status"].items() if v}),
               "evidence": (st["evidence"]["verified"], st["evidence"]["mismatch"],
                            st["evidence"]["verification_delay_seconds"]["count"]),
               "rejected": (st["rejected"]["quarantined"], st["rejected"]["invalid"]),
               "clues": (st["clues"]["received"], st["clues"]["converted"])}
        want = {"cases": (2, dict(sorted(departments.items())), dict(sorted(categories.items())), 1),
                "recording": (len(ended), recorded, dict(recording)),
                "evidence": (statuses["verified"], statuses["mismatch"], statuses["verified"]),
                "rejected": (rejected, invalid), "clues": (1, 1)}
        self.checks.expect(
            got == want,
            f"the statistics match the story: 2 cases opened ({_counts(departments)}), findings "
            f"{_counts(categories)}, {recorded} of {len(ended)} ended inspections fully recorded, "
            f"{statuses['verified']} items verified, {statuses['mismatch']} in mismatch, {rejected} records rejected, "
            "1 clue received and converted",
            {"got": got, "want": want})

    def report_statistics(self) -> None:
        echo, st = self.echo, self.stats
        clues, cases, rec, ev, rej = (st[k] for k in ("clues", "cases", "recording", "evidence", "rejected"))
        delay = ev["verification_delay_seconds"]
        echo("")
        echo(f"== Statistics (GET /api/v1/stats as the admin, {st['period']['from']} to {st['period']['to']}) ==")
        rows = (
            ("clues received / converted / rate", f"{clues['received']} / {clues['converted']} / "
                                                  f"{_figure(clues['conversion_rate'])}"),
            ("cases opened", f"{cases['opened']} ({_counts(cases['by_status'])}; {_counts(cases['by_department'])})"),
            ("cases by category of findings", f"{_counts(cases['by_category']) or 'none'}; "
                                              f"without findings {cases['without_findings']}"),
            ("cases closed / median days to close", f"{cases['closed']} / {_figure(cases['to_close_days']['median'])}"),
            ("inspections ended / fully recorded", f"{rec['inspections_ended']} / {rec['complete_or_explained']} "
                                                   f"(share {_figure(rec['share'])}; {_counts(rec['by_status'])})"),
            ("evidence verified / delay median, p90", f"{ev['verified']} / {_figure(delay['median'])} s, "
                                                      f"{_figure(delay['p90'])} s"),
            ("evidence in mismatch", f"{ev['mismatch']}"),
            ("records rejected / invalid", f"{rej['quarantined']} / {rej['invalid']}"),
        )
        for label, value in rows:
            echo(f"{label:<40}{value}")
        for row in st["regions"]:
            if any(row[k] for k in ("clues_received", "cases_opened", "inspections_ended", "evidence_verified",
                                    "rejected_records", "invalid_records")):
                echo(f"district {row['region']} {row['name_zh']}: cases {row['cases_opened']}, inspections "
                     f"{row['inspections_ended']} (fully recorded {row['inspections_recorded']}), evidence verified "
                     f"{row['evidence_verified']} (mismatch {row['evidence_mismatch']}), clues {row['clues_received']}")


def _counts(counts: Mapping[str, int]) -> str:
    """`a 1, b 2` for the non-zero entries, in key order."""
    return ", ".join(f"{key} {n}" for key, n in sorted(counts.items()) if n)


def _figure(value: float | None) -> str:
    return "-" if value is None else str(value)


def _tamper_one_photo(source: Path, target: Path) -> str:
    """Copy the package with one byte of its first photo flipped; answers the entry changed."""
    with zipfile.ZipFile(source) as zin, zipfile.ZipFile(target, "w", zipfile.ZIP_DEFLATED) as zout:
        victim = next(n for n in zin.namelist() if n.startswith("files/") and n.lower().endswith((".jpg", ".jpeg")))
        for info in zin.infolist():
            data = zin.read(info)
            if info.filename == victim:
                changed = bytearray(data)
                changed[len(changed) // 2] ^= 0x01
                data = bytes(changed)
            zout.writestr(info, data)
    return victim


def _short_hashes(text: str) -> str:
    """SHA-256 hex digests cut to 12 digits, so a line of the report stays readable."""
    return re.sub(r"\b([0-9a-f]{12})[0-9a-f]{52}\b", "\\1…", text)


def _when(stamp: str) -> datetime:
    return datetime.fromisoformat(stamp)


def _local(stamp: str | datetime | None) -> str:
    if not stamp:
        return "open"
    when = stamp if isinstance(stamp, datetime) else datetime.fromisoformat(stamp)
    return when.astimezone(SHANGHAI).strftime("%H:%M:%S")


def _print_checks(day: FieldDay) -> None:
    click.echo("")
    click.echo("== Checks ==")
    for ok, claim in day.checks.results:
        click.echo(f"[{'ok' if ok else 'FAILED'}] {claim}")


def _wait_for_interrupt() -> None:
    """Block until Ctrl-C (SIGINT) or SIGTERM; the caller's `finally` then stops the server."""

    def _stop(_signum: int, _frame: Any) -> None:
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, _stop)
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        click.echo("stopping the server")
    finally:
        signal.signal(signal.SIGTERM, previous)


def serve_demo(base: str, workdir: Path, wait: Callable[[], None] = _wait_for_interrupt) -> None:
    """`fieldcase demo --serve`: say where the console is and how to sign in, then keep the server up."""
    reviewer = next(p for p in CAST if "reviewer" in p.roles)
    custodian = next(p for p in CAST if "custodian" in p.roles)
    click.echo("")
    click.echo("== The server stays up with the demo's data ==")
    click.echo(f"review console: {base}/console/")
    click.echo(f"reviewer login: {reviewer.username} / {PASSWORD}  ({reviewer.name} {reviewer.english})")
    click.echo(f"custodian login: {custodian.username} / {PASSWORD}  ({custodian.name} {custodian.english})")
    click.echo(f"API: {base}/api/v1/docs")
    click.echo(f"database: {workdir / 'instance' / 'fieldcase.db'}")
    click.echo("press Ctrl-C to stop")
    wait()


def run(keep: bool = False, serve: bool = False, port: int | None = None,
        wait: Callable[[], None] = _wait_for_interrupt) -> int:
    """Play the field day; 0 when every check held, 1 otherwise (with what went wrong).

    With `serve`, a day whose checks all held leaves the server running on its data (the review console at
    /console/) until `wait` returns: Ctrl-C or SIGTERM for the command line.
    """
    workdir = Path(tempfile.mkdtemp(prefix="fieldcase-demo-"))
    env = {"FIELDCASE_INSTANCE_DIR": str(workdir / "instance"), "DATABASE_URL": ""}
    settings = Settings.from_env(env)
    db = Database(settings.database_url)
    day: FieldDay | None = None
    failed: list[str] = []
    quiet = logging.NullHandler()  # the phones' own warnings (the mismatch) are in the report already
    phone_log = logging.getLogger("fieldcase.phone")
    phone_log.addHandler(quiet)
    try:
        prepare(db)
        cast = _create_cast(db)
        with running_server(env, workers=2, port=port, log_path=workdir / "server.log") as base:
            click.echo(f"fieldcase demo: server at {base} (SQLite and files in {workdir})")
            click.echo("cast: " + "; ".join(f"{p.label}{' certificate ' + p.cert if p.cert else ''}"
                                            for p in cast.values()))
            day = FieldDay(base, workdir, cast, db, click.echo)
            try:
                day.play()
                day.check()
                day.office()
                day.clue_to_case()
                day.audit()
                day.archive()
                day.statistics()
                day.report()
            finally:
                day.close()
            _print_checks(day)
            failed = day.checks.failed
            if serve and not failed:
                serve_demo(base, workdir, wait)
    except (StoryFailed, ApiError, requests.RequestException, OSError, RuntimeError, ValueError, KeyError) as exc:
        failed = [f"{type(exc).__name__}: {exc}"]
        if day is not None:
            failed = [*day.checks.failed, *failed]
    finally:
        phone_log.removeHandler(quiet)
        db.dispose()
        if keep:
            click.echo(f"kept {workdir} (server log: {workdir / 'server.log'})")
        else:
            shutil.rmtree(workdir, ignore_errors=True)
    if failed:
        click.echo("demo FAILED:", err=True)
        for claim in failed:
            click.echo(f"  - {claim}", err=True)
        return 1
    click.echo("demo finished: OK")
    return 0
