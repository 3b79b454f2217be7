"""The app factory."""

from __future__ import annotations

import logging
from datetime import UTC, date, datetime
from typing import Any

from flask import Flask
from flask.json.provider import DefaultJSONProvider
from werkzeug.middleware.proxy_fix import ProxyFix

from .config import Settings
from .state import AppState


class JSONProvider(DefaultJSONProvider):
    """Timestamps as RFC 3339 (Flask's default would write RFC 1123 HTTP dates)."""

    ensure_ascii = False
    sort_keys = False

    @staticmethod
    def default(o):
        if isinstance(o, datetime):
            return (o.astimezone(UTC) if o.tzinfo else o).isoformat()
        if isinstance(o, date):
            return o.isoformat()
        return DefaultJSONProvider.default(o)


def create_app(config: Settings | dict[str, Any] | None = None) -> Flask:
    """Build the WSGI app. `config` is Settings, or overrides applied on top of the environment."""
    base = config if isinstance(config, Settings) else Settings.from_env().with_overrides(config or {})
    settings = base.resolved()
    logging.basicConfig(level=settings.log_level,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    app = Flask("fieldcase", instance_path=str(settings.instance_dir))
    app.config["MAX_CONTENT_LENGTH"] = settings.max_body_bytes
    app.json_provider_class = JSONProvider
    app.json = JSONProvider(app)
    app.extensions["fieldcase"] = AppState.build(settings)
    if settings.trust_proxy:
        app.wsgi_app = ProxyFix(app.wsgi_app, x_for=1, x_proto=1, x_host=1)  # type: ignore[method-assign]

    from .api import init_api

    init_api(app)
    return app
