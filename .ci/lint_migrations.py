"""Lint every migration's PostgreSQL with squawk (https://squawkhq.com): what a migration would do to a busy database.

    .venv/bin/python .ci/lint_migrations.py postgresql://postgres@127.0.0.1:5432/test [--keep DIR]
    .venv/bin/python .ci/lint_migrations.py --sql-dir DIR        # lint SQL files already written

Why the SQL is recorded from a real run rather than taken from `alembic upgrade --sql` (offline mode): some
migrations read rows and write what they read (0009, 0012, 0015, 0016), which offline mode cannot do; and the SQL
that runs is the SQL to judge. So on the PostgreSQL server given, in a throwaway database (dropped afterwards),
each revision is upgraded on its own, in one transaction as `fieldcase migrate` runs it (migrations/env.py's
`SET LOCAL lock_timeout` first), and every statement that changes something is written to `<revision file>.sql`,
its parameters rendered as literals. Reads (SELECT, SHOW) are left out: they lock nothing that blocks a push.

Then squawk, pinned in pyproject.toml's `test` extra, checks each file with `.ci/squawk.toml` (the rules left out
for every migration, each with its reason; each file is a transaction, as Alembic runs it). What a shipped migration
did that cannot be undone is accepted for that migration alone in `.ci/migrations-accepted.toml`, with its reason,
as a `-- squawk-ignore-file` line at the top of its SQL. Exit status: squawk's (0: no problem).
"""

from __future__ import annotations

import argparse
import re
import shutil
import subprocess
import sys
import tempfile
import tomllib
import uuid
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
CONFIG = ROOT / ".ci" / "squawk.toml"
ACCEPTED = ROOT / ".ci" / "migrations-accepted.toml"
READS = re.compile(r"\s*(SELECT|SHOW)\b", re.IGNORECASE)
ESCAPES = re.compile(r"\x1b\[[0-9;]*m|\x1b\]8;;[^\x1b]*\x1b\\")


def record(server_url: str, out: Path) -> list[Path]:
    """One SQL file per revision, in order, from upgrading a throwaway database one revision at a time."""
    from alembic import command
    from alembic.script import ScriptDirectory
    from sqlalchemy import create_engine, event, make_url, text

    from backend.core.schema import alembic_config

    admin_url = make_url(server_url).set(drivername="postgresql+psycopg")
    name = f"fieldcase_lint_{uuid.uuid4().hex[:12]}"
    admin = create_engine(admin_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    url = admin_url.set(database=name).render_as_string(hide_password=False)
    engine = create_engine(url)
    written: list[Path] = []
    try:
        cfg = alembic_config(url)
        revisions = list(reversed(list(ScriptDirectory.from_config(cfg).walk_revisions())))
        for rev in revisions:
            statements: list[str] = []

            def keep(conn: Any, cursor: Any, statement: str, parameters: Any, _context: Any, executemany: bool,
                     into: list[str] = statements) -> None:
                if not READS.match(statement):
                    into.extend(_rendered(conn, statement, parameters, executemany))

            event.listen(engine, "before_cursor_execute", keep)
            try:
                with engine.begin() as conn:
                    cfg.attributes["connection"] = conn
                    command.upgrade(cfg, rev.revision)
            finally:
                event.remove(engine, "before_cursor_execute", keep)
            path = out / f"{Path(rev.path).stem}.sql"
            path.write_text("".join(f"{s.strip().rstrip(';')};\n\n" for s in statements), encoding="utf-8")
            written.append(path)
    finally:
        engine.dispose()
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()
    return written


def _rendered(conn: Any, statement: str, parameters: Any, executemany: bool) -> list[str]:
    """The statement as PostgreSQL received it, its parameters as literals (psycopg's own quoting)."""
    import psycopg

    sets = parameters if executemany else [parameters]
    with psycopg.ClientCursor(conn.connection.driver_connection) as cursor:
        return [cursor.mogrify(statement, params or None) for params in sets]


def accept(files: list[Path]) -> None:
    """Put each shipped migration's accepted rules (ACCEPTED) at the top of its SQL, as squawk reads them."""
    accepted = tomllib.loads(ACCEPTED.read_text(encoding="utf-8"))
    for path in files:
        rules = accepted.get(path.stem)
        text = path.read_text(encoding="utf-8")
        if rules and not text.startswith("-- squawk-ignore-file"):
            path.write_text(f"-- squawk-ignore-file {', '.join(rules)}\n" + text,
                            encoding="utf-8")


def squawk(files: list[Path]) -> int:
    binary = shutil.which("squawk", path=str(Path(sys.executable).parent)) or shutil.which("squawk")
    if binary is None:
        print("squawk is not installed: pip install -e '.[test]' (pyproject.toml pins it)", file=sys.stderr)
        return 2
    accept(files)
    done = subprocess.run([binary, "--config", str(CONFIG), *map(str, files)], capture_output=True, text=True,
                          check=False)
    # squawk colours its report and links each rule even into a pipe: plain text for CI's log
    report = done.stdout + done.stderr
    print(report if sys.stdout.isatty() else ESCAPES.sub("", report), end="")
    return done.returncode


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("server_url", nargs="?", help="a PostgreSQL server (a throwaway database is made there)")
    parser.add_argument("--keep", type=Path, help="write the SQL files here and keep them")
    parser.add_argument("--sql-dir", type=Path, help="lint the *.sql files of this folder instead")
    args = parser.parse_args()
    if args.sql_dir:
        files = sorted(args.sql_dir.glob("*.sql"))
    elif args.server_url:
        out = args.keep or Path(tempfile.mkdtemp(prefix="fieldcase-migration-sql-"))
        out.mkdir(parents=True, exist_ok=True)
        try:
            files = record(args.server_url, out)
            print(f"recorded the SQL of {len(files)} migrations" + (f" in {out}" if args.keep else ""))
            return squawk(files)
        finally:
            if not args.keep:
                shutil.rmtree(out, ignore_errors=True)
    else:
        parser.error("give a PostgreSQL server's URL, or --sql-dir")
    return squawk(files)


if __name__ == "__main__":
    sys.exit(main())
