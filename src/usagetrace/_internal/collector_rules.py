"""What the bundled collector enforces, as data: patterns, limits and the field inventory.

``collector_config.py`` renders these into ``collector-config/allowlist.yaml``
(OTTL statements, filter conditions, the redaction processor's lists) for
otelcol-contrib 0.136.0. The tests read the same data: the regular expressions
are checked under RE2 semantics (``google-re2``), and every OTLP field the
exporters can store must have an entry in :data:`FIELDS`.

Every pattern here is RE2 syntax (Go's ``regexp``): no lookaround, no
backreferences. Patterns are written once, with single backslashes; the
renderer escapes them for OTTL string literals. Standard library only.
"""

from __future__ import annotations

from typing import NamedTuple

from . import allowlist

__all__ = [
    "BLOCKED_VALUES",
    "DECLARED_NAME",
    "EXCEPTION_NAME",
    "HEX_ID",
    "FIELDS",
    "IDENTIFIER",
    "INVALID_UTF8",
    "ITEM_SHAPES",
    "MASK",
    "MEASUREMENT_VALUE",
    "NAME_LENGTH",
    "NAME_SHAPES",
    "QUALIFIED_NAME",
    "REPLACEMENT_CHARACTER",
    "TOKEN",
    "TRUNCATE",
    "VERSION",
    "Check",
    "Handling",
    "clean_names",
    "masked",
]

# --- value patterns -------------------------------------------------------------

# Letters, marks and digits of any script: e-mail addresses and domains are not ASCII-only.
_WORD = r"\p{L}\p{M}\p{N}"
_AT = r"[@\x{FF20}]"  # "@" and the fullwidth at sign
_DOT = r"[.\x{3002}\x{FF0E}\x{FF61}]"  # "." and the dots IDNA accepts between labels
_LABEL = rf"[{_WORD}](?:[{_WORD}-]*[{_WORD}])?"
_EMAIL = rf"[{_WORD}._%+-]+{_AT}(?:{_LABEL}{_DOT})+[\p{{L}}\p{{M}}](?:[{_WORD}-]*[{_WORD}])?"

# An IPv4 address that is not part of a longer dotted run: "1.2.3.4.5" and
# "2.0.0.0.dev1" are versions, not addresses. RE2 has no lookaround, so the
# characters on either side are part of the match (and masked with it).
_OCTET = r"(?:25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])"
_IPV4 = rf"(?:^|[^0-9A-Za-z.]){_OCTET}(?:\.{_OCTET}){{3}}(?:$|[^0-9A-Za-z.]|\.(?:$|[^0-9A-Za-z]))"

# IPv6. A compressed address must contain a decimal digit and at least one
# group before "::": "fe80::1" and "2001:db8::" are addresses, "ab::cd" is
# not taken for one, and "::1" (loopback, identifies nobody) is left alone.
_H = r"[0-9A-Fa-f]{1,4}"
_D = r"(?:[0-9][0-9A-Fa-f]{0,3}|[A-Fa-f][0-9][0-9A-Fa-f]{0,2}|[A-Fa-f]{2}[0-9][0-9A-Fa-f]?|[A-Fa-f]{3}[0-9])"
_IPV6_FULL = rf"\b(?:{_H}:){{7}}{_H}\b"
_IPV6_DIGIT_LEFT = rf"\b(?:{_H}:){{0,6}}{_D}:(?:{_H}:){{0,6}}:(?:{_H}(?::{_H}){{0,6}}\b)?"
_IPV6_DIGIT_RIGHT = rf"\b(?:{_H}:){{1,7}}:(?:{_H}:){{0,6}}{_D}(?::{_H}){{0,6}}\b"

#: ``redaction`` processor ``blocked_values``: each match is replaced by :data:`MASK`.
#: The processor applies each pattern once, left to right, without overlaps. An
#: IPv4 match takes the character on each side with it, so of two addresses one
#: space apart only the first would match: the pattern is listed twice.
BLOCKED_VALUES: tuple[tuple[str, str], ...] = (
    ("e-mail address (any script)", _EMAIL),
    ("IPv4 address", _IPV4),
    ("IPv4 address (second pass for adjacent addresses)", _IPV4),
    ("IPv6 address, full form", _IPV6_FULL),
    ("IPv6 address, compressed, digit before ::", _IPV6_DIGIT_LEFT),
    ("IPv6 address, compressed, digit after ::", _IPV6_DIGIT_RIGHT),
)

#: What the redaction processor writes in place of a blocked value (its default).
MASK = "****"

#: Values of :data:`allowlist.VERSION_KEYS` and the instrumentation scope version:
#: starts with a digit (or "v" and a digit), as release versions do, or is the
#: SDK's "unknown" (a package without a version).
VERSION = r"^(?:unknown|v?[0-9][0-9A-Za-z.+!_-]{0,63})$"

# A Python identifier: XID_Start (letters, letter numbers, "_") then XID_Continue.
_ID = r"[\p{L}\p{Nl}_][\p{L}\p{Nl}\p{Mn}\p{Mc}\p{Nd}\p{Pc}]*"
#: One Python identifier (items of ``usagetrace.params.set``: parameter names
#: from the package's own signatures).
IDENTIFIER = rf"^{_ID}$"
#: Span names, function and module names: a dotted qualified name
#: (``mypkg.io.read_table``, ``usagetrace.command``).
QUALIFIED_NAME = rf"^{_ID}(?:[.]{_ID})*$"
#: Exception class names: a dotted qualified name, optionally marked as a subclass
#: of that class (``ValueError+subclass``, see ``sanitize.type_name``).
EXCEPTION_NAME = rf"^{_ID}(?:[.]{_ID})*(?:[+]{allowlist.SUBCLASS_SUFFIX[1:]})?$"
#: Command and event names, as ``events.py`` and the CLI integrations accept them:
#: an ASCII letter or digit, then letters, digits, spaces and ``._:/-``
#: (``mycli run``, ``export:csv``).
DECLARED_NAME = r"^[A-Za-z0-9][A-Za-z0-9 ._:/-]*$"
#: A declared measurement's value: one of its declared values, true/false, or "(numeric)".
MEASUREMENT_VALUE = r"^(?:[(]numeric[)]|[A-Za-z0-9][A-Za-z0-9._-]*)$"

#: Values from a fixed list usagetrace sends (outcomes, kinds, contexts, OS, CI ...): a lowercase token.
TOKEN = r"^[a-z0-9][a-z0-9_.-]*$"
#: Random ids and hashes: lowercase hexadecimal, UUIDs with their dashes.
HEX_ID = r"^[0-9a-f][0-9a-f-]*$"

#: The string attributes whose values must have a name's, token's or id's shape
#: (and :data:`NAME_LENGTH`); any other value is replaced by :data:`MASK`. The one
#: list of these rules: the generated collector config and ``usagetrace collect``
#: both read it (:func:`shape_of`, :func:`masked`).
NAME_SHAPES: dict[str, str] = {
    "service.name": QUALIFIED_NAME,
    "code.function.name": QUALIFIED_NAME,
    "usagetrace.module": QUALIFIED_NAME,
    "error.type": EXCEPTION_NAME,
    "exception.type": EXCEPTION_NAME,
    "usagetrace.command.name": DECLARED_NAME,
    "usagetrace.event.name": DECLARED_NAME,
    "usagetrace.measurement": DECLARED_NAME,
    "usagetrace.measurement.value": MEASUREMENT_VALUE,
    # allowlisted enums
    "usagetrace.outcome": TOKEN,
    "usagetrace.drop.reason": TOKEN,
    "usagetrace.callable.kind": TOKEN,
    "usagetrace.run.context": TOKEN,
    "usagetrace.upload": TOKEN,
    "usagetrace.consent.policy": TOKEN,
    "usagetrace.consent.source": TOKEN,
    "usagetrace.ci.provider": TOKEN,
    "usagetrace.crash.thread": TOKEN,
    "usagetrace.page.kind": TOKEN,
    "usagetrace.email.action": TOKEN,
    "os.type": TOKEN,
    "host.arch": TOKEN,
    "process.runtime.name": TOKEN,
    "telemetry.sdk.name": TOKEN,
    "telemetry.sdk.language": TOKEN,
    "telemetry.distro.name": TOKEN,
    # ids and hashes
    "usagetrace.install.id": HEX_ID,
    "usagetrace.session.id": HEX_ID,
    "usagetrace.exception.signature": HEX_ID,
    "usagetrace.user.hash": HEX_ID,
    "usagetrace.email.recipient.hash": HEX_ID,
}
#: Items of these ``string[]`` attributes must be identifiers, else the whole attribute is deleted.
ITEM_SHAPES: dict[str, str] = {
    "usagetrace.params.set": IDENTIFIER,
}
#: Identifiers and names are also at most MAX_VALUE_LENGTH characters. (A separate
#: pattern: a bounded repeat of a Unicode class is a very large RE2 program.)
NAME_LENGTH = rf"^(?s).{{1,{allowlist.MAX_VALUE_LENGTH}}}$"

#: Cut a string to MAX_VALUE_LENGTH *characters* (Go's regexp steps over whole
#: UTF-8 sequences, so the cut never splits one). Replacement: group 1.
TRUNCATE = rf"^(?s)(.{{{allowlist.MAX_VALUE_LENGTH}}}).+$"

#: Go's regexp reads each byte of an invalid UTF-8 sequence as U+FFFD; a class
#: of more than one rune (never a literal prefix) matches those bytes one by one.
#: Replacing them with the real U+FFFD makes the string valid UTF-8.
INVALID_UTF8 = r"[\x{FFFD}-\x{FFFF}]"
REPLACEMENT_CHARACTER = "\ufffd"


def masked(key: str, value: object) -> object:
    """Apply :data:`NAME_SHAPES` to one attribute value the way the collector does (Python ``re``):
    a string of the wrong shape or too long becomes :data:`MASK`; other values pass unchanged.

    For ``usagetrace collect`` and tests; the patterns use only syntax Python's ``re``
    and RE2 read alike, except ``\\p{..}`` classes, which this translates.
    """
    pattern = NAME_SHAPES.get(key)
    if pattern is None or not isinstance(value, str):
        return value
    if not value or len(value) > allowlist.MAX_VALUE_LENGTH or not _python_re(pattern).fullmatch(value):
        return MASK
    return value


def clean_names(attributes: dict) -> dict:
    """Return ``attributes`` with :data:`NAME_SHAPES` values masked and :data:`ITEM_SHAPES` lists checked
    (more than ``MAX_ARRAY_ITEMS`` items, or one that is not a short identifier string: the key is removed),
    as the generated collector config does. Other keys and values are returned unchanged."""
    out = {}
    for key, value in attributes.items():
        pattern = ITEM_SHAPES.get(key)
        if pattern is not None:
            if not isinstance(value, (list, tuple)) or len(value) > allowlist.MAX_ARRAY_ITEMS or not all(
                isinstance(v, str) and 0 < len(v) <= allowlist.MAX_VALUE_LENGTH and _python_re(pattern).fullmatch(v)
                for v in value
            ):
                continue
        out[key] = masked(key, value)
    return out


_COMPILED: dict = {}


def _python_re(pattern: str):
    """``pattern`` (RE2 syntax) compiled with Python's ``re``.

    The identifier classes (``\\p{L}`` ...) become ``[^\\W\\d]\\w*``: the same for
    every identifier Python accepts; a few exotic code points may be decided
    differently (the parity test checks a corpus of names and hostile values).
    """
    import re

    compiled = _COMPILED.get(pattern)
    if compiled is None:
        text = pattern.replace(_ID, r"[^\W\d]\w*")
        compiled = _COMPILED[pattern] = re.compile(text)
    return compiled


# --- field inventory --------------------------------------------------------------


class Check(NamedTuple):
    """Where in the merged collector config a field's rule lives: component, section, text."""

    component: str
    section: str  # "traces/span" (filter), "trace_statements/span" (transform), "blocked_values" ...
    text: str


class Handling(NamedTuple):
    """How one storable OTLP field is handled, and the config that does it."""

    how: str
    checks: tuple[Check, ...]


def _t(signal: str, context: str, text: str) -> Check:
    return Check("transform/allowlist", f"{signal}_statements/{context}", text)


def _f(signal: str, context: str, text: str) -> Check:
    return Check("filter/allowlist", f"{signal}/{context}", text)


_GROUP = Check("groupbyattrs/rebuild", "keys", "[]")


def _attributes(signal: str, context: str) -> Handling:
    return Handling(
        "allowlisted keys for this place, typed, invalid UTF-8 replaced, cut to "
        f"{allowlist.MAX_VALUE_LENGTH} characters, e-mail/IP values masked",
        (
            _t(signal, context, "keep_keys(attributes, ["),
            _t(signal, context, "replace_all_patterns(attributes, "),
            Check("redaction/allowlist", "allowed_keys", ""),
        ),
    )


def _dropped(check: Check, what: str) -> Handling:
    return Handling(what, (check,))


_NOT_SUM = _f("metrics", "metric", "type != METRIC_DATA_TYPE_SUM")

#: Every OTLP field an exporter can store (the file exporter writes whole
#: requests as OTLP JSON; the ClickHouse exporter maps them to columns) that can
#: carry text or bytes, by ``Message.field``. Numbers (times, counts, flags,
#: enums) are stored as sent and are not listed.
FIELDS: dict[str, Handling] = {
    # resource
    "ResourceSpans.schema_url": Handling(
        "cleared (groupbyattrs rebuilds resources without it; set to empty)",
        (_GROUP, _t("trace", "resource", 'set(schema_url, "")')),
    ),
    "ResourceMetrics.schema_url": Handling(
        "cleared (groupbyattrs rebuilds resources without it; set to empty)",
        (_GROUP, _t("metric", "resource", 'set(schema_url, "")')),
    ),
    "Resource.attributes": Handling(
        "allowlisted resource keys, typed, versions format-checked instead of masked, "
        "other values masked and cut",
        (
            _t("trace", "resource", "keep_keys(attributes, ["),
            _t("metric", "resource", "keep_keys(attributes, ["),
            Check("redaction/allowlist", "ignored_keys", "service.version"),
        ),
    ),
    "Resource.entity_refs": Handling(
        "dropped: groupbyattrs builds each resource anew from its attributes only",
        (_GROUP,),
    ),
    # scope
    "ScopeSpans.schema_url": Handling(
        "cleared (not carried over by groupbyattrs; set to empty)",
        (_GROUP, _t("trace", "scope", 'set(schema_url, "")')),
    ),
    "ScopeMetrics.schema_url": Handling(
        "cleared (not carried over by groupbyattrs; set to empty)",
        (_GROUP, _t("metric", "scope", 'set(schema_url, "")')),
    ),
    "InstrumentationScope.name": Handling(
        f'exactly "{allowlist.SCOPE_NAME}" (anything else is dropped)',
        (Check("filter/usagetrace", "traces/span", "instrumentation_scope.name != "),),
    ),
    "InstrumentationScope.version": Handling(
        "kept only if it looks like a version, else cleared",
        (_t("trace", "scope", "set(version, "), _t("metric", "scope", "set(version, ")),
    ),
    "InstrumentationScope.attributes": Handling(
        "all removed", (_t("trace", "scope", "keep_keys(attributes, [])"), _t("metric", "scope", "keep_keys(attributes, [])"))
    ),
    # spans
    "Span.trace_id": Handling("kept: 16 random bytes made by the SDK's private generator", ()),
    "Span.span_id": Handling("kept: 8 random bytes made by the SDK's private generator", ()),
    "Span.parent_span_id": Handling("kept: empty for usagetrace spans, which are always roots", ()),
    "Span.trace_state": Handling("cleared", (_t("trace", "span", 'set(trace_state, "")'),)),
    "Span.name": Handling(
        f"a dotted qualified name of at most {allowlist.MAX_VALUE_LENGTH} characters, else the span is dropped",
        (_f("traces", "span", "not IsMatch(name, "),),
    ),
    "Span.attributes": _attributes("trace", "span"),
    "Span.Event.name": Handling(
        "one of the allowlist's event names, else the event is dropped",
        (_f("traces", "spanevent", 'name != "exception"'),),
    ),
    "Span.Event.attributes": _attributes("trace", "spanevent"),
    "Span.events": Handling(
        f"at most {allowlist.MAX_EVENTS} per span, else the span is dropped",
        (_f("traces", "span", f"Len(events) > {allowlist.MAX_EVENTS}"),),
    ),
    "Span.Link.trace_id": _dropped(_f("traces", "span", "Len(links) > 0"), "a span with links is dropped"),
    "Span.Link.span_id": _dropped(_f("traces", "span", "Len(links) > 0"), "a span with links is dropped"),
    "Span.Link.trace_state": _dropped(_f("traces", "span", "Len(links) > 0"), "a span with links is dropped"),
    "Span.Link.attributes": _dropped(_f("traces", "span", "Len(links) > 0"), "a span with links is dropped"),
    "Status.message": Handling("cleared", (_t("trace", "span", 'set(status.message, "")'),)),
    # metrics
    "Metric.name": Handling(
        "one of the allowlist's metric names, else the metric is dropped",
        (_f("metrics", "metric", 'name != "usagetrace.calls"'),),
    ),
    "Metric.description": Handling(
        "replaced by the allowlist's description", (_t("metric", "metric", "set(description, "),)
    ),
    "Metric.unit": Handling("replaced by the allowlist's unit", (_t("metric", "metric", "set(unit, "),)),
    "Metric.metadata": Handling("all removed", (_t("metric", "metric", "keep_keys(metric.metadata, [])"),)),
    "NumberDataPoint.attributes": _attributes("metric", "datapoint"),
    "Exemplar.filtered_attributes": _dropped(
        _f("metrics", "datapoint", "Len(exemplars) > 0"), "a data point with exemplars is dropped"
    ),
    "Exemplar.span_id": _dropped(
        _f("metrics", "datapoint", "Len(exemplars) > 0"), "a data point with exemplars is dropped"
    ),
    "Exemplar.trace_id": _dropped(
        _f("metrics", "datapoint", "Len(exemplars) > 0"), "a data point with exemplars is dropped"
    ),
    # usagetrace sends delta sums only: every other metric type is dropped whole
    "HistogramDataPoint.attributes": _dropped(_NOT_SUM, "metrics other than sums are dropped"),
    "ExponentialHistogramDataPoint.attributes": _dropped(_NOT_SUM, "metrics other than sums are dropped"),
    "SummaryDataPoint.attributes": _dropped(_NOT_SUM, "metrics other than sums are dropped"),
}
