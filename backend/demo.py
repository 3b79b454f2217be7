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
"""

from __future__ import annotations

import io
import shutil
import tempfile
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any

import click
import requests
from PIL import Image, ImageDraw
from sqlalchemy import select

from sync.client import SHANGHAI, ApiError, Phone, SimulatedCutOff

from .accounts import create_officer
from .config import Settings
from .db import Database
from .liveserver import running_server
from .models import LedgerRecord
from .schema import prepare

PASSWORD = "demo-password-2026"  # noqa: S105 - throwaway accounts in a temporary database
DISTRICT = "330106"
CENTRE = {"name": "西湖区明日之星培训中心", "region": DISTRICT, "address": "文三路 199 号 3 楼"}
HERE = {"lat": 30.2787, "lon": 120.1303, "accuracy_m": 8.0}
CUT_BATCH = 3  # records per push call in the cut-off push, so the cut lands half way


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
)


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


def photo(caption: str, colour: tuple[int, int, int], taken: datetime) -> bytes:
    """A real JPEG with EXIF, so the declared SHA-256 and size are those of what a phone camera writes."""
    image = Image.new("RGB", (320, 240), colour)
    draw = ImageDraw.Draw(image)
    draw.rectangle((12, 12, 308, 228), outline=(255, 255, 255), width=3)
    draw.text((24, 24), caption, fill=(255, 255, 255))
    exif = Image.Exif()
    exif[0x010F] = "fieldcase-demo"  # Make
    exif[0x0132] = taken.strftime("%Y:%m:%d %H:%M:%S")  # DateTime
    buf = io.BytesIO()
    image.save(buf, format="JPEG", quality=80, exif=exif)
    return buf.getvalue()


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

    # ------------------------------------------------------------------ plumbing

    def _get(self, path: str) -> Any:
        resp = self.http.get(self.base + path, headers=self.admin_headers, timeout=15)
        if not resp.ok:
            raise StoryFailed(f"GET {path} answered {resp.status_code}: {resp.text[:200]}")
        return resp.json()

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

        # Offline, in the morning: 张敏 (education) and 李强 (market) inspect together on 张敏's phone.
        phone = self._phone("zhang.min", now - timedelta(hours=6))
        cid = phone.open_case(CENTRE, summary="群众举报无证开展学科类培训 (complaint: unlicensed academic tutoring)")
        iid = phone.start_inspection(cid, officers=[zhang.id, li.id], location=HERE)
        classroom = phone.capture_evidence(
            photo("classroom, 23 pupils", (150, 60, 50), phone.clock()), "photo", "image/jpeg",
            inspection_id=iid, location=HERE)
        phone.add_finding(iid, "unlicensed", "未取得办学许可证, 现场 23 名学生上数学课 "
                          "(no school licence; 23 pupils in a maths class)", evidence=[classroom])
        exit_photo = phone.capture_evidence(
            photo("emergency exit blocked", (60, 60, 150), phone.clock()), "photo", "image/jpeg",
            inspection_id=iid, location=HERE)
        phone.add_finding(iid, "fire_safety", "安全出口被课桌堵塞 (emergency exit blocked by desks)",
                          evidence=[exit_photo])
        phone.end_inspection(iid, "violation_found", notes="责令立即停止培训 (ordered to stop teaching at once)")
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
        notice = phone.capture_evidence(
            photo("class still running", (50, 130, 60), phone.clock()), "photo", "image/jpeg",
            inspection_id=iid, location=HERE)
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
            echo("")
            echo("== Evidence declared (hash and size signed at capture; files not uploaded in this demo) ==")
            for e in case["evidence"]:
                echo(f"evidence {e['id']}  {e['kind']} {e['size']} bytes sha256 {e['sha256'][:16]}…  "
                     f"{e['status']}")
            if getattr(self, "market_case_id", None):
                echo("")
                echo(f"market regulation's own case for the centre: {self.market_case_id} "
                     "(PROTOCOL §4 merges only within a department)")
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


def _local(stamp: str | None) -> str:
    if not stamp:
        return "open"
    return datetime.fromisoformat(stamp).astimezone(SHANGHAI).strftime("%H:%M:%S")


def run(keep: bool = False) -> int:
    """Play the field day; 0 when every check held, 1 otherwise (with what went wrong)."""
    workdir = Path(tempfile.mkdtemp(prefix="fieldcase-demo-"))
    env = {"FIELDCASE_INSTANCE_DIR": str(workdir / "instance"), "DATABASE_URL": ""}
    settings = Settings.from_env(env)
    db = Database(settings.database_url)
    day: FieldDay | None = None
    failed: list[str] = []
    try:
        prepare(db)
        cast = _create_cast(db)
        with running_server(env, workers=2, log_path=workdir / "server.log") as base:
            click.echo(f"fieldcase demo: server at {base} (SQLite and files in {workdir})")
            click.echo("cast: " + "; ".join(f"{p.label}{' certificate ' + p.cert if p.cert else ''}"
                                            for p in cast.values()))
            day = FieldDay(base, workdir, cast, db, click.echo)
            try:
                day.play()
                day.check()
                day.report()
            finally:
                day.close()
        click.echo("")
        click.echo("== Checks ==")
        for ok, claim in day.checks.results:
            click.echo(f"[{'ok' if ok else 'FAILED'}] {claim}")
        failed = day.checks.failed
    except (StoryFailed, ApiError, requests.RequestException, OSError, RuntimeError, ValueError, KeyError) as exc:
        failed = [f"{type(exc).__name__}: {exc}"]
        if day is not None:
            failed = [*day.checks.failed, *failed]
    finally:
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

