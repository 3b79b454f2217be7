"""The command line's settings: checked before any command starts, `fieldcase config check`, `fieldcase
init-secrets`.

Every command (but `config check`, which reports rather than stops) reads the settings first: a wrong value stops
it with one `error: NAME=value: what is wrong` line per problem on stderr and exit status 78 (EX_CONFIG of
sysexits.h: a supervisor can tell a configuration to fix from a crash to restart; systemd's
`RestartPreventExitStatus=78`). A FIELDCASE_* name that no setting reads is a warning line at start, and makes
`config check` fail. Then the log lines are set up (backend.core.logs), once, for whatever the command runs:
`serve` and `worker` at FIELDCASE_LOG_LEVEL, one-shot commands (whose output is their report) from WARNING up.
"""

from __future__ import annotations

import json
import logging
import os
import stat
import sys
from pathlib import Path
from typing import Any

import click

from backend.core import logs
from backend.core.config import Settings, defaults
from backend.core.db import Database
from backend.core.secret_files import generates_secrets, init_secrets, missing_secrets, secret_files
from backend.core.variables import VARIABLES, SettingsError, Variable, mask_url, read

EX_CONFIG = 78
UNCHECKED = ("config",)  # commands that report on the settings rather than need them
SERVING = ("serve", "worker")  # long-running: they log at FIELDCASE_LOG_LEVEL; one-shot commands from WARNING up

log = logging.getLogger("fieldcase.settings")


class CheckedGroup(click.Group):
    """The `fieldcase` group: settings that cannot start a command end it with one line per problem, whichever
    command found them (at start, or a secret file a command's key needs)."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except SettingsError as exc:
            for line in exc.problems:
                click.echo(f"error: {line}", err=True)
            ctx.exit(EX_CONFIG)


def start(command: str | None) -> None:
    """Check the settings before `command` runs, set up the log lines, and warn of unknown FIELDCASE_* names."""
    if command is None or command in UNCHECKED:
        return
    settings = Settings.from_env()
    level = settings.log_level
    if command not in SERVING and logging.getLevelName(level) < logging.WARNING:
        level = "WARNING"  # a one-shot command's output is its report; its log only says what went wrong
    logs.configure(level, settings.log_format)
    for line in read(os.environ, defaults()).unknown:
        log.warning(line)


def _shown(var: Variable, value: Any) -> str:
    if isinstance(value, tuple):
        value = ",".join(value)
    text = "" if value is None else str(value)
    return mask_url(text) if var.secret and text else text


def _secret_state(path: Path) -> str:
    if not path.exists():
        return "missing"
    mode = stat.S_IMODE(path.stat().st_mode)
    return f"present ({mode:04o})" + ("" if mode & 0o077 == 0 else ": readable by others, chmod 600 it")


def report(env: dict[str, str]) -> dict[str, Any]:
    """The effective settings with where each came from (secrets masked), the secret files, and every problem."""
    reading = read(env, defaults())
    problems = list(reading.problems)
    settings: Settings | None = None
    if not problems:
        try:
            settings = Settings.from_env(env)
        except SettingsError as exc:
            problems += exc.problems
    rows = []
    for var in VARIABLES:
        raw = (env.get(var.name) or "").strip()
        bad = any(p.startswith(f"{var.name}=") for p in reading.problems)
        value = raw if bad else getattr(settings, var.field) if settings else reading.values.get(
            var.field, defaults().get(var.field))
        source = reading.sources[var.name]
        if var.name == "FIELDCASE_JOBS" and source == "default" and reading.values.get("jobs") == "rq":
            source = "default (FIELDCASE_REDIS_URL is set)"
        rows.append({"variable": var.name, "value": _shown(var, value), "type": var.kind, "source": source,
                     **({"invalid": True} if bad else {})})
    secrets = []
    if settings is not None:
        problems += missing_secrets(settings)
        generated = generates_secrets(settings)
        for entry in secret_files(settings):
            state = _secret_state(entry.path)
            if state == "missing":
                state += ": made on first use (SQLite)" if generated else ": run `fieldcase init-secrets`"
            secrets.append({"name": entry.name, "variable": entry.variable, "path": str(entry.path),
                            "purpose": entry.purpose, "state": state})
    return {"ok": not problems and not reading.unknown, "settings": rows, "secret_files": secrets,
            "problems": problems, "unknown": reading.unknown}


@click.group("config")
def config() -> None:
    """The settings (FIELDCASE_* variables and DATABASE_URL)."""


@config.command("check")
@click.option("--json", "as_json", is_flag=True, help="print the report as JSON")
def config_check(as_json: bool) -> None:
    """Print the effective settings (secrets masked) and where each came from (env or default), the secret
    files, and every problem: a wrong value, a missing secret file, an unknown FIELDCASE_* name. Exit 1 on any."""
    result = report(dict(os.environ))
    if as_json:
        click.echo(json.dumps(result, ensure_ascii=False, indent=1))
        sys.exit(0 if result["ok"] else 1)
    width = max(len(row["variable"]) for row in result["settings"])
    for row in result["settings"]:
        mark = "  INVALID" if row.get("invalid") else ""
        click.echo(f"{row['variable']:<{width}}  {row['value'] or '-'}  [{row['source']}]{mark}")
    for entry in result["secret_files"]:
        click.echo(f"secret file {entry['name']}: {entry['path']} ({entry['purpose']}; {entry['variable']}): "
                   f"{entry['state']}")
    for line in result["problems"]:
        click.echo(f"error: {line}", err=True)
    for line in result["unknown"]:
        click.echo(f"warning: {line}", err=True)
    count = len(result["problems"]) + len(result["unknown"])
    click.echo("settings: OK" if result["ok"] else f"settings: {count} problem(s)")
    sys.exit(0 if result["ok"] else 1)


@click.command("init-secrets")
def init_secrets_command() -> None:
    """Make the secret files that do not exist yet (0600): the access-token key, the custody signing key and the
    console's session key. Never replaces one. Run it once per deployment, then copy the files to every host;
    a deployment on a shared database makes no key by itself (the embedded SQLite default does)."""
    settings = Settings.from_env()
    for entry, made in init_secrets(settings):
        click.echo(f"{'made' if made else 'kept'} {entry.path} ({entry.purpose}; {entry.variable})")
    if not generates_secrets(settings):
        click.echo("copy these files to every API and worker host (the same files everywhere)")


def command_database() -> Database:
    """The database a one-shot command works in, from the environment's settings (checked by `start`).

    Its pool is closed when the command ends, whichever way it ends (`sys.exit` included): a process that runs
    commands in-process (tests, a scheduler) would otherwise keep each command's connections until the garbage
    collector happens to find its engine, and run PostgreSQL out of connection slots."""
    database = Database(Settings.from_env().database_url)
    context = click.get_current_context(silent=True)
    if context is not None:
        context.call_on_close(database.dispose)
    return database


def finish_report(report: Any, as_json: bool) -> None:
    """An audit's report (`fieldcase verify`, `restore-check`) as JSON or one line per problem then its summary;
    exit 1 on any problem, so cron and monitoring read the exit code."""
    if as_json:
        click.echo(json.dumps(report.as_dict(), ensure_ascii=False, indent=1))
    else:
        for problem in report.problems:
            click.echo(problem.line())
        for line in report.summary_lines():
            click.echo(line)
    sys.exit(0 if report.ok else 1)


def fail(message: str) -> None:
    """A command's refusal: one line on stderr, exit 1."""
    click.echo(f"error: {message}", err=True)
    sys.exit(1)
