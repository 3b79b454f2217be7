"""The `fieldcase` command."""

from __future__ import annotations

import getpass
import json
import sys
from pathlib import Path

import click

from backend.core.config import Settings
from backend.core.errors import DomainError
from backend.core.models import ROLES, Officer
from backend.core.times import LOCAL_TZ, Clock, system_clock
from backend.deploy_cli import deploy_files_command
from backend.evidence_cli import custody, evidence, retention, verify, verify_package
from backend.jobs_cli import jobs, worker
from backend.keys_cli import keys
from backend.restore_cli import restore_check
from backend.settings_cli import CheckedGroup, command_database, config, fail, init_secrets_command, start


@click.group(cls=CheckedGroup)
@click.pass_context
def main(ctx: click.Context) -> None:
    """fieldcase: the sync server for enforcement officers' phones.

    Configuration comes from the environment (see README): FIELDCASE_INSTANCE_DIR,
    DATABASE_URL, and the other FIELDCASE_* variables; `fieldcase config check` shows them.
    """
    if ctx.obj is None:  # the clock commands read (`@click.pass_obj`); a test passes its own with `obj=`
        ctx.obj = system_clock
    start(ctx.invoked_subcommand)  # settings checked (exit 78 on a wrong one), log lines set up


main.add_command(config)
main.add_command(init_secrets_command)


@main.command()
@click.option("--host", help="the address to listen on  [default: the config file's bind]")
@click.option("--port", type=int, help="the port  [default: the config file's bind]")
@click.option("--workers", type=int, help="gunicorn worker processes  [default: the config file's]")
@click.option("--threads", type=int, help="threads per worker  [default: the config file's]")
@click.option("--config", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="gunicorn's settings file  [default: the one in the package; `fieldcase deploy-files` writes it]")
@click.option("--migrate/--no-migrate", default=None,
              help="bring the schema to this release's first, or refuse to start on any other  [default: --migrate "
                   "on SQLite; --no-migrate on a shared database, where `fieldcase migrate` is a release step]")
def serve(host: str | None, port: int | None, workers: int | None, threads: int | None, config: Path | None,
          migrate: bool | None) -> None:
    """Serve the API with gunicorn (this process is its master)."""
    from backend.core.schema import MigrationBrokeReferences, SchemaNotCurrent
    from backend.server import GUNICORN_CONFIG
    from backend.server import serve as run

    try:
        run(config=config or GUNICORN_CONFIG, migrate=migrate, host=host, port=port, workers=workers,
            threads=threads)
    except (SchemaNotCurrent, MigrationBrokeReferences) as exc:
        fail(str(exc))


@main.command("migrate")
@click.option("--lock-timeout", metavar="DURATION",
              help="how long a migration may wait for a table's lock before it gives up, rolled back whole (PostgreSQL;"
                   " e.g. 500ms, 30s)  [default: 5s]")
def migrate(lock_timeout: str | None) -> None:
    """Bring the schema to this release's newest migration and load the reference data: a release step, run once
    before the new release's processes start (the old ones keep serving meanwhile; docs/deployment.md)."""
    from sqlalchemy.exc import OperationalError

    from backend.core import schema

    try:
        schema.check_lock_timeout(lock_timeout)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--lock-timeout") from None
    database = command_database()
    try:
        schema.prepare(database, lock_timeout=lock_timeout)
    except schema.MigrationBrokeReferences as exc:
        fail(str(exc))
    except OperationalError as exc:
        if getattr(exc.orig, "sqlstate", None) != schema.LOCK_NOT_AVAILABLE:
            raise
        fail(f"a migration waited longer than {lock_timeout or schema.DEFAULT_LOCK_TIMEOUT} for a lock on a table in "
             "use and was rolled back whole (nothing changed): run `fieldcase migrate` again, at a quieter time or "
             "with a longer --lock-timeout")
    click.echo(f"database at revision {schema.current_revision(database.engine)}")


@main.group()
def db() -> None:
    """Database schema."""


db.add_command(click.Command("upgrade", callback=migrate.callback, params=migrate.params,
                             help="The same as `fieldcase migrate` (its earlier name)."))


@main.command("seed-reference")
def seed_reference() -> None:
    """Load or refresh regions, departments, the violation catalogue and starting discretion benchmarks (idempotent)."""
    from backend.core.reference import seed, seed_benchmarks
    from backend.core.schema import upgrade

    database = command_database()
    upgrade(database)
    with database.transaction() as session:
        counts = seed(session)
        counts["discretion benchmarks"] = seed_benchmarks(session)
    click.echo("reference data loaded; new rows: " + ", ".join(f"{k} {v}" for k, v in counts.items()))


def _ask(value: str | None, label: str, *, secret: bool = False) -> str:
    if value:
        return value
    if not sys.stdin.isatty():
        fail(f"--{label} is required when not run in a terminal")
    if secret:
        first = getpass.getpass(f"{label}: ")
        if first != getpass.getpass(f"{label} (again): "):
            fail("the two passwords differ")
        return first
    return click.prompt(label)


@main.command("create-officer")
@click.option("--username")
@click.option("--password", help="prefer the prompt: command lines end up in shell history")
@click.option("--name")
@click.option("--region", help="region code, e.g. 330106")
@click.option("--department", help="department code, e.g. education")
@click.option("--roles", help="comma-separated: " + ",".join(ROLES))
@click.option("--cert-number")
@click.option("--cert-valid-from", type=click.DateTime(["%Y-%m-%d"]))
@click.option("--cert-valid-until", type=click.DateTime(["%Y-%m-%d"]))
@click.pass_obj
def create_officer(clock: Clock, username, password, name, region, department, roles, cert_number, cert_valid_from,
                   cert_valid_until) -> None:
    """Create an officer account (the first admin, or from scripts)."""
    from backend.casework.accounts import create_officer as create
    from backend.core.schema import prepare

    fields = {
        "username": _ask(username, "username"),
        "password": _ask(password, "password", secret=True),
        "name": _ask(name, "name"),
        "region": _ask(region, "region"),
        "department": _ask(department, "department"),
        "roles": [r.strip() for r in _ask(roles, "roles").split(",") if r.strip()],
        "cert_number": cert_number,
        "cert_valid_from": cert_valid_from.date() if cert_valid_from else None,
        "cert_valid_until": cert_valid_until.date() if cert_valid_until else None,
    }
    if fields["cert_number"] and not fields["cert_valid_from"]:
        fields["cert_valid_from"] = clock().astimezone(LOCAL_TZ).date()  # a day is a local date (core.times)
    database = command_database()
    prepare(database)
    try:
        with database.transaction() as session:
            officer: Officer = create(session, kdf=Settings.from_env().password_kdf, now=clock(), **fields)
            click.echo(json.dumps({"id": officer.id, "username": officer.username, "roles": officer.roles},
                                  ensure_ascii=False))
    except DomainError as exc:
        detail = f" {json.dumps(exc.errors, ensure_ascii=False)}" if exc.errors else ""
        fail(exc.message + detail)


@main.command("import-institutions")
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--as", "as_username", required=True, help="username of the admin the import is done as")
def import_institutions(file: Path, as_username: str) -> None:
    """Import institutions from a UTF-8 CSV; bad rows are listed by line, good rows imported."""
    from backend.casework.accounts import find_by_username
    from backend.casework.institutions import import_csv
    from backend.core.schema import prepare

    database = command_database()
    prepare(database)
    try:
        text = file.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        fail("the file is not UTF-8")
    with database.transaction() as session:
        admin = find_by_username(session, as_username)
        if admin is None or not admin.active or not admin.has_role("admin"):
            fail(f"{as_username!r} is not an active admin")
        try:
            report = import_csv(session, admin, text)
        except DomainError as exc:
            fail(exc.message)
    for err in report.errors:
        click.echo(f"line {err['line']}: {err['message']} {json.dumps(err['errors'], ensure_ascii=False)}",
                   err=True)
    click.echo(f"created {report.created}, updated {report.updated}, rejected {len(report.errors)}")
    if report.errors:
        sys.exit(2)


@main.command()
@click.option("--keep", is_flag=True, help="keep the demo's instance folder and print where it is")
@click.option("--serve", is_flag=True,
              help="after the story, keep the server running with its data: prints the review console's address "
                   "and a reviewer's login; Ctrl-C stops it")
@click.option("--port", type=int, default=None, help="the server's port (default: a free one)")
def demo(keep: bool, serve: bool, port: int | None) -> None:
    """Start a real server on a free port with embedded defaults and walk through it."""
    from backend.demo import run

    sys.exit(run(keep=keep, serve=serve, port=port))


main.add_command(custody)
main.add_command(verify)
main.add_command(verify_package)
main.add_command(retention)
main.add_command(evidence)
main.add_command(worker)
main.add_command(jobs)
main.add_command(deploy_files_command)
main.add_command(restore_check)
main.add_command(keys)
