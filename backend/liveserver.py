"""Start the real server (gunicorn, `fieldcase serve`) and job workers in child processes: for the demo, tests,
benches."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import requests


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def running_server(env: dict[str, str], *, workers: int = 2, port: int | None = None,
                   log_path: Path | None = None, startup_timeout: float = 60.0,
                   args: tuple[str, ...] = ()) -> Iterator[str]:
    """`fieldcase serve` (with `args`, e.g. `--migrate`) on `port` (default a free one), until it answers."""
    port = port or free_port()
    full_env = {**os.environ, **env}
    cmd = [sys.executable, "-m", "backend", "serve", "--port", str(port), "--workers", str(workers), *args]
    log = open(log_path, "ab") if log_path else subprocess.DEVNULL  # noqa: SIM115 - closed below
    proc = subprocess.Popen(cmd, env=full_env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + startup_timeout
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"server exited with {proc.returncode} before answering"
                                   + (f"; see {log_path}" if log_path else ""))
            try:
                if requests.get(base + "/api/v1/health", timeout=2).ok:
                    break
            except requests.RequestException:
                pass  # not listening yet, or a worker still loading on a busy machine
            if time.monotonic() > deadline:
                raise RuntimeError("server did not answer in time")
            time.sleep(0.1)
        yield base
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
        if log_path:
            log.close()


@contextmanager
def running_workers(env: dict[str, str], count: int = 1, *, log_dir: Path | None = None,
                    name_prefix: str = "worker", startup_timeout: float = 30.0) -> Iterator[list[str]]:
    """`count` job-queue workers (`fieldcase worker`, FIELDCASE_JOBS=rq in `env`) in child processes.

    Yields their names (what custody events record as `rq:<name>`) once each
    has registered with Redis; on exit each gets SIGTERM (finish the current
    job, then stop), and SIGKILL after 20 s.
    """
    from rq import Worker

    from backend.core.redis_client import bounded_redis

    full_env = {**os.environ, **env}
    procs: list[tuple[subprocess.Popen, object]] = []
    names = [f"{name_prefix}-{i + 1}-{os.getpid()}" for i in range(count)]
    try:
        for name in names:
            log = open(log_dir / f"{name}.log", "ab") if log_dir else subprocess.DEVNULL  # noqa: SIM115
            cmd = [sys.executable, "-m", "backend", "worker", "--name", name]
            procs.append((subprocess.Popen(cmd, env=full_env, stdout=log, stderr=subprocess.STDOUT,
                                           start_new_session=True), log))
        redis = bounded_redis(full_env["FIELDCASE_REDIS_URL"], connect_timeout=5, read_timeout=10)
        deadline = time.monotonic() + startup_timeout
        # Until each of ours is registered: a shared Redis also lists other runs' workers, so not `<` (a set that
        # holds one of theirs is no subset of ours, and the loop would end before any of ours had started).
        while not set(names) <= {w.name for w in Worker.all(connection=redis)}:
            for proc, _ in procs:
                if proc.poll() is not None:
                    raise RuntimeError(f"a worker exited with {proc.returncode} before it registered"
                                       + (f"; see {log_dir}" if log_dir else ""))
            if time.monotonic() > deadline:
                raise RuntimeError("the workers did not register with Redis in time")
            time.sleep(0.1)
        yield names
    finally:
        for proc, _ in procs:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGTERM)
        for proc, log in procs:
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
            if log is not subprocess.DEVNULL:
                log.close()
