"""The one-time notice for opt-out packages.

Shown once per package per user (and again when the maintainer declares a new
consent version), on stderr (never stdout), only when stderr is a terminal and
not in CI. Until it has been shown, an opt-out package sends nothing: nobody is
opted out of something they were never told about.
"""

from __future__ import annotations

import sys

from . import runenv, state

TEMPLATE = """\
{package} collects anonymous usage statistics with usagetrace, to learn which
features are used and where they fail. It sends function names, counts,
durations, exception types and versions; never argument values, file paths,
names, hostnames or IP addresses.
  See exactly what is sent:  usagetrace preview {package}
  See what was sent:         usagetrace history {package}
  Turn it off:               usagetrace disable {package}   (or DO_NOT_TRACK=1)
This notice is shown once.
"""

CHANGED = """\
What {package} collects has changed since you last saw this notice
(consent version {version}); nothing was sent until you saw it again.
"""


def ensure_shown(package: str, version: str | None = None) -> bool:
    """Show the notice if it was not shown for ``version`` and can be shown now; True once it has been."""
    previous = state.notice_entry(package)
    if previous is not None and previous.get("consent_version") == version:
        return True
    if runenv.ci_provider() or not runenv.isatty(sys.stderr):
        return False
    if not state.mark_notice_shown(package, version, policy="opt-out"):
        # Could not record it: showing it would repeat on every run.
        return False
    try:
        text = TEMPLATE.format(package=package)
        if previous is not None:
            text = CHANGED.format(package=package, version=version) + text
        sys.stderr.write(text)
        sys.stderr.flush()
    except Exception:
        return False
    return True
