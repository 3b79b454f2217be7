"""Double random, one public (双随机、一公开): campaigns, reproducible draws, tasks, and the published results.

A draw is a pure function of its seed and its stored inputs (docs: "Draws, as
built", algorithm `es-hmac-sha256-v1`). Nothing here uses Python's `random`:
anyone can re-implement the algorithm from the docs, run it on the seed and
inputs the server shows, and get the same institutions and teams.

The package, each module importing only those above it in this list:

- `algorithm`: the draw itself, `run(seed, inputs)`, with no database and nothing but the standard library;
- `campaigns`: campaigns (a focus on violation categories for a region and a stretch of dates);
- `tasks`: planned inspections and their teams, drawn or not, and linking the inspection that carries one out;
- `drawing`: a draw's pools of institutions and officers, running and storing it, and reading and re-running it;
- `public`: the results of drawn inspections, published without who inspected.

This module only names what the rest of the server imports.
"""

from backend.casework.draws.algorithm import run
from backend.casework.draws.campaigns import create_campaign, get_campaign, list_campaigns
from backend.casework.draws.drawing import create_draw, get_draw, list_draws, verify_draw
from backend.casework.draws.public import public_inspections
from backend.casework.draws.tasks import cancel_task, create_task, get_task, link_inspection, list_tasks

__all__ = [
    "cancel_task",
    "create_campaign",
    "create_draw",
    "create_task",
    "get_campaign",
    "get_draw",
    "get_task",
    "link_inspection",
    "list_campaigns",
    "list_draws",
    "list_tasks",
    "public_inspections",
    "run",
    "verify_draw",
]
