"""The one-time notice for opt-out packages.

Shown once per package per user, on stderr (never stdout), only when stderr is
a terminal and not in CI. Until it has been shown, an opt-out package sends
nothing: nobody is opted out of something they were never told about.
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
  Turn it off:               usagetrace disable {package}   (or DO_NOT_TRACK=1)
This notice is shown once.
"""


def ensure_shown(package: str) -> bool:
    """Show the notice if it was never shown and can be shown now; return True if it has been shown."""
    if state.notice_shown(package):
        return True
    if runenv.ci_provider() or not runenv.isatty(sys.stderr):
        return False
    if not state.mark_notice_shown(package):
        # Could not record it: showing it would repeat on every run.
        return False
    try:
        sys.stderr.write(TEMPLATE.format(package=package))
        sys.stderr.flush()
    except Exception:
        return False
    return True
