"""Liveness, readiness and the build: what a load balancer, an orchestrator and on-call ask a process.

- `GET /api/v1/health/live`: the process answers HTTP (always 200; touches nothing). An orchestrator restarts a
  process that stops answering this, and only that: a database outage must not restart every process.
- `GET /api/v1/health/ready` (and `GET /api/v1/health`, its older name, which load balancers already call): 200
  when every dependency answers, else 503 naming each (`backend.web.readiness`). A load balancer stops sending
  requests to a process that is not ready and starts again when it is.
- `GET /api/v1/version`: the package version and the git commit (`backend.core.build`).
"""

from __future__ import annotations

import math

from flask import jsonify
from marshmallow import Schema, fields

from backend.web.api.blueprint import RETRY_AFTER, Blueprint
from backend.web.api.context import state
from backend.web.api.errors import error_body
from backend.web.metrics import note_unavailable

blp = Blueprint("health", __name__, url_prefix="/api/v1", description="Liveness, readiness and the running build")

NOT_READY = ("a dependency does not answer: the error object, with `checks` (one entry per dependency) besides; "
             "retry after Retry-After seconds")


class LiveSchema(Schema):
    status = fields.String(metadata={"description": "`alive`"})


class CheckSchema(Schema):
    name = fields.String(metadata={"description": "database, redis, store, jwt_secret or custody_key"})
    ok = fields.Boolean()
    detail = fields.String(metadata={"description": "what was found; never a secret, an address or a row value"})


class ReadySchema(Schema):
    status = fields.String(metadata={"description": "`ready`"})
    checks = fields.List(fields.Nested(CheckSchema))


class VersionSchema(Schema):
    version = fields.String(metadata={"description": "the fieldcase package's version"})
    commit = fields.String(allow_none=True, metadata={"description": "the git commit of the build, or null"})
    commit_source = fields.String(metadata={"description": "where the commit came from: env (FIELDCASE_COMMIT), "
                                                           "package (pip's record of a git install), git or unknown"})


@blp.get("/health/live")
@blp.response(200, LiveSchema)
def live():
    """The process answers; nothing else is checked (liveness)."""
    return {"status": "alive"}


def _ready():
    readiness = state().readiness
    verdict = readiness.verdict()
    checks = [o.as_dict() for o in verdict.outcomes]
    if verdict.ready:
        return {"status": "ready", "checks": checks}
    note_unavailable("not_ready")
    response = jsonify({**error_body(503, "not ready: " + ", ".join(verdict.failing)), "checks": checks})
    response.status_code = 503
    response.headers["Retry-After"] = str(max(1, math.ceil(readiness.ttl)))
    return response


@blp.get("/health/ready")
@blp.response(200, ReadySchema)
@blp.alt_response(503, description=NOT_READY, headers=RETRY_AFTER)
def ready():
    """Every dependency answers: the database at this release's schema, Redis (rq jobs), the store, the key files."""
    return _ready()


@blp.get("/health")
@blp.response(200, ReadySchema)
@blp.alt_response(503, description=NOT_READY, headers=RETRY_AFTER)
def health():
    """Readiness, under the name load balancers were first pointed at (the same answer as /health/ready)."""
    return _ready()


@blp.get("/version")
@blp.response(200, VersionSchema)
def version():
    """The running build: package version and git commit."""
    return state().build.as_dict()
