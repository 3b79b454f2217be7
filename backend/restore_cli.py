"""`fieldcase restore-check`: the last step of a restore (docs/deployment.md, "Backups"), before phones come
back: the custody log verified, held against a head saved off-site, and the store holding every verified file."""

from __future__ import annotations

from pathlib import Path

import click

from backend.core.config import Settings
from backend.core.times import Clock
from backend.settings_cli import command_database, finish_report


@click.command("restore-check")
@click.option("--saved-head", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="a tree head saved off-site before the failure: the JSON of GET /api/v1/custody/tree-head or "
                   "the checkpoint of GET /api/v1/custody/checkpoint (default: the newest checkpoint a configured "
                   "witness cosigned)")
@click.option("--sample", type=click.IntRange(min=1), help="check this many verified items' objects, drawn at "
              "random (default: every one)")
@click.option("--seed", type=int, help="seed of the --sample draw (default: a fresh one, given in the report)")
@click.option("--json", "as_json", is_flag=True, help="print the machine report (JSON), one entry per problem")
@click.pass_obj
def restore_check(clock: Clock, saved_head: Path | None, sample: int | None, seed: int | None,
                  as_json: bool) -> None:
    """Check a restored system: `custody verify`, the log against the saved head (it fails when the restore lost
    events, saying how many), and every verified evidence object present in the store at its size (a stat or an
    S3 HEAD request each). Exit 1 on any problem."""
    from backend.bootstrap import make_store
    from backend.casework.system_audit.restore import restore_check as check
    from backend.casework.system_audit.restore import restore_options
    from media.custody.keys import signer_for

    settings = Settings.from_env()
    signer = signer_for(settings)
    sm = getattr(signer, "sm", None)
    database = command_database()
    with database.session() as session:
        report = check(session, store=make_store(settings), keys=signer.verification_keys(), clock=clock,
                       saved=saved_head.read_bytes() if saved_head else None,
                       options=restore_options(settings, signer, sample=sample, seed=seed),
                       sm_keys=sm.verification_keys() if sm is not None else None)
    finish_report(report, as_json)
