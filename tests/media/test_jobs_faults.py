"""Jobs that always finish: every kind of job has a path back, and workers survive the faults a deployment meets.

The promises (docs/operations.md, "Jobs"; backend/core/job_worker.py):

- a job whose worker is killed (`kill -9`) is found dead within DEAD_AFTER seconds, named by `jobs status`, and
  re-queued by the next live worker, which may be a restart under the default name or under the same name;
- Redis lost with jobs queued (a restart without persistence): the busy and the idle workers wait for it,
  register again, and their sweep queues again everything the database says is unfinished, so every file ends
  verified and every photo analysed (tests/media/test_jobs_outage.py);
- the sweep never queues twice what Redis holds, and covers every kind of job in the table.

The workers are the real `fieldcase worker` command in child processes; Redis is the shared test Redis, or a
redis-server of the test's own where the test stops it. A job is kept busy the honest way: the test holds the
database rows (PostgreSQL) or the write lock (SQLite) the job needs, so the worker waits inside it.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path

import pytest
from click.testing import CliRunner
from rq import Worker as RQWorker
from sqlalchemy import func, select, text

from backend import bootstrap
from backend.bootstrap import ALL_JOBS, rq_runner
from backend.cli import main
from backend.core import jobs
from backend.core.models import CustodyEvent, Evidence, TreeHead, Upload, utcnow
from backend.liveserver import free_port
from backend.web.figures import Figures, QueueFigures
from media import jobs as media_jobs
from media.custody import log as custody
from tests import images
from tests.e2e.test_client_uploads import CENTRE, HERE
from tests.media.test_jobs import _env, _phone, run_worker_burst
from tests.web.test_metrics import figures_of


def wait_for(what: str, check: Callable[[], object], timeout: float, every: float = 0.2) -> float:
    """Seconds until `check()` is true; fails with `what` after `timeout`."""
    started = time.monotonic()
    while not check():
        if time.monotonic() - started > timeout:
            raise AssertionError(f"not within {timeout} s: {what}")
        time.sleep(every)
    return time.monotonic() - started


class WorkerProcess:
    """`fieldcase worker` (long-running) in its own process group, as systemd or a container runs it."""

    def __init__(self, env: dict[str, str], log: Path, name: str | None = None) -> None:
        self.log = log
        with open(log, "ab") as out:
            command = [sys.executable, "-m", "backend", "worker", *(["--name", name] if name else [])]
            self.proc = subprocess.Popen(command, env={**os.environ, **env}, stdout=out, stderr=subprocess.STDOUT,
                                         start_new_session=True)

    def alive(self) -> bool:
        return self.proc.poll() is None

    def kill(self) -> None:
        """SIGKILL to the whole group: the worker and its scheduler die at once, with no cleanup."""
        os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait()

    def terminate(self) -> None:
        """SIGTERM: finish the current job, then stop (`stop` waits for it)."""
        if self.alive():
            os.killpg(self.proc.pid, signal.SIGTERM)

    def stop(self) -> None:
        self.terminate()
        try:
            self.proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()

    def text(self) -> str:
        return self.log.read_text(errors="replace")


@pytest.fixture
def workers() -> Iterator[list[WorkerProcess]]:
    started: list[WorkerProcess] = []
    yield started
    for w in started:  # all at once: each takes a second or two to stop its scheduler
        w.terminate()
    for w in started:
        w.stop()


def registered(queue) -> set[str]:
    return {w.name for w in RQWorker.all(queue=queue)}


def start_worker(workers: list[WorkerProcess], env: dict[str, str], log: Path, queue, name: str | None = None) -> str:
    """Start one and wait until it has registered; its name (the default one unless `name`)."""
    before = registered(queue) - ({name} if name else set())
    worker = WorkerProcess(env, log, name)
    workers.append(worker)
    found: set[str] = set()

    def up() -> bool:
        assert worker.alive(), worker.text()
        found.update(registered(queue) - before)
        return bool(found)

    wait_for("the worker registered", up, 30)
    return found.pop()


@contextmanager
def holding_uploads(db) -> Iterator[None]:
    """Keep verification jobs busy: every upload row locked (PostgreSQL), or the write lock taken (SQLite: every
    transaction begins IMMEDIATE, and waits up to 30 s), until the block ends."""
    with db.engine.connect() as conn:
        sqlite = conn.dialect.name == "sqlite"
        conn.execute(text("SELECT id FROM uploads") if sqlite else text("SELECT id FROM uploads FOR UPDATE"))
        yield
        conn.rollback()


def running(queue) -> int:
    return queue.started_job_registry.get_job_count(cleanup=False)


def done(db, evidence_ids: list[str]) -> bool:
    """Every item verified, and each photo read (its metadata) with its thumbnail."""
    with db.session() as s:
        items = [s.get(Evidence, e, populate_existing=True) for e in evidence_ids]
    return all(e.status == "verified" and e.media_info is not None and (e.kind != "photo" or e.thumbnail_key)
               for e in items)


def verified_events(db, evidence_id: str) -> int:
    with db.session() as s:
        return s.scalar(select(func.count()).select_from(CustodyEvent).where(
            CustodyEvent.evidence_id == evidence_id, CustodyEvent.action == "verified"))


def photos(phone, inspection, count: int, start: int = 0) -> list[str]:
    return [phone.capture_evidence(images.jpeg_with_exif((64 + start + n, 48)), "photo", "image/jpeg",
                                   inspection_id=inspection, location=HERE) for n in range(count)]




# --------------------------------------------------------------------------------------- the sweep's reach


def test_given_the_job_table_when_swept_then_every_kind_of_job_has_a_path_back(rq_app, rq_settings):
    kinds = {name for name in ALL_JOBS if not name.startswith("media.jobs.")}  # the old names are aliases
    swept = CliRunner().invoke(main, ["jobs", "sweep"], env=_env(rq_settings))
    assert swept.exit_code == 0, swept.output
    said = {line.split(":", 1)[0] for line in swept.output.splitlines()}
    assert kinds <= said, f"no path back for {sorted(kinds - said)}"


def test_given_a_photo_verified_while_redis_was_down_when_swept_then_it_is_analysed(rq_app, rq_settings, tmp_path):
    phone, _ = _phone(rq_app, tmp_path)
    inspection = phone.start_inspection(phone.open_case(CENTRE), officers=[], location=HERE)
    [photo] = photos(phone, inspection, 1)
    phone.push()
    phone.upload_pending()
    db = rq_app.extensions["fieldcase"].db
    rq_runner(rq_settings).queue.empty()  # its verification was lost too: the worker below is given it by hand
    with db.session() as s:
        upload_id = s.scalar(select(Upload.id).where(Upload.evidence_id == photo))
    # A worker verifies it while its Redis is down: the photo's analysis cannot be queued.
    cut_off = bootstrap.worker(replace(rq_settings, redis_url=f"redis://127.0.0.1:{free_port()}/0"), "cut-off")
    jobs.install(cut_off)
    try:
        jobs.perform(media_jobs.VERIFY, upload_id)
    finally:
        jobs.install(None)
        cut_off.db.dispose()
    with db.session() as s:
        item = s.get(Evidence, photo)
        assert item.status == "verified" and item.media_info is None and item.thumbnail_key is None

    swept = CliRunner().invoke(main, ["jobs", "sweep"], env=_env(rq_settings))
    assert swept.exit_code == 0 and "analyse_evidence: 1 queued" in swept.output, swept.output
    assert "verify_upload: 0 queued" in swept.output
    run_worker_burst(rq_settings, tmp_path)
    assert done(db, [photo])
    phone.close()


def test_given_a_periodic_head_whose_job_was_lost_when_swept_then_it_is_signed(rq_app, rq_settings, tmp_path):
    db = rq_app.extensions["fieldcase"].db
    with db.transaction() as s:
        for n in range(custody.HEAD_EVERY + 3):
            custody.record(s, "read", None, "officer-x", at=utcnow(), purpose=f"test {n}")
    queue = rq_runner(rq_settings).queue
    assert queue.count == 1
    queue.empty()  # Redis restarted without persistence: the job that would sign head 256 is gone
    swept = CliRunner().invoke(main, ["jobs", "sweep"], env=_env(rq_settings))
    assert swept.exit_code == 0 and "issue_tree_head: 1 queued" in swept.output, swept.output
    run_worker_burst(rq_settings, tmp_path)
    with db.session() as s:
        assert s.get(TreeHead, custody.HEAD_EVERY) is not None


def test_given_jobs_of_each_kind_when_queued_then_each_carries_its_own_time_limit(rq_settings):
    runner = rq_runner(rq_settings)
    limits = {name: runner.enqueue_now(name, ["x"]).timeout for name in (media_jobs.VERIFY, media_jobs.ANALYSE)}
    assert limits == {media_jobs.VERIFY: 1800, media_jobs.ANALYSE: 600}
    assert runner.enqueue_now("system_audit", [1, 2]).timeout == jobs.JOB_TIMEOUT  # declares none: the default


# --------------------------------------------------------------------------------------- a worker killed


@pytest.mark.slow
def test_given_a_worker_killed_mid_job_when_one_starts_under_the_default_name_then_the_job_is_requeued_and_finishes(
        rq_app, rq_settings, workers, tmp_path):
    """`kill -9` of a busy worker: `jobs status` names the job stuck and the worker dead, and a new worker (its own
    default name) re-queues the job within seconds of starting, not an hour. The sweep is off, so it is the
    abandoned-job path that brings the job back."""
    phone, _ = _phone(rq_app, tmp_path)
    inspection = phone.start_inspection(phone.open_case(CENTRE), officers=[], location=HERE)
    [photo] = photos(phone, inspection, 1)
    phone.push()
    phone.upload_pending()
    db, queue = rq_app.extensions["fieldcase"].db, rq_runner(rq_settings).queue
    env = {**_env(rq_settings), "FIELDCASE_SWEEP_INTERVAL": "0"}
    with holding_uploads(db):
        first = start_worker(workers, env, tmp_path / "first.log", queue)
        wait_for("the worker took the job", lambda: running(queue) == 1, 30)
        workers[0].kill()
    killed = time.monotonic()

    def status() -> str:
        result = CliRunner().invoke(main, ["jobs", "status"], env=env)
        assert result.exit_code == 0, result.output  # nothing failed: the job is held, not lost
        return result.output

    seen: list[str] = []

    def named() -> bool:
        seen.append(status())
        return f"DEAD WORKER {first}" in seen[-1] and "STUCK" in seen[-1]

    try:
        wait_for("jobs status names the dead worker and the stuck job", named, 25, every=1)
    except AssertionError as exc:
        raise AssertionError(f"{exc}; it said:\n{seen[-1]}") from None
    said = seen[-1]
    stuck = [line for line in said.splitlines() if line.startswith("STUCK")]
    assert len(stuck) == 1 and "verify_upload(" in stuck[0] and f"on worker {first}" in stuck[0], said
    assert "0 running" in said and "workers: 0 alive, 1 dead" in said and "START ONE" in said, said
    found = time.monotonic() - killed
    # what an alert sees meanwhile: the metrics' queue figures say what `jobs status` said
    assert worker_figures(rq_settings) == {"alive": 0, "dead": 1, "stuck": 1, "started": 1}

    restarted = time.monotonic()
    second = start_worker(workers, env, tmp_path / "second.log", queue)
    assert second != first and second.split(".")[0] == first.split(".")[0]  # host.<random>, never host.pid
    wait_for("the job re-queued and done", lambda: done(db, [photo]), 30)
    took = time.monotonic() - restarted
    assert verified_events(db, photo) == 1
    assert "0 failed" in status() and "STUCK" not in status()
    assert {k: v for k, v in worker_figures(rq_settings).items() if k != "dead"} == {"alive": 1, "stuck": 0,
                                                                                   "started": 0}
    print(f"named stuck and dead {found:.1f} s after the kill; done {took:.1f} s after the new worker started")
    phone.close()


def worker_figures(settings) -> dict[str, float]:
    """The queue figures the metrics port serves (backend.web.figures), read as a scrape would, fresh."""
    found = figures_of(Figures({"queue": QueueFigures(settings.redis_url, settings.job_queue)}))
    queue = f"|queue={settings.job_queue}"
    return {"alive": found[f"fieldcase_job_workers{queue}|state=alive"],
            "dead": found[f"fieldcase_job_workers{queue}|state=dead"],
            "stuck": found[f"fieldcase_jobs_stuck{queue}"],
            "started": found[f"fieldcase_job_queue_jobs{queue}|state=started"]}


@pytest.mark.slow
def test_given_a_worker_killed_mid_job_when_restarted_under_its_own_name_then_it_starts_and_takes_the_job_back(
        rq_app, rq_settings, workers, tmp_path):
    """A unit with a fixed name restarted at once after `kill -9`: RQ refused the name for up to an hour. The
    registration of the dead process is cleared, and the job it held handed back at start."""
    phone, _ = _phone(rq_app, tmp_path)
    inspection = phone.start_inspection(phone.open_case(CENTRE), officers=[], location=HERE)
    [photo] = photos(phone, inspection, 1)
    phone.push()
    phone.upload_pending()
    db, queue = rq_app.extensions["fieldcase"].db, rq_runner(rq_settings).queue
    env = {**_env(rq_settings), "FIELDCASE_SWEEP_INTERVAL": "0"}
    unit = f"unit-{os.getpid()}"  # as systemd's `--name %H-%i`: the same name after every restart
    with holding_uploads(db):
        start_worker(workers, env, tmp_path / "w.log", queue, name=unit)
        wait_for("the worker took the job", lambda: running(queue) == 1, 30)
        workers[0].kill()
    restarted = time.monotonic()
    start_worker(workers, env, tmp_path / "w-again.log", queue, name=unit)
    wait_for("the job handed back and done", lambda: done(db, [photo]), 30)
    took = time.monotonic() - restarted
    assert "registration cleared, 1 running job(s) handed back" in workers[1].text()
    assert verified_events(db, photo) == 1
    print(f"done {took:.1f} s after the restart under the same name")
    phone.close()

