"""Page views of a Flask app, on the app's own consent-gated usagetrace pipeline.

::

    from flask import Flask, session
    from usagetrace.integrations.flask import track

    app = Flask(__name__)
    track(app, package="myapp", endpoint="https://telemetry.example.org", consent="opt-in",
          ignore_route=lambda path: path in ("/health", "/metrics"),
          user_provider=lambda: session.get("user_id"))

A successful (2xx) ``GET`` answered with HTML is one ``usagetrace.page_view``
span: ``url.path`` is the matched *route* (``/reports/<int:report_id>``,
never the concrete URL, never a query string), ``usagetrace.page.kind`` is
``load``, ``user_agent.name`` the browser family only (``browser=False`` to
omit it) and, with a ``user_provider``, ``usagetrace.user.hash``: the
SHA-256 of the returned id (or of ``{"id": ...}["id"]``) salted per app - the
raw id never leaves the process. ``salt`` is yours to set (stable across
servers); by default a random per-app salt is kept in usagetrace's data
directory. No IP address, no full URL, no referrer is ever read.
Requests answered 404 (unknown routes), errors, static files and
``ignore_route(path)`` matches record nothing. Needs ``pip install 'usagetrace[flask]'``.
"""

from __future__ import annotations

import time

from . import require

flask = require("flask", "flask", "flask")

from .._internal import events, instrumentation, log  # noqa: E402
from . import _web  # noqa: E402

__all__ = ["Tracker", "track"]

_G_START = "_usagetrace_start_ns"


class Tracker(_web.BaseTracker):
    """Page-view tracking for one Flask app (see the module docstring)."""

    def __init__(
        self,
        app,
        *,
        package: str,
        ignore_route=None,
        user_provider=None,
        salt=None,
        browser: bool = True,
        endpoint: str | None = None,
        consent: str | None = None,
        **options,
    ) -> None:
        super().__init__(
            package, ignore_route=ignore_route, user_provider=user_provider, salt=salt, browser=browser
        )
        self.app = app
        setup = None
        if endpoint is not None or consent is not None or options:
            # A web app is a service: each page view (open, click) is its own record, sent as it happens.
            setup = {"endpoint": endpoint, "consent": consent or "opt-in", "upload": "realtime", **options}
        instrumentation.handle_for(package, setup)
        app.before_request(self._before)
        app.after_request(self._after)

    def _before(self):
        try:
            if instrumentation.recorder(self.package) is not None:
                setattr(flask.g, _G_START, time.time_ns())
        except Exception:
            log.internal_error("integrations.flask.before")
        return None

    def _after(self, response):
        try:
            start = getattr(flask.g, _G_START, None)
            if start is not None and instrumentation.recorder(self.package) is not None:
                self.handle(flask.request, response, start)
        except Exception:
            log.internal_error("integrations.flask.after")
        return response

    # Overridden by the Dash tracker.
    def handle(self, request, response, start: int) -> None:
        if self.is_page(request, response):
            path = self.page_path(request)
            if path is not None:
                self.page_view(request, path, "load", start)

    def is_page(self, request, response) -> bool:
        return (
            request.method == "GET"
            and 200 <= response.status_code < 300
            and response.mimetype == "text/html"
            and request.url_rule is not None
            and request.endpoint != "static"
        )

    def page_path(self, request) -> str | None:
        rule = request.url_rule
        return _web.safe_path(rule.rule) if rule is not None else None

    def page_view(self, request, path: str, kind: str, start: int) -> None:
        if self.ignored(self.ignore_route, path):
            return
        attributes = {"url.path": path, "usagetrace.page.kind": kind}
        attributes.update(self.common(request))
        events.record(self.package, "usagetrace.page_view", attributes, start)


def track(app, *, package: str, **kwargs) -> Tracker:
    """Track page views of ``app`` for ``package``; see :class:`Tracker` for the keywords."""
    return Tracker(app, package=package, **kwargs)
