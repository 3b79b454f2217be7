"""`fieldcase keys`: the key-encryption key (KEK) that wraps the data keys personal data is sealed under.

`rotate-kek` replaces the KEK file with a new key and re-wraps every data key under it, in one transaction; the
sealed rows and blind indexes are not touched (their data keys do not change). The steps, so that an interruption
anywhere leaves every data key unwrappable on this host and a second run finishes the work:

1. the new KEK is written beside the KEK file, named by its id (`<file>.<id>`, 0600);
2. every data key not under it is unwrapped by the current KEK and wrapped by the new one; commit;
3. the current KEK file is kept beside it under its own id (for backups taken before the rotation) and the new
   one takes its place.

The file provider finds the KEKs beside its file by id, so between 2 and 3 this host still opens everything.
Other hosts keep the data keys they already unwrapped; copy the new KEK file to each before it restarts.
"""

from __future__ import annotations

import click
from sqlalchemy import select

from backend.core.config import Settings
from backend.core.crypto.data_keys import KeyRing
from backend.core.crypto.key_provider import KeyUnavailable
from backend.core.models import DataKey
from backend.core.secret_files import kek_provider
from backend.core.times import Clock
from backend.settings_cli import command_database, fail


@click.group()
def keys() -> None:
    """The key-encryption key of sealed personal data (FIELDCASE_KEK_FILE) and the data keys it wraps."""


@keys.command("status")
def status() -> None:
    """Each data key: its purpose, the KEK it is wrapped under, and whether this host's KEK file unwraps it."""
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
