"""The per-user state file: which notices were shown and which packages were seen.

Written rarely (a notice shown, a package's settings changed), read by the
``usagetrace status`` command. Any problem reading or writing it is logged at
debug level and otherwise ignored.
"""

from __future__ import annotations

import json
import time

from . import log, paths


def load() -> dict:
    """Return the state as a dict; an empty one when absent or corrupt."""
    path = paths.state_file()
    try:
        with open(path, encoding="utf-8") as fh:
            data = json.loads(fh.read(1 << 20))
        return data if isinstance(data, dict) else {}
    except FileNotFoundError:
        return {}
    except Exception:
        log.debug("state file %s unreadable; ignoring", path, exc_info=True)
        return {}


def save(data: dict) -> bool:
    """Write the state; return False when it could not be written."""
    try:
        paths.atomic_write(paths.state_file(), json.dumps(data, indent=1, sort_keys=True))
        return True
    except Exception:
        log.debug("state file not writable", exc_info=True)
        return False


def notice_shown(package: str) -> bool:
    """Return True when the first-run notice for ``package`` was already shown."""
    return package in load().get("notices", {})


def mark_notice_shown(package: str) -> bool:
    """Record that the notice was shown; return False when that could not be stored."""
    data = load()
    data.setdefault("notices", {})[package] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    return save(data)


def remember_package(package: str, settings: dict) -> None:
    """Record a package's policy and endpoint for ``usagetrace status``, only if changed."""
    data = load()
    known = data.setdefault("packages", {})
    if known.get(package) == settings:
        return
    known[package] = settings
    save(data)
