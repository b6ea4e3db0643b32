"""Render ``collector-config/allowlist.yaml`` from :mod:`usagetrace._internal.allowlist`.

The bundled OpenTelemetry Collector enforces the same attribute allowlist as the
SDK (defence in depth: a modified client still cannot store a host name, an IP
or a path). So that there is one list and not two, the parts of the collector
configuration that name attribute keys are generated here and merged at
collector start (``--config collector.yaml --config allowlist.yaml``; the
collector deep-merges maps, so ``processors.redaction/allowlist`` in
``collector.yaml`` receives its ``allowed_keys`` from this file).

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

from . import allowlist

__all__ = [
    "DEFAULT_PATH",
    "main",
    "redaction_allowed_keys",
    "render",
    "resource_keep_pattern",
]

#: ``collector-config/allowlist.yaml`` in a source checkout.
DEFAULT_PATH = Path(__file__).resolve().parents[3] / "collector-config" / "allowlist.yaml"

# Keys are interpolated into OTTL string literals and regular expressions, so
# only this alphabet is accepted (no quotes, backslashes or regex metacharacters
# other than the dot, which is written as ``[.]``).
_KEY_RE = re.compile(r"^[a-z][a-z0-9_]*(?:\.[a-z0-9_]+)*$")

_HEADER = """\
# GENERATED FILE - do not edit by hand.
# Source: src/usagetrace/_internal/allowlist.py (the single list of attribute keys
# usagetrace may send). Regenerate with
#     python -m usagetrace._internal.collector_config --write
# and check with --check (the test suite fails when this file is stale).
#
# Merged at collector start after collector.yaml (maps merge, lists replace):
#   otelcol-contrib --config collector.yaml --config allowlist.yaml [--config clickhouse.yaml]
"""


def _check_key(key: str) -> str:
    if not _KEY_RE.match(key):
        raise ValueError(f"attribute key {key!r} cannot be written safely into the collector config")
    return key


def redaction_allowed_keys(extra_keys: Iterable[str] = ()) -> list[str]:
    """Return the sorted ``allowed_keys`` of the redaction processor.

    The redaction processor applies ``allowed_keys`` to resource, scope, span,
    span-event and data-point attributes alike, so this is every key of the
    allowlist (all places), plus any ``extra_keys`` (declared
    ``usagetrace.measure.*`` keys an operator chooses to keep).
    """
    keys = set(allowlist.allowed_keys())
    for key in extra_keys:
        if not key.startswith(allowlist.MEASURE_PREFIX):
            raise ValueError(f"extra key {key!r} must start with {allowlist.MEASURE_PREFIX!r}")
        keys.add(key)
    return sorted(_check_key(k) for k in keys)


def _alternation(keys: Iterable[str]) -> str:
    return "|".join(k.replace(".", "[.]") for k in sorted(_check_key(k) for k in keys))


def resource_keep_pattern() -> str:
    """Return the RE2 pattern matching exactly the allowed resource keys."""
    return f"^(?:{_alternation(allowlist.allowed_keys('resource'))})$"


def _array_keys(where: str) -> list[str]:
    return sorted(a.key for a in allowlist.ATTRIBUTES if a.where == where and a.type.endswith("[]"))


def _q(value: str) -> str:
    """Quote a scalar for YAML: single quotes, so backslashes stay literal."""
    return "'" + value.replace("'", "''") + "'"


def _statements(lines: list[str], indent: int, context: str, statements: Sequence[str]) -> None:
    pad = " " * indent
    lines.append(f"{pad}- context: {context}")
    lines.append(f"{pad}  statements:")
    for st in statements:
        lines.append(f"{pad}    - {_q(st)}")


def render(extra_keys: Iterable[str] = ()) -> str:
    """Return the text of ``collector-config/allowlist.yaml``."""
    keys = redaction_allowed_keys(extra_keys)
    keep_resource = f'keep_matching_keys(attributes, "{resource_keep_pattern()}")'

    def array_caps(where: str) -> list[str]:
        # The SDK caps arrays at MAX_ARRAY_ITEMS; a longer one comes from a
        # modified client, so the whole attribute is dropped (fail closed).
        out = []
        for key in _array_keys(where):
            ref = f'attributes["{key}"]'
            out.append(
                f'delete_key(attributes, "{key}") where {ref} != nil and Len({ref}) > {allowlist.MAX_ARRAY_ITEMS}'
            )
        return out

    metric_names = sorted(_check_key(m.name) for m in allowlist.METRICS)
    event_names = sorted(_check_key(e) for e in allowlist.EVENT_NAMES)

    lines = [_HEADER.rstrip("\n"), "", "processors:"]

    lines += [
        "  # Attribute-key allowlist (blocked_values, summary: see collector.yaml).",
        "  redaction/allowlist:",
        "    allow_all_keys: false",
        "    allowed_keys:",
    ]
    lines += [f"      - {_q(k)}" for k in keys]

    lines += [
        "",
        "  # Resource keys: keep only the allowlist's resource keys; oversized arrays are dropped.",
        "  transform/allowlist:",
        "    error_mode: ignore",
        "    trace_statements:",
    ]
    _statements(lines, 6, "resource", [keep_resource])
    for where, context in (("span", "span"), ("event", "spanevent")):
        caps = array_caps(where)
        if caps:
            _statements(lines, 6, context, caps)
    lines.append("    metric_statements:")
    _statements(lines, 6, "resource", [keep_resource])
    caps = array_caps("metric")
    if caps:
        _statements(lines, 6, "datapoint", caps)

    lines += [
        "",
        "  # Only the span events and metrics usagetrace defines (added to the",
        "  # scope/service conditions of filter/usagetrace in collector.yaml).",
        "  filter/usagetrace:",
        "    traces:",
        "      spanevent:",
        "        - " + _q(" and ".join(f'name != "{e}"' for e in event_names)),
        "    metrics:",
        "      datapoint:",
        "        - " + _q(" and ".join(f'metric.name != "{m}"' for m in metric_names)),
    ]
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
