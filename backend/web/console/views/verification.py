"""The custody data the in-browser verifier fetches, under a signed-in console session.

A browser holds no bearer token, so the console serves these under /console/api/ with its session. The
answers are exactly the API's (`GET /evidence/{id}/custody`, `/custody/tree-head`, `/custody/proofs/inclusion`);
the public key is the API's public `GET /api/v1/custody/public-key`. None of them carries a verdict: the
browser checks them itself.
"""

from __future__ import annotations

from typing import Any

from flask import jsonify, request

from backend.core.errors import Invalid
from backend.web.api.context import now, state
from backend.web.api.context import session as db_session
from backend.web.console import security
from backend.web.console.views.frame import bp
from media import uploads
from media.custody import heads, trees


def _int_arg(name: str) -> int:
    try:
        value = int(request.args.get(name, ""))
    except ValueError:
        raise Invalid(f"{name} must be an integer", errors={name: ["not an integer"]}) from None
    if value < 0:
        raise Invalid(f"{name} must not be negative", errors={name: ["negative"]})
    return value


@bp.get("/api/evidence/<evidence_id>/custody")
def api_custody_events(evidence_id: str) -> Any:
    return jsonify(uploads.custody_history(db_session(), security.viewer(), evidence_id))


@bp.get("/api/custody/tree-head")
def api_tree_head() -> Any:
    s = db_session()
    head = heads.latest_head(s, state().signer, now=now())
    s.commit()
    return jsonify(head)


@bp.get("/api/custody/proofs/inclusion")
def api_inclusion() -> Any:
    return jsonify(trees.inclusion(db_session(), _int_arg("leaf_index"), _int_arg("tree_size")))
