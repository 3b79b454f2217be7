"""The verdict of the whole-system audit (`fieldcase verify`): when it last ran, whether it passed, what it found.

The audit is not run here (it reads everything, for minutes): the page shows what the periodic job or
`fieldcase verify --record` stored (`backend.casework.system_audit.runs`), and warns when the newest run is older
than two audit intervals, i.e. the periodic audit seems to have stopped.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from flask import render_template

from backend.casework.system_audit import CHECKS
from backend.casework.system_audit.runs import verdicts
from backend.web.api.context import now, state
from backend.web.api.context import session as db_session
from backend.web.console import security
from backend.web.console.views.frame import bp

SHOWN_PROBLEMS = 20
COUNTED = ("leaves", "heads", "records", "devices", "evidence", "files", "bytes", "cases", "inspections", "findings",
           "clues", "interruptions")


@bp.get("/system-audit")
def system_audit() -> Any:
    found = verdicts(db_session(), security.viewer())
    latest = found["latest"]
    every = state().settings.audit_interval_seconds or 24 * 3600
    stale = latest is not None and now() - latest.finished_at > timedelta(seconds=2 * every)
    return render_template("console/system_audit.html", latest=latest, earlier=found["earlier"],
                           details=found["details"], checks=CHECKS, counted=COUNTED, shown=SHOWN_PROBLEMS,
                           stale=stale, stale_hours=2 * every // 3600)
