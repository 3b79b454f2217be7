"""One played field day: its phones, the server's answers so far, the checks so far, and the line to the server.

The story (`story.py`), the checks (`checks.py`) and the report (`report.py`) are separate modules that share
this state: the story fills it in step by step, the checks compare it with what was promised, the report
prints it. The plumbing every step needs (an admin GET, a login, a new phone, a push, a photo, the ledger
rows of a device read from the database) is here, once.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from subprocess import CompletedProcess
from typing import Any

import requests
from sqlalchemy import select

from backend.core.db import Database
from backend.core.models import LedgerRecord
from backend.demo import scenario
from backend.demo.flaky_line import FlakyLine
from backend.demo.people import PASSWORD, Person
from backend.demo.synthetic import photo
from sync.client import Phone, SimulatedCutOff


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
    """One offline visit as the phone made it: its case and inspection ids and how many records it queued."""

    phone: Phone
    client_case_id: str
    inspection_id: str
    records: int


class FieldDay:
    """Plays the story against a running server and checks it; `echo` is where the report goes.

    The attributes annotated below are set by the step that reaches them; one that is not set means the day
    did not get that far, and the later steps and the report skip what depends on it.
    """

    # the field (story.play, checks.check_sync)
    window_start: datetime
    window_end: datetime
    morning: Visit
    afternoon: Visit
    market_cid: str
    retry: dict[str, Any] | None
    wang_push: dict[str, Any] | None
    li_push: dict[str, Any] | None
    case_id: str | None
    case: dict[str, Any]
    market_case_id: str | None
    # the office (story.office)
    clips: dict[int, str]
    scan: str
    office_push: dict[str, Any] | None
    line: FlakyLine
    uploads: dict[str, dict[str, Any]]
    purged: dict[str, dict[str, Any]]
    kept: dict[str, dict[str, Any]]
    server_items: dict[str, dict[str, Any]]
    coverage: dict[str, Any]
    # the desk (story.hotline, story.clue_to_case, story.audit)
    clue: dict[str, Any]
    linked: dict[str, Any]
    public_clue: dict[str, Any]
    public_text: str
    issues: list[dict[str, Any]]
    review: dict[str, Any] | None
    unreviewed: list[str]
    # the archive (story.archive)
    server_key: str
    server_sm_key: str
    package: Path
    package_names: list[str]
    manifest: dict[str, Any]
    verdict: CompletedProcess[str]
    tampered: Path
    tampered_name: str
    tampered_verdict: CompletedProcess[str]
    exported: list[dict[str, Any]]
    # the day in figures (checks.check_statistics)
    stats: dict[str, Any]

    def __init__(self, base: str, workdir: Path, cast: dict[str, Person], db: Database,
                 echo: Callable[[str], None]) -> None:
        self.base, self.workdir, self.cast, self.db, self.echo = base, workdir, cast, db, echo
        self.checks = Checks()
        self.phones: dict[str, Phone] = {}
        self.pushes: list[tuple[str, str, dict[str, Any] | None, str]] = []
        self.http = requests.Session()
        self.admin_headers: dict[str, str] = {}
        self.items: dict[str, tuple[str, str]] = {}  # evidence id -> (username, what it is)

    def get(self, path: str) -> Any:
        """The admin's GET of an API path; a failed answer stops the story."""
        resp = self.http.get(self.base + path, headers=self.admin_headers, timeout=15)
        if not resp.ok:
            raise StoryFailed(f"GET {path} answered {resp.status_code}: {resp.text[:200]}")
        return resp.json()

    def headers_for(self, username: str) -> dict[str, str]:
        """Log a member of the cast in: the Authorization header of their requests."""
        token = self.http.post(self.base + "/api/v1/auth/token", timeout=15,
                               json={"username": username, "password": PASSWORD})
        if not token.ok:
            raise StoryFailed(f"{username}'s login answered {token.status_code}")
        return {"Authorization": "Bearer " + token.json()["access_token"]}

    def enrol_phone(self, username: str, start: datetime, suite: str = "intl") -> Phone:
        """A new phone for `username`, its clock set to `start`, logged in and enrolled; `suite` `sm`: an SM2
        phone (records SM2SM3, chained by SM3)."""
        person = self.cast[username]
        phone = Phone(self.workdir / "phones" / username, self.base, clock=Clock(start), suite=suite)
        phone.login(username, PASSWORD)
        phone.enrol(f"{person.name}的手机 ({person.english}'s phone)")
        self.phones[username] = phone
        return phone

    def ledger(self, device_id: str) -> tuple[int, int, Counter[str]]:
        """Rows, distinct ops and statuses the server's ledger holds for a device, read from the database."""
        with self.db.session() as s:
            rows = s.execute(select(LedgerRecord.op, LedgerRecord.status)
                             .where(LedgerRecord.device_id == device_id)).all()
        return len(rows), len({r.op for r in rows}), Counter(r.status for r in rows)

    def chain(self, device_id: str) -> list[tuple[str, str]]:
        """A device's ledgered records in chain order, each (its JWS, the hash the server chained it by)."""
        with self.db.session() as s:
            return [(r.jws, r.hash) for r in s.execute(select(LedgerRecord.jws, LedgerRecord.hash)
                                                       .where(LedgerRecord.device_id == device_id)
                                                       .order_by(LedgerRecord.seq))]

    def push(self, username: str, what: str, **kwargs: Any) -> dict[str, Any] | None:
        """Push a phone's outbox; the answer (or the cut-off) is kept for the report as `what`."""
        try:
            summary = self.phones[username].push(**kwargs)
        except SimulatedCutOff as exc:
            self.pushes.append((username, what, None, str(exc)))
            return None
        self.pushes.append((username, what, summary, ""))
        return summary

    def take_photo(self, username: str, iid: str, caption: str, colour: tuple[int, int, int],
                   taken: datetime) -> str:
        """Take a photo: declared with the time and place its EXIF carries."""
        eid = self.phones[username].capture_evidence(
            photo(caption, colour, taken), "photo", "image/jpeg", inspection_id=iid, captured_at=taken,
            location=scenario.HERE, at=taken)
        self.items[eid] = (username, f"photo '{caption}'")
        return eid

    def tell_queued(self, when: str, username: str, what: str) -> None:
        """Report what a phone did offline and how many signed records wait in its outbox."""
        phone = self.phones[username]
        self.echo(f"offline, {when}: {self.cast[username].name}'s phone {what} "
                  f"-> {len(phone.outbox())} signed record(s) queued")

    def close(self) -> None:
        for phone in self.phones.values():
            phone.close()
        self.http.close()
