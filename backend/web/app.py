"""The app factory."""

from __future__ import annotations

import json
import re
from datetime import date

from flask import Flask, request
from flask.json.provider import DefaultJSONProvider
from werkzeug.middleware.proxy_fix import ProxyFix

from backend.core.errors import Invalid
from backend.core.json_text import contains_lone_surrogate, contains_nul
from backend.core.times import utc_iso
from backend.web import request_log
from backend.web.state import AppState
from backend.web.url_rules import Rule

NUL_MESSAGE = "text must not contain NUL characters (U+0000): no database field can store them"
SURROGATE_MESSAGE = "text must be Unicode: a lone surrogate (\\ud800-\\udfff not in a pair) cannot be stored"
_SURROGATE_ESCAPE = re.compile(rb"\\u[dD][89a-fA-F]")


class JSONProvider(DefaultJSONProvider):
    """Timestamps as RFC 3339 in UTC to the millisecond (Flask's default would write RFC 1123 HTTP dates)."""

    ensure_ascii = False
    sort_keys = False

    def loads(self, s, **kwargs):
        """Nesting deeper than the parser's recursion allows is malformed JSON (400), not a server error."""
        try:
            return super().loads(s, **kwargs)
        except RecursionError:
            raise ValueError("JSON nested too deeply") from None

    @staticmethod
    def default(o):
        if isinstance(o, date):  # an instant as the protocol's one rule writes it (times.utc_iso); a day as a day
            return utc_iso(o)
        return DefaultJSONProvider.default(o)


def make_app(state: AppState) -> Flask:
    """The WSGI app over what the composition root built (`backend.bootstrap.create_app`)."""
    settings = state.settings
    app = Flask("fieldcase", instance_path=str(settings.instance_dir))
    app.url_rule_class = Rule
    app.config["MAX_CONTENT_LENGTH"] = settings.max_body_bytes
    app.json_provider_class = JSONProvider
    app.json = JSONProvider(app)
    app.extensions["fieldcase"] = state
    if settings.trust_proxy:
        app.wsgi_app = ProxyFix(app.wsgi_app, x_for=1, x_proto=1, x_host=1)  # type: ignore[method-assign]

    from backend.web.api import init_api

    @app.before_request
    def _no_nul() -> None:
        """PostgreSQL cannot store NUL in text: refuse it up front rather than fail half way through a request."""
        if "\x00" in request.path or any(contains_nul(v) for k, values in request.args.lists() for v in [k, *values]):
            raise Invalid(NUL_MESSAGE)
        data = request.get_data(cache=True) if request.is_json else b""
        if b"\\u0000" in data or _SURROGATE_ESCAPE.search(data):
            try:
                body = json.loads(data)
            except (ValueError, RecursionError):
                return  # the route's own parsing answers malformed JSON
            if contains_nul(body):
                raise Invalid(NUL_MESSAGE)
            if contains_lone_surrogate(body):
                raise Invalid(SURROGATE_MESSAGE)

    @app.after_request
    def _nosniff(response):
        """Every answer's type is the one it declares: no browser may guess HTML or script into a JSON error, a
        CSV, or a file a phone uploaded (those get more: `backend.web.served`)."""
        response.headers.setdefault("X-Content-Type-Options", "nosniff")
        return response

    init_api(app)
    from backend.web.console import init_console

    init_console(app)
    from backend.web import metrics

    metrics.install(app)  # its timing starts before the hooks above (after request_log's, below)
    request_log.init(app)  # last: its before_request goes first, so every line of a request carries its id
    return app
