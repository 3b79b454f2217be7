"""Metrics of the real server: gunicorn with two workers, each push served by a different worker process, and a
scrape of the metrics port that adds them all up.

The server is `python -m backend serve --workers 2` with FIELDCASE_METRICS_PORT set, as in production. Between
pushes the test SIGKILLs every worker (gunicorn starts new ones), so the three pushes are served by three
different processes, two of them dead by the time of the scrape: the counters must still add up to exactly what
was pushed (a dead worker's counts stay counted), while the gauges of connections count only the workers alive
(gunicorn's `child_exit` marks the dead ones). The metrics folder is given, with a stale file of a previous run
planted in it: the server must empty it first, or the sums would be off by the stale counts.
"""

from __future__ import annotations

import os
import re
import signal
import time
from dataclasses import replace
from pathlib import Path

import pytest
import requests
from prometheus_client.mmap_dict import MmapedDict, mmap_key
from prometheus_client.parser import text_string_to_metric_families

from backend.bootstrap import create_app
from backend.liveserver import free_port, running_workers
from tests.conftest import _empty_tables
from tests.e2e.test_client_uploads import CENTRE, HERE
from tests.live import field_day, live_server, new_phone, port_of, wait_for_workers, wait_until, worker_pids
from tests.web.test_metrics import phone_on

pytestmark = pytest.mark.slow


def scrape(port: int) -> dict[str, list[tuple[dict[str, str], float]]]:
    """The metrics port's answer: every sample by name, with its labels."""
    text = requests.get(f"http://127.0.0.1:{port}/metrics", timeout=30).text
    samples: dict[str, list[tuple[dict[str, str], float]]] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            samples.setdefault(sample.name, []).append((sample.labels, sample.value))
    return samples


def total(samples: dict[str, list[tuple[dict[str, str], float]]], name: str, **labels: str) -> float:
    return sum(v for found, v in samples.get(name, []) if all(found.get(k) == w for k, w in labels.items()))


def plant_stale_counts(folder: Path) -> None:
    """What a previous run of the server would have left: 1000 applied records of a worker long gone."""
    folder.mkdir(parents=True)
    stale = MmapedDict(str(folder / "counter_999999.db"))
    stale.write_value(mmap_key("fieldcase_push_records", "fieldcase_push_records_total", ["status", "code"],
                               ["applied", ""], "stale"), 1000.0, time.time())
    stale.close()


def test_given_three_pushes_served_by_three_worker_processes_when_scraped_then_the_sums_are_exact(
        app, settings, officers, tmp_path):
    folder = tmp_path / "metrics"
    plant_stale_counts(folder)
    metrics_port = free_port()
    officer = officers.make(name="赵磊")
    log = tmp_path / "server.log"
    with live_server(settings, log, workers=2, FIELDCASE_METRICS_PORT=str(metrics_port),
                     FIELDCASE_METRICS_DIR=str(folder), FIELDCASE_DB_POOL_SIZE="3",
                     FIELDCASE_DB_MAX_OVERFLOW="2") as base:
        port = port_of(base)
        phone = new_phone(tmp_path / "phone", base, officer, label="赵磊的手机")
        served_by: list[set[int]] = []
        pushed = []
        try:
            for round_ in range(3):
                if round_:
                    for pid in worker_pids(port):  # every worker that served so far dies
                        os.kill(pid, signal.SIGKILL)
                    wait_for_workers(port, 2)
                served_by.append(set(worker_pids(port)))
                pushed.append(field_day(phone, 2, 3))  # 12 records
                assert phone.push()["counts"] == {"applied": pushed[-1]}
        finally:
            phone.close()
        assert served_by[0].isdisjoint(served_by[1]) and served_by[1].isdisjoint(served_by[2])
        n = sum(pushed)
        assert n == 36

        samples = scrape(metrics_port)
        assert total(samples, "fieldcase_push_records_total") == n  # the stale 1000 were wiped at start
        assert total(samples, "fieldcase_push_records_total", status="applied", code="") == n
        assert total(samples, "fieldcase_push_size_records_count") == 3
        assert total(samples, "fieldcase_push_size_records_sum") == n
        assert total(samples, "fieldcase_http_request_duration_seconds_count", method="POST",
                     route="/api/v1/sync/push") == 3
        assert total(samples, "fieldcase_http_requests_total", route="/api/v1/sync/push", status="200") == 3
        assert total(samples, "fieldcase_custody_leaves_total") >= 3  # a device_head leaf per push at least
        # Gauges of the workers alive now only: 2 × (pool 3 + overflow 2), none of the four killed workers'.
        assert total(samples, "fieldcase_db_pool_connections_max") == 10
        assert total(samples, "fieldcase_db_pool_connections_in_use") == 0
        # The figures that need a query, computed by the master.
        assert total(samples, "fieldcase_figures_up", source="database") == 1
        assert total(samples, "fieldcase_deferred_records") == 0
        assert total(samples, "fieldcase_custody_leaves_count") >= total(samples, "fieldcase_custody_leaves_total")
        assert total(samples, "fieldcase_build_info") == 1

        # Each push's counts came from a process of its own: three or more workers left counter files.
        pids = {int(m.group(1)) for f in folder.iterdir() if (m := re.fullmatch(r"counter_(\d+)\.db", f.name))}
        assert len(pids & set().union(*served_by)) >= 3, (pids, served_by)
        assert 999999 not in pids

        # Not on the API port; bound to loopback only.
        assert requests.get(base + "/metrics", timeout=10).status_code == 404
    text = log.read_text()
    assert f"metrics on http://127.0.0.1:{metrics_port}/metrics" in text and '" 500 ' not in text


def test_given_a_job_worker_with_a_metrics_port_when_it_verifies_uploads_then_its_jobs_and_leaves_are_counted(
        settings, redis_url, job_queue, tmp_path):
    """`fieldcase worker` is one process: it serves its own registry on FIELDCASE_WORKER_METRICS_PORT."""
    rq = replace(settings, jobs="rq", redis_url=redis_url, job_queue=job_queue)
    app = create_app(rq)
    metrics_port = free_port()
    env = {"DATABASE_URL": rq.database_url, "FIELDCASE_INSTANCE_DIR": str(rq.instance_dir), "FIELDCASE_JOBS": "rq",
           "FIELDCASE_REDIS_URL": redis_url, "FIELDCASE_JOB_QUEUE": job_queue,
           "FIELDCASE_WORKER_METRICS_PORT": str(metrics_port)}
    try:
        phone, _officer = phone_on(app, tmp_path)
        case = phone.open_case(CENTRE, summary="核查")
        inspection = phone.start_inspection(case, officers=[], location=HERE)
        for _ in range(2):
            phone.capture_evidence(os.urandom(10_000), "video", "video/mp4", inspection_id=inspection, location=HERE)
        phone.push()
        assert {r["status"] for r in phone.upload_pending()} == {"uploaded"}  # 202: the worker's to verify
        with running_workers(env, 1, log_dir=tmp_path, name_prefix="metrics"):
            wait_until(lambda: total(scrape(metrics_port), "fieldcase_jobs_total", job="verify_upload",
                                     outcome="done") == 2, 60, "the worker to verify both uploads")
            samples = scrape(metrics_port)
            assert total(samples, "fieldcase_jobs_total", outcome="failed") == 0
            assert total(samples, "fieldcase_custody_leaves_total") >= 2  # a `verified` leaf per file
            assert total(samples, "fieldcase_job_duration_seconds_count", job="verify_upload") == 2
        phone.close()
    finally:
        _empty_tables(app.extensions["fieldcase"].db)
        app.extensions["fieldcase"].db.dispose()
