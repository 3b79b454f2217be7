"""The review console: pages for custodians and reviewers, served by fieldcase itself at /console/.

Server-rendered Jinja templates and a little plain JavaScript (the in-browser
custody verification), with no build step. The console is another door to the
same domain functions the API calls (`sync/`, `media/`), under the same
accounts, roles and jurisdiction; see `views` for the pages, `security` for
the session and CSRF, `i18n` for the two languages.
"""

from __future__ import annotations

from flask import Flask

from backend.core.secret_files import read_secret
from backend.web.console import security
from backend.web.console.views import bp


def init_console(app: Flask) -> None:
    """Register the console on an app built by `create_app` (its state holds the settings)."""
    settings = app.extensions["fieldcase"].settings
    security.configure(app, read_secret(settings, "console"))  # <instance>/console-session.key
    app.register_blueprint(bp)
