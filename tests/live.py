"""Helpers for tests against the real server (gunicorn, several workers): its processes, its sockets, its locks.

Everything here observes or disturbs the running server from outside, as an
operator (or a crashing kernel) would: process ids come from /proc, what a
connection carries from `ss`, locks are taken on the database with a
connection of the test's own. Nothing reaches into the server's code.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import requests
from sqlalchemy import create_engine, text

from backend.core.config import Settings
from backend.liveserver import running_server
from sync.client import SHANGHAI, Phone
from tests.conftest import PASSWORD

CENTRE_REGION = "330106"


class FieldClock:
    """A phone clock that starts a few hours ago and ticks on every reading (records get distinct times)."""

    def __init__(self, step: timedelta = timedelta(seconds=5)) -> None:
        self.now = datetime.now(SHANGHAI).replace(microsecond=0) - timedelta(hours=6)
        self.step = step

    def __call__(self) -> datetime:
        self.now += self.step
        return self.now


@contextmanager
def live_server(settings: Settings, log_path: Path, *, workers: int = 2, **env: str) -> Iterator[str]:
    """The production server (`running_server`: gunicorn, gthread) on the test's database and instance folder."""
    full = {"DATABASE_URL": settings.database_url, "FIELDCASE_INSTANCE_DIR": str(settings.instance_dir), **env}
    with running_server(full, workers=workers, log_path=log_path) as base:
        yield base


def access_statuses(log_path: Path, path_part: str) -> Counter:
    """HTTP statuses of the access lines (backend.web.request_log: one JSON object each) whose path holds
    `path_part`."""
    out: Counter = Counter()
    for line in log_path.read_text(encoding="utf-8", errors="replace").splitlines():
        if line.startswith("{"):
            entry = json.loads(line)
            if entry.get("msg") == "access" and path_part in entry.get("path", ""):
                out[entry["status"]] += 1
    return out


def port_of(base: str) -> int:
    port = urlsplit(base).port
    assert port is not None
    return port


def new_phone(path: Path, base: str, officer: Any, *, label: str = "phone", **options: Any) -> Phone:
    """A reference phone, logged in and enrolled, that opens a new connection for every request.

    `Connection: close` keeps at most one connection of this phone open at a time, so the test can tell
    which server process is serving the phone's request in flight.
    """
    session = requests.Session()
    session.headers["Connection"] = "close"
    options.setdefault("clock", FieldClock())
    phone = Phone(path, base, session=session, **options)
    phone.login(officer.username, PASSWORD)
    phone.enrol(label)
    return phone


def field_day(phone: Phone, visits: int, findings: int, officers: list[str] | None = None) -> int:
    """Queue `visits` inspections of `findings` findings each (plus open, start, end); returns the record count."""
    notes = "现场检查发现未取得办学许可证擅自招收学员，教室消防通道堆放杂物。" * 4  # a realistic, wordy finding
    for n in range(visits):
        case = phone.open_case({"name": f"明日之星培训中心第{n}分部", "region": CENTRE_REGION}, summary=f"举报核查 {n}")
        inspection = phone.start_inspection(case, officers=officers or [])
        for k in range(findings):
            phone.add_finding(inspection, ("unlicensed", "fire_safety")[k % 2], f"{notes}（第{k}项）")
        phone.end_inspection(inspection, "violation_found")
    return visits * (findings + 3)


# --------------------------------------------------------------------------- the server's processes


def children(pid: int) -> list[int]:
    """Child processes of `pid`, from /proc (every thread's list: a child may be forked by any thread)."""
    out: list[int] = []
    for task in Path(f"/proc/{pid}/task").glob("*"):
        try:
            out.extend(int(c) for c in (task / "children").read_text().split())
        except (FileNotFoundError, ProcessLookupError):
            continue
    return sorted(set(out))


def _cmdline(pid: int) -> list[str]:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace").split("\0")
    except FileNotFoundError:
        return []


def master_pid(port: int) -> int:
    """The gunicorn master: this test process's child started as `python -m backend serve --port <port>`."""
    for pid in children(os.getpid()):
        args = _cmdline(pid)
        if "serve" in args and str(port) in args:
            return pid
    raise AssertionError(f"no server process for port {port} among {children(os.getpid())}")


def worker_pids(port: int) -> list[int]:
    return children(master_pid(port))


def wait_for_workers(port: int, count: int, timeout: float = 60.0) -> list[int]:
    """Until the master has `count` workers and every one answers (a respawned worker takes a while to boot)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        pids = worker_pids(port)
        if len(pids) == count:
            try:  # Connection: close, several times, so every worker gets the chance to show it is up
                if all(requests.get(f"http://127.0.0.1:{port}/api/v1/health", timeout=5,
                                    headers={"Connection": "close"}).ok for _ in range(count * 2)):
                    return pids
            except requests.RequestException:
                pass
        time.sleep(0.1)
    raise AssertionError(f"the server did not get back to {count} workers")


# --------------------------------------------------------------------------- connections in flight

_SS = shutil.which("ss")
_PEER = re.compile(r"\S+:(\d+)\s+\S+:(\d+)")
_PID = re.compile(r"pid=(\d+)")


def need_ss() -> None:
    if _SS is None:
        pytest.skip("needs `ss` (iproute2) to see which worker holds a connection")


@dataclass(frozen=True)
class Served:
    """One connection as the server sees it: the worker holding it, and what went through it so far."""

    worker: int
    client_port: int
    received: int  # request bytes the kernel delivered to the worker's socket
    unread: int  # of those, not yet read by the worker
    sent: int  # response bytes the worker wrote


def served_connections(port: int) -> list[Served]:
    """Established connections on the server's port, with the worker process holding each (from `ss -tinp`)."""
    assert _SS is not None
    out = subprocess.run([_SS, "-Htinp", "state", "established", f"( sport = :{port} )"],
                         capture_output=True, text=True, timeout=10, check=False).stdout
    found: list[Served] = []
    lines = out.splitlines()
    for i, line in enumerate(lines):
        if line.startswith((" ", "\t")):
            continue
        parts = line.split()
        peer = _PEER.search(line)
        pid = _PID.search(line)
        if not peer or not pid or len(parts) < 2:
            continue
        info = lines[i + 1] if i + 1 < len(lines) and lines[i + 1].startswith((" ", "\t")) else ""
        stats = dict(re.findall(r"(bytes_received|bytes_sent):(\d+)", info))
        found.append(Served(worker=int(pid.group(1)), client_port=int(peer.group(2)),
                            received=int(stats.get("bytes_received", 0)), unread=int(parts[0]),
                            sent=int(stats.get("bytes_sent", 0))))
    return found


@dataclass
class WorkerKiller:
    """Kills (SIGKILL) the worker serving a request in flight, once the request is in the state `ready` asks for.

    Runs in its own thread while the test drives a phone. `ready(served)` looks at the one connection in
    flight (the phone sends `Connection: close`); `delay(n)` adds a pause before the n-th kill, to hit a
    later moment of the request. When the answer went out during the pause, the next request gets half
    the pause, so a busy machine only moves the kill earlier. It kills at most `times` workers, one per
    connection.
    """

    port: int
    ready: Callable[[Served], bool]
    times: int = 1
    delay: Callable[[int], float] = lambda _n: 0.0
    killed: list[Served] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def __enter__(self) -> WorkerKiller:
        need_ss()
        self._thread = threading.Thread(target=self._run, name="worker-killer", daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self._thread:
            self._thread.join(timeout=10)

    def _run(self) -> None:
        done: set[int] = set()
        misses = 0
        while not self._stop.is_set() and len(self.killed) < self.times:
            live = [c for c in served_connections(self.port) if c.client_port not in done]
            target = next((c for c in live if self.ready(c)), None)
            if target is None:
                time.sleep(0.002)
                continue
            done.add(target.client_port)
            pause = self.delay(len(self.killed)) / 2 ** misses
            if pause:
                time.sleep(pause)
            again = [c for c in served_connections(self.port) if c.client_port == target.client_port]
            if not again or again[0].sent:
                misses += 1
                continue  # answered already: not a request in flight any more
            try:
                os.kill(target.worker, signal.SIGKILL)
            except ProcessLookupError:
                continue
            self.killed.append(again[0])
            misses = 0


def request_read(min_bytes: int) -> Callable[[Served], bool]:
    """Ready when the worker has read a request of at least `min_bytes` and not answered: it is working on it."""
    seen: dict[int, tuple[int, int]] = {}

    def ready(c: Served) -> bool:
        before, stable = seen.get(c.client_port, (-1, 0))
        stable = stable + 1 if c.received == before else 0
        seen[c.client_port] = (c.received, stable)
        return c.received >= min_bytes and c.unread == 0 and c.sent == 0 and stable >= 1

    return ready


# --------------------------------------------------------------------------- holding the database


@contextmanager
def device_locked(database_url: str, device_id: str) -> Iterator[None]:
    """Hold a write lock that a push of `device_id` needs, from a connection of the test's own.

    On PostgreSQL a row lock on the device (a push takes it `FOR UPDATE`); on SQLite the database's write
    lock (every transaction there begins IMMEDIATE). Either way the push waits on the database while it
    holds its admission slot and its pool connection, as a push stuck behind a slow one would.
    """
    engine = create_engine(database_url, connect_args={"timeout": 30} if database_url.startswith("sqlite") else {})
    try:
        with engine.connect() as conn:
            if engine.dialect.name == "sqlite":
                conn.exec_driver_sql("BEGIN IMMEDIATE")
            conn.execute(text("UPDATE devices SET label = label WHERE id = :id"), {"id": device_id})
            try:
                yield
            finally:
                conn.rollback()
    finally:
        engine.dispose()


def wait_until(condition: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.02)


def wait_in_flight(port: int, for_seconds: float = 0.3, timeout: float = 15.0) -> Served:
    """Until a request has sat in a worker unanswered for `for_seconds`: it is stuck on what the test holds.

    Watching the socket, not asking the server, matters: on SQLite any probe request would itself queue
    behind the lock the test holds.
    """
    need_ss()
    since: dict[int, float] = {}
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        now = time.monotonic()
        for c in served_connections(port):
            if c.received and not c.sent and not c.unread:
                since.setdefault(c.client_port, now)
                if now - since[c.client_port] >= for_seconds:
                    return c
        time.sleep(0.02)
    raise AssertionError("no request got stuck in the server")
