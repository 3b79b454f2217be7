"""`fieldcase keys`: the key-encryption key (KEK) that wraps the data keys personal data is sealed under, and
the generations of those data keys.

`rotate-kek` replaces the KEK file with a new key and re-wraps every data key under it, in one transaction; the
sealed rows and blind indexes are not touched (their data keys do not change). The steps, so that an interruption
anywhere leaves every data key unwrappable on this host and a second run finishes the work:

1. the new KEK is written beside the KEK file, named by its id (`<file>.<id>`, 0600);
2. every data key not under it is unwrapped by the current KEK and wrapped by the new one; commit;
3. the current KEK file is kept beside it under its own id (for backups taken before the rotation) and the new
   one takes its place.

The file provider finds the KEKs beside its file by id, so between 2 and 3 this host still opens everything.
Other hosts keep the data keys they already unwrapped; copy the new KEK file to each before it restarts.

`new-generation` retires a data key that may have leaked: it makes the next generation of each purpose (or of the
one named) under the current KEK, and every process seals and indexes under it from its next write on (the ring
reads the newest generation per write). Rows sealed before still open and are still found by phone. `reseal` then
moves them: clue by clue in id order, a batch per transaction, each row opened under its own key, sealed anew
under the newest and its phone's index recomputed. A row that does not open is named by its id alone (no personal
data is printed) and left as it was; the others are committed. A second run, after an interruption or not, skips
what is done and writes nothing more. The older keys stay: backups taken before the reseal need them.
"""

from __future__ import annotations

from collections.abc import Sequence

import click
from sqlalchemy import select, text
from sqlalchemy.orm import Session

from backend.casework.clues import reseal_complainant, sealed_clues
from backend.core.config import Settings
from backend.core.crypto.data_keys import INDEX, SEAL, KeyRing, sealed_by_key
from backend.core.crypto.key_provider import KeyUnavailable
from backend.core.db import is_sqlite
from backend.core.models import Clue, DataKey
from backend.core.secret_files import kek_provider
from backend.core.times import Clock
from backend.settings_cli import command_database, fail


@click.group()
def keys() -> None:
    """The key-encryption key of sealed personal data (FIELDCASE_KEK_FILE) and the data keys it wraps."""


PURPOSES = (SEAL, INDEX)
purpose_option = click.option("--purpose", type=click.Choice(PURPOSES), default=None,
                              help="only the data key of this purpose (default: every purpose)")


def _ring() -> KeyRing:
    try:
        return KeyRing(kek_provider(Settings.from_env()))
    except KeyUnavailable as exc:
        fail(str(exc))
        raise  # not reached: fail exits


def _older_sealed(session: Session, newest: DataKey | None) -> int:
    """Clues sealed under any key but the newest sealing key, read from the values' headers."""
    return sum(count for key_id, count in sealed_by_key(session, Clue.complainant_sealed).items()
               if newest is None or key_id != newest.id)


def _say_generations(session: Session, rows: Sequence[DataKey]) -> None:
    """How many clues each sealing key still seals and, once the index key has generations, that a look-up tries
    them all (an index value does not name its key, so only a reseal can say which rows are under which)."""
    counts = sealed_by_key(session, Clue.complainant_sealed)
    sealing = [row for row in rows if row.purpose == SEAL]
    newest = max(sealing, key=lambda row: row.generation, default=None)
    for row in sealing:
        mark = ", the newest" if row is newest else ""
        click.echo(f"clues sealed under data key {row.id} (seal, generation {row.generation}{mark}): "
                   f"{counts.get(row.id, 0)}")
    for key_id in sorted(set(counts) - {row.id for row in sealing}):
        click.echo(f"clues sealed under data key {key_id}, which is not a sealing key here: {counts[key_id]}")
    older = sum(count for key_id, count in counts.items() if newest is not None and key_id != newest.id)
    if older and newest is not None:
        click.echo(f"{older} clue(s) sealed under an older generation: `fieldcase keys reseal` moves them to "
                   f"generation {newest.generation}")
    indexing = [row.generation for row in rows if row.purpose == INDEX]
    if len(indexing) > 1:
        click.echo(f"blind indexes do not name their key: a look-up tries all {len(indexing)} index generations; "
                   f"after a complete `fieldcase keys reseal` every one is under generation {max(indexing)}")


@keys.command("status")
def status() -> None:
    """Each data key: its purpose, the KEK it is wrapped under, and whether this host's KEK file unwraps it; how
    many clues each generation still seals."""
    settings = Settings.from_env()
    try:
        ring = KeyRing(kek_provider(settings))
    except KeyUnavailable as exc:
        fail(str(exc))
    database = command_database()
    with database.transaction() as session:
        rows = list(session.scalars(select(DataKey).order_by(DataKey.id)))
        click.echo(f"KEK file {settings.kek_path}: {ring.provider.kek_id}")
        for row in rows:
            try:
                ring.provider.unwrap(row.wrapped, row.kek_id)
                state = "unwraps here"
            except KeyUnavailable as exc:
                state = f"does not unwrap here: {exc}"
            click.echo(f"data key {row.id} ({row.purpose}, generation {row.generation}) under {row.kek_id}: {state}")
        if not rows:
            click.echo("no data keys yet: the first sealed value makes them")
        _say_generations(session, rows)


@keys.command("rotate-kek")
@click.pass_obj
def rotate_kek(clock: Clock) -> None:
    """Replace the KEK with a new one and re-wrap every data key under it; sealed rows are not touched."""
    settings = Settings.from_env()
    try:
        current = kek_provider(settings)
    except KeyUnavailable as exc:
        fail(str(exc))
    database = command_database()
    staged = current.stage()
    try:
        with database.transaction() as session:
            count = KeyRing(current).rewrap(session, staged, now=clock())
    except KeyUnavailable as exc:
        fail(f"{exc}; nothing was re-wrapped, the KEK file is unchanged (the new key stays at {staged.path})")
    retired = current.promote(staged)
    click.echo(f"re-wrapped {count} data key(s) under KEK {staged.kek_id}; sealed rows unchanged")
    click.echo(f"{settings.kek_path} now holds KEK {staged.kek_id}: copy it to every API and worker host")
    click.echo(f"the KEK it replaced ({current.kek_id}) is kept at {retired} for backups taken before now; "
               "destroy it once they have expired")


@keys.command("new-generation")
@purpose_option
@click.pass_obj
def new_generation(clock: Clock, purpose: str | None) -> None:
    """Make the next generation of the data keys (of one purpose, or all), to retire ones that may have leaked."""
    ring, now = _ring(), clock()
    database = command_database()
    try:
        with database.transaction() as session:
            made = [ring.new_generation(session, each, now=now) for each in ([purpose] if purpose else PURPOSES)]
    except KeyUnavailable as exc:
        fail(f"{exc}; no data key was made")
    for row in made:
        click.echo(f"made data key {row.id} ({row.purpose}, generation {row.generation}) under KEK {row.kek_id}: "
                   "new values use it from now on")
    click.echo("rows sealed or indexed before still open and are still found; `fieldcase keys reseal` moves them "
               "to it; the older keys are kept for backups taken before now")


@keys.command("reseal")
@purpose_option
@click.option("--batch", type=click.IntRange(min=1), default=500, show_default=True,
              help="clues per transaction")
@click.pass_obj
def reseal(clock: Clock, purpose: str | None, batch: int) -> None:
    """Seal every clue's complainant anew under the newest data keys and recompute its index; re-runnable."""
    ring, now = _ring(), clock()
    purposes = (purpose,) if purpose else PURPOSES
    database = command_database()
    with database.transaction() as session:
        newest = {each: ring.newest(session, each) for each in purposes}
        try:
            for row in newest.values():
                if row is not None:
                    ring.require(row)
        except KeyUnavailable as exc:
            fail(f"{exc}; nothing was resealed")
    after, seen, changed, broken = None, 0, 0, 0
    while True:
        with database.transaction() as session:
            if is_sqlite(session):  # the pages that held the old values are zeroed, not left free
                session.execute(text("PRAGMA secure_delete = ON"))
            clues = sealed_clues(session, after=after, limit=batch)
            for clue in clues:
                try:
                    changed += reseal_complainant(session, ring, clue, purposes=purposes, now=now)
                except (KeyUnavailable, ValueError) as exc:  # SealBroken, or JSON that is not, are ValueErrors
                    broken += 1
                    click.echo(f"clue {clue.id}: does not open ({type(exc).__name__}); left as it was")
        if not clues:
            break
        seen, after = seen + len(clues), clues[-1].id
    under = ", ".join(f"data key {row.id} ({row.purpose}, generation {row.generation})"
                      for row in newest.values() if row is not None)
    click.echo(f"resealed {changed} of {seen} clue(s) with a complainant under {under or 'no data key yet'}")
    if broken:
        fail(f"{broken} clue(s) could not be resealed (named above, by id); the others are done: run it again "
             "once they are mended")
    with database.transaction() as session:
        older = [row.id for each in purposes for row in ring.generations(session, each)[1:]]
        left = _older_sealed(session, ring.newest(session, SEAL)) if SEAL in purposes else 0
    if left:
        click.echo(f"{left} clue(s) were sealed under an older generation while this ran: run it again")
    elif older:
        click.echo(f"no clue uses an older {' or '.join(purposes)} key now; data key(s) "
                   f"{', '.join(map(str, older))} are kept for backups taken before now")
