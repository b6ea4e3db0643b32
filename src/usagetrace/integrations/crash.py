"""Record unhandled exceptions (crashes) that pass through an instrumented package.

::

    import usagetrace
    from usagetrace.integrations import crash

    usagetrace.instrument(__name__, endpoint=..., consent="opt-in")
    crash.install(__name__)

``install`` chains ``sys.excepthook`` and ``threading.excepthook``: the hook
that was there before (Python's default, Sentry's, a CLI framework's) always
runs afterwards, unchanged. A crash is recorded as one ``usagetrace.crash``
span when consent is on, the process is not an interactive shell (REPL,
IPython, notebook), and the traceback has at least one frame inside the
package. The span carries ``usagetrace.crash.thread`` (``main`` or
``thread``), the exception type and the in-package frames as
``module:function:line`` only - never the message, paths or locals.
``KeyboardInterrupt`` and ``SystemExit`` are not crashes.

Main-thread crashes are recorded just before the interpreter exits; the core
spools pending samples at exit (no network wait), so they are delivered by
the detached sender or the next run. Standard library only.
"""

from __future__ import annotations

import sys
import threading

# events, clock and runenv are imported when a crash is recorded: not on the import path of a CLI.
from .._internal import instrumentation, log

__all__ = ["CrashHooks", "install"]


class CrashHooks:
    """The installed hooks of one package; :meth:`uninstall` puts the previous ones back."""

    def __init__(self, package: str, threads: bool) -> None:
        self.package = package
        self.previous_excepthook = sys.excepthook
        self.previous_threading_hook = threading.excepthook if threads else None
        self.installed = False

    # The hooks: record (guarded), then always chain.
    def excepthook(self, exc_type, exc, tb) -> None:
        self._record(exc_type, exc, tb, "main")
        self.previous_excepthook(exc_type, exc, tb)

    def threading_hook(self, args) -> None:
        self._record(args.exc_type, args.exc_value, args.exc_traceback, "thread")
        previous = self.previous_threading_hook or threading.__excepthook__
        previous(args)

    def _record(self, exc_type, exc, tb, thread: str) -> None:
        try:
            if not self.installed or exc_type is None:
                return
            if issubclass(exc_type, (KeyboardInterrupt, SystemExit)):
                return
            if instrumentation.recorder(self.package) is None:
                return
            from .._internal import clock, events, runenv, sanitize

            if runenv.in_interactive_shell():
                return

            frames = sanitize.frames(tb, self.package)
            if not frames:
                return  # the crash did not pass through this package
            type_name = sanitize.type_name(exc_type, self.package)
            error = (type_name, frames, sanitize.signature(type_name, frames))
            now = clock.REAL.time_ns()  # the real clock, even while the host fakes its own
            events.record(
                self.package, "usagetrace.crash", {"usagetrace.crash.thread": thread}, now, now, error
            )
        except Exception:
            log.internal_error("integrations.crash.record")

    def uninstall(self) -> None:
        """Restore the previous hooks where ours are still installed (never clobbers a later hook)."""
        self.installed = False
        try:
            if sys.excepthook == self.excepthook:
                sys.excepthook = self.previous_excepthook
            if self.previous_threading_hook is not None and threading.excepthook == self.threading_hook:
                threading.excepthook = self.previous_threading_hook
        except Exception:
            log.internal_error("integrations.crash.uninstall")
        _INSTALLED.pop(self.package, None)


_INSTALLED: dict[str, CrashHooks] = {}


def install(
    package: str, *, threads: bool = True, endpoint: str | None = None, consent: str | None = None
) -> CrashHooks:
    """Record crashes passing through ``package``; return the hooks (idempotent per package).

    ``threads=False`` leaves ``threading.excepthook`` alone. When the package
    has not called ``usagetrace.instrument()``, pass ``endpoint``/``consent``.
    """
    existing = _INSTALLED.get(package)
    if existing is not None and existing.installed:
        return existing
    if endpoint is not None or consent is not None:
        instrumentation.handle_for(package, {"endpoint": endpoint, "consent": consent or "opt-in"})
    hooks = CrashHooks(package, threads)
    hooks.installed = True
    sys.excepthook = hooks.excepthook
    if threads:
        threading.excepthook = hooks.threading_hook
    _INSTALLED[package] = hooks
    return hooks
