"""The console's pages and forms: server-rendered, each a thin call into the domain modules.

Every read goes through the function the API uses for the same thing (and so
through `backend.core.jurisdiction`): a case of another district is a 404 page
here exactly as it is a 404 answer there. Every write is a POST with the
session's CSRF token, calls the domain function, commits, and redirects
(303) back with a message, so reloading a page never repeats an action.

All of them register on one blueprint, `bp` (endpoints `console.*`), one module a feature:

- `frame`: the blueprint, the checks before every view (language, CSRF, the viewer), headers, error pages;
- `pages`: the parts pages and forms share (scoped reads, paging, form fields, refusals);
- `signin`: signing in and out;
- `cases`: the case list, a case and its lifecycle step, an inspection;
- `clues`: the clue list, a clue with its complainant masked, unmasking with a purpose, the log of unmaskings;
- `evidence`: an evidence item, its thumbnail, reading its original;
- `custody`: holdings, hand-overs between custodians, evidence package export;
- `audit_queue`: the reviewers' audit queue;
- `verification`: the custody data the in-browser verifier fetches;
- `system_audit`: the verdict of the whole-system audit (`fieldcase verify`).
"""

from __future__ import annotations

# Imported for their routes: each module registers its views on `bp` as it is imported.
from backend.web.console.views import (  # noqa: F401
    audit_queue,
    cases,
    clues,
    custody,
    evidence,
    signin,
    system_audit,
    verification,
)
from backend.web.console.views.frame import bp

__all__ = ["bp"]
