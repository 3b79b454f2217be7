"""The `fieldcase` commands that prove things: the custody log (`custody ...`), the whole-system audit
(`verify`), an evidence package offline (`verify-package`), evidence retention (`retention purge`), and the SM3 of
evidence verified before the server computed it (`evidence backfill-sm3`)."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import click

from backend.core.config import Settings
from backend.core.errors import DomainError
from backend.core.times import Clock
from backend.settings_cli import command_database, fail, finish_report


@click.group()
def custody() -> None:
    """The custody log."""


def _sm_keys(settings: Settings, given: tuple[str, ...]) -> dict[str, bytes] | None:
    """The SM2 keys the SM tree's heads are checked against: those given (base64url of the 65-byte point), else
    this server's current and retired ones when FIELDCASE_CUSTODY_SUITES has sm, else None (no SM tree kept)."""
    from backend.core.crypto import sm2
    from media.custody.keys import signer_for, sm_key_id_of
    from sync.jws import canonical_b64decode

    if given:
        keys = {}
        for text_ in given:
            try:
                raw = canonical_b64decode(text_.strip())
                sm2.check_public_key(raw)
            except ValueError as exc:
                fail(f"--sm-public-key {text_}: not base64url of an SM2 public key (65-byte point): {exc}")
            keys[sm_key_id_of(raw)] = raw
        return keys
    sm = signer_for(settings).sm
    return sm.verification_keys() if sm is not None else None


@custody.command("verify")
@click.option("--public-key", "public_keys", multiple=True,
              help="base64url Ed25519 key to check tree heads against, repeatable (default: this server's current "
                   "key and the retired ones of FIELDCASE_CUSTODY_KEYRING)")
@click.option("--sm-public-key", "sm_public_keys", multiple=True,
              help="base64url SM2 key (the 65-byte point) to check the SM tree's heads against, repeatable (default, "
                   "with FIELDCASE_CUSTODY_SUITES=intl,sm: the current SM2 key and FIELDCASE_CUSTODY_SM_KEYRING's)")
def custody_verify(public_keys: tuple[str, ...], sm_public_keys: tuple[str, ...]) -> None:
    """Recompute the Merkle tree from the stored events; check every signed tree head and its RFC 3161 timestamp
    (chained to FIELDCASE_TSA_CERT when set); and the SM tree and its SM2 heads when it is kept. Exit 1 on any
    problem."""
    from media.custody.keys import key_id_of, signer_for
    from media.custody.timestamps import load_trust
    from media.custody.verify import verify_log
    from sync.jws import load_public_key

    settings = Settings.from_env()
    if public_keys:
        loaded = [load_public_key(k) for k in public_keys]  # the raw 32 bytes of each
        key = {key_id_of(raw): raw for raw in loaded}
    else:
        key = signer_for(settings).verification_keys()
    trust = load_trust(settings.tsa_cert_path.read_bytes()) if settings.tsa_cert_path else ()
    sm_keys = _sm_keys(settings, sm_public_keys)
    database = command_database()
    with database.session() as session:
        report = verify_log(session, key, tsa_trust=trust, sm_keys=sm_keys)
    for problem in report.problems:
        click.echo(f"PROBLEM {problem}", err=True)
    verdict = "OK" if report.ok else f"{len(report.problems)} problem(s)"
    if report.timestamped or settings.tsa_url:
        click.echo(f"RFC 3161 timestamps: {report.timestamped} of {report.heads} tree heads hold"
                   f"{', chained to FIELDCASE_TSA_CERT' if trust else ''}")
    if sm_keys is not None:
        click.echo(f"SM tree (SM3, SM2 heads): {report.sm_leaves} leaves, {report.sm_heads} signed SM tree heads"
                   + (f"; RFC 3161 timestamps (SM3 imprint): {report.sm_timestamped} of {report.sm_heads} hold"
                      if report.sm_timestamped or settings.tsa_url else ""))
    click.echo(f"custody log: {report.leaves} leaves, {report.heads} signed tree heads: {verdict}")
    sys.exit(0 if report.ok else 1)


@custody.command("build-sm-tree")
@click.pass_obj
def custody_build_sm_tree(clock: Clock) -> None:
    """Build the SM tree (SM3, SM2-signed heads) over the leaves it does not hold yet, after FIELDCASE_CUSTODY_SUITES
    gained sm; sign an SM head at the size of every tree head issued before; harmless twice. One transaction per
    batch of leaves: pushes go on meanwhile, and the last batch leaves the SM tree in step, as every commit keeps it."""
    from backend.bootstrap import database as script_database
    from media.custody import sm_tree
    from media.custody.keys import signer_for

    settings = Settings.from_env()
    if "sm" not in settings.custody_suites:
        fail("FIELDCASE_CUSTODY_SUITES does not include sm: there is no SM tree to build")
    signer = signer_for(settings)
    database = script_database(settings, signing=True, clock=clock)
    added = heads = 0
    while True:
        try:
            with database.transaction() as session:
                step = sm_tree.extend_sm_tree(session, signer, now=clock())
        except DomainError as exc:
            fail(exc.message)
        added, heads = added + step.added, heads + step.heads
        if step.added or step.heads:
            click.echo(f"SM tree: {step.size} of {step.log_size} leaves, {heads} SM head(s) signed so far")
        if step.done:
            break
    with database.transaction() as session:
        head = sm_tree.latest_sm_head(session, signer, now=clock())
    click.echo(f"SM tree built: {added} leaves added, {heads} SM heads signed for earlier tree heads; its head at "
               f"size {head['tree_size']} is {head['root_hash']} (SM2 key {head['key_id']})")


@custody.command("timestamp")
@click.pass_obj
def custody_timestamp(clock: Clock) -> None:
    """Ask the TSA (FIELDCASE_TSA_URL) for the RFC 3161 timestamp of every tree head still without one, oldest
    first, stopping at the first failure. Exit 1 when heads are left without one."""
    from backend.bootstrap import database as script_database
    from media.custody.head_stamps import timestamp_pending
    from media.custody.timestamps import authority_for

    settings = Settings.from_env()
    tsa = authority_for(settings)
    if tsa is None:
        fail("FIELDCASE_TSA_URL is not set: no TSA to ask")
    stamped, pending = timestamp_pending(script_database(settings, clock=clock), tsa)
    click.echo(f"timestamped {stamped} tree head(s); {pending} still without a timestamp")
    sys.exit(1 if pending else 0)


@custody.command("refresh-head")
@click.pass_obj
def custody_refresh_head(clock: Clock) -> None:
    """Sign a tree head for the log as it stands, unless one covers it already (cron, every quarter of
    FIELDCASE_HEAD_INTERVAL, when no job workers do it)."""
    from backend.bootstrap import database as script_database
    from media.custody import heads
    from media.custody.keys import signer_for

    settings = Settings.from_env()
    with script_database(settings, signing=True, clock=clock).transaction() as session:
        head = heads.latest_head(session, signer_for(settings), now=clock())
    click.echo(f"tree head at size {head['tree_size']}, signed {head['timestamp']}")


@custody.command("rotate-key")
@click.option("--yes", is_flag=True, help="do not ask for confirmation")
@click.option("--suite", type=click.Choice(["intl", "sm"]), default="intl", show_default=True,
              help="which key: intl, the Ed25519 key of the tree heads; sm, the SM2 key of the SM tree's heads")
@click.pass_obj
def custody_rotate_key(clock: Clock, yes: bool, suite: str) -> None:
    """Make a new tree-head signing key; the old public key goes to the keyring so old heads stay verifiable.

    Every API process and worker keeps signing with the key it loaded until it is restarted (see
    docs/deployment.md, "Key rotation"): restart them all after copying the new key file to every host.
    """
    from media.custody.keys import rotate_key, rotate_sm_key

    settings = Settings.from_env()
    if suite == "sm":
        if not yes and not click.confirm(f"replace the SM2 signing key in {settings.custody_sm_key_path}?"):
            fail("nothing changed")
        old, new = rotate_sm_key(settings.custody_sm_key_path, settings.custody_sm_keyring_path, now=clock())
        click.echo(f"SM2 custody signing key rotated: {old} -> {new}; retired public key kept in "
                   f"{settings.custody_sm_keyring_path}")
        return
    if not yes and not click.confirm(f"replace the signing key in {settings.custody_key_path}?"):
        fail("nothing changed")
    old, new = rotate_key(settings.custody_key_path, settings.custody_keyring_path, now=clock())
    click.echo(f"custody signing key rotated: {old} -> {new}; retired public key kept in "
               f"{settings.custody_keyring_path}")


class _Bar:
    """The audit's progress bar, on stderr (click draws it only on a terminal)."""

    def __init__(self) -> None:
        self.bar: Any = None

    def begin(self, total: int) -> None:
        self.bar = click.progressbar(length=max(total, 1), label="fieldcase verify", file=sys.stderr)
        self.bar.__enter__()

    def advance(self, stage: str, steps: int) -> None:
        self.bar.label = stage
        self.bar.update(steps)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.__exit__(None, None, None)


@click.command("verify")
@click.option("--json", "as_json", is_flag=True, help="print the machine report (JSON), one entry per problem")
@click.option("--sample", type=click.IntRange(min=1), help="re-hash this many stored files chosen at random "
              "(default: every file)")
@click.option("--seed", type=int, help="seed of the --sample draw (default: a fresh one, given in the report)")
@click.option("--record", is_flag=True, help="store the verdict for the console (what cron runs)")
@click.pass_obj
def verify(clock: Clock, as_json: bool, sample: int | None, seed: int | None, record: bool) -> None:
    """Audit the whole system: the custody log and its heads, every ledger record and chain, every evidence item
    and stored file, every table derived from the ledger. Exit 1 on any problem."""
    from backend.bootstrap import make_store
    from backend.casework.system_audit import audit
    from backend.casework.system_audit.jobs import options_for
    from backend.casework.system_audit.runs import record_run
    from media.custody.keys import signer_for

    settings = Settings.from_env()
    bar = _Bar() if not as_json and sys.stderr.isatty() else None
    database = command_database()
    with database.transaction() as session:
        try:
            signer = signer_for(settings)
            report = audit(session, store=make_store(settings), keys=signer.verification_keys(),
                           clock=clock, options=options_for(settings, sample=sample, seed=seed), progress=bar,
                           sm_keys=signer.sm.verification_keys() if signer.sm is not None else None)
        finally:
            if bar is not None:
                bar.close()
        if record:
            record_run(session, report, trigger="command")
    finish_report(report, as_json)


@click.command("verify-package")
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--public-key", help="base64url Ed25519 custody key to check the tree head against "
              "(default: the key inside the package, which only proves self-consistency)")
@click.option("--tsa-cert", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="PEM certificate (the TSA's CA, or the TSA's own) that the tree head's RFC 3161 timestamp must "
                   "chain to (default: the token is checked with the certificate inside it, which only proves "
                   "self-consistency)")
@click.option("--sm-public-key", help="base64url SM2 custody key (65-byte point) to check the SM tree head and the "
              "index's SM2 seal against, when the package carries them (default: the key inside the package, which "
              "only proves "
              "self-consistency)")
def verify_package(file: Path, public_key: str | None, tsa_cert: Path | None, sm_public_key: str | None) -> None:
    """Check an evidence package offline (signatures, chains, files, proofs, tree head and its timestamp). Exit 1 on
    any problem."""
    from backend.core.errors import TimestampFailed
    from media.custody.timestamps import load_trust
    from media.package_verify import verify_package as verify

    try:
        trust = load_trust(tsa_cert.read_bytes()) if tsa_cert else ()
    except TimestampFailed as exc:
        fail(f"--tsa-cert {tsa_cert}: {exc.message}")
    report = verify(file, public_key, tsa_trust=trust, sm_public_key=sm_public_key)
    for note in report.notes:
        click.echo(note, err=note.startswith("WARNING"))
    for problem in report.problems:
        click.echo(f"PROBLEM {problem}")
    verdict = "OK" if report.ok else f"{len(report.problems)} problem(s)"
    click.echo(f"{file.name}: {report.summary()}: {verdict}")
    sys.exit(0 if report.ok else 1)


@click.group()
def retention() -> None:
    """Evidence retention: deleting files past FIELDCASE_RETENTION_DAYS that no case keeps."""


@retention.command("purge")
@click.option("--as", "as_username", required=True, help="username of the custodian the deletion is done as")
@click.option("--reason", required=True, help="why; kept in each item's custody event")
@click.option("--dry-run", is_flag=True, help="list what would be deleted, delete nothing")
@click.option("--evidence", "evidence_ids", multiple=True, help="only this item (repeatable)")
@click.pass_obj
def retention_purge(clock: Clock, as_username: str, reason: str, dry_run: bool, evidence_ids: tuple[str, ...]) -> None:
    """Delete expired, unlinked evidence files, one item at a time. Exit 1 if any item failed."""
    from backend.bootstrap import database as signing_database
    from backend.bootstrap import make_store
    from backend.casework.accounts import find_by_username
    from backend.core.uow import commit_each
    from media import retention

    settings = Settings.from_env()
    database = signing_database(settings, signing=True, clock=clock)
    store, now = make_store(settings), clock()
    with database.session() as session:
        custodian = find_by_username(session, as_username)
        if custodian is None or not custodian.active or not custodian.has_role("custodian"):
            fail(f"{as_username!r} is not an active custodian")
        try:
            report = retention.plan_purge(session, custodian, reason, settings.retention_days, now=now,
                                          dry_run=dry_run, evidence_ids=list(evidence_ids) or None)
        except DomainError as exc:
            fail(exc.message)
        session.commit()  # the plan only read; each item is a transaction of its own
        items = commit_each(session, report.pending,
                            lambda s, eid: retention.purge_item(s, store, custodian, report, eid, now=now),
                            retention.purge_failed, retention.PURGE_ERRORS)
        report = retention.finish_purge(session, custodian, report, items)
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


@click.group("evidence")
def evidence() -> None:
    """Evidence items and their stored files."""


@evidence.command("backfill-sm3")
@click.option("--batch", type=click.IntRange(min=1), default=100, show_default=True,
              help="items per transaction (their files are read before it begins)")
@click.option("--limit", type=click.IntRange(min=1), help="stop after this many items (default: every one)")
@click.pass_obj
def evidence_backfill_sm3(clock: Clock, batch: int, limit: int | None) -> None:
    """Add the SM3 of every verified item that has none (verified before the server computed SM3): its stored file
    is read once, and its SM3 recorded, with a custody event, only if the file still hashes to the SHA-256 it was
    verified with. A file that does not is a custody alarm: named, nothing written, exit 1 (run `fieldcase verify`).
    Resumable: a re-run skips what is done."""
    from backend.bootstrap import database as signing_database
    from backend.bootstrap import make_store
    from media import backfill

    settings = Settings.from_env()
    database = signing_database(settings, signing=True, clock=clock)  # its leaves may reach a periodic tree head
    context = click.get_current_context()
    context.call_on_close(database.dispose)
    store, report, after = make_store(settings), backfill.BackfillReport(), None
    while limit is None or report.examined < limit:
        with database.session() as session:
            page = backfill.pending(session, after, batch if limit is None else min(batch, limit - report.examined))
        if not page:
            break
        hashed = backfill.rehash(store, page)  # no transaction open while the files are read
        with database.transaction() as session:
            outcomes = backfill.record_batch(session, hashed, now=clock())
        report.add(outcomes)
        after = page[-1].evidence_id
        for outcome in outcomes:
            if outcome.result == backfill.MISMATCH:
                click.echo(f"MISMATCH {outcome.evidence_id}: its stored file no longer hashes to the SHA-256 it was "
                           "verified with; nothing written (a custody alarm: run `fieldcase verify`)", err=True)
            elif outcome.result in backfill.ALARMS:
                click.echo(f"{outcome.result.upper()} {outcome.evidence_id}: {outcome.error}; nothing written",
                           err=True)
    with database.session() as session:
        left = backfill.remaining(session)
    counts = report.counts
    click.echo(f"SM3 added to {counts[backfill.ADDED]} item(s); mismatch {counts[backfill.MISMATCH]}, missing "
               f"{counts[backfill.MISSING]}, failed {counts[backfill.FAILED]}, changed meanwhile "
               f"{counts[backfill.SKIPPED]}; {left} verified item(s) still without SM3")
    sys.exit(0 if report.ok else 1)
