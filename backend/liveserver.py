"""Start the real server (gunicorn, `fieldcase serve`) in a child process: for the demo, tests, benches."""

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
                   log_path: Path | None = None, startup_timeout: float = 60.0) -> Iterator[str]:
    port = port or free_port()
    full_env = {**os.environ, **env}
    cmd = [sys.executable, "-m", "backend", "serve", "--port", str(port), "--workers", str(workers)]
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
