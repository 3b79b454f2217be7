"""Metrics for on-call, in one process: what a phone's work, a busy server and failed logins add to the counters.

Each test builds the API with a Prometheus observer of its own (`PrometheusObserver` over a fresh registry, what
`fieldcase worker` uses too) and reads the figures back from that registry, as a scrape would: counted from what
the server answered, so each counter is checked against the answers the test received. The multiprocess
export under gunicorn is tests/e2e/test_metrics_live.py's.
"""

from __future__ import annotations

import os
import re
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import requests
from flask import Flask
from prometheus_client import CollectorRegistry, generate_latest
from sqlalchemy import func, select

from backend.core.config import Settings
from backend.core.models import CustodyEvent
from backend.liveserver import free_port
from backend.web.admission import PUSH
from backend.web.figures import DatabaseFigures, Figure, Figures, QueueFigures
from backend.web.metrics import PrometheusObserver
from sync.client import Phone
from tests import images
from tests.conftest import PASSWORD, Officers, app_on
from tests.e2e.test_client_uploads import BASE, CENTRE, HERE, FieldClock
from tests.phones import TestPhone
from tests.wsgi_transport import WSGIAdapter


@contextmanager
def observed_app(settings: Settings, **changes: Any) -> Iterator[tuple[Flask, CollectorRegistry]]:
    registry = CollectorRegistry()
    with app_on(replace(settings, **changes), observer=PrometheusObserver(registry)) as application:
        yield application, registry


def value(registry: CollectorRegistry, name: str, **labels: str) -> float:
    found = registry.get_sample_value(name, labels)
    return 0.0 if found is None else found


def phone_on(app: Flask, tmp_path: Path, name: str = "李娜") -> tuple[Phone, Any]:
    """The reference phone, in-process, logged in and enrolled."""
    officer = Officers(app.extensions["fieldcase"].db, app.test_client()).make(name=name)
    session = requests.Session()
    session.mount(BASE, WSGIAdapter(app))
    phone = Phone(tmp_path / "phone", BASE, session=session, clock=FieldClock(), sleep=lambda _s: None)
    phone.login(officer.username, PASSWORD)
    phone.enrol(f"{name}的手机")
    return phone, officer


def test_given_a_field_day_when_the_phone_pushes_and_uploads_then_records_leaves_jobs_and_routes_are_counted(
        settings, tmp_path):
    with observed_app(settings) as (app, registry):
        phone, _officer = phone_on(app, tmp_path)
        case = phone.open_case(CENTRE, summary="夜间违规培训核查")
        inspection = phone.start_inspection(case, officers=[], location=HERE)
        phone.capture_evidence(images.jpeg_with_exif(), "photo", "image/jpeg", inspection_id=inspection,
                               location=HERE)
        phone.capture_evidence(os.urandom(20_000), "video", "video/mp4", inspection_id=inspection, location=HERE)
        phone.end_inspection(inspection, "violation_found")
        sent = len(phone.outbox())
        assert phone.push()["counts"] == {"applied": sent}
        assert value(registry, "fieldcase_push_records_total", status="applied", code="") == sent
        assert value(registry, "fieldcase_push_size_records_count") == 1
        assert value(registry, "fieldcase_push_size_records_sum") == sent
        assert value(registry, "fieldcase_push_size_bytes_sum") > 0

        phone.upload_pending()  # inline jobs: verified in the request, the photo read there too
        assert value(registry, "fieldcase_jobs_total", job="verify_upload", outcome="done") == 2
        assert value(registry, "fieldcase_jobs_total", job="analyse_evidence", outcome="done") == 2  # photo and clip
        assert value(registry, "fieldcase_job_duration_seconds_count", job="verify_upload") == 2

        with app.extensions["fieldcase"].db.session() as s:
            leaves = s.scalar(select(func.count()).select_from(CustodyEvent))
        assert leaves > 0 and value(registry, "fieldcase_custody_leaves_total") == leaves

        # Routes are labelled by their rule: one series for every device, never an id.
        assert phone.device_status()["id"] == phone.device_id  # GET /api/v1/devices/<device_id>
        text = generate_latest(registry).decode()
        assert value(registry, "fieldcase_http_requests_total", method="GET", route="/api/v1/devices/<device_id>",
                     status="200") == 1
        assert phone.device_id not in text
        assert value(registry, "fieldcase_http_request_duration_seconds_count", method="POST",
                     route="/api/v1/sync/push") == 1
        phone.close()


def test_given_pushes_with_every_outcome_when_answered_then_each_record_is_counted_by_status_and_code(
        client, app, officers):
    registry = CollectorRegistry()
    state = app.extensions["fieldcase"]
    state.observer = PrometheusObserver(registry)
    zhang = officers.make(name="张敏")
    phone = TestPhone(client, zhang, officers.headers(zhang))
    cid, opened = phone.open_case(CENTRE)
    iid, started = phone.start(cid, [zhang.id])
    ended = phone.end(iid)
    answers = [phone.push([ended]), phone.push([opened, started]), phone.push([opened]), phone.push(["not a jws"])]
    tally = Counter((r["status"], r.get("code") or "") for a in answers for r in a["results"])
    assert {s for s, _ in tally} == {"deferred", "applied", "duplicate", "rejected"}
    for (status, code), n in tally.items():
        assert value(registry, "fieldcase_push_records_total", status=status, code=code) == n, (status, code)
    assert value(registry, "fieldcase_push_size_records_count") == 4


def test_given_wrong_passwords_when_logging_in_then_failures_and_throttled_attempts_are_counted(settings, tmp_path):
    with observed_app(settings, login_free_failures=2) as (app, registry):
        client = app.test_client()
        officer = Officers(app.extensions["fieldcase"].db, client).make(name="王芳")
        codes = [client.post("/api/v1/auth/token", json={"username": officer.username, "password": "wrong"})
                 .status_code for _ in range(4)]
        assert codes.count(401) >= 1 and codes[-1] == 429
        assert value(registry, "fieldcase_login_failures_total", surface="api", reason="bad_credentials") == \
            codes.count(401)
        assert value(registry, "fieldcase_login_failures_total", surface="api", reason="throttled") == \
            codes.count(429)
        page = client.get("/console/login").get_data(as_text=True)
        csrf = re.search(r'name="csrf_token" value="([^"]+)"', page).group(1)
        console = client.post("/console/login", data={"csrf_token": csrf, "username": "nobody", "password": "x"})
        assert console.status_code == 401
        assert value(registry, "fieldcase_login_failures_total", surface="console", reason="bad_credentials") == 1


def test_given_the_push_limit_is_reached_when_a_phone_pushes_then_the_503_is_counted_as_admission(settings):
    with observed_app(settings, max_concurrent_pushes=1, admission_wait=0.0) as (app, registry):
        client = app.test_client()
        officers = Officers(app.extensions["fieldcase"].db, client)
        headers = officers.headers(officers.make())
        with app.extensions["fieldcase"].admission.gate(PUSH).slot():  # another push holds the only slot
            refused = client.post("/api/v1/sync/push", json={"records": []}, headers=headers)
        assert refused.status_code == 503
        assert value(registry, "fieldcase_unavailable_total", cause="admission", route="/api/v1/sync/push") == 1
        assert client.post("/api/v1/sync/push", json={"records": []}, headers=headers).status_code == 200


def test_given_every_pool_connection_is_taken_when_a_request_needs_one_then_the_503_is_counted_as_pool(settings):
    with observed_app(settings, db_pool_size=1, db_max_overflow=0, db_pool_timeout=0.2) as (app, registry):
        client = app.test_client()
        officers = Officers(app.extensions["fieldcase"].db, client)
        headers = officers.headers(officers.make())
        engine = app.extensions["fieldcase"].db.engine
        assert value(registry, "fieldcase_db_pool_connections_max") == 1
        with engine.connect():
            assert value(registry, "fieldcase_db_pool_connections_in_use") == 1
            assert client.get("/api/v1/me", headers=headers).status_code == 503
        assert value(registry, "fieldcase_unavailable_total", cause="pool", route="/api/v1/me") == 1
        assert value(registry, "fieldcase_db_pool_connections_in_use") == 0
        assert client.get("/api/v1/me", headers=headers).status_code == 200
        assert value(registry, "fieldcase_db_pool_connections_in_use") == 0


def test_given_redis_is_down_when_a_committed_request_queues_a_job_then_the_enqueue_failure_is_counted(settings):
    with observed_app(settings, jobs="rq", redis_url=f"redis://127.0.0.1:{free_port()}/0") as (app, registry):
        state = app.extensions["fieldcase"]
        with state.db.transaction() as session:
            state.runner.submit(session, "verify_upload", "an-upload-id")
            assert value(registry, "fieldcase_job_enqueue_failures_total", job="verify_upload") == 0  # not yet
        assert value(registry, "fieldcase_job_enqueue_failures_total", job="verify_upload") == 1


def test_given_a_job_that_raises_when_run_inline_then_it_is_counted_as_failed(settings):
    with observed_app(settings) as (app, registry):
        state = app.extensions["fieldcase"]
        with pytest.raises(Exception, match="no tree of size"), state.db.transaction() as session:
            state.runner.submit(session, "issue_tree_head", 10**6)
        assert value(registry, "fieldcase_jobs_total", job="issue_tree_head", outcome="failed") == 1


def test_given_the_build_when_metrics_are_read_then_build_info_names_its_version_and_commit(settings):
    with observed_app(settings, commit="feedc0de") as (_app, registry):
        assert value(registry, "fieldcase_build_info", version="0.1.0", commit="feedc0de") == 1


# --------------------------------------------------------------------------------------- the queried figures


def figures_of(collector: Figures) -> dict[str, float]:
    out = {}
    for family in collector.collect():
        for sample in family.samples:
            key = sample.name + "".join(f"|{k}={v}" for k, v in sorted(sample.labels.items()))
            out[key] = sample.value
    return out


def test_given_records_held_at_a_gap_and_leaves_past_the_last_head_when_figured_then_the_gauges_say_so(
        app, client, officers, settings):
    zhang = officers.make(name="张敏")
    phone = TestPhone(client, zhang, officers.headers(zhang))
    cid, opened = phone.open_case(CENTRE)
    iid, started = phone.start(cid, [zhang.id])
    phone.push([phone.finding(iid), phone.end(iid)])  # seq 3 and 4, past the gap of 1 and 2
    collector = Figures({"database": DatabaseFigures(settings.database_url)})
    found = figures_of(collector)
    with app.extensions["fieldcase"].db.session() as s:
        size = s.scalar(select(func.count()).select_from(CustodyEvent))
    assert found["fieldcase_figures_up|source=database"] == 1
    assert found["fieldcase_deferred_records"] == 2 and found["fieldcase_devices_with_deferred_records"] == 1
    assert found["fieldcase_custody_leaves_count"] == size and found["fieldcase_custody_unsigned_leaves"] == size
    assert "fieldcase_custody_head_age_seconds" not in found  # no head signed yet
    assert found["fieldcase_uploads_verifying"] == 0

    phone.push([opened, started])
    assert client.get("/api/v1/custody/tree-head", headers=phone.headers).status_code == 200  # signs the log as it is
    assert figures_of(collector)["fieldcase_deferred_records"] == 2  # served from the cache: at most every 30 s
    fresh = figures_of(Figures({"database": DatabaseFigures(settings.database_url)}))
    assert fresh["fieldcase_deferred_records"] == 0 and fresh["fieldcase_devices_with_deferred_records"] == 0
    assert fresh["fieldcase_custody_unsigned_leaves"] == 0
    assert 0 <= fresh["fieldcase_custody_head_age_seconds"] < 60


def test_given_uploads_waiting_for_a_worker_when_figured_then_the_oldest_and_the_queue_are_counted(
        settings, redis_url, job_queue, tmp_path):
    with observed_app(settings, jobs="rq", redis_url=redis_url, job_queue=job_queue) as (app, _registry):
        phone, _officer = phone_on(app, tmp_path)
        case = phone.open_case(CENTRE, summary="核查")
        inspection = phone.start_inspection(case, officers=[], location=HERE)
        for _ in range(2):
            phone.capture_evidence(os.urandom(10_000), "video", "video/mp4", inspection_id=inspection, location=HERE)
        phone.push()
        assert {r["status"] for r in phone.upload_pending()} == {"uploaded"}  # 202: waiting for a worker
        later = datetime.now(UTC) + timedelta(minutes=10)
        collector = Figures({"database": DatabaseFigures(settings.database_url),
                             "queue": QueueFigures(redis_url, job_queue)}, clock=lambda: later)
        found = figures_of(collector)
        assert found["fieldcase_uploads_verifying"] == 2
        assert 600 <= found["fieldcase_upload_verifying_oldest_seconds"] < 660
        assert found[f"fieldcase_job_queue_jobs|queue={job_queue}|state=queued"] == 2
        assert found[f"fieldcase_job_queue_jobs|queue={job_queue}|state=failed"] == 0
        phone.close()


def test_given_the_database_is_down_when_figured_then_up_is_0_with_no_stale_figure_and_it_is_not_retried_at_once():
    calls: list[int] = []

    def broken(_now: datetime) -> list[Figure]:
        calls.append(1)
        raise ConnectionError("down")

    clock = [0.0]
    collector = Figures({"database": DatabaseFigures(f"postgresql+psycopg://x@127.0.0.1:{free_port()}/x", timeout=1),
                         "broken": broken}, monotonic=lambda: clock[0])
    found = figures_of(collector)
    assert found["fieldcase_figures_up|source=database"] == 0 and found["fieldcase_figures_up|source=broken"] == 0
    assert not any(k.startswith(("fieldcase_uploads", "fieldcase_custody")) for k in found)
    clock[0] += 29
    figures_of(collector)
    assert len(calls) == 1
    clock[0] += 1
    figures_of(collector)
    assert len(calls) == 2
