"""Page views and callback invocations of a Dash app, on the app's consent-gated pipeline.

::

    from dash import Dash
    from flask import session
    from usagetrace.integrations.dash import track

    app = Dash(__name__)
    track(app, package="mydash", endpoint="https://telemetry.example.org", consent="opt-in",
          ignore_route=lambda path: path in ("/health",),
          ignore_callback=lambda output_id: output_id == "clock.children",
          user_provider=lambda: session.get("user_id"))

Recorded, each as one span:

* ``usagetrace.page_view`` with ``usagetrace.page.kind=load`` for a full page
  load (the HTML index served for a path), and ``navigation`` for client-side
  navigation: a ``dcc.Location`` ``pathname`` change reaching the server
  through ``/_dash-update-component``. When several callbacks listen to the
  same ``pathname`` the navigation is counted once (for the first of them).
* ``usagetrace.callback`` with ``usagetrace.callback.id``, the callback's
  output id as Dash names it (``graph.figure``, ``..a.children...b.value..``),
  for every callback request the app knows, with its duration.

``url.path`` is a path only: no host, no query string, no fragment; digit or
long hexadecimal segments become ``:id``; a path with any other character is
not recorded. With ``dash.page_registry`` in use only registered pages are
recorded (as their ``path_template`` or ``path``); ``routes=[...]`` restricts
recording to the listed paths for apps without pages. User hashing, browser
family and ``ignore_route`` are as in :mod:`usagetrace.integrations.flask`.
Unknown callback ids (a forged request) are not recorded. Needs
``pip install 'usagetrace[dash]'``.
"""

from __future__ import annotations

from . import require

dash = require("dash", "dash", "dash")

from .._internal import events  # noqa: E402
from . import _web  # noqa: E402
from . import flask as _flask  # noqa: E402

__all__ = ["Tracker", "track"]

UPDATE_SUFFIX = "_dash-update-component"
#: Set (value "1", no identity) on a full page load and cleared by the first
#: ``pathname`` callback after it: Dash sends the initial pathname exactly like a
#: navigation, and this is how the two are told apart without any client id.
LOAD_COOKIE = "_usagetrace_load"


class Tracker(_flask.Tracker):
    """Dash page views and callbacks (see the module docstring)."""

    def __init__(
        self,
        app,
        *,
        package: str,
        ignore_route=None,
        ignore_callback=None,
        user_provider=None,
        salt=None,
        browser: bool = True,
        routes=None,
        endpoint: str | None = None,
        consent: str | None = None,
        **options,
    ) -> None:
        self.dash_app = app
        self.ignore_callback = ignore_callback
        self.routes = frozenset(routes) if routes is not None else None
        self._nav_output = None
        self._nav_map_size = -1
        super().__init__(
            app.server,
            package=package,
            ignore_route=ignore_route,
            user_provider=user_provider,
            salt=salt,
            browser=browser,
            endpoint=endpoint,
            consent=consent,
            **options,
        )

    # ------------------------------------------------------------ page paths
    def _registered_page(self, path: str) -> str | None:
        registry = getattr(dash, "page_registry", None) or {}
        for page in list(registry.values()):
            template = page.get("path_template")
            if template:
                parts, want = template.strip("/").split("/"), path.strip("/").split("/")
                if len(parts) == len(want) and all(p.startswith("<") or p == w for p, w in zip(parts, want)):
                    return template
            if page.get("path") == path:
                return path
        return None

    def resolve_path(self, raw) -> str | None:
        """Map a browser path to what may be sent, or None."""
        if not isinstance(raw, str):
            return None
        prefix = self.dash_app.config.get("requests_pathname_prefix") or "/"
        if prefix != "/" and raw.startswith(prefix):
            raw = "/" + raw[len(prefix) :]
        if getattr(dash, "page_registry", None):
            raw = self._registered_page(raw.split("?", 1)[0])
            if raw is None:
                return None
        path = _web.safe_path(raw)
        if path is None or (self.routes is not None and path not in self.routes and raw not in self.routes):
            return None
        return path

    def page_path(self, request) -> str | None:
        return self.resolve_path(request.path)

    def is_page(self, request, response) -> bool:
        # The Dash index is served for "/" and the catch-all "/<path:path>".
        rule = request.url_rule
        return (
            request.method == "GET"
            and response.status_code == 200
            and response.mimetype == "text/html"
            and rule is not None
            and (rule.rule.endswith("/") or rule.rule.endswith("<path:path>"))
        )

    # -------------------------------------------------------------- callbacks
    def _navigation_output(self) -> str | None:
        """The first (by output id) callback listening to a ``pathname``: navigation is counted on it."""
        cmap = getattr(self.dash_app, "callback_map", {}) or {}
        if len(cmap) != self._nav_map_size:
            self._nav_map_size = len(cmap)
            listeners = sorted(
                key
                for key, spec in cmap.items()
                if any(i.get("property") == "pathname" for i in spec.get("inputs", []) if isinstance(i, dict))
            )
            self._nav_output = listeners[0] if listeners else None
        return self._nav_output

    def handle(self, request, response, start: int) -> None:
        if request.method == "POST" and request.path.endswith(UPDATE_SUFFIX):
            if response.status_code in (200, 204):
                self._callback(request, response, start)
            return
        if self.is_page(request, response):
            path = self.page_path(request)
            if path is not None:
                self.page_view(request, path, "load", start)
                response.set_cookie(LOAD_COOKIE, "1", max_age=60, httponly=True, samesite="Strict")

    def _callback(self, request, response, start: int) -> None:
        body = request.get_json(silent=True, cache=True)
        if not isinstance(body, dict):
            return
        output = body.get("output")
        cmap = getattr(self.dash_app, "callback_map", {}) or {}
        if not isinstance(output, str) or output not in cmap:
            return  # unknown (or pattern-matching) output id: not recorded
        common = None
        if output == self._navigation_output():
            changed = body.get("changedPropIds") or []
            for item in body.get("inputs") or []:
                if not isinstance(item, dict) or item.get("property") != "pathname":
                    continue
                if f"{item.get('id')}.pathname" in changed:
                    if request.cookies.get(LOAD_COOKIE):
                        # The initial pathname right after a full load (already counted as a load).
                        response.delete_cookie(LOAD_COOKIE, httponly=True, samesite="Strict")
                        break
                    path = self.resolve_path(item.get("value"))
                    if path is not None and not self.ignored(self.ignore_route, path):
                        common = self.common(request)
                        attributes = {"url.path": path, "usagetrace.page.kind": "navigation", **common}
                        events.record(self.package, "usagetrace.page_view", attributes, start)
                    break
        if self.ignored(self.ignore_callback, output):
            return
        attributes = {"usagetrace.callback.id": output}
        attributes.update(common if common is not None else self.common(request))
        events.record(self.package, "usagetrace.callback", attributes, start)


def track(app, *, package: str, **kwargs) -> Tracker:
    """Track page views and callbacks of the Dash ``app`` for ``package``; see :class:`Tracker`."""
    return Tracker(app, package=package, **kwargs)
