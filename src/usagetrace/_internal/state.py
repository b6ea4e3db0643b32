"""The per-user state file: which notices were shown and what is known about each package.

Written rarely (a notice shown, a package's settings recorded at exit or by a
sender, at most once a day per package), read by ``usagetrace status``.
Updates hold a lock across read-modify-write, so two processes never drop
each other's entries. Any problem reading or writing it is logged at debug
level and otherwise ignored: nothing here decides whether data is sent,
except the notice record, where "unknown" means "not shown" (nothing sent).
"""

from __future__ import annotations

import os

from . import clock, log, paths

#: json, bound when the file is first read or written (a run's exit usually needs neither:
#: remember_package), then held: no import statement runs here again (delivery._Deps).
_json = None


def _json_module():
    global _json
    if _json is None:
        import json as _json
    return _json

#: Bounded: the notice path runs at import and this also runs at exit.
LOCK_TIMEOUT = 0.5


def load() -> dict:
    """Return the state as a dict; an empty one when absent or corrupt (or there is no home: paths.NoHome)."""
    return load_checked()[0]


def load_checked() -> tuple[dict, str | None]:
    """Return ``(state, problem)``: what is wrong with an existing state file (``usagetrace status`` names it)."""
    try:
        path = paths.state_file()
    except OSError:  # no home (paths.NoHome): nothing was ever stored
        return {}, None
    try:
        with open(path, encoding="utf-8") as fh:
            data = _json_module().loads(fh.read(1 << 20))
        if isinstance(data, dict):
            return data, None
        return {}, f"{path} does not hold a JSON object"
    except FileNotFoundError:
        return {}, None
    except Exception as exc:
        log.debug("state file %s unreadable; ignoring", path, exc_info=True)
        what = "is not valid JSON (truncated?)" if isinstance(exc, ValueError) else f"cannot be read ({exc})"
        return {}, f"{path} {what}"


def save(data: dict) -> bool:
    """Write the state; return False when it could not be written."""
    try:
        paths.atomic_write(paths.state_file(), _json_module().dumps(data, indent=1, sort_keys=True))
        return True
    except Exception:
        log.debug("state file not writable", exc_info=True)
        return False


def update(change) -> bool:
    """Apply ``change(data)`` under the state lock and save when it returns True; False on any failure."""
    try:
        with paths.locked(paths.state_file() + ".lock", timeout=LOCK_TIMEOUT):
            data = load()
            if not change(data):
                return True
            return save(data)
    except Exception:
        log.debug("state file not updated", exc_info=True)
        return False


def _section(data: dict, name: str) -> dict:
    section = data.get(name)
    if not isinstance(section, dict):
        section = data[name] = {}
    return section


def notice_entry(package: str) -> dict | None:
    """The record of the notice shown for ``package``: ``{"shown", "consent_version"}``, or None."""
    notices = load().get("notices")
    entry = notices.get(package) if isinstance(notices, dict) else None
    if entry is None:
        return None
    if isinstance(entry, str):  # written before consent versions existed
        return {"shown": entry, "consent_version": None}
    return entry if isinstance(entry, dict) else None


def notice_shown(package: str, version: str | None = None) -> bool:
    """Return True when the first-run notice for ``package`` was shown for this consent version."""
    entry = notice_entry(package)
    return entry is not None and entry.get("consent_version") == version


def mark_notice_shown(package: str, version: str | None = None, policy: str | None = None) -> bool:
    """Record that the notice was shown (for ``version``); False when that could not be stored."""

    def change(data: dict) -> bool:
        _section(data, "notices")[package] = {"shown": clock.utc(), "consent_version": version}
        if policy is not None:
            known = _section(data, "packages")
            settings = known.get(package) if isinstance(known.get(package), dict) else {}
            known[package] = {**settings, "policy": policy}
        return True

    return update(change)


def remember_package(package: str, settings: dict) -> None:
    """Record a package's settings and that it ran with telemetry on today (for ``usagetrace status``).

    Called off the import path (at exit, by the delivery thread, by the
    spool sender); writes at most once a day per package unless a setting changed.
    """
    today = clock.utc("%Y-%m-%d")
    if settings.get("endpoint"):
        from . import config

        # Never a user name, password or query (an API key) on disk: scheme://host:port/path only.
        clean = config.safe_url(settings["endpoint"])
        if config._userinfo(settings["endpoint"]):
            clean = clean.replace("://", "://removed@", 1)  # still refused when status resolves it
        settings = {**settings, "endpoint": clean}

    def change(data: dict) -> bool:
        known = _section(data, "packages")
        old = known.get(package) if isinstance(known.get(package), dict) else {}
        new = {**old, **settings, "last_on": today}
        new.setdefault("first_on", today)
        if new == old:
            return False
        known[package] = new
        return True

    # Every run after the day's first finds the state file saying so already. A stamp records that it
    # did, with the state file's identity at the time: one stat and one small read at exit, no json.
    name = "".join(c if c.isalnum() or c in "._-" else "_" for c in package)[:100]
    stamp = paths.state_path("recorded", name)
    key = f"{today} {settings!r}"
    if _read_stamp(stamp) == f"{_identity()} {key}":
        return

    def known() -> bool:
        current = load().get("packages", {})
        old = current.get(package) if isinstance(current, dict) else None
        return (isinstance(old, dict) and old.get("last_on") == today
                and all(old.get(k) == v for k, v in settings.items()))

    if not known():
        update(change)
    before = _identity()
    if before and known() and _identity() == before:  # what was checked is the file with that identity
        try:
            paths.atomic_write(stamp, f"{before} {key}")
        except OSError:
            log.debug("cannot write the stamp of %s", package, exc_info=True)


def _identity() -> str:
    """Changes whenever the state file is written (a rename: a new inode) or goes; "" when it is absent."""
    try:
        st = os.stat(paths.state_file())
    except OSError:
        return ""
    return f"{st.st_ino}:{st.st_size}:{st.st_mtime_ns}"


def _read_stamp(path: str) -> str | None:
    try:
        with open(path, encoding="utf-8") as fh:
            return fh.read(4096)
    except (OSError, ValueError):
        return None
