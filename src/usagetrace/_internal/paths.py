"""Per-user directories for usagetrace's own files.

The answers are platformdirs' (``appname="usagetrace"``, no author). On Linux and
macOS they are computed here without importing platformdirs, because that
import costs 8-20 ms and this runs on the import path of every instrumented
package, including when telemetry is off; ``tests/test_paths.py`` pins the
shortcut to platformdirs' own answer. Elsewhere platformdirs is imported.

``USAGETRACE_HOME`` (an absolute path) puts every file under one directory instead
(tests, sandboxes); a relative one is ignored.
"""

from __future__ import annotations

import os
import sys

from . import env, log

APP = "usagetrace"


def _xdg(var: str, default: str) -> str:
    # Same rule as platformdirs: an XDG variable counts only when absolute.
    value = env.get(var)
    if value and os.path.isabs(value):
        return value
    return os.path.expanduser(default)


def _platformdirs(kind: str) -> str:
    import platformdirs

    return getattr(platformdirs, f"user_{kind}_dir")(APP, appauthor=False)


def user_dir(kind: str) -> str:
    """Return the per-user directory of one kind: config, data, cache or state."""
    home = env.get("USAGETRACE_HOME")
    if home and os.path.isabs(home):
        return os.path.join(home, kind)
    if home:
        # A relative path would scatter files into whatever directory the host runs in.
        log.debug("ignoring USAGETRACE_HOME=%r: not an absolute path", home[:80])
    if sys.platform.startswith("linux") or sys.platform.startswith("freebsd"):
        base = {
            "config": _xdg("XDG_CONFIG_HOME", "~/.config"),
            "data": _xdg("XDG_DATA_HOME", "~/.local/share"),
            "cache": _xdg("XDG_CACHE_HOME", "~/.cache"),
            "state": _xdg("XDG_STATE_HOME", "~/.local/state"),
        }[kind]
        return os.path.join(base, APP)
    if sys.platform == "darwin":
        base = {
            "config": _xdg("XDG_CONFIG_HOME", "~/Library/Application Support"),
            "data": _xdg("XDG_DATA_HOME", "~/Library/Application Support"),
            "cache": _xdg("XDG_CACHE_HOME", "~/Library/Caches"),
            "state": _xdg("XDG_STATE_HOME", "~/Library/Application Support"),
        }[kind]
        return os.path.join(base, APP)
    return _platformdirs(kind)


def consent_file() -> str:
    """Return the path of the per-user consent file."""
    return os.path.join(user_dir("config"), "consent.toml")


def state_file() -> str:
    """Return the path of the per-user state file (notices shown, known packages)."""
    return os.path.join(user_dir("state"), "state.json")


def ids_dir() -> str:
    """Return the directory holding one install-id file per package."""
    return os.path.join(user_dir("data"), "ids")


def spool_dir() -> str:
    """Return the directory where unsent telemetry waits for a later run."""
    return os.path.join(user_dir("cache"), "spool")


def atomic_write(path: str, data: str) -> None:
    """Write a text file atomically (temp file + rename), creating parent directories."""
    directory = os.path.dirname(path)
    os.makedirs(directory, mode=0o700, exist_ok=True)
    tmp = f"{path}.{os.getpid()}.tmp"
    with open(tmp, "w", encoding="utf-8") as fh:
        fh.write(data)
    os.replace(tmp, path)
