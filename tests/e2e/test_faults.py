"""Faults in the real server while a phone syncs: workers killed, database connections cut.

PROTOCOL §4 and §6 promise that a phone may simply try again: a push is
idempotent by `op` and commits once, an upload resumes from the server's
`Upload-Offset`. These tests hold the production server (gunicorn, gthread,
several workers, `running_server`) to that when it fails the hard way: a
worker SIGKILLed while it works on a push or receives a file (no cleanup, no
answer, a half-written staging file), and a PostgreSQL backend terminated
under a push. The reference phone (`sync.client.Phone`) does nothing special:
its ordinary retries must end with every record in the ledger exactly once,
the device's head on its last record, nothing held back, every file
`verified` and the custody log consistent; and the server keeps serving.
"""

from __future__ import annotations

import os
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
import requests
from sqlalchemy import create_engine, func, select, text
from sqlalchemy.engine import make_url

from backend.core.models import DeferredRecord, Device, LedgerRecord, QuarantinedRecord
from media.custody.keys import signer_for
from media.custody.verify import verify_log
from sync.client import Phone, jws_hash
from tests.conftest import PASSWORD
from tests.live import (
    WorkerKiller,
    access_statuses,
    field_day,
    live_server,
    new_phone,
    port_of,
    request_read,
    wait_for_workers,
)

pytestmark = pytest.mark.slow

MiB = 1024 * 1024
HERE = {"lat": 30.2787, "lon": 120.1303, "accuracy_m": 8.0}


@pytest.fixture
def zhang(officers):
    return officers.make(name="张敏")


# --------------------------------------------------------------------------- what must hold afterwards


def assert_exactly_once(db, phone: Phone) -> None:
    """Every record of the phone is in the ledger once, as the phone signed it, chained, and nothing is held."""
    mine = phone.records()
    with db.session() as s:
        rows = s.execute(select(LedgerRecord.op, LedgerRecord.seq, LedgerRecord.hash, LedgerRecord.prev)
                         .where(LedgerRecord.device_id == phone.device_id)
                         .order_by(LedgerRecord.seq)).all()
        device = s.get(Device, phone.device_id)
        held = s.scalar(select(func.count()).select_from(DeferredRecord)
                        .where(DeferredRecord.device_id == phone.device_id))
        quarantined = s.scalar(select(func.count()).select_from(QuarantinedRecord)
                               .where(QuarantinedRecord.device_id == phone.device_id))
    by_op = Counter(r.op for r in rows)
    by_seq = Counter(r.seq for r in rows)
    assert max(by_op.values()) == 1 and max(by_seq.values()) == 1
    assert set(by_op) == {r.op for r in mine}
    assert [r.seq for r in rows] == list(range(1, len(mine) + 1))
    assert [r.hash for r in rows] == [jws_hash(r.jws) for r in mine]  # the very records the phone signed
    assert all(a.hash == b.prev for a, b in zip(rows, rows[1:], strict=False))
    assert device.head_seq == len(mine) and device.head_hash == rows[-1].hash
    assert held == 0 and quarantined == 0
    assert phone.outbox() == [] and phone.head == {"seq": len(mine), "hash": rows[-1].hash}


def access_log_statuses(log_path: Path, path_part: str) -> Counter:
    """HTTP statuses gunicorn logged for requests whose path contains `path_part`."""
    return access_statuses(log_path, path_part)


# --------------------------------------------------------------------------- SIGKILL mid-push


def test_given_a_worker_killed_mid_push_when_the_phone_retries_then_every_record_is_in_the_ledger_once(
        app, settings, db, zhang, tmp_path):
    """A worker dies while it works on a push (body read, no answer yet), twice; the master replaces it.

    The phone's push is cut off with no answer, so it cannot know whether the batch landed; it sends the
    batch again, to another worker. Whether the kill came before or after the commit, the ledger ends the
    same: every record once, in its chain.
    """
    log = tmp_path / "server.log"
    with live_server(settings, log, workers=2) as base:
        port = port_of(base)
        phone = new_phone(tmp_path / "phone", base, zhang, backoff_base=0.2)
        try:
            total = field_day(phone, visits=30, findings=22)  # 750 records: 2 pushes of 375 (catchable when busy)
            with WorkerKiller(port, ready=request_read(100_000), times=2,
                              delay=lambda n: (0.0, 0.03)[n]) as killer:
                summary = phone.push(batch_size=375)
            assert len(killer.killed) == 2, "the push ended before a worker could be killed under it"
            assert summary["remaining"] == 0 and set(summary["counts"]) <= {"applied", "duplicate"}
            assert_exactly_once(db, phone)
            assert sum(summary["counts"].values()) >= total
            # The master replaced the dead workers and the server answers as before.
            wait_for_workers(port, 2)
            assert phone.device_status()["head"]["seq"] == total
        finally:
            phone.close()
    assert access_log_statuses(log, "/sync/push")[500] == 0


# --------------------------------------------------------------------------- SIGKILL mid-upload


class WireLog(requests.Session):
    """A plain requests session that notes each evidence PUT's Content-Range, to see how the phone resumed."""

    def __init__(self) -> None:
        super().__init__()
        self.puts: list[str | None] = []

    def request(self, method: str, url: str, *args: Any, **kwargs: Any) -> requests.Response:
        if method == "PUT" and url.endswith("/content"):
            self.puts.append((kwargs.get("headers") or {}).get("Content-Range"))
        return super().request(method, url, *args, **kwargs)


def test_given_a_worker_killed_mid_upload_when_the_phone_resumes_then_the_file_is_verified_and_custody_holds(
        app, settings, db, officers, zhang, tmp_path):
    """Twice a worker dies while it writes a 64 MiB video to the staging area (local store, resumable PUT).

    The phone asks the server how much it kept (`HEAD` → `Upload-Offset`), sends only the rest
    (`Content-Range`), and completes: the server hashes what it holds, and the file is `verified` with a
    custody log that still verifies, although two writers died with the file open.
    """
    video = tmp_path / "DCIM" / "clip-0001.mp4"
    video.parent.mkdir()
    video.write_bytes(os.urandom(64 * MiB))
    log = tmp_path / "server.log"
    with live_server(settings, log, workers=2) as base:
        port = port_of(base)
        wire = WireLog()
        wire.headers["Connection"] = "close"
        phone = Phone(tmp_path / "phone", base, session=wire, backoff_base=0.2)
        try:
            phone.login(zhang.username, PASSWORD)
            phone.enrol("张敏的手机")
            case = phone.open_case({"name": "明日之星培训中心", "region": "330106"})
            inspection = phone.start_inspection(case, officers=[], location=HERE)
            evidence_id = phone.capture_evidence(video, "video", "video/mp4", inspection_id=inspection,
                                                 location=HERE)
            phone.push()
            # Kill when the worker has taken in 4 MiB of the body and not answered: mid-write. (A busy machine can
            # see the first kill late; a low mark and a large file leave the resumed PUT room for the second.)
            with WorkerKiller(port, ready=lambda c: c.received > 4 * MiB and c.sent == 0, times=2) as killer:
                outcome = phone.upload_pending()
            assert len(killer.killed) == 2, "the upload ended before a worker could be killed under it"
            assert [o["status"] for o in outcome] == ["verified"], outcome
            resumed = [r for r in wire.puts if r]
            # Each resume starts where the server stopped. Usually two; one when the second kill landed after the
            # last byte was in (the server then reports the whole file held, and the phone sends nothing again).
            assert wire.puts[0] is None and len(resumed) in (1, 2), wire.puts
            starts = [int(r.split()[1].split("-")[0]) for r in resumed]
            assert starts[0] > 0 and starts == sorted(set(starts)) and starts[-1] < video.stat().st_size
            wait_for_workers(port, 2)
            evidence = phone.get(f"/api/v1/evidence/{evidence_id}")
            assert evidence["status"] == "verified" and evidence["purge_allowed"] is True
            content = officers.client.get(f"/api/v1/evidence/{evidence_id}/content?purpose=test",
                                          headers=officers.headers(zhang))
            assert content.status_code == 200 and content.data == video.read_bytes()
        finally:
            phone.close()
    with db.session() as s:
        report = verify_log(s, signer_for(settings).verification_keys())
    assert report.ok, report.problems
    staging = settings.instance_dir / "evidence" / "staging"
    assert list(staging.iterdir()) == []  # the verified bytes moved to the object area; nothing half-written stays
    assert access_log_statuses(log, "/content")[500] == 0


# --------------------------------------------------------------------------- PostgreSQL connection cut mid-push

APP_NAME = "fieldcase-live-faults"


class BackendTerminator:
    """Terminates the server's PostgreSQL backends from a connection of the test's own, as an operator (or a
    failover) would: `pg_terminate_backend` on every backend of the server that is working on something."""

    def __init__(self, admin_url: str, times: int, pause: float = 0.0) -> None:
        self.engine = create_engine(admin_url, isolation_level="AUTOCOMMIT")
        self.times = times
        self.pause = pause
        self.terminated: list[tuple[int, str, str]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="backend-terminator", daemon=True)

    def __enter__(self) -> BackendTerminator:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=10)
        self.engine.dispose()

    def _run(self) -> None:
        with self.engine.connect() as conn:
            while not self._stop.is_set() and len(self.terminated) < self.times:
                busy = conn.execute(text(
                    "SELECT pid, state, left(query, 60) FROM pg_stat_activity WHERE application_name = :app "
                    "AND datname = current_database() AND pid <> pg_backend_pid() AND state <> 'idle'"),
                    {"app": APP_NAME}).all()
                if not busy:
                    time.sleep(0.002)
                    continue
                if self.pause:
                    time.sleep(self.pause)
                for pid, state, query in busy:
                    if conn.execute(text("SELECT pg_terminate_backend(:pid)"), {"pid": pid}).scalar():
                        self.terminated.append((pid, state, query))
                time.sleep(0.3)  # let the phone's next try begin

    def terminate_idle(self) -> int:
        """Cut every idle pooled connection of the server too: the pool must notice before it hands one out."""
        with self.engine.connect() as conn:
            return len(conn.execute(text(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = :app "
                "AND datname = current_database()"), {"app": APP_NAME}).all())


def test_given_postgres_connections_cut_mid_push_when_the_phone_retries_then_the_ledger_is_exact_and_serving_goes_on(
        app, settings, db, zhang, tmp_path):
    """PostgreSQL loses the server's connections twice under a push (a failover, an operator's terminate).

    The request on a cut connection answers `503` with `Retry-After` (never a 500), the phone waits and
    sends the batch again, and the ledger holds every record once. Then every idle pooled connection is
    cut too: the pool must not hand out a dead one, so the next requests still succeed.
    """
    if make_url(settings.database_url).get_backend_name() != "postgresql":
        pytest.skip("a database connection that can be cut from another session needs PostgreSQL; "
                    "SQLite is a file opened in-process")
    url = make_url(settings.database_url).update_query_dict({"application_name": APP_NAME})
    log = tmp_path / "server.log"
    with live_server(settings, log, workers=2, DATABASE_URL=url.render_as_string(hide_password=False)) as base:
        phone = new_phone(tmp_path / "phone", base, zhang, backoff_base=0.2)
        try:
            total = field_day(phone, visits=30, findings=22)  # 750 records
            with BackendTerminator(settings.database_url, times=2, pause=0.05) as cut:
                summary = phone.push(batch_size=250)
            assert len(cut.terminated) >= 2, "the push ended before a connection could be cut under it"
            assert summary["remaining"] == 0 and set(summary["counts"]) <= {"applied", "duplicate"}
            assert_exactly_once(db, phone)
            assert access_log_statuses(log, "/sync/push")[503] >= 1

            BackendTerminator(settings.database_url, times=0).terminate_idle()
            more = field_day(phone, visits=2, findings=2)
            again = phone.push()
            assert again["counts"] == {"applied": more}
            assert phone.device_status()["head"]["seq"] == total + more
            assert_exactly_once(db, phone)
        finally:
            phone.close()
    assert sum(n for status, n in access_log_statuses(log, "/api/v1/").items() if status >= 500 and status != 503) == 0

