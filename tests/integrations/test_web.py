"""Flask and Dash integrations through the WSGI test client: routes, hooks, bad input, consent."""

from __future__ import annotations

import hashlib
import json

import pytest

import usagetrace
from usagetrace.integrations import dash as ut_dash
from usagetrace.integrations import flask as ut_flask
from usagetrace.testing import capture

from .webapps import make_dash_app, make_flask_app

UA = "Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0"


def test_flask_page_views_use_route_templates_and_hooks(fresh_package):
    """HTML GETs become page views named by route template; JSON, 404s, errors and ignored routes record nothing."""
    pkg = fresh_package("flask")
    app = make_flask_app()
    ut_flask.track(
        app, package=pkg, ignore_route=lambda path: path == "/health", user_provider=lambda: "u-7", salt=b"s"
    )
    client = app.test_client()
    with capture(pkg) as cap:
        assert client.get("/?q=secretquery", headers={"User-Agent": UA}).status_code == 200
        assert client.get("/reports/12345").status_code == 200
        assert client.get("/api/data").status_code == 200
        assert client.get("/health").status_code == 200
        assert client.get("/no/such/page").status_code == 404
        assert client.get("/boom").status_code == 500
        assert client.post("/").status_code == 405
    views = cap.spans("usagetrace.page_view")
    assert [v["attributes"]["url.path"] for v in views] == ["/", "/reports/<int:report_id>"]
    assert views[0]["attributes"]["user_agent.name"] == "Firefox"
    assert views[1]["attributes"]["user_agent.name"] == "Other"  # the test client's own agent
    assert views[0]["attributes"]["usagetrace.user.hash"] == hashlib.sha256(b"s\x00u-7").hexdigest()
    raw = cap.raw_bytes()
    assert b"secretquery" not in raw and b"12345" not in raw and b"u-7" not in raw and b"rv:128" not in raw


def test_flask_records_nothing_when_consent_is_off(fresh_package):
    """With consent off a tracked Flask app serves normally and queues nothing."""
    pkg = fresh_package("flask")
    handle = usagetrace.instrument(pkg, consent="opt-in")
    app = make_flask_app()
    ut_flask.track(app, package=pkg)
    assert app.test_client().get("/").status_code == 200
    assert handle.recorder is None


def test_broken_hooks_never_break_the_app(fresh_package):
    """A raising user_provider or ignore_route hook neither fails the request nor leaks: the page is skipped, no user hash."""
    pkg = fresh_package("flask")
    app = make_flask_app()

    def bad():
        raise RuntimeError("provider down")

    ut_flask.track(app, package=pkg, user_provider=bad, ignore_route=lambda p: 1 / 0 if p == "/" else False)
    with capture(pkg) as cap:
        assert app.test_client().get("/").status_code == 200
        assert app.test_client().get("/reports/3").status_code == 200
    views = cap.spans("usagetrace.page_view")
    assert [v["attributes"]["url.path"] for v in views] == ["/reports/<int:report_id>"]
    assert "usagetrace.user.hash" not in views[0]["attributes"]


def _update(client, body, raw=False):
    data = body if raw else json.dumps(body)
    return client.post("/_dash-update-component", data=data, content_type="application/json")


def test_dash_bad_input_is_never_recorded_and_status_is_dashs_own(fresh_package):
    """Forged callback ids, malformed JSON, huge query strings and odd paths record nothing; the tracker never changes Dash's answer."""
    pkg = fresh_package("dash")
    forged = {
        "output": "attacker.children",
        "outputs": {"id": "attacker", "property": "children"},
        "inputs": [{"id": "url", "property": "pathname", "value": "/x"}],
        "changedPropIds": ["url.pathname"],
    }
    requests = [
        lambda c: _update(c, forged),
        lambda c: _update(c, b"\xff\xfe{not json", raw=True),
        lambda c: _update(c, [1, 2, 3]),
        lambda c: c.get("/?q=" + "A" * 100_000),
        lambda c: c.get(b"/%FF%FE/caf\xc3\xa9".decode("latin-1")),
        lambda c: c.get("/user@example.org/profile"),
    ]
    untracked = make_dash_app().server.test_client()
    untracked.get("/_dash-layout")
    expected = [r(untracked).status_code for r in requests]
    app = make_dash_app()
    ut_dash.track(app, package=pkg)
    client = app.server.test_client()
    with capture(pkg) as cap:
        assert client.get("/_dash-layout").status_code == 200  # first request: Dash sets itself up
        got = [r(client).status_code for r in requests]
    assert got == expected  # Dash's own answers (it rejects the forged callback itself)
    assert got[1] == 400 and got[3] == 200
    views = cap.spans("usagetrace.page_view")
    assert [v["attributes"]["url.path"] for v in views] == ["/"]  # the huge query string, stripped
    assert cap.spans("usagetrace.callback") == []
    raw = cap.raw_bytes()
    assert b"AAAA" not in raw and b"attacker" not in raw and b"example.org" not in raw


def test_dash_navigation_counted_once_and_ignore_hooks(fresh_package):
    """A pathname change is one navigation; the initial pathname after a load is not; ignored routes and callbacks are skipped."""
    pkg = fresh_package("dash")
    app = make_dash_app()
    ut_dash.track(
        app, package=pkg, ignore_route=lambda p: p == "/admin", ignore_callback=lambda o: o == "out.children"
    )
    client = app.server.test_client()

    def nav(path):
        return _update(
            client,
            {
                "output": "page.children",
                "outputs": {"id": "page", "property": "children"},
                "inputs": [{"id": "url", "property": "pathname", "value": path}],
                "changedPropIds": ["url.pathname"],
            },
        )

    with capture(pkg) as cap:
        assert client.get("/").status_code == 200  # full load: sets the load cookie
        assert nav("/").status_code == 200  # the initial pathname: not a navigation
        assert nav("/reports/77").status_code == 200
        assert nav("/admin").status_code == 200
        assert nav("/a b?x=1").status_code == 200  # not a plain path: not recorded
        resp = _update(
            client,
            {
                "output": "out.children",
                "outputs": {"id": "out", "property": "children"},
                "inputs": [{"id": "go", "property": "n_clicks", "value": 1}],
                "changedPropIds": ["go.n_clicks"],
            },
        )
        assert resp.status_code == 200
    views = [
        (v["attributes"]["url.path"], v["attributes"]["usagetrace.page.kind"])
        for v in cap.spans("usagetrace.page_view")
    ]
    assert views == [("/", "load"), ("/reports/:id", "navigation")]
    assert [c["attributes"]["usagetrace.callback.id"] for c in cap.spans("usagetrace.callback")] == [
        "page.children"
    ] * 4


def test_dash_routes_allowlist(fresh_package):
    """With routes=[...] only listed paths are recorded as page views."""
    pkg = fresh_package("dash")
    app = make_dash_app()
    ut_dash.track(app, package=pkg, routes=["/", "/reports"])
    client = app.server.test_client()
    with capture(pkg) as cap:
        for path in ("/", "/reports", "/secret-area"):
            assert client.get(path).status_code == 200
    assert [v["attributes"]["url.path"] for v in cap.spans("usagetrace.page_view")] == ["/", "/reports"]


def test_dash_records_nothing_when_consent_is_off(fresh_package):
    """With consent off the Dash app serves and answers callbacks while nothing is queued and no cookie is set."""
    pkg = fresh_package("dash")
    handle = usagetrace.instrument(pkg, consent="opt-out")
    app = make_dash_app()
    ut_dash.track(app, package=pkg)
    client = app.server.test_client()
    resp = client.get("/")
    assert resp.status_code == 200 and "Set-Cookie" not in resp.headers
    assert handle.recorder is None


@pytest.mark.parametrize(
    "ua, family",
    [
        ("Mozilla/5.0 (Windows NT 10.0) AppleWebKit/537.36 Chrome/120.0 Safari/537.36 Edg/120.0", "Edge"),
        ("Mozilla/5.0 (Macintosh) AppleWebKit/605.1.15 Version/17.0 Safari/605.1.15", "Safari"),
        ("curl/8.0", "Other"),
        ("", None),
    ],
)
def test_browser_family_only(ua, family):
    """Only the browser family is derived from a User-Agent, never versions or platform."""
    from usagetrace.integrations._web import browser_family

    assert browser_family(ua) == family
