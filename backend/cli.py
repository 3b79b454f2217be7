"""The `fieldcase` command."""

from __future__ import annotations

import getpass
import json
import sys
from datetime import date
from pathlib import Path

import click

from backend.core.config import Settings
from backend.core.db import Database
from backend.core.errors import DomainError
from backend.core.models import ROLES, Officer


def _db() -> Database:
    return Database(Settings.from_env().database_url)


def _fail(message: str) -> None:
    click.echo(f"error: {message}", err=True)
    sys.exit(1)


@click.group()
def main() -> None:
    """fieldcase: the sync server for enforcement officers' phones.

    Configuration comes from the environment (see README): FIELDCASE_INSTANCE_DIR,
    DATABASE_URL, and the other FIELDCASE_* variables.
    """


@main.command()
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=8000, show_default=True, type=int)
@click.option("--workers", default=2, show_default=True, type=int)
@click.option("--threads", default=4, show_default=True, type=int)
def serve(host: str, port: int, workers: int, threads: int) -> None:
    """Serve the API with gunicorn; an empty database is upgraded first."""
    from backend.server import serve as run

    run(host=host, port=port, workers=workers, threads=threads)


@main.group()
def db() -> None:
    """Database schema."""


@db.command("upgrade")
def db_upgrade() -> None:
    """Upgrade the schema to the newest migration and load the reference data."""
    from backend.core.schema import current_revision, prepare

    database = _db()
    prepare(database)
    click.echo(f"database at revision {current_revision(database.engine)}")


@main.command("seed-reference")
def seed_reference() -> None:
    """Load or refresh regions, departments, the violation catalogue and starting discretion benchmarks (idempotent)."""
    from backend.core.reference import seed, seed_benchmarks
    from backend.core.schema import upgrade

    database = _db()
    upgrade(database)
    with database.transaction() as session:
        counts = seed(session)
        counts["discretion benchmarks"] = seed_benchmarks(session)
    click.echo("reference data loaded; new rows: " + ", ".join(f"{k} {v}" for k, v in counts.items()))


def _ask(value: str | None, label: str, *, secret: bool = False) -> str:
    if value:
        return value
    if not sys.stdin.isatty():
        _fail(f"--{label} is required when not run in a terminal")
    if secret:
        first = getpass.getpass(f"{label}: ")
        if first != getpass.getpass(f"{label} (again): "):
            _fail("the two passwords differ")
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
def create_officer(username, password, name, region, department, roles, cert_number, cert_valid_from,
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
        fields["cert_valid_from"] = date.today()
    database = _db()
    prepare(database)
    try:
        with database.transaction() as session:
            officer: Officer = create(session, kdf=Settings.from_env().password_kdf, **fields)
            click.echo(json.dumps({"id": officer.id, "username": officer.username, "roles": officer.roles},
                                  ensure_ascii=False))
    except DomainError as exc:
        detail = f" {json.dumps(exc.errors, ensure_ascii=False)}" if exc.errors else ""
        _fail(exc.message + detail)


@main.command("import-institutions")
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--as", "as_username", required=True, help="username of the admin the import is done as")
def import_institutions(file: Path, as_username: str) -> None:
    """Import institutions from a UTF-8 CSV; bad rows are listed by line, good rows imported."""
    from backend.casework.accounts import find_by_username
    from backend.casework.institutions import import_csv
    from backend.core.schema import prepare

    database = _db()
    prepare(database)
    try:
        text = file.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        _fail("the file is not UTF-8")
    with database.transaction() as session:
        admin = find_by_username(session, as_username)
        if admin is None or not admin.active or not admin.has_role("admin"):
            _fail(f"{as_username!r} is not an active admin")
        try:
            report = import_csv(session, admin, text)
        except DomainError as exc:
            _fail(exc.message)
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


@main.group()
def custody() -> None:
    """The custody log."""


@custody.command("verify")
@click.option("--public-key", "public_keys", multiple=True,
              help="base64url Ed25519 key to check tree heads against, repeatable (default: this server's current "
                   "key and the retired ones of FIELDCASE_CUSTODY_KEYRING)")
def custody_verify(public_keys: tuple[str, ...]) -> None:
    """Recompute the Merkle tree from the stored events; check every signed tree head. Exit 1 on any problem."""
    from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

    from media.custody.keys import key_id_of, signer_for
    from media.custody.verify import verify_log
    from sync.jws import load_public_key

    settings = Settings.from_env()
    if public_keys:
        loaded = [load_public_key(k) for k in public_keys]
        key = {key_id_of(k.public_bytes(Encoding.Raw, PublicFormat.Raw)): k for k in loaded}
    else:
        key = signer_for(settings).verification_keys()
    database = _db()
    with database.session() as session:
        report = verify_log(session, key)
    for problem in report.problems:
        click.echo(f"PROBLEM {problem}", err=True)
    verdict = "OK" if report.ok else f"{len(report.problems)} problem(s)"
    click.echo(f"custody log: {report.leaves} leaves, {report.heads} signed tree heads: {verdict}")
    sys.exit(0 if report.ok else 1)


@custody.command("rotate-key")
@click.option("--yes", is_flag=True, help="do not ask for confirmation")
def custody_rotate_key(yes: bool) -> None:
    """Make a new tree-head signing key; the old public key goes to the keyring so old heads stay verifiable.

    Every API process and worker keeps signing with the key it loaded until it is restarted (see
    docs/deployment.md, "Key rotation"): restart them all after copying the new key file to every host.
    """
    from media.custody.keys import rotate_key

    settings = Settings.from_env()
    if not yes and not click.confirm(f"replace the signing key in {settings.custody_key_path}?"):
        _fail("nothing changed")
    old, new = rotate_key(settings.custody_key_path, settings.custody_keyring_path)
    click.echo(f"custody signing key rotated: {old} -> {new}; retired public key kept in "
               f"{settings.custody_keyring_path}")


@main.command()
@click.option("--burst", is_flag=True, help="work until the queue is empty, then exit (tests, cron)")
@click.option("--name", help="this worker's name in Redis and in custody events (default host.pid)")
def worker(burst: bool, name: str | None) -> None:
    """Run an RQ worker for the slow work (FIELDCASE_JOBS=rq): verifying uploads, photos, tree heads."""
    import logging

    from backend.bootstrap import worker as build_worker
    from backend.core.jobs import work

    settings = Settings.from_env()
    if settings.jobs != "rq":
        _fail("workers need FIELDCASE_JOBS=rq and FIELDCASE_REDIS_URL (the embedded default runs jobs inline)")
    logging.basicConfig(level=settings.log_level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    work(build_worker(settings, name), burst=burst, log_level=settings.log_level)


@main.group()
def jobs() -> None:
    """The job queue (FIELDCASE_JOBS=rq): its state, its failed jobs, and work to queue again."""


def _rq_settings() -> Settings:
    settings = Settings.from_env()
    if settings.jobs != "rq":
        _fail("FIELDCASE_JOBS is not rq: jobs run inline, there is no queue")
    return settings


@jobs.command("status")
def jobs_status() -> None:
    """Queue lengths and the failed jobs (retries used up), newest last. Exit 1 when any job failed."""
    from backend.bootstrap import rq_runner
    from backend.core.jobs import queue_report

    report = queue_report(rq_runner(_rq_settings()))
    click.echo(f"queue {report['queue']}: {report['queued']} queued, {report['started']} running, "
               f"{report['scheduled']} waiting to retry, {report['failed']} failed")
    for job in report["failed_jobs"]:
        click.echo(f"FAILED {job['id']} {job['job']} at {job['ended_at']}: {job['error']}")
    sys.exit(1 if report["failed"] else 0)


@jobs.command("requeue")
def jobs_requeue() -> None:
    """Queue every failed job again (after fixing what made it fail)."""
    from backend.bootstrap import rq_runner
    from backend.core.jobs import requeue_failed

    click.echo(f"requeued {requeue_failed(rq_runner(_rq_settings()))} failed job(s)")


@jobs.command("sweep")
def jobs_sweep() -> None:
    """Queue again the verification of every upload still `verifying` (a job lost with Redis); harmless twice."""
    from backend.bootstrap import rq_runner
    from media.jobs import VERIFY, stuck_verifications

    runner = rq_runner(_rq_settings())
    database = _db()
    with database.session() as session:
        ids = stuck_verifications(session)
    for upload_id in ids:
        runner.enqueue_now(VERIFY, [upload_id])
    click.echo(f"queued {len(ids)} verification(s) again")


@main.command("verify-package")
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--public-key", help="base64url Ed25519 custody key to check the tree head against "
              "(default: the key inside the package, which only proves self-consistency)")
def verify_package(file: Path, public_key: str | None) -> None:
    """Check an evidence package offline (signatures, chains, files, proofs, tree head). Exit 1 on any problem."""
    from media.package_verify import verify_package as verify

    report = verify(file, public_key)
    for note in report.notes:
        click.echo(note, err=note.startswith("WARNING"))
    for problem in report.problems:
        click.echo(f"PROBLEM {problem}")
    verdict = "OK" if report.ok else f"{len(report.problems)} problem(s)"
    click.echo(f"{file.name}: {report.summary()}: {verdict}")
    sys.exit(0 if report.ok else 1)


@main.group()
def retention() -> None:
    """Evidence retention: deleting files past FIELDCASE_RETENTION_DAYS that no case keeps."""


@retention.command("purge")
@click.option("--as", "as_username", required=True, help="username of the custodian the deletion is done as")
@click.option("--reason", required=True, help="why; kept in each item's custody event")
@click.option("--dry-run", is_flag=True, help="list what would be deleted, delete nothing")
@click.option("--evidence", "evidence_ids", multiple=True, help="only this item (repeatable)")
def retention_purge(as_username: str, reason: str, dry_run: bool, evidence_ids: tuple[str, ...]) -> None:
    """Delete expired, unlinked evidence files, one item at a time. Exit 1 if any item failed."""
    from backend.bootstrap import database as signing_database
    from backend.bootstrap import make_store
    from backend.casework.accounts import find_by_username
    from backend.core.models import utcnow
    from media.retention import purge

    settings = Settings.from_env()
    database = signing_database(settings, signing=True)
    with database.session() as session:
        custodian = find_by_username(session, as_username)
        if custodian is None or not custodian.active or not custodian.has_role("custodian"):
            _fail(f"{as_username!r} is not an active custodian")
        try:
            report = purge(session, make_store(settings), custodian, reason, utcnow(), settings.retention_days,
                           dry_run=dry_run, evidence_ids=list(evidence_ids) or None)
        except DomainError as exc:
            _fail(exc.message)
    for item in report.items:
        if item.result == "failed":
            click.echo(f"FAILED {item.evidence_id}: {item.error}", err=True)
        elif item.result == "skipped":
            click.echo(f"skipped {item.evidence_id}: {item.reason}")
        else:
            verb = "would delete" if dry_run else "deleted"
            shared = f" (kept, shared: {', '.join(item.kept)})" if item.kept else ""
            click.echo(f"{verb} {item.evidence_id} sha256={item.sha256} size={item.size}: "
                       f"{', '.join(item.removed) or 'nothing stored'}{shared}")
    done = report.count("would_delete" if dry_run else "deleted")
    click.echo(f"{'would delete' if dry_run else 'deleted'} {done}, skipped {report.count('skipped')}, "
               f"failed {report.count('failed')}; retention {report.retention_days} days "
               f"(captured and received before {report.cutoff.isoformat(timespec='seconds')})")
    sys.exit(0 if report.ok else 1)
