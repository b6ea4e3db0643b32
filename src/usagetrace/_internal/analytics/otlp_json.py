"""Reading OTLP JSON lines as written by the collector's ``file`` exporter.

One line is one OTLP export request in the proto3 JSON mapping: either
``{"resourceSpans": [...]}`` or ``{"resourceMetrics": [...]}``. Files may be
plain (``*.json``, ``*.jsonl``, ``*.ndjson``) or zstd-compressed (``*.zst``), and
a directory of rotated files is read as one data set.

This module owns two things:

* the explicit DuckDB schema used to read those lines (every leaf is read as
  ``VARCHAR`` and converted in SQL with ``TRY_CAST``, so a writer that emits an
  int64 as a JSON number instead of a decimal string, or an enum by name, is
  still read correctly, and nothing is inferred from a sample);
* a line-by-line validator used when DuckDB refuses a file, which names every
  bad ``file:line`` and writes the good lines to a clean temporary file. A line
  with bytes that are not UTF-8 (a collector that cut a value inside a
  character stores exactly that) is kept: each bad byte is read as U+FFFD and
  the file gets one warning, so one bad byte never costs a line or a file.
"""

from __future__ import annotations

import io
import json
import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

__all__ = [
    "DATA_SUFFIXES",
    "RAW_COLUMNS",
    "LineProblem",
    "ScanResult",
    "discover_files",
    "iter_lines",
    "open_binary",
    "scan_file",
    "validate_request",
]

#: File name endings read from a directory (a ``.zst`` after any of them too).
DATA_SUFFIXES = (".json", ".jsonl", ".ndjson")

# --- explicit schema ---------------------------------------------------------
# proto3 JSON: AnyValue is a oneof; every leaf is read as VARCHAR (DuckDB turns
# JSON numbers and booleans into their text) and cast in SQL.
# arrayValue is read as its JSON text (any shape reads; SQL takes the strings out of it).
_ANY_VALUE = "STRUCT(stringValue VARCHAR, boolValue VARCHAR, intValue VARCHAR, doubleValue VARCHAR, arrayValue VARCHAR)"
_KEY_VALUES = f"STRUCT(key VARCHAR, value {_ANY_VALUE})[]"
_SCOPE = "STRUCT(name VARCHAR, version VARCHAR)"
_RESOURCE = f"STRUCT(attributes {_KEY_VALUES})"
_EVENT = f"STRUCT(name VARCHAR, timeUnixNano VARCHAR, attributes {_KEY_VALUES})"
_SPAN = (
    "STRUCT(traceId VARCHAR, spanId VARCHAR, parentSpanId VARCHAR, name VARCHAR, kind VARCHAR, "
    "startTimeUnixNano VARCHAR, endTimeUnixNano VARCHAR, "
    f"attributes {_KEY_VALUES}, events {_EVENT}[], status STRUCT(code VARCHAR, message VARCHAR))"
)
_RESOURCE_SPANS = f"STRUCT(resource {_RESOURCE}, scopeSpans STRUCT(scope {_SCOPE}, spans {_SPAN}[])[])[]"
_NUMBER_POINT = (
    f"STRUCT(attributes {_KEY_VALUES}, startTimeUnixNano VARCHAR, timeUnixNano VARCHAR, "
    "asInt VARCHAR, asDouble VARCHAR)"
)
_SUM = f"STRUCT(dataPoints {_NUMBER_POINT}[], aggregationTemporality VARCHAR, isMonotonic VARCHAR)"
_METRIC = f"STRUCT(name VARCHAR, unit VARCHAR, sum {_SUM})"
_RESOURCE_METRICS = (
    f"STRUCT(resource {_RESOURCE}, scopeMetrics STRUCT(scope {_SCOPE}, metrics {_METRIC}[])[])[]"
)

#: Top-level columns of one export-request line, as DuckDB types.
RAW_COLUMNS: dict[str, str] = {
    "resourceSpans": _RESOURCE_SPANS,
    "resourceMetrics": _RESOURCE_METRICS,
}


# --- files -------------------------------------------------------------------
def _is_data_file(p: Path) -> bool:
    name = p.name.lower()
    name = name.removesuffix(".zst")
    return name.endswith(DATA_SUFFIXES)


def discover_files(path: str | os.PathLike[str]) -> list[Path]:
    """Return the data files under ``path`` (a file, or a directory searched recursively).

    Raises ``FileNotFoundError`` with a readable message when the path does not
    exist or a directory holds no OTLP JSON files.
    """
    p = Path(path)
    if not p.exists():
        raise FileNotFoundError(f"no such file or directory: {p}")
    if p.is_file():
        return [p]
    files = sorted(f for f in p.rglob("*") if f.is_file() and _is_data_file(f))
    if not files:
        raise FileNotFoundError(
            f"{p} holds no OTLP JSON files (looked for *{', *'.join(DATA_SUFFIXES)} and their .zst)"
        )
    return files


def is_zstd(path: Path) -> bool:
    """Whether ``path`` is zstd-compressed (by name or by magic number)."""
    if path.name.lower().endswith(".zst"):
        return True
    try:
        with open(path, "rb") as fh:
            return fh.read(4) == b"\x28\xb5\x2f\xfd"
    except OSError:
        return False


def open_binary(path: Path) -> IO[bytes]:
    """Open a data file for reading bytes, decompressing zstd on the fly."""
    if is_zstd(path):
        try:
            import zstandard
        except ImportError as exc:  # pragma: no cover - depends on the environment
            raise RuntimeError(
                f"{path} is zstd-compressed; install the report extra: pip install 'usagetrace[report]'"
            ) from exc
        raw = open(path, "rb")  # noqa: SIM115 - closed through the wrapper
        return io.BufferedReader(zstandard.ZstdDecompressor().stream_reader(raw, closefd=True))
    return open(path, "rb")


def iter_lines(path: Path) -> Iterator[tuple[int, str, bool]]:
    """Yield ``(line_number, text, repaired)`` for the non-blank lines of a data file.

    ``repaired`` is true when the line held bytes that are not UTF-8; each such
    byte is returned as U+FFFD instead of failing the line (and the rest of the file).
    """
    with open_binary(path) as fh:
        for number, raw in enumerate(fh, start=1):
            try:
                line, repaired = raw.decode("utf-8"), False
            except UnicodeDecodeError:
                line, repaired = raw.decode("utf-8", errors="replace"), True
            if line.strip():
                yield number, line, repaired


# --- validation ----------------------------------------------------------------
_LIST_SHAPES: dict[str, tuple[str, ...]] = {
    # container key -> nested list keys checked below it
    "resourceSpans": ("scopeSpans", "spans"),
    "resourceMetrics": ("scopeMetrics", "metrics"),
}


def _check_attrs(attrs: Any, where: str) -> str | None:
    if attrs is None:
        return None
    if not isinstance(attrs, list):
        return f"{where}.attributes is not a list"
    for a in attrs:
        if not isinstance(a, dict) or not isinstance(a.get("key"), str):
            return f"{where}.attributes holds an entry without a string key"
        v = a.get("value")
        if v is not None and not isinstance(v, dict):
            return f"{where}.attributes[{a.get('key')!r}].value is not an object"
    return None


def _check_list(obj: dict[str, Any], key: str, where: str) -> tuple[list[Any], str | None]:
    val = obj.get(key, [])
    if val is None:
        return [], None
    if not isinstance(val, list) or not all(isinstance(x, dict) for x in val):
        return [], f"{where}.{key} is not a list of objects"
    return val, None


def validate_request(obj: Any) -> str | None:
    """Return why ``obj`` is not an OTLP export request matching the schema, or None."""
    if not isinstance(obj, dict):
        return "line is not a JSON object"
    if "resourceSpans" not in obj and "resourceMetrics" not in obj:
        return "line is neither a trace (resourceSpans) nor a metric (resourceMetrics) export request"
    for top, (scope_key, item_key) in _LIST_SHAPES.items():
        if top not in obj:
            continue
        resources, err = _check_list(obj, top, top)
        if err:
            return err
        for res in resources:
            resource = res.get("resource") or {}
            if not isinstance(resource, dict):
                return f"{top}.resource is not an object"
            err = _check_attrs(resource.get("attributes"), f"{top}.resource")
            if err:
                return err
            scopes, err = _check_list(res, scope_key, top)
            if err:
                return err
            for sc in scopes:
                if not isinstance(sc.get("scope", {}) or {}, dict):
                    return f"{top}.{scope_key}.scope is not an object"
                items, err = _check_list(sc, item_key, f"{top}.{scope_key}")
                if err:
                    return err
                for item in items:
                    err = _check_item(top, item)
                    if err:
                        return err
    return None


def _check_item(top: str, item: dict[str, Any]) -> str | None:
    if top == "resourceSpans":
        err = _check_attrs(item.get("attributes"), "span")
        if err:
            return err
        events, err = _check_list(item, "events", "span")
        if err:
            return err
        for ev in events:
            err = _check_attrs(ev.get("attributes"), "span.events")
            if err:
                return err
        status = item.get("status", {})
        if status is not None and not isinstance(status, dict):
            return "span.status is not an object"
        for k in ("name", "startTimeUnixNano", "endTimeUnixNano"):
            if isinstance(item.get(k), (dict, list)):
                return f"span.{k} has the wrong type"
        return None
    s = item.get("sum")
    if s is None:
        return None
    if not isinstance(s, dict):
        return "metric.sum is not an object"
    points, err = _check_list(s, "dataPoints", "metric.sum")
    if err:
        return err
    for p in points:
        err = _check_attrs(p.get("attributes"), "metric.sum.dataPoints")
        if err:
            return err
        for k in ("asInt", "asDouble", "timeUnixNano", "startTimeUnixNano"):
            if isinstance(p.get(k), (dict, list)):
                return f"metric.sum.dataPoints.{k} has the wrong type"
    return None


@dataclass(frozen=True)
class LineProblem:
    """One line that was skipped, with where it was and why."""

    file: str
    line: int
    reason: str

    def __str__(self) -> str:
        return f"{self.file}:{self.line}: {self.reason}"


@dataclass
class ScanResult:
    """What a line-by-line scan of one file found."""

    good_lines: int = 0
    problems: list[LineProblem] = field(default_factory=list)
    #: lines kept with bytes that were not UTF-8 read as U+FFFD
    repaired_lines: int = 0

    def notes(self, path: Path) -> list[str]:
        """Warnings about the file as a whole (not skipped lines): at most one."""
        if not self.repaired_lines:
            return []
        return [
            f"{path}: {self.repaired_lines} line(s) held bytes that are not UTF-8; "
            "each such byte was read as U+FFFD and the lines were kept"
        ]


def scan_file(path: Path, out: IO[str] | None = None) -> ScanResult:
    """Validate ``path`` line by line; copy good lines to ``out`` and record bad ones.

    A file that cannot be decompressed (bad zstd frame) is recorded as one
    problem at the line where reading stopped; lines before it are kept. Bytes
    that are not UTF-8 only make the line count in ``repaired_lines``.
    """
    result = ScanResult()
    number = 0
    try:
        for number, line, repaired in iter_lines(path):
            try:
                obj = json.loads(line)
            except ValueError as exc:
                msg = getattr(exc, "msg", None) or str(exc)
                result.problems.append(LineProblem(str(path), number, f"invalid JSON ({msg})"))
                continue
            except RecursionError:  # nesting deeper than the parser allows: this line only, not the rest
                result.problems.append(LineProblem(str(path), number, "invalid JSON (nested too deeply)"))
                continue
            reason = validate_request(obj)
            if reason:
                result.problems.append(LineProblem(str(path), number, reason))
                continue
            result.good_lines += 1
            result.repaired_lines += repaired
            if out is not None:
                out.write(line if line.endswith("\n") else line + "\n")
    except (OSError, ValueError) as exc:
        # zstandard raises ZstdError (a ValueError subclass is not guaranteed): catch broadly below
        result.problems.append(LineProblem(str(path), number + 1, f"unreadable from here on ({exc})"))
    except Exception as exc:  # noqa: BLE001 - zstandard.ZstdError and friends
        result.problems.append(LineProblem(str(path), number + 1, f"unreadable from here on ({exc})"))
    return result
