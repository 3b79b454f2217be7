"""HTTP lives here: flask-smorest blueprints over the domain modules."""

from __future__ import annotations

import swagger_ui_bundle
from flask import Flask, request, send_from_directory
from werkzeug.exceptions import RequestHeaderFieldsTooLarge

from backend.web.api import (
    audit,
    auth,
    cases,
    clues,
    credit,
    custody,
    draws,
    errors,
    evidence,
    health,
    institutions,
    joint,
    lifecycle,
    officers,
    packages,
    reference,
    retention,
    stats,
    sync,
)
from backend.web.api.blueprint import Api
from backend.web.api.context import close_session

# As gunicorn's limit_request_field_size (backend/server.py) and limit_request_fields: behind any WSGI
# server, and in-process, a header no real phone sends answers 431 before anything reads it.
MAX_HEADER_FIELD_BYTES = 16 * 1024
MAX_HEADER_FIELDS = 100

BLUEPRINTS = (auth.blp, officers.blp, reference.blp, institutions.blp, sync.blp, cases.blp, evidence.blp, custody.blp,
              packages.blp, lifecycle.blp, retention.blp, audit.blp, clues.blp, joint.blp, draws.blp, credit.blp,
              stats.blp, health.blp)


def init_api(app: Flask) -> Api:
    app.config.update(
        API_TITLE="fieldcase",
        API_VERSION="1",
        OPENAPI_VERSION="3.0.3",
        OPENAPI_URL_PREFIX="/api/v1",
        OPENAPI_JSON_PATH="openapi.json",
        OPENAPI_SWAGGER_UI_PATH="docs",
        OPENAPI_SWAGGER_UI_URL="/api/v1/docs/assets/",
        API_SPEC_OPTIONS={
            "info": {"description": "Sync server for offline enforcement phones. See docs/protocol.md."},
            "components": {"securitySchemes": {
                "bearerAuth": {"type": "http", "scheme": "bearer", "bearerFormat": "JWT"}}},
        },
    )
    def _header_limits() -> None:
        headers = list(request.headers.items())
        if len(headers) > MAX_HEADER_FIELDS:
            raise RequestHeaderFieldsTooLarge(f"more than {MAX_HEADER_FIELDS} header fields")
        for name, value in headers:
            if len(name) + len(value) + 2 > MAX_HEADER_FIELD_BYTES:
                raise RequestHeaderFieldsTooLarge(f"header {name[:40]} is larger than {MAX_HEADER_FIELD_BYTES} bytes")

    app.before_request_funcs.setdefault(None, []).insert(0, _header_limits)  # before anything reads the request
    api = Api(app)
    for blp in BLUEPRINTS:
        api.register_blueprint(blp)
    errors.register(app)
    app.teardown_request(close_session)

    @app.get("/api/v1/docs/assets/<path:filename>")
    def swagger_assets(filename: str):
        return send_from_directory(swagger_ui_bundle.swagger_ui_path, filename, max_age=86400)

    return api
