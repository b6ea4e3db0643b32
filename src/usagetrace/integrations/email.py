"""E-mail engagement: per-recipient HTML with an open pixel and signed links, and a WSGI app recording opens and clicks.

On the sender's machine::

    from usagetrace.integrations.email import Campaign

    campaign = Campaign("release-2-0", key=SECRET_KEY, base_url="https://t.example.org/mail")
    messages = campaign.personalize(html, ["a@b.com", "c@d.com"])   # {address: html}
    for address, body in messages.items():
        send_email(address, body)
    campaign.links        # the campaign's links, in order: register them with the server

On the tracking server (any WSGI server: gunicorn, waitress, werkzeug, wsgiref)::

    from usagetrace.integrations.email import TrackingApp

    app = TrackingApp(key=SECRET_KEY, package="mypkg", consent="opt-out",
                      campaigns={"release-2-0": links})

``GET /o/<token>`` answers a 1x1 GIF and records an ``open``; ``GET
/c/<token>`` records a ``click`` and redirects (302) to the link with that
index *in the campaign's registered links* - the URL is never read from the
request, so the app cannot be used as an open redirect. Each is one
``usagetrace.email`` span with ``usagetrace.email.campaign``,
``usagetrace.email.action``, ``usagetrace.email.recipient.hash`` and, for
clicks, ``usagetrace.email.link.index``.

Tokens are ``base64url(payload) + "." + base64url(HMAC-SHA256(key, payload))``;
the payload carries the campaign, the action, the link index, an expiry and the
recipient's hash: SHA-256 of the lower-cased address salted with a per-campaign
secret derived from the key. Addresses never leave the sender's machine.
Malformed tokens answer 400, bad signatures 403, unknown campaigns, links or
routes 404, wrong methods 405, expired tokens 410, over-long URLs 414, and
nothing is recorded for any of them. Standard library only.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import html as _html
import re
import time
from html.parser import HTMLParser
from urllib.parse import urlsplit

from .._internal import events, instrumentation, log

__all__ = ["Campaign", "TrackingApp", "recipient_hash", "verify"]

VERSION = "1"
OPEN, CLICK = "o", "c"
MAX_URL = 2048
MAX_PATH = 1024
MAX_QUERY = 1024
_CAMPAIGN = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
_TOKEN = re.compile(r"[A-Za-z0-9_-]{1,600}\.[A-Za-z0-9_-]{43}")
_HREF = re.compile(r"""((?<![\w-])href\s*=\s*)("[^"]*"|'[^']*'|[^\s>]+)""", re.IGNORECASE)
PIXEL_GIF = base64.b64decode("R0lGODlhAQABAIAAAAAAAP///yH5BAEAAAAALAAAAAABAAEAAAIBRAA7")


class TokenError(Exception):
    """A token that must be refused, with the HTTP status to answer."""

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason


def _key(key) -> bytes:
    if isinstance(key, str):
        key = key.encode()
    if not isinstance(key, bytes) or len(key) < 16:
        raise ValueError(
            "usagetrace email tracking needs a secret key of at least 16 bytes (keep it out of the e-mails)"
        )
    return key


def _campaign_name(name) -> str:
    if not isinstance(name, str) or not _CAMPAIGN.fullmatch(name):
        raise ValueError(f"campaign name {name!r} must be letters, digits, . _ - (at most 64 characters)")
    return name


def _valid_link(url) -> bool:
    if (
        not isinstance(url, str)
        or len(url) > MAX_URL
        or not url.isprintable()
        or any(c.isspace() for c in url)
    ):
        return False
    try:
        parts = urlsplit(url)
    except ValueError:
        return False
    return parts.scheme in ("http", "https") and bool(parts.netloc)


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def recipient_hash(key, campaign: str, address: str) -> str:
    """Return the recipient's hash: SHA-256 of the lower-cased address salted with a per-campaign secret."""
    salt = hmac.new(_key(key), b"usagetrace-email-salt\x00" + campaign.encode(), hashlib.sha256).digest()
    return hashlib.sha256(salt + address.strip().lower().encode("utf-8")).hexdigest()[:32]


def sign(key, campaign: str, action: str, rhash: str, index: int, expires: int) -> str:
    """Return a signed token."""
    payload = "|".join((VERSION, campaign, action, rhash, str(index), str(expires))).encode("ascii")
    return _b64(payload) + "." + _b64(hmac.new(_key(key), payload, hashlib.sha256).digest())


def verify(key, token, now: float | None = None) -> tuple[str, str, str, int]:
    """Return (campaign, action, recipient hash, link index) of a valid token; raise TokenError otherwise."""
    if not isinstance(token, str) or not _TOKEN.fullmatch(token):
        raise TokenError(400, "malformed token")
    body, signature = token.split(".")
    try:
        payload, mac = _unb64(body), _unb64(signature)
    except (binascii.Error, ValueError):
        raise TokenError(400, "malformed token") from None
    if not hmac.compare_digest(mac, hmac.new(_key(key), payload, hashlib.sha256).digest()):
        raise TokenError(403, "bad signature")
    try:
        version, campaign, action, rhash, index, expires = payload.decode("ascii").split("|")
        index_n, expires_n = int(index), int(expires)
    except (UnicodeDecodeError, ValueError):
        raise TokenError(400, "malformed token") from None
    if version != VERSION or action not in (OPEN, CLICK) or not _CAMPAIGN.fullmatch(campaign):
        raise TokenError(400, "malformed token")
    if expires_n < (time.time() if now is None else now):
        raise TokenError(410, "expired")
    return campaign, action, rhash, index_n


class _Anchors(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.found: list[tuple[tuple[int, int], str, str]] = []

    def handle_starttag(self, tag, attrs) -> None:
        if tag != "a":
            return
        href = dict(attrs).get("href")
        if href is not None and _valid_link(href.strip()):
            self.found.append((self.getpos(), self.get_starttag_text() or "", href.strip()))


class Campaign:
    """One e-mail campaign: personalizes HTML per recipient (see the module docstring)."""

    def __init__(self, name: str, *, key, base_url: str, ttl_days: float = 90) -> None:
        self.name = _campaign_name(name)
        self._key = _key(key)
        if not _valid_link(base_url):
            raise ValueError("base_url must be the http(s) URL where the TrackingApp is served")
        self.base_url = base_url.rstrip("/")
        self.ttl = int(ttl_days * 86400)
        self.links: list[str] = []

    def recipient_hash(self, address: str) -> str:
        """The hash that travels in this recipient's tokens."""
        return recipient_hash(self._key, self.name, address)

    def _template(self, html: str) -> list:
        parser = _Anchors()
        parser.feed(html)
        parser.close()
        line_starts = [0]
        for match in re.finditer("\n", html):
            line_starts.append(match.end())
        parts: list = []
        cursor = 0
        links: list[str] = []
        for (line, col), tag_text, href in parser.found:
            offset = line_starts[line - 1] + col
            if not tag_text or html[offset : offset + len(tag_text)] != tag_text or offset < cursor:
                continue
            index = links.index(href) if href in links else len(links)
            if index == len(links):
                links.append(href)
            pieces = _HREF.split(tag_text, maxsplit=1)
            if len(pieces) < 4:
                continue
            parts.append(html[cursor:offset] + pieces[0] + pieces[1])
            parts.append(index)  # the placeholder: this recipient's click URL for link ``index``
            parts.append("".join(pieces[3:]))
            cursor = offset + len(tag_text)
        rest = html[cursor:]
        close = rest.lower().rfind("</body>")
        if close >= 0:
            parts.extend([rest[:close], None, rest[close:]])
        else:
            parts.extend([rest, None])
        self.links = links
        return parts

    def personalize(self, html: str, recipients) -> dict[str, str]:
        """Return ``{address: html}``: each link rewritten to a signed click URL, plus an open pixel."""
        if not isinstance(html, str):
            raise TypeError("html must be a str")
        template = self._template(html)
        expires = int(time.time()) + self.ttl
        out = {}
        for address in recipients:
            rhash = self.recipient_hash(address)
            chunks = []
            for part in template:
                if part is None:
                    token = sign(self._key, self.name, OPEN, rhash, -1, expires)
                    chunks.append(
                        f'<img src="{self.base_url}/o/{token}" width="1" height="1" alt="" '
                        'style="display:block;border:0;width:1px;height:1px">'
                    )
                elif isinstance(part, int):
                    token = sign(self._key, self.name, CLICK, rhash, part, expires)
                    chunks.append(f'"{_html.escape(f"{self.base_url}/c/{token}")}"')
                else:
                    chunks.append(part)
            out[address] = "".join(chunks)
        return out


def _respond(start_response, status: str, body: bytes = b"", headers=()) -> list:
    base = [
        ("Content-Length", str(len(body))),
        ("Cache-Control", "no-store"),
        ("X-Content-Type-Options", "nosniff"),
    ]
    if body and not any(h[0] == "Content-Type" for h in headers):
        base.append(("Content-Type", "text/plain; charset=utf-8"))
    start_response(status, base + list(headers))
    return [body]


_STATUS = {
    400: "400 Bad Request",
    403: "403 Forbidden",
    404: "404 Not Found",
    405: "405 Method Not Allowed",
    410: "410 Gone",
    414: "414 URI Too Long",
}


class TrackingApp:
    """WSGI application recording e-mail opens and clicks for ``package`` (see the module docstring)."""

    def __init__(
        self,
        *,
        key,
        package: str,
        campaigns: dict | None = None,
        endpoint: str | None = None,
        consent: str | None = None,
        **options,
    ) -> None:
        self._key = _key(key)
        self.package = package
        self.campaigns: dict[str, tuple[str, ...]] = {}
        for name, links in (campaigns or {}).items():
            self.register(name, links)
        setup = None
        if endpoint is not None or consent is not None or options:
            # A web app is a service: each page view (open, click) is its own record, sent as it happens.
            setup = {"endpoint": endpoint, "consent": consent or "opt-in", "upload": "realtime", **options}
        instrumentation.handle_for(package, setup)

    def register(self, campaign: str, links) -> None:
        """Register (or replace) a campaign's links; only these can ever be redirected to."""
        links = tuple(links)
        for link in links:
            if not _valid_link(link):
                raise ValueError(f"campaign {campaign!r}: link {link[:80]!r} is not an http(s) URL")
        self.campaigns[_campaign_name(campaign)] = links

    def __call__(self, environ, start_response):
        try:
            return self._handle(environ, start_response)
        except TokenError as exc:
            return _respond(start_response, _STATUS.get(exc.status, "400 Bad Request"), exc.reason.encode())
        except Exception:
            log.internal_error("integrations.email.app")
            return _respond(start_response, "400 Bad Request", b"bad request")

    def _handle(self, environ, start_response):
        path = environ.get("PATH_INFO") or ""
        query = environ.get("QUERY_STRING") or ""
        if len(path) > MAX_PATH or len(query) > MAX_QUERY:
            raise TokenError(414, "uri too long")
        if not path.isascii() or not path.isprintable():
            raise TokenError(400, "bad path")  # WSGI paths are latin-1: non-ASCII means non-UTF-8 or junk
        segments = path.strip("/").split("/")
        if len(segments) != 2 or segments[0] not in (OPEN, CLICK):
            raise TokenError(404, "not found")
        method = environ.get("REQUEST_METHOD", "GET")
        if method not in ("GET", "HEAD"):
            return _respond(
                start_response, "405 Method Not Allowed", b"method not allowed", [("Allow", "GET, HEAD")]
            )
        campaign, action, rhash, index = verify(self._key, segments[1])
        if action != segments[0]:
            raise TokenError(400, "token does not match the route")
        links = self.campaigns.get(campaign)
        if links is None:
            raise TokenError(404, "unknown campaign")
        if action == CLICK and not 0 <= index < len(links):
            raise TokenError(404, "unknown link")
        if method == "GET":  # HEAD requests (link scanners) are answered, not counted
            attributes = {
                "usagetrace.email.campaign": campaign,
                "usagetrace.email.action": "open" if action == OPEN else "click",
                "usagetrace.email.recipient.hash": rhash,
            }
            if action == CLICK:
                attributes["usagetrace.email.link.index"] = index
            now = time.time_ns()
            events.record(self.package, "usagetrace.email", attributes, now, now)
        if action == OPEN:
            return _respond(
                start_response,
                "200 OK",
                PIXEL_GIF if method == "GET" else b"",
                [("Content-Type", "image/gif")],
            )
        return _respond(start_response, "302 Found", b"", [("Location", links[index])])
