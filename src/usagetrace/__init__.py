"""usagetrace: consent-first, anonymous usage telemetry for Python packages, on OpenTelemetry.

A maintainer adds one line at the end of the package's ``__init__.py``::

    import usagetrace
    usagetrace.instrument(__name__, endpoint="https://telemetry.example.org", consent="opt-in")

Importing this module costs almost nothing: wrapt and the OpenTelemetry SDK are
imported only once telemetry is on for some package.
"""

from __future__ import annotations

from ._internal.consent import ConsentState
from ._internal.instrumentation import Instrumentation

__version__ = "0.1.0"

__all__ = [
    "ConsentState",
    "Instrumentation",
    "__version__",
    "ask_consent",
    "command",
    "event",
    "instrument",
]


def instrument(
    package=None,
    *,
    endpoint: str | None = None,
    consent: str = "opt-in",
    version: str | None = None,
    include=None,
    exclude=None,
    ci: str = "off",
    **options,
) -> Instrumentation:
    """Record usage of a package's public API, if the person running it agrees.

    Args:
        package: The package's import name or module; ``None`` means the caller's package.
        endpoint: The maintainer's OTLP/HTTP collector base URL. The standard
            ``OTEL_EXPORTER_OTLP_*`` variables take precedence. With no endpoint
            at all, data goes to a local OTLP JSON-lines file (development mode).
        consent: ``"opt-in"`` (nothing is sent until the person agrees) or
            ``"opt-out"`` (sent unless they decline, after a one-time notice).
        version: Reported as ``service.version``; defaults to the installed version.
        include: Glob patterns of qualified names to wrap (default: all public API).
        exclude: Glob patterns of qualified names never to wrap.
        ci: ``"off"`` (default: no data from CI unless explicitly granted) or
            ``"policy"`` (CI follows the same policy as everywhere else).
        **options: Advanced settings: ``span_budget`` (spans per function per
            minute, default 5), ``error_budget`` (default 50), ``max_queue``
            (default 2048), ``dev_file`` (development-mode output path).

    Returns:
        The :class:`Instrumentation` handle. Calling ``instrument`` again for the
        same package warns and returns the same handle. Never raises for a
        problem of usagetrace's own; a bad argument warns and falls back to the
        safe choice (nothing sent).
    """
    from ._internal import instrumentation

    return instrumentation.instrument(
        package,
        endpoint=endpoint,
        consent=consent,
        version=version,
        include=include,
        exclude=exclude,
        ci=ci,
        **options,
    )


def command(name: str, *, package: str, measures: dict | None = None, emit: str = "success"):
    """Return a context manager that records one command run (see :mod:`usagetrace._internal.events`)."""
    from ._internal import events

    return events.command(name, package=package, measures=measures, emit=emit)


def event(name: str, *, package: str, **measures) -> None:
    """Record one event, e.g. a session start (see :mod:`usagetrace._internal.events`)."""
    from ._internal import events

    events.event(name, package=package, **measures)


def ask_consent(package: str, *, question: str | None = None, timeout: float = 30.0) -> ConsentState:
    """Ask the person once, on a terminal, whether ``package`` may send anonymous usage data.

    For command-line tools: call it at the start of ``main()``. It asks only when
    stdin and stderr are terminals, not in CI or a notebook, and only if no
    choice exists yet; the answer is stored so it is never asked again. No
    answer within ``timeout`` seconds leaves consent unset (nothing sent).
    Returns the resulting consent state; a grant takes effect in this run.
    """
    from ._internal import prompt

    return prompt.ask(package, question=question, timeout=timeout)
