"""Slow work on RQ workers (FIELDCASE_JOBS=rq): `202` from complete, a worker's verdict, idempotent jobs, dead letters.

The app runs in-process (SQLite by default, PostgreSQL in CI's second leg);
the worker is the real `fieldcase worker --burst` in a child process on the
same database and instance folder, fed from a queue of the test's own on the
local Redis. Skipped, with the reason, when Redis is unreachable.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import replace
from datetime import timedelta
from pathlib import Path

import pytest
import requests
from click.testing import CliRunner
from sqlalchemy import func, select

from backend.bootstrap import rq_runner
from backend.cli import main
from backend.core.jobs import perform
from backend.core.models import CustodyEvent, TreeHead, utcnow
from media.custody import log as custody
from media.custody.verify import verify_log
from sync.client import Phone
from tests import images
from tests.conftest import PASSWORD, Officers
from tests.e2e.test_client_uploads import BASE, CENTRE, HERE, FieldClock
from tests.wsgi_transport import WSGIAdapter

WORKER = "jobs-test-worker"




def _env(s) -> dict[str, str]:
    return {"DATABASE_URL": s.database_url, "FIELDCASE_INSTANCE_DIR": str(s.instance_dir), "FIELDCASE_JOBS": "rq",
            "FIELDCASE_REDIS_URL": s.redis_url, "FIELDCASE_JOB_QUEUE": s.job_queue}


def run_worker_burst(s, tmp_path: Path) -> str:
    """The real worker command, until the queue is empty; returns its log."""
    log = tmp_path / "worker.log"
    with open(log, "ab") as out:
        done = subprocess.run([sys.executable, "-m", "backend", "worker", "--burst", "--name", WORKER],
                              env={**os.environ, **_env(s)}, stdout=out, stderr=subprocess.STDOUT, timeout=120)
    text = log.read_text(errors="replace")
    assert done.returncode == 0, text
    return text


def _phone(app, tmp_path: Path) -> tuple[Phone, Officers]:
    client = app.test_client()
    officers = Officers(app.extensions["fieldcase"].db, client)
    officer = officers.make(name="李娜")
    session = requests.Session()
    session.mount(BASE, WSGIAdapter(app))
    phone = Phone(tmp_path / "phone", BASE, session=session, clock=FieldClock(), sleep=lambda _s: None)
    phone.login(officer.username, PASSWORD)
    phone.enrol("李娜的手机")
    phone._officer = officer  # for the test's own reads
    return phone, officers


def test_a_worker_verifies_what_complete_accepted(rq_app, rq_settings, tmp_path):
    phone, officers = _phone(rq_app, tmp_path)
    headers = officers.headers(phone._officer)
    client = rq_app.test_client()
    case = phone.open_case(CENTRE, summary="夜间违规培训核查")
    inspection = phone.start_inspection(case, officers=[], location=HERE)
    photo = phone.capture_evidence(images.jpeg_with_exif(), "photo", "image/jpeg", inspection_id=inspection,
                                   location=HERE)
    clip = phone.capture_evidence(os.urandom(300_000), "video", "video/mp4", inspection_id=inspection, location=HERE)
    assert set(phone.push()["counts"]) == {"applied"}

    # complete answers 202: the bytes are in, the upload is `verifying`, the evidence still `declared`.
    first = {r["evidence_id"]: r for r in phone.upload_pending()}
    assert {e: r["status"] for e, r in first.items()} == {photo: "uploaded", clip: "uploaded"}
    assert not phone.purgeable()
    for eid in (photo, clip):
        body = client.get(f"/api/v1/evidence/{eid}", headers=headers).json
        assert body["status"] == "declared" and body["purge_allowed"] is False
        assert [u["status"] for u in body["uploads"]] == ["verifying"]
        again = client.post(f"/api/v1/evidence/{eid}/complete", headers=headers, json={})
        assert again.status_code == 202 and again.json["status"] == "declared"
        # The bytes are being hashed: no new plan, no more bytes until the verdict.
        assert client.post(f"/api/v1/evidence/{eid}/uploads", headers=headers, json={}).status_code == 409
    # The phone asks again (and so queues each check a second time): still waiting, nothing re-sent.
    assert {r["status"] for r in phone.upload_pending()} == {"uploaded"}
    db = rq_app.extensions["fieldcase"].db
    with db.session() as s:
        assert s.scalar(select(func.count()).select_from(CustodyEvent).where(CustodyEvent.action == "verified")) == 0

    run_worker_burst(rq_settings, tmp_path)

    with db.session() as s:
        events = {eid: [json.loads(e.leaf) for e in s.scalars(select(CustodyEvent).where(
            CustodyEvent.evidence_id == eid).order_by(CustodyEvent.leaf_index))] for eid in (photo, clip)}
    for eid in (photo, clip):
        verified = [e for e in events[eid] if e["action"] == "verified"]
        # Three checks were queued per item; the first gave the verdict, the others found it given.
        assert len(verified) == 1 and verified[0]["verifier"] == f"rq:{WORKER}", events[eid]
    assert [e["action"] for e in events[photo]].count("thumbnail") == 1
    assert "thumbnail" not in [e["action"] for e in events[clip]]
    body = client.get(f"/api/v1/evidence/{photo}", headers=headers).json
    assert body["status"] == "verified" and body["purge_allowed"] is True
    assert body["has_thumbnail"] and body["media_info"]["decodable"] is True
    assert client.get(f"/api/v1/evidence/{photo}/thumbnail", headers=headers).status_code == 200

    # The phone hears the verdicts from the feed, and may now delete its copies.
    phone.pull()
    assert {f["evidence_id"]: f["status"] for f in phone.evidence_files()} == {photo: "verified", clip: "verified"}
    assert {p["evidence_id"] for p in phone.purgeable()} == {photo, clip}
    # Completing once more repeats the verdict, now with 200.
    assert client.post(f"/api/v1/evidence/{clip}/complete", headers=headers, json={}).status_code == 200

    status = CliRunner().invoke(main, ["jobs", "status"], env=_env(rq_settings))
    assert status.exit_code == 0 and "0 failed" in status.output, status.output
    with db.session() as s:
        assert verify_log(s, rq_app.extensions["fieldcase"].signer.verification_keys()).ok
    phone.close()


def test_periodic_tree_heads_are_signed_by_a_worker(rq_app, rq_settings, tmp_path):
    db = rq_app.extensions["fieldcase"].db
    size = custody.HEAD_EVERY + 4
    with db.transaction() as s:
        for n in range(size):
            custody.record(s, "read", None, "officer-x", at=utcnow(), purpose=f"test {n}")
    with db.session() as s:
        assert s.get(TreeHead, custody.HEAD_EVERY) is None  # the append only queued it
    assert rq_runner(rq_settings).queue.count == 1
    run_worker_burst(rq_settings, tmp_path)
    signer = rq_app.extensions["fieldcase"].signer
    with db.session() as s:
        head = s.get(TreeHead, custody.HEAD_EVERY)  # at exactly the multiple the append crossed
        assert head is not None and head.key_id == signer.key_id
        report = verify_log(s, signer.verification_keys())
    assert report.ok and report.heads == 1 and report.leaves == size, report.problems


def test_a_job_that_keeps_failing_is_kept_as_a_dead_letter(rq_app, rq_settings, tmp_path):
    runner = rq_runner(rq_settings)
    runner.queue.enqueue(perform, "media.jobs.no_such_job", "x")  # no retries: straight to the failed registry
    run_worker_burst(rq_settings, tmp_path)
    status = CliRunner().invoke(main, ["jobs", "status"], env=_env(rq_settings))
    assert status.exit_code == 1, status.output
    assert "1 failed" in status.output and "media.jobs.no_such_job" in status.output
    assert "ValueError" in status.output
    requeued = CliRunner().invoke(main, ["jobs", "requeue"], env=_env(rq_settings))
    assert requeued.exit_code == 0 and "requeued 1" in requeued.output
    assert runner.queue.count == 1


def test_workers_refuse_to_start_without_a_queue(settings):
    env = {"DATABASE_URL": settings.database_url, "FIELDCASE_INSTANCE_DIR": str(settings.instance_dir),
           "FIELDCASE_JOBS": "inline"}
    result = CliRunner().invoke(main, ["worker", "--burst"], env=env)
    assert result.exit_code == 1 and "FIELDCASE_JOBS=rq" in result.output
    with pytest.raises(ValueError, match="FIELDCASE_REDIS_URL"):
        replace(settings, jobs="rq", redis_url="").resolved()


def test_inline_mode_still_answers_the_verdict_at_once(app, tmp_path):
    phone, _ = _phone(app, tmp_path)
    inspection = phone.start_inspection(phone.open_case(CENTRE), officers=[], location=HERE)
    eid = phone.capture_evidence(images.jpeg_with_exif(), "photo", "image/jpeg", inspection_id=inspection,
                                 captured_at=phone.clock() - timedelta(minutes=1), location=HERE)
    phone.push()
    assert [r["status"] for r in phone.upload_pending()] == ["verified"]
    db = app.extensions["fieldcase"].db
    with db.session() as s:
        leaf = json.loads(s.scalars(select(CustodyEvent.leaf).where(CustodyEvent.evidence_id == eid,
                                                                    CustodyEvent.action == "verified")).one())
    assert "verifier" not in leaf  # the request itself did it: the leaf is what it always was
    phone.close()


def test_a_queue_lost_with_redis_is_swept_back(rq_app, rq_settings, tmp_path):
    """Redis holds only the queue: when it is lost, the rows still say what is unfinished and a sweep queues it."""
    phone, _ = _phone(rq_app, tmp_path)
    inspection = phone.start_inspection(phone.open_case(CENTRE), officers=[], location=HERE)
    eid = phone.capture_evidence(os.urandom(50_000), "video", "video/mp4", inspection_id=inspection, location=HERE)
    phone.push()
    assert [r["status"] for r in phone.upload_pending()] == ["uploaded"]
    queue = rq_runner(rq_settings).queue
    assert queue.count == 1
    queue.empty()  # Redis restarted without persistence
    swept = CliRunner().invoke(main, ["jobs", "sweep"], env=_env(rq_settings))
    assert swept.exit_code == 0 and "verify_upload: 1 queued, 0 already waiting" in swept.output, swept.output
    # A second sweep before any worker ran finds the job waiting in Redis, and queues nothing twice.
    again = CliRunner().invoke(main, ["jobs", "sweep"], env=_env(rq_settings))
    assert again.exit_code == 0 and "verify_upload: 0 queued, 1 already waiting" in again.output, again.output
    assert queue.count == 1
    run_worker_burst(rq_settings, tmp_path)
    phone.pull()
    assert [(f["evidence_id"], f["status"]) for f in phone.evidence_files()] == [(eid, "verified")]
    phone.close()
