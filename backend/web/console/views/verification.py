"""The custody data the in-browser verifier fetches, under a signed-in console session.

A browser holds no bearer token, so the console serves these under /console/api/ with its session. The
answers are exactly the API's (`GET /evidence/{id}/custody`, `/custody/tree-head`, `/custody/proofs/inclusion`,
each with `suite=sm` for the SM tree where the server keeps one), read with the API routes' own argument schemas
and answered by the same calls; the public keys are the API's public `GET /api/v1/custody/public-key` (and
`?suite=sm`). None of them carries a verdict: the browser checks them itself.

Web Crypto has neither SM2 nor SM3, so where the server keeps the SM tree the page also loads the SM2/SM3 library
the package verifier vendors (media/verify_html/vendor/README.md), served from where it lives, not copied.
"""

from __future__ import annotations

import functools
from importlib import resources
from typing import Any

from flask import Response, jsonify, request
from marshmallow import Schema, ValidationError

from backend.core.crypto import INTL, sm2
from backend.core.errors import Invalid
from backend.web.api.context import session as db_session
from backend.web.api.context import state
from backend.web.api.custody import HeadArgs, InclusionArgs, head_of, inclusion_of
from backend.web.console import security
from backend.web.console.views.frame import bp
from media import uploads, verify_html

LANGUAGE_ARG = "lang"  # every console URL may carry it (views.frame); it is the page's, not the route's


def _query(schema: Schema) -> dict[str, Any]:
    """The query string read by the API route's own schema, refused (422) in the API's words."""
    args = {key: value for key, value in request.args.items() if key != LANGUAGE_ARG}
    try:
        return schema.load(args)
    except ValidationError as exc:
        raise Invalid("invalid request query; see errors", errors={"query": exc.messages}) from None


@bp.get("/api/evidence/<evidence_id>/custody")
def api_custody_events(evidence_id: str) -> Any:
    return jsonify(uploads.custody_history(db_session(), security.viewer(), evidence_id))


@bp.get("/api/custody/tree-head")
def api_tree_head() -> Any:
    args = _query(HeadArgs())
    head = head_of(args)
    db_session().commit()  # a head issued on request is stored before it is shown
    return jsonify(head)


@bp.get("/api/custody/proofs/inclusion")
def api_inclusion() -> Any:
    return jsonify(inclusion_of(_query(InclusionArgs())))


@functools.cache
def _script(*path: str) -> tuple[bytes, str]:
    script = resources.files(verify_html.__name__).joinpath(*path).read_bytes()
    return script, INTL.hexdigest(script)


def _release_script(*path: str) -> Response:
    """A script of verify.html's, served as the console's static files are: with its digest as ETag, asked again
    with If-None-Match (`no-cache`: a new release's file is seen at once) and answered 304 while unchanged, not sent
    whole with every page."""
    script, digest = _script(*path)
    response = Response(script, mimetype="text/javascript", headers={"Cache-Control": "no-cache"})
    response.set_etag(digest)
    return response.make_conditional(request)


@bp.get("/vendor/sm-crypto-v2.js")
def sm_crypto() -> Response:
    """The vendored sm-crypto-v2 (SM2, SM3, 125 KB), the same file verify.html carries, for the page's SM checks."""
    return _release_script(*verify_html.VENDOR)


@bp.get("/vendor/sm2-rule.js")
def sm2_rule() -> Response:
    """verify.html's SM2 signature check (`sm2SignatureHolds`: the shape, r and s in [1, n-1], then the library),
    so that the console's check of the SM head is that one, not a copy."""
    return _release_script(verify_html.SM2_RULE)


def sm_custody() -> dict[str, Any] | None:
    """What the page's SM checks pin, from backend.core.crypto.sm2 (the user ID in Z_A, the curve order that
    bounds r and s, the sizes of a key and a signature); None where the server keeps no SM tree, and the page
    then checks the intl tree alone."""
    if getattr(state().signer, "sm", None) is None:
        return None
    return {"userId": sm2.USER_ID.decode("ascii"), "n": f"{sm2.N:064x}", "publicKeyBytes": sm2.PUBLIC_KEY_BYTES,
            "signatureBytes": sm2.SIGNATURE_BYTES}


@bp.context_processor
def _custody_suites() -> dict[str, Any]:
    return {"sm_custody": sm_custody}
