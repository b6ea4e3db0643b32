"""Render ``collector-config/allowlist.yaml`` from the allowlist and the collector rules.

The bundled OpenTelemetry Collector enforces the same attribute allowlist as the
SDK (defence in depth: a modified client still cannot store a host name, an IP
or a path). So that there is one list and not two, every part of the collector
configuration that names attribute keys, metric names, patterns or limits is
generated here from :mod:`usagetrace._internal.allowlist` and
:mod:`usagetrace._internal.collector_rules`, and merged at collector start
(``--config collector.yaml --config allowlist.yaml``; the collector deep-merges
maps, so ``processors.redaction/allowlist`` in ``collector.yaml`` receives its
lists from this file).

Usage::

    python -m usagetrace._internal.collector_config --check   # exit 1 if stale
    python -m usagetrace._internal.collector_config --write   # regenerate

Only the standard library is used: the YAML is written by hand (block style,
every scalar quoted) so no YAML library is needed at run time.
"""

from __future__ import annotations

import argparse
import re
import sys
from collections.abc import Iterable, Sequence
from pathlib import Path

from . import allowlist, collector_rules

__all__ = [
    "DEFAULT_PATH",
    "main",
    "ottl_string",
    "redaction_allowed_keys",
    "render",
]

#: ``collector-config/allowlist.yaml`` in a source checkout.
DEFAULT_PATH = Path(__file__).resolve().parents[3] / "collector-config" / "allowlist.yaml"

# Keys are interpolated into OTTL string literals and regular expressions, so
# only this alphabet is accepted (no quotes, backslashes or regex metacharacters
# other than the dot).
_KEY_RE = re.compile(r"^[a-z][a-z0-9_]*(?:\.[a-z0-9_]+)*$")

_HEADER = """\
# GENERATED FILE - do not edit by hand.
# Sources: src/usagetrace/_internal/allowlist.py (the single list of attribute keys
# usagetrace may send) and src/usagetrace/_internal/collector_rules.py (patterns,
# limits and how each stored OTLP field is handled). Regenerate with
#     python -m usagetrace._internal.collector_config --write
# and check with --check (the test suite fails when this file is stale).
#
# Merged at collector start after collector.yaml (maps merge, lists replace):
#   otelcol-contrib --config collector.yaml --config allowlist.yaml [--config clickhouse.yaml]
#
# Written for otelcol-contrib 0.136.0: OTTL string literals are Go-quoted (a
# regex backslash is written twice) and "$$" is the collector's escape for "$".
"""

# OTTL converter that tests a value's type, per allowlist type.
_TYPE_TEST = {"string": "IsString", "int": "IsInt", "bool": "IsBool", "string[]": "IsList"}


def _check_key(key: str) -> str:
    if not _KEY_RE.match(key):
        raise ValueError(f"attribute key {key!r} cannot be written safely into the collector config")
    return key


def ottl_string(value: str) -> str:
    """Quote ``value`` as an OTTL string literal (Go syntax: backslashes and quotes escaped)."""
    if "${" in value or "$$" in value:
        raise ValueError(f"{value!r} would be expanded by the collector's config resolver")
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def redaction_allowed_keys(extra_keys: Iterable[str] = ()) -> list[str]:
    """Return the sorted ``allowed_keys`` of the redaction processor.

    The redaction processor applies ``allowed_keys`` to resource, scope, span,
    span-event and data-point attributes alike, so this is every key of the
    allowlist (all places), plus any ``extra_keys`` (declared
    ``usagetrace.measure.*`` keys an operator chooses to keep).
    """
    keys = set(allowlist.allowed_keys())
    keys.update(_extra_keys(extra_keys))
    return sorted(_check_key(k) for k in keys)


def _extra_keys(extra_keys: Iterable[str]) -> list[str]:
    out = []
    for key in extra_keys:
        if not key.startswith(allowlist.MEASURE_PREFIX):
            raise ValueError(f"extra key {key!r} must start with {allowlist.MEASURE_PREFIX!r}")
        out.append(_check_key(key))
    return sorted(set(out))


def _q(value: str) -> str:
    """Quote a scalar for YAML: single quotes, so backslashes stay literal."""
    return "'" + value.replace("'", "''") + "'"


def _attr(key: str) -> str:
    return f"attributes[{ottl_string(key)}]"


def _place_attributes(where: str) -> list[allowlist.Attr]:
    """The attributes allowed in one place; data points carry the keys their metrics declare."""
    if where == "metric":
        by_key = {a.key: a for a in allowlist.ATTRIBUTES}
        return [by_key[k] for k in sorted({k for m in allowlist.METRICS for k in m.attributes})]
    return sorted((a for a in allowlist.ATTRIBUTES if a.where == where), key=lambda a: a.key)


def _attribute_statements(where: str, extra_keys: Sequence[str] = ()) -> list[str]:
    """Statements for one place's attributes: keep, type-check, format-check, clean, cut."""
    rules = collector_rules
    attrs = _place_attributes(where)
    keys = [_check_key(a.key) for a in attrs] + list(extra_keys)
    out = ["keep_keys(attributes, [" + ", ".join(ottl_string(k) for k in keys) + "])"]
    for a in attrs:
        ref = _attr(a.key)
        out.append(f"delete_key(attributes, {ottl_string(a.key)}) where {ref} != nil and not {_TYPE_TEST[a.type]}({ref})")
    for key in extra_keys:  # declared measurements: any scalar
        ref = _attr(key)
        scalar = " and ".join(f"not {t}({ref})" for t in ("IsString", "IsInt", "IsDouble", "IsBool"))
        out.append(f"delete_key(attributes, {ottl_string(key)}) where {ref} != nil and {scalar}")
    for a in attrs:
        if a.key in allowlist.VERSION_KEYS:
            ref = _attr(a.key)
            out.append(
                f"delete_key(attributes, {ottl_string(a.key)}) where {ref} != nil and "
                f"not IsMatch({ref}, {ottl_string(rules.VERSION)})"
            )
    for a in attrs:
        pattern = rules.NAME_SHAPES.get(a.key)
        if pattern is None:
            continue
        # A name of the wrong shape is data, not a name: masked (collector_rules.NAME_SHAPES).
        ref = _attr(a.key)
        out.append(
            f"set({ref}, {ottl_string(rules.MASK)}) where {ref} != nil and "
            f"(not IsMatch({ref}, {ottl_string(pattern)}) or not IsMatch({ref}, {ottl_string(rules.NAME_LENGTH)}))"
        )
    for a in attrs:
        if a.type != "string[]":
            continue
        # The SDK sends at most MAX_ARRAY_ITEMS identifiers; anything else came
        # from a modified client, and the whole attribute goes (fail closed).
        item_pattern = rules.ITEM_SHAPES[a.key]
        ref = _attr(a.key)
        out.append(
            f"delete_key(attributes, {ottl_string(a.key)}) where {ref} != nil and "
            f"Len({ref}) > {allowlist.MAX_ARRAY_ITEMS}"
        )
        for i in range(allowlist.MAX_ARRAY_ITEMS):
            item = f"{ref}[{i}]"
            out.append(
                f"delete_key(attributes, {ottl_string(a.key)}) where {ref} != nil and Len({ref}) > {i} and "
                f"(not IsString({item}) or not IsMatch({item}, {ottl_string(item_pattern)}) "
                f"or not IsMatch({item}, {ottl_string(rules.NAME_LENGTH)}))"
            )
    out += [
        f"replace_all_patterns(attributes, \"value\", {ottl_string(rules.INVALID_UTF8)}, "
        f"{ottl_string(rules.REPLACEMENT_CHARACTER)})",
        # "$$1" is "$1" after the collector's config resolver: the first group.
        f"replace_all_patterns(attributes, \"value\", {ottl_string(rules.TRUNCATE)}, \"$$1\")",
        f"limit(attributes, {allowlist.MAX_ATTRIBUTES}, [])",
    ]
    return out


def _scope_statements() -> list[str]:
    return [
        "keep_keys(attributes, [])",
        f'set(version, "") where not IsMatch(version, {ottl_string(collector_rules.VERSION)})',
        'set(schema_url, "")',
    ]


def _metric_statements() -> list[str]:
    out = []
    for m in sorted(allowlist.METRICS, key=lambda m: m.name):
        name = ottl_string(_check_key(m.name))
        out.append(f"set(description, {ottl_string(m.meaning)}) where name == {name}")
        out.append(f"set(unit, {ottl_string(m.unit)}) where name == {name}")
    # "metric." names the metric's own metadata (a bare "metadata" is the request's client metadata).
    out.append("keep_keys(metric.metadata, [])")
    return out


def _statements(lines: list[str], indent: int, context: str, statements: Sequence[str]) -> None:
    pad = " " * indent
    lines.append(f"{pad}- context: {context}")
    lines.append(f"{pad}  statements:")
    for st in statements:
        lines.append(f"{pad}    - {_q(st)}")


def _conditions(lines: list[str], indent: int, name: str, conditions: Sequence[str]) -> None:
    pad = " " * indent
    lines.append(f"{pad}{name}:")
    lines += [f"{pad}  - {_q(c)}" for c in conditions]


def render(extra_keys: Iterable[str] = ()) -> str:
    """Return the text of ``collector-config/allowlist.yaml``."""
    extra = _extra_keys(extra_keys)
    rules = collector_rules
    metric_names = sorted(_check_key(m.name) for m in allowlist.METRICS)
    event_names = sorted(_check_key(e) for e in allowlist.EVENT_NAMES)

    lines = [_HEADER.rstrip("\n"), "", "processors:"]

    lines += [
        "  # Shapes usagetrace never sends. Matching items are dropped (see collector_rules.FIELDS).",
        "  filter/allowlist:",
        "    error_mode: ignore",
        "    traces:",
    ]
    _conditions(
        lines,
        6,
        "span",
        [
            "Len(links) > 0",
            f"Len(events) > {allowlist.MAX_EVENTS}",
            f"not IsMatch(name, {ottl_string(rules.QUALIFIED_NAME)})",
            f"not IsMatch(name, {ottl_string(rules.NAME_LENGTH)})",
        ],
    )
    _conditions(lines, 6, "spanevent", [" and ".join(f"name != {ottl_string(e)}" for e in event_names)])
    lines.append("    metrics:")
    _conditions(
        lines,
        6,
        "metric",
        [" and ".join(f"name != {ottl_string(m)}" for m in metric_names), "type != METRIC_DATA_TYPE_SUM"],
    )
    _conditions(lines, 6, "datapoint", ["Len(exemplars) > 0"])

    lines += [
        "",
        "  # Attribute-key allowlist (all places) and value masking. Version keys are",
        "  # exempt from masking (\"1.2.3.4\" is a version there); transform/allowlist",
        "  # checks them against a version pattern instead.",
        "  redaction/allowlist:",
        "    allow_all_keys: false",
        "    allowed_keys:",
    ]
    lines += [f"      - {_q(k)}" for k in redaction_allowed_keys(extra)]
    lines.append("    ignored_keys:")
    lines += [f"      - {_q(_check_key(k))}" for k in sorted(allowlist.VERSION_KEYS)]
    lines.append("    blocked_values:")
    for label, pattern in rules.BLOCKED_VALUES:
        lines.append(f"      # {label}")
        lines.append(f"      - {_q(pattern)}")

    lines += [
        "",
        "  # Per place: only that place's keys, each of its declared type; versions and",
        "  # parameter names format-checked; names of the wrong shape masked; invalid UTF-8 replaced; values cut to",
        f"  # {allowlist.MAX_VALUE_LENGTH} characters (never inside a character); free-text fields cleared.",
        "  transform/allowlist:",
        "    error_mode: ignore",
        "    trace_statements:",
    ]
    _statements(lines, 6, "resource", _attribute_statements("resource") + ['set(schema_url, "")'])
    _statements(lines, 6, "scope", _scope_statements())
    _statements(
        lines,
        6,
        "span",
        _attribute_statements("span", extra) + ['set(trace_state, "")', 'set(status.message, "")'],
    )
    _statements(lines, 6, "spanevent", _attribute_statements("event"))
    lines.append("    metric_statements:")
    _statements(lines, 6, "resource", _attribute_statements("resource") + ['set(schema_url, "")'])
    _statements(lines, 6, "scope", _scope_statements())
    _statements(lines, 6, "metric", _metric_statements())
    _statements(lines, 6, "datapoint", _attribute_statements("metric"))
    return "\n".join(lines) + "\n"


def main(argv: Sequence[str] | None = None) -> int:
    """Command-line entry point: ``--check`` or ``--write`` the generated file."""
    parser = argparse.ArgumentParser(
        prog="python -m usagetrace._internal.collector_config",
        description="Generate collector-config/allowlist.yaml from usagetrace's attribute allowlist.",
    )
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument(
        "--check", action="store_true", help="exit 1 if the file differs from what would be generated"
    )
    mode.add_argument("--write", action="store_true", help="(re)write the file")
    parser.add_argument(
        "--path", type=Path, default=DEFAULT_PATH, help=f"file to check/write (default: {DEFAULT_PATH})"
    )
    parser.add_argument(
        "--measure-key",
        action="append",
        default=[],
        metavar="KEY",
        help=f"also allow a declared measurement key (must start with {allowlist.MEASURE_PREFIX}); repeatable",
    )
    args = parser.parse_args(argv)
    try:
        text = render(args.measure_key)
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2

    if args.write:
        args.path.parent.mkdir(parents=True, exist_ok=True)
        args.path.write_text(text, encoding="utf-8")
        print(f"wrote {args.path}")
        return 0
    if args.check:
        try:
            current = args.path.read_text(encoding="utf-8")
        except FileNotFoundError:
            print(f"{args.path} is missing; run with --write", file=sys.stderr)
            return 1
        if current != text:
            print(
                f"{args.path} is stale; run: python -m usagetrace._internal.collector_config --write",
                file=sys.stderr,
            )
            return 1
        print(f"{args.path} is up to date")
        return 0
    sys.stdout.write(text)
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
