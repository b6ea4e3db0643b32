"""Dash integration for real: a Dash app on 127.0.0.1 driven by headless Chromium through Playwright."""

from __future__ import annotations

import hashlib
import logging
import os

import pytest

from usagetrace.testing import capture

from .webapps import Server, make_dash_app

CHROMIUM = "/usr/bin/chromium"
ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
]

pytestmark = pytest.mark.skipif(
    not os.path.exists(CHROMIUM), reason="Debian's chromium is not installed (apt-get install chromium)"
)


def test_browser_page_views_navigation_and_callbacks(fresh_package):
    """Clicking through a served Dash app exports one load, client-side navigations and callbacks by output id, with no query string, IP or raw user id."""
    sync_api = pytest.importorskip("playwright.sync_api")
    import flask

    from usagetrace.integrations import dash as ut_dash

    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    pkg = fresh_package("dashapp")
    app = make_dash_app()
    ut_dash.track(
        app,
        package=pkg,
        salt="per-app-salt",
        user_provider=lambda: {"id": flask.request.cookies.get("uid"), "email": "ana@example.org"},
        ignore_callback=lambda output_id: output_id == "never.children",
    )
    with capture(pkg) as cap, Server(app.server) as server:
        with sync_api.sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=CHROMIUM, headless=True, args=ARGS)
            try:
                context = browser.new_context()
                context.add_cookies([{"name": "uid", "value": "user-secret-42", "url": server.url}])
                page = context.new_page()
                page.goto(server.url + "/?token=supersecretquery&email=ana%40example.org")
                page.wait_for_selector("text=page:/", timeout=30000)
                page.click("#link-reports")
                page.wait_for_selector("text=page:/reports", timeout=30000)
                page.click("#go")
                page.wait_for_selector("text=clicked:1", timeout=30000)
                page.click("#link-home")
                page.wait_for_selector("#page:text-is('page:/')", timeout=30000)
            finally:
                browser.close()
    views = [
        (s["attributes"]["url.path"], s["attributes"]["usagetrace.page.kind"])
        for s in cap.spans("usagetrace.page_view")
    ]
    assert views == [("/", "load"), ("/reports", "navigation"), ("/", "navigation")]
    callbacks = [s["attributes"]["usagetrace.callback.id"] for s in cap.spans("usagetrace.callback")]
    assert sorted(callbacks) == ["out.children", "page.children", "page.children", "page.children"]
    expected_hash = hashlib.sha256(b"per-app-salt\x00user-secret-42").hexdigest()
    for span in cap.spans("usagetrace.page_view") + cap.spans("usagetrace.callback"):
        assert span["attributes"]["usagetrace.user.hash"] == expected_hash
        assert span["attributes"]["user_agent.name"] == "Chrome"
        assert span["end"] >= span["start"]
    raw = cap.raw_bytes()
    for secret in (
        b"supersecretquery",
        b"token=",
        b"127.0.0.1",
        b"user-secret-42",
        b"ana@example.org",
        b"HeadlessChrome",
        b"Linux",
    ):
        assert secret not in raw, secret
