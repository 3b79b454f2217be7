"""Serving the metrics: prometheus-client's multiprocess mode under gunicorn, and a plain registry for a job worker.

Not on the API port, ever. `/metrics` tells anyone who can read it how busy the server is, how many logins fail,
how far behind the custody log's signing is: nothing for phones or the internet. So metrics are off unless
`FIELDCASE_METRICS_PORT` is set, and then they are served on that port only, bound to `FIELDCASE_METRICS_HOST`
(default 127.0.0.1: a Prometheus agent on the same host; set a private address for a scraper elsewhere, and keep
the port out of the load balancer and the firewall's public side). The API port answers `/metrics` with 404.

How `fieldcase serve` does it (`backend.server`):

1. before anything imports prometheus-client, `multiprocess_folder` empties the folder the workers will write to
   (FIELDCASE_METRICS_DIR, or a fresh private one) and names it in `PROMETHEUS_MULTIPROC_DIR`, which the forked
   workers inherit: values left by a previous run must not be added to this one's;
2. gunicorn's master serves `/metrics` on the metrics port from a thread (`serve_multiprocess`): a registry with
   prometheus-client's `MultiProcessCollector`, which adds up the files of every worker, alive or dead (a dead
   worker's counts stay counted), plus the figures that need a query (`backend.web.figures`). The master serves
   them even while every worker is busy or stuck;
3. each worker records into its own files (`backend.web.metrics.PrometheusObserver` with no registry);
4. when gunicorn reaps a worker (`child_exit`), `mark_dead` removes its `live*` gauge files, so the connections in
   use are those of the workers alive now.

A job worker (`fieldcase worker`) is one process: with `FIELDCASE_WORKER_METRICS_PORT` it serves a plain registry
of its own there (`serve_process`); several workers on one host need a port each.
"""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Any

from backend.web.metrics import PrometheusObserver

ENV = "PROMETHEUS_MULTIPROC_DIR"


def multiprocess_folder(configured: str = "") -> tuple[Path, bool]:
    """The workers' folder, emptied, and named in the environment the workers will inherit. Returns it and whether
    it is ours to remove at exit (a fresh one). One folder per `fieldcase serve`: two servers sharing one would
    empty each other's."""
    if configured:
        path, owned = Path(configured), False
        path.mkdir(parents=True, exist_ok=True)
        for entry in path.iterdir():
            if entry.is_dir() and not entry.is_symlink():
                shutil.rmtree(entry)
            else:
                entry.unlink()
    else:
        path, owned = Path(tempfile.mkdtemp(prefix="fieldcase-metrics-")), True
    os.environ[ENV] = str(path)
    values = sys.modules.get("prometheus_client.values")
    if values is not None:  # imported already: make its metrics write files from now on
        values.ValueClass = values.get_value_class()
    return path, owned


def multiprocess() -> bool:
    """Whether this process records into a multiprocess folder (a gunicorn worker of a server with metrics)."""
    return bool(os.environ.get(ENV))


def serve_multiprocess(host: str, port: int, folder: Path, figures: Any = None) -> Any:
    """Serve the sum over the folder's files, and `figures`, on host:port from a thread of this process."""
    from prometheus_client import CollectorRegistry, start_http_server
    from prometheus_client.multiprocess import MultiProcessCollector

    registry = CollectorRegistry()
    MultiProcessCollector(registry, path=str(folder))
    if figures is not None:
        registry.register(figures)
    return start_http_server(port, addr=host, registry=registry)


def mark_dead(pid: int, folder: Path) -> None:
    from prometheus_client import multiprocess as mp

    mp.mark_process_dead(pid, str(folder))


def remove_folder(folder: Path) -> None:
    shutil.rmtree(folder, ignore_errors=True)


def serve_process(host: str, port: int) -> PrometheusObserver:
    """An observer of this one process, its registry served on host:port from a thread."""
    from prometheus_client import CollectorRegistry, start_http_server

    registry = CollectorRegistry()
    observer = PrometheusObserver(registry)
    start_http_server(port, addr=host, registry=registry)
    return observer
