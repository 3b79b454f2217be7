"""Backpressure: a saturated server answers `503` with `Retry-After` at once, and the phone comes back later.

When every database connection of a process is taken, or more heavy
requests (pushes, evidence uploads) arrive than a process admits at once
(`backend.web.admission`), the server says so within a fraction of a second
instead of letting the request queue until the phone's read timeout: the
phone then knows nothing was done, waits what the server asked plus a random
share (so phones told the same thing do not all come back together), and
tries again. These tests saturate the real server (gunicorn, one worker so
the per-process limits are the server's) by holding what a request needs:
a database lock taken from the test's own connection, or an upload whose
bytes the test releases when it chooses.
"""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from pathlib import Path
from typing import Any

import pytest
import requests

from sync.client import ApiError, Phone
from sync.client.transport import parse_retry_after
from tests.conftest import PASSWORD
from tests.live import (
    access_statuses,
    device_locked,
    field_day,
    live_server,
    new_phone,
    port_of,
    wait_in_flight,
    wait_until,
)

MiB = 1024 * 1024
HERE = {"lat": 30.2787, "lon": 120.1303, "accuracy_m": 8.0}


# --------------------------------------------------------------------------- helpers


class Sleeps:
    """The phone's sleep: really sleeps (the server is real), and notes how long it was asked to."""

    def __init__(self) -> None:
        self.delays: list[float] = []
        self.first = threading.Event()

    def __call__(self, seconds: float) -> None:
        self.delays.append(seconds)
        self.first.set()
        time.sleep(seconds)


def token(base: str, officer: Any) -> dict[str, str]:
    r = requests.post(f"{base}/api/v1/auth/token", json={"username": officer.username, "password": PASSWORD},
                      timeout=30)
    assert r.status_code == 200, r.text
    return {"Authorization": f"Bearer {r.json()['access_token']}"}


def retry_after(resp: requests.Response) -> int:
    value = resp.headers.get("Retry-After", "")
    assert value.isdigit() and int(value) >= 1, f"Retry-After {value!r}"
    return int(value)


@contextmanager
def in_thread(fn: Callable[[], Any]) -> Iterator[dict[str, Any]]:
    """Run `fn` in a thread; the dict gets its result (or error) once the block has ended and it has finished."""
    out: dict[str, Any] = {}

    def run() -> None:
        try:
            out["result"] = fn()
        except BaseException as exc:  # noqa: BLE001 - handed to the test thread
            out["error"] = exc

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    try:
        yield out
    finally:
        thread.join(timeout=120)
        assert not thread.is_alive(), "the background request never finished"


class HeldBody:
    """A request body of `size` bytes that stops after `first` bytes until `release` is set: a phone on a bad
    network in the middle of an upload. Has a length, so it goes with Content-Length, as the protocol wants."""

    def __init__(self, data: bytes, first: int) -> None:
        self.data, self.first, self.pos = data, first, 0
        self.release = threading.Event()
        self.started = threading.Event()

    def __len__(self) -> int:
        return len(self.data)

    def read(self, n: int = -1) -> bytes:
        if self.pos >= self.first and not self.release.is_set():
            self.started.set()
            self.release.wait(60)
        end = len(self.data) if n is None or n < 0 else self.pos + n
        if self.pos < self.first:
            end = min(end, self.first)
        chunk = self.data[self.pos:end]
        self.pos += len(chunk)
        return chunk


@contextmanager
def release_at_exit(body: HeldBody) -> Iterator[HeldBody]:
    try:
        yield body
    finally:
        body.release.set()


@pytest.fixture
def zhang(officers):
    return officers.make(name="张敏")


@pytest.fixture
def wang(officers):
    return officers.make(name="王芳")


# --------------------------------------------------------------------------- the database pool


def test_given_the_pool_is_exhausted_when_a_phone_pushes_then_it_is_told_503_retry_after_and_gets_through_later(
        app, settings, zhang, wang, tmp_path):
    """One connection per process, taken by a push stuck behind a lock: other requests get no connection.

    They answer `503` with `Retry-After` after `FIELDCASE_DB_POOL_TIMEOUT` (not a 500, not a hang); the
    phone waits at least that long, and once the stuck push is through, its own push succeeds.
    """
    log = tmp_path / "server.log"
    with live_server(settings, log, workers=1, FIELDCASE_DB_POOL_SIZE="1", FIELDCASE_DB_MAX_OVERFLOW="0",
                     FIELDCASE_DB_POOL_TIMEOUT="0.3", FIELDCASE_BUSY_RETRY_AFTER="1") as base:
        stuck = new_phone(tmp_path / "zhang", base, zhang, label="zhang")
        sleeps = Sleeps()
        phone = new_phone(tmp_path / "wang", base, wang, label="wang", sleep=sleeps, backoff_base=0.2)
        auth = token(base, wang)
        try:
            field_day(stuck, 1, 2)
            queued = field_day(phone, 2, 3)
            with ExitStack() as threads, device_locked(settings.database_url, stuck.device_id):
                first = threads.enter_context(in_thread(stuck.push))
                wait_in_flight(port_of(base))  # the stuck push holds the only connection, waiting on the lock
                started = time.monotonic()
                push = requests.post(f"{base}/api/v1/sync/push", headers=auth, timeout=10,
                                     json={"records": [r.jws for r in phone.outbox()]})
                took = time.monotonic() - started
                assert push.status_code == 503 and took < 3, (push.status_code, took)
                assert retry_after(push) == 1
                assert push.json() == {"code": 503, "status": "Service Unavailable", "message":
                                       "the server is busy (no database connection free); retry shortly"}
                second = threads.enter_context(in_thread(phone.push))
                assert sleeps.first.wait(15), "the phone never got a 503 to wait on"
            assert "error" not in first and "error" not in second, (first, second)
            assert second["result"]["counts"] == {"applied": queued} and phone.outbox() == []
            assert sleeps.delays[0] >= 1.0  # never sooner than Retry-After
        finally:
            stuck.close()
            phone.close()
    assert "database pool exhausted" in log.read_text() and access_statuses(log, "/")[500] == 0


# --------------------------------------------------------------------------- admission of pushes


def test_given_the_push_limit_is_reached_when_three_phones_push_then_each_is_told_503_and_comes_back_at_its_own_time(
        app, settings, zhang, wang, tmp_path):
    """`FIELDCASE_MAX_CONCURRENT_PUSHES=1` and a push is stuck: further pushes are refused before any database
    work (they do not wait for the lock the stuck one waits on) with `503` and `Retry-After`.

    Three phones told "1 s" at the same moment come back at three different times: each waits at least
    the second, plus its own jitter. When the stuck push is through, all three get in.
    """
    log = tmp_path / "server.log"
    with live_server(settings, log, workers=1, FIELDCASE_MAX_CONCURRENT_PUSHES="1", FIELDCASE_ADMISSION_WAIT="0.2",
                     FIELDCASE_BUSY_RETRY_AFTER="1") as base:
        stuck = new_phone(tmp_path / "zhang", base, zhang, label="zhang")
        sleeps = [Sleeps() for _ in range(3)]
        phones = [new_phone(tmp_path / f"wang-{n}", base, wang, label=f"wang-{n}", sleep=sleeps[n],
                            rng=random.Random(n).random, backoff_base=0.2) for n in range(3)]
        auth = token(base, wang)
        try:
            field_day(stuck, 1, 2)
            queued = [field_day(p, 1, n + 1) for n, p in enumerate(phones)]
            with ExitStack() as threads, device_locked(settings.database_url, stuck.device_id):
                first = threads.enter_context(in_thread(stuck.push))
                wait_in_flight(port_of(base))  # the stuck push holds the one slot, waiting on the lock
                started = time.monotonic()
                refused = requests.post(f"{base}/api/v1/sync/push", headers=auth, timeout=10,
                                        json={"records": []})
                took = time.monotonic() - started
                assert refused.status_code == 503 and took < 2, (refused.status_code, took)
                assert retry_after(refused) == 1
                assert refused.json()["message"] == ("the server is busy with other pushes (1 at a time per "
                                                     "process); nothing was done: retry after 1 s")
                results = [threads.enter_context(in_thread(p.push)) for p in phones]
                for s in sleeps:
                    assert s.first.wait(15), "a phone never got a 503 to wait on"
            assert "error" not in first
            for phone, result, n in zip(phones, results, queued, strict=True):
                assert "error" not in result, result
                assert result["result"]["counts"] == {"applied": n} and phone.outbox() == []
        finally:
            stuck.close()
            for p in phones:
                p.close()
    firsts = [s.delays[0] for s in sleeps]
    assert all(1.0 <= d <= 1.5 for d in firsts), firsts  # Retry-After, plus up to half of it at random
    assert min(abs(a - b) for i, a in enumerate(firsts) for b in firsts[i + 1:]) > 0.05, firsts
    assert access_statuses(log, "/")[500] == 0


def test_given_a_server_busy_for_longer_than_the_phone_will_wait_when_it_pushes_then_it_gives_up_in_time(
        app, settings, zhang, wang, tmp_path):
    """`max_total_wait` bounds one call: a phone never hangs on a saturated server; its outbox stays intact and
    the next push, once the server has room, sends everything."""
    with live_server(settings, tmp_path / "server.log", workers=1, FIELDCASE_MAX_CONCURRENT_PUSHES="1",
                     FIELDCASE_ADMISSION_WAIT="0.1", FIELDCASE_BUSY_RETRY_AFTER="1") as base:
        stuck = new_phone(tmp_path / "zhang", base, zhang, label="zhang")
        phone = new_phone(tmp_path / "wang", base, wang, label="wang", max_total_wait=3.0, backoff_base=0.2)
        try:
            field_day(stuck, 1, 1)
            queued = field_day(phone, 1, 2)
            with ExitStack() as threads, device_locked(settings.database_url, stuck.device_id):
                threads.enter_context(in_thread(stuck.push))
                wait_in_flight(port_of(base))
                started = time.monotonic()
                with pytest.raises(ApiError) as refused:
                    phone.push()
                took = time.monotonic() - started
            assert refused.value.status == 503 and 1.0 <= took < 5.0, took
            assert len(phone.outbox()) == queued
            assert phone.push()["counts"] == {"applied": queued}
        finally:
            stuck.close()
            phone.close()


# --------------------------------------------------------------------------- uploads


def declared_video(phone: Phone, camera: Path, name: str, size: int) -> tuple[str, bytes]:
    data = random.Random(name).randbytes(size)
    path = camera / name
    path.write_bytes(data)
    case = phone.open_case({"name": f"明日之星培训中心 {name}", "region": "330106"})
    inspection = phone.start_inspection(case, officers=[], location=HERE)
    evidence_id = phone.capture_evidence(path, "video", "video/mp4", inspection_id=inspection, location=HERE)
    return evidence_id, data


def staged_bytes(instance_dir: Path) -> int:
    """Bytes in the local store's staging area: what uploads in progress have delivered so far."""
    staging = instance_dir / "evidence" / "staging"
    return sum(p.stat().st_size for p in staging.iterdir()) if staging.exists() else 0


def test_given_the_upload_limit_is_reached_when_a_phone_uploads_then_it_waits_and_its_file_is_verified(
        app, settings, zhang, wang, tmp_path):
    """`FIELDCASE_MAX_CONCURRENT_UPLOADS=1` and a slow phone is in the middle of sending its file: another
    upload's `PUT .../content` answers `503` with `Retry-After`; the phone waits, and when the slow one is
    done its own file goes up and is verified.

    Meanwhile the slow upload holds no database connection (one connection in the pool here): reading
    the bytes off a bad network must not starve everyone else of the database.
    """
    camera = tmp_path / "DCIM"
    camera.mkdir()
    log = tmp_path / "server.log"
    with live_server(settings, log, workers=1, FIELDCASE_MAX_CONCURRENT_UPLOADS="1", FIELDCASE_ADMISSION_WAIT="0.2",
                     FIELDCASE_BUSY_RETRY_AFTER="1", FIELDCASE_DB_POOL_SIZE="1", FIELDCASE_DB_MAX_OVERFLOW="0",
                     FIELDCASE_DB_POOL_TIMEOUT="0.5") as base:
        slow = new_phone(tmp_path / "zhang", base, zhang, label="zhang")
        sleeps = Sleeps()
        phone = new_phone(tmp_path / "wang", base, wang, label="wang", sleep=sleeps, backoff_base=0.2)
        try:
            slow_id, slow_bytes = declared_video(slow, camera, "slow.mp4", 4 * MiB)
            fast_id, _ = declared_video(phone, camera, "fast.mp4", 2 * MiB)
            slow.push()
            phone.push()
            auth = token(base, zhang)
            plan = requests.post(f"{base}/api/v1/evidence/{slow_id}/uploads", headers=auth, timeout=10).json()
            body = HeldBody(slow_bytes, first=1 * MiB)
            put = lambda: requests.put(plan["url"], data=body, timeout=60,  # noqa: E731
                                       headers={**auth, "Content-Type": "application/octet-stream"})
            with in_thread(put) as held, release_at_exit(body):
                assert body.started.wait(10)
                wait_until(lambda: staged_bytes(settings.instance_dir) > 0, 10, "the slow upload's first bytes")
                me = requests.get(f"{base}/api/v1/me", headers=auth, timeout=10)
                assert me.status_code == 200, me.text  # the slow upload holds no database connection
                with in_thread(phone.upload_pending) as fast:
                    assert sleeps.first.wait(15), "the phone never got a 503 to wait on"
                    body.release.set()
            assert held["result"].status_code == 200, held["result"].text
            assert fast["result"] == [{"evidence_id": fast_id, "status": "verified", "purge_allowed": True}]
            assert sleeps.delays[0] >= 1.0
            done = requests.post(f"{base}/api/v1/evidence/{slow_id}/complete", headers=auth, json={}, timeout=30)
            assert done.status_code == 200 and done.json()["status"] == "verified"
        finally:
            slow.close()
            phone.close()
    assert access_statuses(log, "/content")[503] and access_statuses(log, "/")[500] == 0


# --------------------------------------------------------------------------- the phone's back-off, by itself


def test_retry_after_is_read_as_seconds_or_as_an_http_date():
    """RFC 9110 §10.2.3: delay-seconds or an HTTP-date; anything else is ignored (the phone's own back-off)."""
    in_30s = format_datetime(datetime.now(UTC) + timedelta(seconds=30), usegmt=True)
    assert parse_retry_after("7") == 7.0
    assert 25 <= (parse_retry_after(in_30s) or 0) <= 30
    assert parse_retry_after(format_datetime(datetime.now(UTC) - timedelta(minutes=5), usegmt=True)) == 0.0
    assert parse_retry_after("soon") is None and parse_retry_after(None) is None


def test_back_off_never_comes_back_before_retry_after_and_spreads_phones_above_it(tmp_path):
    """The busy back-off's floor is the server's Retry-After (capped by `max_retry_after`); jitter only adds,
    and grows with repeated refusals up to the cap. Without Retry-After it is the usual equal jitter."""
    low = Phone(tmp_path / "low", "http://fieldcase.test", rng=lambda: 0.0, backoff_base=0.5, backoff_cap=8)
    high = Phone(tmp_path / "high", "http://fieldcase.test", rng=lambda: 1.0, backoff_base=0.5, backoff_cap=8,
                 max_retry_after=60)
    try:
        assert low.backoff_delay(1, 2.0) == 2.0 and high.backoff_delay(1, 2.0) == 3.0
        assert low.backoff_delay(6, 2.0) == 4.0 and high.backoff_delay(6, 2.0) == 8.0  # step capped at 8
        assert high.backoff_delay(1, 3600.0) == 60.0 + 30.0  # an absurd Retry-After is capped
        assert low.backoff_delay(3) == 1.0 and high.backoff_delay(3) == 2.0
    finally:
        low.close()
        high.close()
