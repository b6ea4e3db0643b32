"""Shared parts of the CLI integrations: masking and recording one command run."""

from __future__ import annotations

import os
import re

# events and clock are imported when a run is recorded: with telemetry off a CLI never needs them.
from .._internal import instrumentation, log

MASK = "*****"
MAX_TOKENS = 64
# Compiled (and cached by re) on first use, not at import: a CLI with telemetry off never masks an option.
_SAFE_NAME = r"[A-Za-z0-9][A-Za-z0-9._:-]{0,63}"
_SAFE_OPTION = r"--?[A-Za-z0-9][A-Za-z0-9._-]{0,63}"


def safe_name(name) -> str | None:
    """Return a command name fit to send, or None."""
    return name if isinstance(name, str) and re.fullmatch(_SAFE_NAME, name) else None


def safe_option(name) -> str:
    """Return an option name fit to send (it was matched against the CLI's own declarations)."""
    return name if isinstance(name, str) and re.fullmatch(_SAFE_OPTION, name) else MASK


def now_ns() -> int:
    """The real wall clock, even while the host fakes its own (clock.py); read only while recording."""
    from .._internal.clock import REAL

    return REAL.time_ns()


def exit_code(code) -> int:
    """Map ``SystemExit.code`` to the process exit status."""
    if code is None:
        return 0
    if isinstance(code, bool):
        return int(code)
    if isinstance(code, int):
        return code & 0xFF if code >= 0 else code % 256
    return 1  # sys.exit("message") exits with status 1


def completing() -> bool:
    """True during shell completion (click's ``_PROG_COMPLETE`` variables): not a command run."""
    try:
        return any(k.startswith("_") and k.endswith("_COMPLETE") for k in os.environ)
    except Exception:
        return False


def enter(package: str):
    """Start a command run: the API calls it makes are usages, and a package function that launched it is not.

    A command run is a fresh usage context: ``main()`` calling ``cli()``
    makes ``main`` the usage in progress, so without this every API call the
    command makes would count as internal. ``main`` is recorded as a launcher
    instead. Returns a token for :func:`leave`; never raises.
    """
    try:
        rec = instrumentation.recorder(package)
        if rec is None:
            return None
        launcher = getattr(rec.outside.get(), "stats", None)
        if launcher is not None:
            handle = instrumentation.get(package)
            if handle is not None:
                handle.launcher(launcher)
        return rec, rec.outside.set(True)
    except Exception:
        log.internal_error("integrations.cli.enter")
        return None


def leave(token) -> None:
    """End what :func:`enter` started. Never raises."""
    if token is None:
        return
    try:
        rec, reset = token
        rec.outside.reset(reset)
    except Exception:
        log.internal_error("integrations.cli.leave")


class Run:
    """Times one invocation and records it as a ``usagetrace.command`` span."""

    __slots__ = ("package", "start_ns", "path", "line")

    def __init__(self, package: str, path: list, line: list) -> None:
        self.package = package
        self.start_ns = now_ns()
        self.path = path
        self.line = line

    def finish(self, code: int, exc: BaseException | None = None) -> None:
        try:
            from .._internal import events

            attributes = {
                "usagetrace.command.name": " ".join(self.path),
                "usagetrace.command.line": " ".join(self.line[: MAX_TOKENS + 1]),
                "process.exit.code": int(code),
            }
            error = events.error_info(exc, self.package) if exc is not None else None
            events.record(self.package, "usagetrace.command", attributes, self.start_ns, error=error)
        except Exception:
            log.internal_error("integrations.cli.finish")
