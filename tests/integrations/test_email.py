"""E-mail engagement: per-recipient HTML, signed tokens, a WSGI app that records opens/clicks and rejects bad input."""

from __future__ import annotations

import http.client
import re

import pytest
from werkzeug.test import Client

import usagetrace
from usagetrace.integrations import email as ut_email
from usagetrace.testing import capture

from .webapps import Server

KEY = b"0123456789abcdef-maintainer-secret"
HTML = """<html>
<body>
Hello world!
<a href="https://www.example.com/docs?x=1&amp;y=2">docs</a>
<a class="btn" data-href="x" href='https://www.example.com/download'>download</a>
<a href="mailto:team@example.com">mail us</a>
<a href="/relative">relative</a>
<a href="https://www.example.com/docs?x=1&amp;y=2">docs again</a>
</body>
</html>"""
RECIPIENTS = ["Alice@Example.org", "bob@example.net"]


def make(pkg):
    campaign = ut_email.Campaign("release-2-0", key=KEY, base_url="http://127.0.0.1:8080/mail")
    messages = campaign.personalize(HTML, RECIPIENTS)
    app = ut_email.TrackingApp(key=KEY, package=pkg, campaigns={"release-2-0": campaign.links})
    return campaign, messages, app


def tokens(html: str, kind: str) -> list[str]:
    return re.findall(rf"/mail/{kind}/([A-Za-z0-9_.-]+)", html)


def test_personalize_rewrites_links_and_adds_pixel():
    """Each recipient gets HTML with an open pixel and every http(s) link rewritten; mailto/relative links and addresses are untouched."""
    campaign, messages, _ = make("unused")
    assert campaign.links == ["https://www.example.com/docs?x=1&y=2", "https://www.example.com/download"]
    assert set(messages) == set(RECIPIENTS)
    for address, html in messages.items():
        assert len(tokens(html, "o")) == 1 and len(tokens(html, "c")) == 3
        assert "www.example.com" not in html
        assert 'href="mailto:team@example.com"' in html and 'href="/relative"' in html
        assert 'data-href="x"' in html and 'class="btn"' in html
        assert html.index("/mail/o/") < html.index("</body>")
        assert address.lower() not in html.lower()
    assert messages[RECIPIENTS[0]] != messages[RECIPIENTS[1]]


def test_open_and_click_are_recorded_and_redirect_to_registered_link(fresh_package):
    """An open answers a GIF and a click redirects to the registered link; both export spans with campaign, action, hash and link index only."""
    pkg = fresh_package("mail")
    campaign, messages, app = make(pkg)
    html = messages["Alice@Example.org"]
    client = Client(app)
    with capture(pkg) as cap:
        opened = client.get("/o/" + tokens(html, "o")[0])
        assert opened.status_code == 200 and opened.headers["Content-Type"] == "image/gif"
        clicked = client.get("/c/" + tokens(html, "c")[1] + "?next=https://evil.example")
        assert clicked.status_code == 302
        assert clicked.headers["Location"] == "https://www.example.com/download"
        assert (
            client.head("/c/" + tokens(html, "c")[0]).status_code == 302
        )  # link scanner: answered, not counted
    spans = cap.spans("usagetrace.email")
    rhash = campaign.recipient_hash("alice@example.org")
    assert [s["attributes"] for s in spans] == [
        {
            "usagetrace.email.campaign": "release-2-0",
            "usagetrace.email.action": "open",
            "usagetrace.email.recipient.hash": rhash,
        },
        {
            "usagetrace.email.campaign": "release-2-0",
            "usagetrace.email.action": "click",
            "usagetrace.email.recipient.hash": rhash,
            "usagetrace.email.link.index": 1,
        },
    ]
    raw = cap.raw_bytes()
    assert b"alice" not in raw.lower() and b"example.org" not in raw and b"evil" not in raw


def _tamper(token: str) -> str:
    body, sig = token.split(".")
    return body + "." + ("A" if sig[0] != "A" else "B") + sig[1:]


def test_bad_input_is_a_clear_4xx_and_records_nothing(fresh_package):
    """Tampered, forged, malformed, expired, mismatched tokens, unknown routes, huge query strings and non-UTF-8 paths get 4xx and record nothing."""
    pkg = fresh_package("mail")
    campaign, messages, app = make(pkg)
    html = messages["bob@example.net"]
    good_click = tokens(html, "c")[0]
    good_open = tokens(html, "o")[0]
    other = ut_email.Campaign(
        "release-2-0", key=b"another-key-of-16-bytes+", base_url="http://127.0.0.1/mail"
    )
    forged = tokens(other.personalize(HTML, ["x@y.z"])["x@y.z"], "c")[0]
    expired = ut_email.sign(KEY, "release-2-0", "c", campaign.recipient_hash("x@y.z"), 0, 1000)
    unknown_campaign = ut_email.sign(KEY, "other-campaign", "c", "ab", 0, 2**40)
    bad_index = ut_email.sign(KEY, "release-2-0", "c", "ab", 99, 2**40)
    client = Client(app)
    cases = [
        ("/c/" + _tamper(good_click), 403),
        ("/c/" + forged, 403),
        ("/c/" + good_click.split(".")[0][:-2] + "xx." + good_click.split(".")[1], 403),
        ("/c/not-a-token", 400),
        ("/c/" + "A" * 50 + "." + "!" * 43, 400),
        ("/c/" + good_open, 400),  # an open token on the click route
        ("/c/" + expired, 410),
        ("/c/" + unknown_campaign, 404),
        ("/c/" + bad_index, 404),
        ("/", 404),
        ("/admin/login", 404),
        ("/c/" + good_click + "/extra", 404),
        ("/c/" + good_click + "?" + "q=" + "A" * 100_000, 414),
        ("/c/%FF%FE" + good_click, 400),
        ("/o/caf%C3%A9", 400),
    ]
    with capture(pkg) as cap:
        for url, status in cases:
            response = client.get(url)
            assert response.status_code == status, (url[:60], response.status_code)
            assert response.headers.get("Location") is None
        assert client.post("/c/" + good_click).status_code == 405
    assert cap.spans("usagetrace.email") == []


def test_real_server_and_consent_off(fresh_package):
    """Served by a real WSGI server on 127.0.0.1 with consent off, a click still redirects but nothing is recorded."""
    pkg = fresh_package("mail")
    handle = usagetrace.instrument(pkg, consent="opt-in")
    _, messages, app = make(pkg)
    token = tokens(messages["bob@example.net"], "c")[0]
    with Server(app) as server:
        conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)
        conn.request("GET", "/c/" + token)
        response = conn.getresponse()
        response.read()
        conn.close()
    assert response.status == 302 and response.getheader("Location") == "https://www.example.com/docs?x=1&y=2"
    assert handle.recorder is None


def test_maintainer_errors_are_raised_up_front():
    """Short keys, odd campaign names and non-http links are rejected when the campaign or app is set up."""
    with pytest.raises(ValueError):
        ut_email.Campaign("c", key=b"short", base_url="https://t.example.org")
    with pytest.raises(ValueError):
        ut_email.Campaign("bad name|x", key=KEY, base_url="https://t.example.org")
    with pytest.raises(ValueError):
        ut_email.TrackingApp(key=KEY, package="x", campaigns={"c": ["javascript:alert(1)"]})
