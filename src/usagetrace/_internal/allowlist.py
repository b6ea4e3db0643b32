"""The single list of every attribute key usagetrace may send.

This module is the one reviewable place for privacy rules. The SDK enforces it
at export time (anything not listed is dropped, whatever a maintainer or an
integration adds by mistake), the collector's ``redaction`` processor is
generated from it (``collector-config/``), and ``usagetrace inventory`` and the
README's "What is collected" table are rendered from it.

It is a plain data module with no imports beyond the standard library so that
the collector-config generator and docs tooling can read it cheaply.
"""

from __future__ import annotations

from typing import NamedTuple

__all__ = [
    "ATTRIBUTES",
    "EVENT_NAMES",
    "FEATURES",
    "MAX_ARRAY_ITEMS",
    "MAX_ATTRIBUTES",
    "MAX_EVENTS",
    "MAX_VALUE_LENGTH",
    "MEASURE_PREFIX",
    "METRICS",
    "NEVER_SENT",
    "SCOPE_NAME",
    "SPAN_NAMES",
    "STRING_SOURCES",
    "SUBCLASS_SUFFIX",
    "TIMES",
    "VERSION_KEYS",
    "Attr",
    "Metric",
    "allowed_keys",
]

#: Instrumentation scope of every span and metric usagetrace emits. The
#: collector's ``filter`` processor drops any data not under this scope.
SCOPE_NAME = "usagetrace"

#: Caps applied to every attribute value at export time.
MAX_VALUE_LENGTH = 256
MAX_ARRAY_ITEMS = 32
MAX_ATTRIBUTES = 32
#: Span events per span (only ``exception`` events are sent; a span records one).
MAX_EVENTS = 4

#: Appended to ``error.type``/``exception.type`` when the exception's own class
#: is not the package's, a builtin or the standard library's: the name sent is
#: then its nearest base class that is (``ValueError+subclass``). Defined where
#: the names are made (``sanitize``, imported by the recorder: a failing call
#: imports nothing).
from .sanitize import SUBCLASS_SUFFIX  # noqa: E402

#: Prefix under which a maintainer's *declared* command/event measurements
#: travel (``usagetrace.command(..., measures={"flowgroups": int})``). Only
#: keys declared up front are sent; their full keys are listed by
#: ``usagetrace inventory PACKAGE``.
MEASURE_PREFIX = "usagetrace.measure."


#: What sends an attribute. Every instrumented package can send the ``core`` ones;
#: the others only when it uses that feature. ``usagetrace inventory PACKAGE``
#: lists a package's own attributes from this.
FEATURES = {
    "core": "function calls, exceptions and counters (usagetrace.instrument)",
    "cli": "CLI commands (usagetrace.integrations.click or .argparse)",
    "command": "declared commands (usagetrace.command)",
    "event": "one-shot events (usagetrace.event)",
    "crash": "unhandled crashes (usagetrace.integrations.crash)",
    "pages": "web page views (usagetrace.integrations.flask or .dash)",
    "callbacks": "Dash callbacks (usagetrace.integrations.dash)",
    "email": "e-mail opens and clicks (usagetrace.integrations.email)",
}


class Attr(NamedTuple):
    """One attribute key that may leave the process."""

    key: str
    where: str  # "resource", "span", "event" or "metric"
    type: str  # OTLP value type as documented to people: string, int, bool, string[]
    meaning: str
    example: str
    features: tuple[str, ...] = ("core",)  # keys of FEATURES that send it


class Metric(NamedTuple):
    """One metric usagetrace may send (always a delta, monotonic sum)."""

    name: str
    unit: str
    attributes: tuple[str, ...]
    meaning: str
    features: tuple[str, ...] = ("core",)  # keys of FEATURES that send it


ATTRIBUTES: tuple[Attr, ...] = (
    # --- resource: who is sending, anonymously -----------------------------
    Attr("service.name", "resource", "string", "The instrumented package's import name.", "mypkg"),
    Attr("service.version", "resource", "string", "The installed version of that package.", "1.4.2"),
    Attr(
        "usagetrace.install.id",
        "resource",
        "string",
        "Random UUID4 per package per user, stored locally; resettable with "
        "`usagetrace reset-id`. Where it cannot be stored (no writable home): a random id for that run only, "
        "marked `run-…`.",
        "3f0c9e0a-4f7b-4d8e-9a51-0c2f5d6e7a8b",
    ),
    Attr(
        "usagetrace.session.id",
        "resource",
        "string",
        "Random id of this process run, never stored. Realtime uploads only: daily and weekly uploads count "
        "runs instead (usagetrace.runs).",
        "9b1d…",
    ),
    Attr(
        "usagetrace.upload",
        "resource",
        "string",
        "How this data was uploaded: realtime (as it happens), or daily / weekly (counted on the machine and "
        "sent as one report per period).",
        "daily",
    ),
    Attr(
        "usagetrace.batch.id",
        "resource",
        "string",
        "Random id of one request (realtime) or one period's report (daily, weekly), kept across retries and "
        "re-uploads so storage counts each once; never joins anything else.",
        "6992c92b…",
    ),
    Attr("process.runtime.name", "resource", "string", "Python implementation.", "cpython"),
    Attr("process.runtime.version", "resource", "string", "Python major.minor only.", "3.11"),
    Attr("os.type", "resource", "string", "Operating system family.", "linux"),
    Attr("host.arch", "resource", "string", "CPU architecture (the only host.* key sent).", "amd64"),
    Attr("usagetrace.ci", "resource", "bool", "Whether the run is in a CI system.", "false"),
    Attr("usagetrace.ci.provider", "resource", "string", "Which CI system, from a fixed list.", "github_actions"),
    Attr(
        "usagetrace.run.context",
        "resource",
        "string",
        "One of ci, notebook, interactive, script.",
        "script",
    ),
    Attr("usagetrace.consent.policy", "resource", "string", "The maintainer's policy: opt-in or opt-out.", "opt-in"),
    Attr(
        "usagetrace.consent.source",
        "resource",
        "string",
        "Which source granted consent: env, project, user or policy.",
        "user",
    ),
    Attr("telemetry.sdk.name", "resource", "string", "OpenTelemetry SDK name.", "opentelemetry"),
    Attr("telemetry.sdk.language", "resource", "string", "OpenTelemetry SDK language.", "python"),
    Attr("telemetry.sdk.version", "resource", "string", "OpenTelemetry SDK version.", "1.45.2"),
    Attr("telemetry.distro.name", "resource", "string", "Always usagetrace.", "usagetrace"),
    Attr("telemetry.distro.version", "resource", "string", "usagetrace version.", "0.1.0"),
    # --- spans: one per sampled usage of the public API ---------------------
    Attr("code.function.name", "span", "string", "Qualified name of the public function called.", "mypkg.io.read_table"),
    Attr("usagetrace.module", "span", "string", "Public module that defines it.", "mypkg.io"),
    Attr(
        "usagetrace.callable.kind",
        "span",
        "string",
        "function, method, classmethod, staticmethod, constructor, coroutine, generator or asyncgen.",
        "function",
    ),
    Attr(
        "usagetrace.args.count",
        "span",
        "int",
        "Number of positional parameters given a value, by position or by keyword (Python binds both alike), plus "
        "extra `*args`; self/cls and a parameter holding its default object not counted. Never the values.",
        "2",
    ),
    Attr(
        "usagetrace.params.set",
        "span",
        "string[]",
        "Sorted names of the function's declared parameters with a default that were given another object than "
        "that default (identity), by position or by keyword. Names from the package's own signature, never values.",
        '["sep"]',
    ),
    Attr(
        "usagetrace.kwargs.extra",
        "span",
        "int",
        "How many extra `**kwargs` entries the call passed (their keys are the caller's data: never sent).",
        "0",
    ),
    Attr(
        "error.type",
        "span",
        "string",
        "Qualified exception class when the call failed: a class of the package, of builtins or of the "
        "standard library; any other class is sent as its nearest such base class plus \"+subclass\".",
        "ValueError+subclass",
    ),
    Attr(
        "usagetrace.exception.signature",
        "span",
        "string",
        "Short hash of the in-package frames (module:function), for grouping.",
        "a1b2c3d4e5f6",
    ),
    # --- span event "exception" ---------------------------------------------
    Attr(
        "exception.type",
        "event",
        "string",
        "Qualified exception class, as error.type (never its message).",
        "KeyError",
    ),
    Attr(
        "exception.stacktrace",
        "event",
        "string",
        "Frames inside the package only, as module:function:line; no paths, no locals, no message.",
        "mypkg.io:read_table:41\\nmypkg._parse:row:12",
    ),
    # --- integrations: commands, events, crashes, pages, e-mail -------------
    Attr("usagetrace.command.name", "span", "string", "CLI command/subcommand or declared command name.", "mycli run", ("cli", "command")),
    Attr(
        "usagetrace.command.line",
        "span",
        "string",
        "The command line with option names kept and every value masked.",
        "mycli run --pipeline ***** --env *****",
        ("cli",),
    ),
    Attr("process.exit.code", "span", "int", "Exit status of a CLI command.", "0", ("cli",)),
    Attr("usagetrace.event.name", "span", "string", "Name of a one-shot event declared by the maintainer.", "session_start", ("event",)),
    Attr("usagetrace.crash.thread", "span", "string", "main or thread, for unhandled exceptions.", "main", ("crash",)),
    Attr("url.path", "span", "string", "Page path without query string or fragment.", "/reports", ("pages",)),
    Attr("usagetrace.page.kind", "span", "string", "load (full page) or navigation (client-side).", "navigation", ("pages",)),
    Attr("usagetrace.callback.id", "span", "string", "Dash callback output id.", "graph.figure", ("callbacks",)),
    Attr("usagetrace.user.hash", "span", "string", "App user id, SHA-256 salted per app.", "5e8f…", ("pages", "callbacks")),
    Attr("user_agent.name", "span", "string", "Browser family only.", "Chrome", ("pages", "callbacks")),
    Attr("usagetrace.email.campaign", "span", "string", "E-mail campaign name set by the sender.", "release-2.0", ("email",)),
    Attr("usagetrace.email.action", "span", "string", "open or click.", "click", ("email",)),
    Attr("usagetrace.email.recipient.hash", "span", "string", "Recipient address, SHA-256 salted per campaign.", "c0ff…", ("email",)),
    Attr("usagetrace.email.link.index", "span", "int", "Which link in the message was clicked.", "0", ("email",)),
    # --- metric point attributes ---------------------------------------------
    Attr(
        "usagetrace.outcome", "metric", "string",
        "ok, error or interrupted (KeyboardInterrupt or a cancelled task: not a failure). "
        "SystemExit(0) is ok.", "ok",
    ),
    Attr(
        "usagetrace.drop.reason",
        "metric",
        "string",
        "Why data was dropped: queue_full, export_failed, spool_full, consent_withdrawn; in daily and weekly "
        "uploads also store_full, store_broken (a local store that could not be read, set aside), "
        "upload_rejected, expired (older than three weeks, never sent).",
        "queue_full",
    ),
    Attr(
        "usagetrace.measurement",
        "metric",
        "string",
        "Name of a declared command measurement (daily and weekly uploads count them instead of sending every run).",
        "flowgroups",
        ("command",),
    ),
    Attr(
        "usagetrace.measurement.value",
        "metric",
        "string",
        "Its value: one of the declared allowed values, true or false, or (numeric) for numbers (summed in "
        "usagetrace.measurement.sum).",
        "dev",
        ("command",),
    ),
)

METRICS: tuple[Metric, ...] = (
    Metric(
        "usagetrace.calls",
        "{call}",
        ("code.function.name", "usagetrace.outcome"),
        "Exact count of usages per public function and outcome (never sampled).",
    ),
    Metric(
        "usagetrace.errors",
        "{error}",
        ("code.function.name", "error.type"),
        "Exact count of failed usages per function and exception type.",
    ),
    Metric(
        "usagetrace.dropped",
        "{item}",
        ("usagetrace.drop.reason",),
        "Spans (and spooled batches) usagetrace dropped instead of sending, by reason.",
    ),
    # Daily and weekly uploads: what realtime sends as one span per occurrence, counted exactly.
    Metric(
        "usagetrace.runs",
        "{run}",
        (),
        "Process runs with any usage, in a daily or weekly upload (realtime uploads carry a session id per run instead).",
    ),
    Metric(
        "usagetrace.commands",
        "{run}",
        ("usagetrace.command.name", "usagetrace.outcome"),
        "Exact count of command runs per command and outcome (ok: no error and exit status 0; interrupted: exit "
        "status 130, Ctrl-C; error), in a daily or weekly upload.",
        ("cli", "command"),
    ),
    Metric(
        "usagetrace.events",
        "{event}",
        ("usagetrace.event.name",),
        "Exact count of one-shot events per name, in a daily or weekly upload.",
        ("event",),
    ),
    Metric(
        "usagetrace.measurements",
        "{run}",
        ("usagetrace.command.name", "usagetrace.measurement", "usagetrace.measurement.value"),
        "Command runs per declared measurement and value, in a daily or weekly upload.",
        ("command",),
    ),
    Metric(
        "usagetrace.measurement.sum",
        "1",
        ("usagetrace.command.name", "usagetrace.measurement"),
        "Sum of a numeric command measurement over the period (mean = sum / runs with a (numeric) value); "
        "not monotonic.",
        ("command",),
    ),
)

#: Span names: a usage span is named after ``code.function.name``; these are the
#: fixed names the integrations use.
SPAN_NAMES = (
    "usagetrace.command",
    "usagetrace.event",
    "usagetrace.crash",
    "usagetrace.page_view",
    "usagetrace.callback",
    "usagetrace.email",
)

EVENT_NAMES = ("exception",)

#: Keys whose values are version strings. Their values are checked against a
#: version pattern instead of the e-mail/IP patterns, which cannot tell
#: ``1.2.3.4`` the version from ``1.2.3.4`` the address.
VERSION_KEYS = ("service.version", "process.runtime.version", "telemetry.sdk.version", "telemetry.distro.version")

#: What is never sent, by construction. Rendered into the docs next to the table.
NEVER_SENT = (
    "argument values, return values, local variables",
    "exception messages and file paths",
    "host names, user names, IP addresses, MAC addresses",
    "environment variable values, including OTEL_RESOURCE_ATTRIBUTES",
    "current directory, command-line option values, full URLs and query strings",
    "e-mail addresses and app user ids (only salted hashes)",
    "keys passed through `**kwargs` (only how many), and the caller's own exception classes, modules and callback "
    "names (an exception class of the caller's is sent as its builtin, standard-library or package base class)",
    "the time of day of anything in a daily or weekly upload",
)


#: Where every string value sent comes from (rendered by ``usagetrace inventory``).
STRING_SOURCES = (
    "a qualified name of the package's own code (functions, modules, parameter names, its exception classes)",
    "a value the maintainer declared (command, event and measurement names and allowed values)",
    "an allowlisted enum (outcome, callable kind, run context, drop reason ...)",
    "a hash (install id, exception signature, salted user and recipient hashes)",
    "a fixed format (versions, ``module:function:line`` frames, a masked command line)",
    "exception classes only by name of the package's, builtins' or the standard library's; any other class "
    "as its nearest such base class plus \"+subclass\" (ValueError+subclass)",
)

#: How times are sent, per upload mode (rendered by ``usagetrace inventory``).
TIMES = (
    "realtime: each span carries its start and end, and each metric point the interval since the previous "
    "export, to the nanosecond",
    "daily and weekly: periods, not moments. Every metric point starts at the period's first nanosecond "
    "(00:00 UTC; Monday 00:00 UTC for weekly) and ends at its last; every exemplar span starts at the period's "
    "start and lasts as long as the call did (durations stay, the time of day does not)",
)


def allowed_keys(where: str | None = None) -> frozenset[str]:
    """Return the allowed attribute keys, optionally only those for one place."""
    return frozenset(a.key for a in ATTRIBUTES if where is None or a.where == where)
