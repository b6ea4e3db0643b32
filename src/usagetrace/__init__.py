"""usagetrace: consent-first, anonymous usage telemetry for Python packages, on OpenTelemetry.

A maintainer adds one line at the top of the package's ``__init__.py`` (it wraps once the
package's import has finished)::

    import usagetrace
    usagetrace.instrument(__name__, endpoint="https://telemetry.example.org", consent="opt-in")

Importing this module costs almost nothing: wrapt and the OpenTelemetry SDK are
imported only once telemetry is on for some package.
"""

from ._internal.consent import ConsentState
from ._internal.instrumentation import Instrumentation, instrument

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


def __dir__() -> list[str]:
    # The public names only: not the imports this module needs (annotations, Any, gzip, threading ...).
    return sorted(__all__)


def command(name: str, *, package: str, measures: "dict | None" = None, emit: str = "success"):
    """Return a context manager that records one command run (see :mod:`usagetrace._internal.events`)."""
    from ._internal import events

    return events.command(name, package=package, measures=measures, emit=emit)


def event(name: str, *, package: str, **measures) -> None:
    """Record one event, e.g. a session start (see :mod:`usagetrace._internal.events`)."""
    from ._internal import events

    events.event(name, package=package, **measures)


def ask_consent(package: str, *, question: "str | None" = None, timeout: float = 30.0) -> ConsentState:
    """Ask the person once, on a terminal, whether ``package`` may send anonymous usage data.

    For command-line tools: call it at the start of ``main()``. It asks only when
    stdin and stderr are terminals, not in CI or a notebook, and only if no
    choice exists yet; the answer is stored so it is never asked again. No
    answer within ``timeout`` seconds leaves consent unset (nothing sent).
    Returns the resulting consent state; a grant takes effect in this run.
    """
    from ._internal import prompt

    return prompt.ask(package, question=question, timeout=timeout)
