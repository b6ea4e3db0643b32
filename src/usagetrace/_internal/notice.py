"""The one-time notice for opt-out packages.

Shown once per package per user (and again when the maintainer declares a new
consent version), on stderr (never stdout), only when stderr is a terminal and
not in CI. Until it has been shown, an opt-out package sends nothing: nobody is
opted out of something they were never told about.

Consent starts after the notice: the run that shows it records and sends
nothing (``consent.resolve`` checks :func:`shown_this_run`), so the person can
decline before anything leaves; sending starts with the next run.
"""

from __future__ import annotations

import sys

from . import runenv, state

TEMPLATE = """\
{package} collects anonymous usage statistics with usagetrace, to learn which
features are used and where they fail. It sends function names, counts,
durations, exception types and versions; never argument values, file paths,
names, hostnames or IP addresses.
  Where it goes:             {where}
  Sent with it:              a random install id, for {package} on this machine
                             only: {install_id}
  New random install id:     usagetrace reset-id {package}
  See exactly what is sent:  usagetrace preview {package}
  See what was sent:         usagetrace history {package}
  Turn it off:               usagetrace disable {package}   (or DO_NOT_TRACK=1)
Nothing is sent by this run; sending starts with the next one.
This notice is shown once.
"""

CHANGED = """\
What {package} collects has changed since you last saw this notice
(consent version {version}); nothing was sent until you saw it again.
"""

#: Packages whose notice this process showed: they send nothing until the next run.
_SHOWN_NOW: set[str] = set()


def shown_this_run(package: str) -> bool:
    """True when this process showed ``package``'s notice (so this run sends nothing)."""
    return package in _SHOWN_NOW


def destination(package: str, endpoint: str | None = None) -> str:
    """Where ``package``'s data goes, for people: the endpoint's host, or the local file. Never raises."""
    try:
        from . import config

        if endpoint is None:
            handle = _handle(package)
            endpoint = getattr(handle, "endpoint", None)
        target = config.resolve("traces", endpoint, package)
        return config.where(target)
    except Exception:
        return "unknown"


def _handle(package: str):
    module = sys.modules.get("usagetrace._internal.instrumentation")
    return module.get(package) if module is not None else None


def install_id_text(package: str) -> str:
    """The install id to name in a notice or prompt (created now when there is none). Never raises."""
    try:
        from . import resource

        return resource.install_id(package)[0]
    except Exception:
        return "created when it first sends"


def ensure_shown(package: str, version: str | None = None) -> bool:
    """Show the notice if it was not shown for ``version`` and can be shown now.

    True only when it was shown in an earlier run: the run that shows it sends nothing.
    """
    previous = state.notice_entry(package)
    if previous is not None and previous.get("consent_version") == version:
        return package not in _SHOWN_NOW
    if runenv.ci_provider() or not runenv.isatty(sys.stderr):
        return False
    if not state.mark_notice_shown(package, version, policy="opt-out"):
        # Could not record it: showing it would repeat on every run.
        return False
    _SHOWN_NOW.add(package)
    try:
        text = TEMPLATE.format(package=package, install_id=install_id_text(package),
                               where=destination(package))
        if previous is not None:
            text = CHANGED.format(package=package, version=version) + text
        sys.stderr.write(text)
        sys.stderr.flush()
    except Exception:
        pass
    return False
