"""Shared parts of the web integrations: safe paths, browser family, salted user hashes."""

from __future__ import annotations

import hashlib
import os
import re
import secrets

from .._internal import log, paths

_SAFE_PATH = re.compile(r"/[A-Za-z0-9._~/:<>-]{0,127}")
_ID_SEGMENT = re.compile(r"\d+|[0-9a-fA-F-]{16,}")
ANONYMOUS = (None, "", "anonymous", "anon", "guest")


def safe_path(path) -> str | None:
    """Return a path fit to send (no query string, ids collapsed to ``:id``), or None to record nothing.

    Only plain path characters are accepted: a path with anything else
    (percent-escapes, ``@``, spaces, non-ASCII, replacement characters from
    undecodable bytes) is not recorded at all rather than guessed at.
    """
    if not isinstance(path, str):
        return None
    path = path.split("?", 1)[0].split("#", 1)[0]
    if not _SAFE_PATH.fullmatch(path) or "//" in path:
        return None
    segments = [":id" if _ID_SEGMENT.fullmatch(seg) else seg for seg in path.split("/")]
    return "/".join(segments)


def browser_family(user_agent) -> str | None:
    """Return the browser family (Chrome, Firefox, Safari, Edge, Opera, Other) of a User-Agent, nothing more."""
    if not isinstance(user_agent, str) or not user_agent:
        return None
    ua = user_agent[:512]
    if "Edg/" in ua or "Edge/" in ua:
        return "Edge"
    if "OPR/" in ua or "Opera" in ua:
        return "Opera"
    if "Firefox/" in ua or "FxiOS" in ua:
        return "Firefox"
    if "Chrome/" in ua or "CriOS" in ua or "Chromium/" in ua:
        return "Chrome"
    if "Safari/" in ua:
        return "Safari"
    return "Other"


def app_salt(package: str, salt) -> bytes:
    """Return the per-app salt: the maintainer's, else a random one kept in usagetrace's data directory."""
    if isinstance(salt, bytes) and salt:
        return salt
    if isinstance(salt, str) and salt:
        return salt.encode()
    safe = "".join(ch if ch.isalnum() or ch in "._-" else "_" for ch in package)[:100] or "app"
    path = os.path.join(paths.user_dir("data"), "app-salts", safe)
    try:
        with open(path, "rb") as fh:
            value = fh.read(256).strip()
        if len(value) >= 32:
            return value
    except OSError:
        pass
    value = secrets.token_hex(32).encode()
    try:
        paths.atomic_write(path, value.decode())
        with open(path, "rb") as fh:  # another process may have won the race: use what is on disk
            stored = fh.read(256).strip()
        return stored if len(stored) >= 32 else value
    except OSError:
        log.debug("cannot store the app salt; user hashes will change with each process", exc_info=True)
        return value


def user_hash(provider, salt: bytes) -> str | None:
    """Call the user provider and return the salted SHA-256 of the user's id, or None (anonymous)."""
    if provider is None:
        return None
    try:
        user = provider()
    except Exception:
        log.internal_error("integrations.web.user_provider")
        return None
    if isinstance(user, dict):
        user = user.get("id")
    if isinstance(user, bool) or user in ANONYMOUS:
        return None
    if isinstance(user, int):
        user = str(user)
    if not isinstance(user, str):
        return None
    return hashlib.sha256(salt + b"\x00" + user.encode("utf-8", "surrogatepass")).hexdigest()


class BaseTracker:
    """What both web trackers share: package, hooks, user and browser attributes."""

    def __init__(self, package, *, ignore_route, user_provider, salt, browser) -> None:
        self.package = package
        self.ignore_route = ignore_route
        self.user_provider = user_provider
        self._salt_arg = salt
        self._salt = None
        self.browser = browser

    def ignored(self, hook, value) -> bool:
        if hook is None:
            return False
        try:
            return bool(hook(value))
        except Exception:
            log.internal_error("integrations.web.ignore_hook")
            return True  # a broken hook must not make us record what it meant to hide

    def common(self, request) -> dict:
        attributes = {}
        if self.user_provider is not None:
            if self._salt is None:
                self._salt = app_salt(self.package, self._salt_arg)
            digest = user_hash(self.user_provider, self._salt)
            if digest is not None:
                attributes["usagetrace.user.hash"] = digest
        if self.browser:
            family = browser_family(request.headers.get("User-Agent"))
            if family is not None:
                attributes["user_agent.name"] = family
        return attributes
