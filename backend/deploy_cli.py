"""`fieldcase deploy-files`: the files an operator installs to run fieldcase under systemd, from the package.

Why they ship inside the package (backend/deploy/) rather than only in the repository: an operator installs a
wheel, not a clone, and the units must match the code they start (the same command lines, a stop timeout that
matches the longest job, the gunicorn settings `fieldcase serve` reads). `tests/web/test_deploy_units.py` starts
the processes with exactly these units' command lines and settings.
"""

from __future__ import annotations

from pathlib import Path

import click

DEPLOY_DIR = Path(__file__).with_name("deploy")
KINDS = (".service", ".timer", ".env", ".py")


def deploy_files() -> list[Path]:
    """The packaged files, by name: the gunicorn settings, the units, the example environment file."""
    return sorted(p for p in DEPLOY_DIR.iterdir() if p.is_file() and p.suffix in KINDS)


@click.command("deploy-files")
@click.option("--out", "out", required=True, type=click.Path(file_okay=False, path_type=Path),
              help="the folder to write them to (made if missing), e.g. /etc/fieldcase")
@click.option("--force", is_flag=True, help="replace files that exist (an edited gunicorn.conf.py or env file too)")
def deploy_files_command(out: Path, force: bool) -> None:
    """Write gunicorn.conf.py, the systemd units (fieldcase-serve, fieldcase-worker@, fieldcase-sweep and its
    timer) and an example fieldcase.env (no secret in it) to a folder; docs/deployment.md says where each goes.
    A file that exists is kept (it may hold your edits) unless --force."""
    out.mkdir(parents=True, exist_ok=True)
    for source in deploy_files():
        target = out / source.name
        if target.exists() and not force:
            click.echo(f"kept {target} (exists; --force replaces it)")
            continue
        target.write_bytes(source.read_bytes())
        target.chmod(0o644)
        click.echo(f"wrote {target}")
