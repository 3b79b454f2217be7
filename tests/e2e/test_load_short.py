"""The load bench in its short form (`bench/load.py --short`): a few phones against the real server at once.

It runs as a child process, as an operator would run it: four reference phones (`sync.client.Phone`) in
threads push, pull and upload against gunicorn for ~15 s, then the bench checks the database against the
phones (every record once in its chain, every file verified, one open case per institution and department
with every phone's case aliased to it, every phone's pulled copy complete) and plants faults in a copy of
the end state to show that the checks catch them. On the suite's database kind: PostgreSQL when
FIELDCASE_TEST_DATABASE_URL is set (the bench makes and drops a database of its own on that server),
SQLite otherwise. The long form is run from `bench/` (see docs/reliability.md).
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
PG_ENV = "FIELDCASE_TEST_DATABASE_URL"


def test_given_phones_pushing_pulling_and_uploading_at_once_when_the_time_is_up_then_nothing_is_lost_or_doubled():
    env = dict(os.environ)
    server = os.environ.get(PG_ENV)
    if server:
        env["FIELDCASE_BENCH_PG"] = server
    kind = "postgres" if server else "sqlite"
    proc = subprocess.run([sys.executable, str(ROOT / "bench" / "load.py"), "--short", "--db", kind],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=240)
    out = proc.stdout
    assert proc.returncode == 0, f"exit {proc.returncode}\n{out[-6000:]}\n{proc.stderr[-4000:]}"
    for check in ("ledger", "evidence", "merge", "pull"):
        assert re.search(rf"^{check} check: OK — ", out, re.MULTILINE), out[-4000:]
    assert re.search(r"^self-test of the checks: .* caught (\d+) of \1$", out, re.MULTILINE), out[-4000:]
    assert out.rstrip().endswith("load check: OK")
    cycles = re.search(r"^cycles: ([\d,]+) ", out, re.MULTILINE)
    assert cycles and int(cycles.group(1).replace(",", "")) >= 4, out[-4000:]
    assert re.search(r"^\| push +\| [\d,]+ ", out, re.MULTILINE), "the figures table is missing"
    assert re.search(rf", {kind}, .*gunicorn", out), out[:400]
