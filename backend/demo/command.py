"""`fieldcase demo` itself: start the real server on a fresh database, play the day, print, answer 0 or 1.

Everything that has to be set up and torn down around the story lives here (the temporary folder, the
database and its cast, the server in a child process, the quiet phone log), so the story, the checks and
the report never deal with processes or exit codes. With `--serve`, a day whose checks all held leaves the
server running on its data for the review console.
"""

from __future__ import annotations

import logging
import shutil
import signal
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click
import requests

from backend.core.config import Settings
from backend.core.db import Database
from backend.core.schema import prepare
from backend.demo import checks, people, story
from backend.demo.day import FieldDay, StoryFailed
from backend.demo.report import report
from backend.liveserver import running_server
from sync.client import ApiError


def _print_checks(day: FieldDay) -> None:
    click.echo("")
    click.echo("== Checks ==")
    for ok, claim in day.checks.results:
        click.echo(f"[{'ok' if ok else 'FAILED'}] {claim}")


def _wait_for_interrupt() -> None:
    """Block until Ctrl-C (SIGINT) or SIGTERM; the caller's `finally` then stops the server."""

    def _stop(_signum: int, _frame: Any) -> None:
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, _stop)
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        click.echo("stopping the server")
    finally:
        signal.signal(signal.SIGTERM, previous)


def serve_demo(base: str, workdir: Path, wait: Callable[[], None] = _wait_for_interrupt) -> None:
    """`fieldcase demo --serve`: say where the console is and how to sign in, then keep the server up."""
    reviewer = next(p for p in people.CAST if "reviewer" in p.roles)
    custodian = next(p for p in people.CAST if "custodian" in p.roles)
    click.echo("")
    click.echo("== The server stays up with the demo's data ==")
    click.echo(f"review console: {base}/console/")
    click.echo(f"reviewer login: {reviewer.username} / {people.PASSWORD}  ({reviewer.name} {reviewer.english})")
    click.echo(f"custodian login: {custodian.username} / {people.PASSWORD}  ({custodian.name} {custodian.english})")
    click.echo(f"API: {base}/api/v1/docs")
    click.echo(f"database: {workdir / 'instance' / 'fieldcase.db'}")
    click.echo("press Ctrl-C to stop")
    wait()


def _play(day: FieldDay) -> None:
    """The day in order: each step of the story, with its checks, then the report."""
    story.play(day)
    checks.check_sync(day)
    story.office(day)
    story.clue_to_case(day)
    story.audit(day)
    story.archive(day)
    checks.check_statistics(day)
    report(day)


def run(keep: bool = False, serve: bool = False, port: int | None = None,
        wait: Callable[[], None] = _wait_for_interrupt) -> int:
    """Play the field day; 0 when every check held, 1 otherwise (with what went wrong).

    With `serve`, a day whose checks all held leaves the server running on its data (the review console at
    /console/) until `wait` returns: Ctrl-C or SIGTERM for the command line.
    """
    workdir = Path(tempfile.mkdtemp(prefix="fieldcase-demo-"))
    # The custody log in both suites: 王芳's phone signs in the national algorithms (SM2, SM3), and the package
    # is proven in both trees (docs/crypto.md).
    env = {"FIELDCASE_INSTANCE_DIR": str(workdir / "instance"), "DATABASE_URL": "",
           "FIELDCASE_CUSTODY_SUITES": "intl,sm"}
    settings = Settings.from_env(env)
    db = Database(settings.database_url)
    day: FieldDay | None = None
    failed: list[str] = []
    # The phones' own warnings (the mismatch, signing without reference data) are in the report already: kept
    # out of the root logger's stderr, where they would fall between its lines.
    quiet = logging.NullHandler()
    phone_log = logging.getLogger("fieldcase.phone")
    phone_log.addHandler(quiet)
    propagated, phone_log.propagate = phone_log.propagate, False
    try:
        prepare(db)
        cast = people.create_cast(db)
        with running_server(env, workers=2, port=port, log_path=workdir / "server.log") as base:
            click.echo(f"fieldcase demo: server at {base} (SQLite and files in {workdir})")
            click.echo("cast: " + "; ".join(f"{p.label}{' certificate ' + p.cert if p.cert else ''}"
                                            for p in cast.values()))
            day = FieldDay(base, workdir, cast, db, click.echo)
            try:
                _play(day)
            finally:
                day.close()
            _print_checks(day)
            failed = day.checks.failed
            if serve and not failed:
                serve_demo(base, workdir, wait)
    except (StoryFailed, ApiError, requests.RequestException, OSError, RuntimeError, ValueError, KeyError) as exc:
        failed = [f"{type(exc).__name__}: {exc}"]
        if day is not None:
            failed = [*day.checks.failed, *failed]
    finally:
        phone_log.removeHandler(quiet)
        phone_log.propagate = propagated
        db.dispose()
        if keep:
            click.echo(f"kept {workdir} (server log: {workdir / 'server.log'})")
        else:
            shutil.rmtree(workdir, ignore_errors=True)
    if failed:
        click.echo("demo FAILED:", err=True)
        for claim in failed:
            click.echo(f"  - {claim}", err=True)
        return 1
    click.echo("demo finished: OK")
    return 0
