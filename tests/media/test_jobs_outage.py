"""Redis lost under running workers: a redis-server of the test's own, stopped and started again empty.

Redis holds only the queue (docs/deployment.md, "Redis"), and a restart without persistence loses it: the jobs
waiting, and the records of the ones running. The promise (docs/operations.md, "Jobs"): the workers, busy or idle,
wait for Redis, register again, take their scheduler's lock again, and one of them sweeps at once (the key that
spaces the sweeps went with Redis), so every file ends verified and every photo analysed. The workers are the real
`fieldcase worker` command; helpers are shared with tests/media/test_jobs_faults.py.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import time
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest
from redis import Redis
from redis.exceptions import RedisError

from backend.bootstrap import rq_runner
from backend.core.job_worker import sweep_key
from backend.core.redis_client import bounded_redis
from backend.liveserver import free_port
from tests.conftest import app_on
from tests.e2e.test_client_uploads import CENTRE, HERE
from tests.media.test_jobs import _env, _phone
from tests.media.test_jobs_faults import (
    done,
    holding_uploads,
    photos,
    registered,
    running,
    start_worker,
    verified_events,
    wait_for,
    workers,  # noqa: F401 - the fixture
)

pytestmark = pytest.mark.slow


class OwnRedis:
    """A redis-server of the test's own, without persistence, that the test stops and starts again empty."""

    def __init__(self, folder: Path) -> None:
        self.port, self.folder = free_port(), folder
        self.url = f"redis://127.0.0.1:{self.port}/0"

    def answers(self) -> bool:
        try:
            return bool(bounded_redis(self.url, connect_timeout=0.5, read_timeout=0.5).ping())
        except RedisError:
            return False

    def start(self) -> None:
        subprocess.run(["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
                        "--appendonly", "no", "--daemonize", "yes", "--dir", str(self.folder),
                        "--pidfile", str(self.folder / "redis.pid")], check=True, capture_output=True)
        wait_for("redis-server answers", self.answers, 10, every=0.05)

    def stop(self) -> None:
        subprocess.run(["redis-cli", "-p", str(self.port), "shutdown", "nosave"], capture_output=True)
        wait_for("redis-server stopped", lambda: not self.answers(), 10, every=0.05)


@pytest.fixture
def own_redis(tmp_path) -> Iterator[OwnRedis]:
    if shutil.which("redis-server") is None or shutil.which("redis-cli") is None:
        pytest.skip("needs redis-server and redis-cli (Debian's redis-server package) to stop and start Redis")
    redis = OwnRedis(tmp_path)
    redis.start()
    yield redis
    redis.stop()


@pytest.fixture
def outage_app(settings, own_redis) -> Iterator:
    with app_on(replace(settings, jobs="rq", redis_url=own_redis.url, job_queue="fieldcase-outage")) as application:
        yield application


def sweeps(log: str) -> list[dict]:
    """The sweep lines of a worker's log (JSON: not a terminal)."""
    lines = [json.loads(line) for line in log.splitlines() if line.startswith("{")]
    return [line for line in lines if line.get("msg") == "sweep"]


def test_given_redis_lost_with_jobs_in_it_when_it_returns_empty_then_every_file_is_verified_and_every_photo_analysed(
        outage_app, own_redis, workers, tmp_path):  # noqa: F811 - the fixture
    """Two workers busy (each waiting inside a verification) and one more verification queued when Redis stops;
    while it is down a phone completes one more upload. Redis comes back empty: the busy workers survive, register
    again, and a sweep queues every verification still unfinished and the analysis of every photo verified while
    Redis was away."""
    s = outage_app.extensions["fieldcase"].settings
    env = {**_env(s), "FIELDCASE_SWEEP_INTERVAL": "60"}
    db, queue = outage_app.extensions["fieldcase"].db, rq_runner(s).queue
    connection = Redis.from_url(own_redis.url)
    phone, _ = _phone(outage_app, tmp_path)
    inspection = phone.start_inspection(phone.open_case(CENTRE), officers=[], location=HERE)
    items = photos(phone, inspection, 3)
    phone.push()
    phone.upload_pending()
    assert queue.count == 3
    # A sweep ran a moment ago (the key that spaces them has its interval to go): the workers do not sweep at start.
    connection.set(sweep_key(queue.name), "a-worker-before", ex=60)
    with holding_uploads(db):
        names = [start_worker(workers, env, tmp_path / f"w{n}.log", queue) for n in (1, 2)]
        wait_for("both workers busy", lambda: running(queue) == 2, 15)
        assert queue.count == 1
        own_redis.stop()  # the queued job, and the records of the two running ones, are gone
    items += photos(phone, inspection, 1, start=3)  # while Redis is down: its check cannot be queued
    phone.push()
    phone.upload_pending()
    wait_for("both workers met the outage", lambda: all("lost Redis while finishing job" in w.text()
                                                         for w in workers), 30)
    own_redis.start()
    back = time.monotonic()
    wait_for("every file verified and every photo analysed", lambda: done(db, items), 40)
    took = time.monotonic() - back
    wait_for("both workers registered again", lambda: registered(queue) == set(names), 15)
    assert all(w.alive() for w in workers)
    assert all(verified_events(db, e) == 1 for e in items)
    [after] = [line for w in workers for line in sweeps(w.text())]  # one sweep, by one worker, once Redis was back
    assert after["queued"]["verify_upload"] == 2 and after["queued"]["analyse_evidence"] == 2, after
    print(f"every file verified and photo analysed {took:.1f} s after Redis came back")
    phone.close()


def test_given_an_idle_worker_when_redis_restarts_empty_then_it_and_the_scheduler_come_back(
        outage_app, own_redis, workers, tmp_path):  # noqa: F811 - the fixture
    """The idle worker waits for Redis, registers again (monitoring sees it), its scheduler takes its lock again,
    and work queued afterwards is done."""
    s = outage_app.extensions["fieldcase"].settings
    env = {**_env(s), "FIELDCASE_SWEEP_INTERVAL": "60"}
    db, queue = outage_app.extensions["fieldcase"].db, rq_runner(s).queue
    connection = Redis.from_url(own_redis.url)
    lock = f"rq:scheduler-lock:{queue.name}"
    name = start_worker(workers, env, tmp_path / "w.log", queue)
    wait_for("its scheduler holds the lock", lambda: connection.get(lock) is not None, 15)
    own_redis.stop()
    time.sleep(2)
    own_redis.start()
    back = time.monotonic()
    wait_for("the worker registered again", lambda: registered(queue) == {name}, 20)
    wait_for("a scheduler holds the lock again", lambda: connection.get(lock) is not None, 20)
    took = time.monotonic() - back
    phone, _ = _phone(outage_app, tmp_path)
    inspection = phone.start_inspection(phone.open_case(CENTRE), officers=[], location=HERE)
    items = photos(phone, inspection, 1)
    phone.push()
    phone.upload_pending()
    wait_for("the new photo verified and analysed", lambda: done(db, items), 20)
    assert workers[0].alive()
    print(f"registered again, with its scheduler, {took:.1f} s after Redis came back")
    phone.close()
