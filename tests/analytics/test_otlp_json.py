"""Reading input: discovery, .zst files, corrupt and foreign lines, clear errors."""

from __future__ import annotations

import json

import fixtures
import pytest

from usagetrace._internal.analytics import otlp_json

pytest.importorskip("duckdb")
zstandard = pytest.importorskip("zstandard")

from usagetrace._internal.analytics.core import Analytics
from usagetrace._internal.analytics.duckdb_engine import DuckDBEngine


@pytest.fixture(scope="module")
def truth():
    return fixtures.generate()


def test_zst_directory_and_single_plain_file_agree(truth, tmp_path):
    """A directory of rotated plain + .zst files gives the same answers as one plain file of the same lines."""
    fixtures.write(truth, tmp_path / "dir", zst=True)
    assert any(p.suffix == ".zst" for p in (tmp_path / "dir").iterdir())
    single = tmp_path / "one.jsonl"
    single.write_text("\n".join(truth.lines) + "\n")
    a = Analytics(DuckDBEngine.from_path(tmp_path / "dir"), package=fixtures.PKG)
    b = Analytics(DuckDBEngine.from_path(single), package=fixtures.PKG)
    assert a.feature_usage() == b.feature_usage() and a.feature_usage()
    assert a.adoption() == b.adoption()


def test_only_zst_file(truth, tmp_path):
    """A single .zst file is read on its own."""
    p = tmp_path / "usage.json.zst"
    p.write_bytes(zstandard.ZstdCompressor().compress(("\n".join(truth.lines) + "\n").encode()))
    ov = Analytics(DuckDBEngine.from_path(p), package=fixtures.PKG).overview()
    assert ov["calls"] == sum(r[6] for r in truth.calls if r[0] == fixtures.PKG)


def test_corrupt_lines_are_skipped_and_named(truth, tmp_path):
    """Truncated JSON, non-OTLP objects and wrong shapes are skipped with file:line warnings; the rest loads."""
    lines = list(truth.lines)
    bad = {
        3: lines[3][: len(lines[3]) // 2],  # truncated mid-line
        7: json.dumps({"hello": "world"}),  # valid JSON, not an export request
        11: json.dumps({"resourceSpans": "oops"}),  # wrong shape
        15: "[1, 2, 3]",
    }
    dropped = {i: lines[i] for i in bad}
    for i, text in bad.items():
        lines[i] = text
    p = tmp_path / "usage.jsonl"
    p.write_text("\n".join(lines) + "\n")
    e = DuckDBEngine.from_path(p)
    assert e.skipped_lines == 4
    for i in bad:
        assert any(f"{p}:{i + 1}:" in w for w in e.warnings), (i, e.warnings)
    # the good lines were all loaded: span count = all spans minus those on the replaced lines
    lost = sum(len(sc["spans"]) for i, t in dropped.items() for rs in json.loads(t).get("resourceSpans", [])
               for sc in rs["scopeSpans"] if sc["scope"].get("name") == "usagetrace")
    assert e.counts()["spans"] == len(truth.spans) - lost


def test_corrupt_line_in_zst_file_is_named(tmp_path, truth):
    """Corrupt lines inside a compressed file are reported with their line number too."""
    body = "\n".join(truth.lines[:5] + ["{not json"] + truth.lines[5:10]) + "\n"
    p = tmp_path / "rot.jsonl.zst"
    p.write_bytes(zstandard.ZstdCompressor().compress(body.encode()))
    e = DuckDBEngine.from_path(p)
    assert e.skipped_lines == 1 and f"{p}:6:" in e.warnings[0]


def test_missing_path_and_empty_directory(tmp_path):
    """A missing path or a directory without data files raises FileNotFoundError with the path."""
    with pytest.raises(FileNotFoundError, match="no such file"):
        otlp_json.discover_files(tmp_path / "nope")
    (tmp_path / "notes.txt").write_text("x")
    with pytest.raises(FileNotFoundError, match="holds no OTLP JSON files"):
        otlp_json.discover_files(tmp_path)


def test_proto3_omitted_defaults_and_numeric_int64(tmp_path):
    """Omitted fields (kind, status, asInt=0) and int64 written as JSON numbers are read correctly."""
    res = {"attributes": [{"key": "service.name", "value": {"stringValue": "p"}},
                          {"key": "usagetrace.install.id", "value": {"stringValue": "i1"}},
                          {"key": "usagetrace.ci", "value": {"boolValue": True}}]}
    span = {"traceId": "a" * 32, "spanId": "b" * 16, "name": "p.f", "startTimeUnixNano": 1763800000000000000,
            "endTimeUnixNano": "1763800000002000000",
            "attributes": [{"key": "code.function.name", "value": {"stringValue": "p.f"}},
                           {"key": "usagetrace.args.count", "value": {"intValue": 3}}]}
    point = {"attributes": [{"key": "code.function.name", "value": {"stringValue": "p.f"}},
                            {"key": "usagetrace.outcome", "value": {"stringValue": "ok"}}],
             "timeUnixNano": "1763800000000000000", "asInt": 7}
    zero = dict(point)
    zero.pop("asInt")
    lines = [
        {"resourceSpans": [{"resource": res, "scopeSpans": [{"scope": {"name": "usagetrace"}, "spans": [span]}]}]},
        {"resourceMetrics": [{"resource": res, "scopeMetrics": [{"scope": {"name": "usagetrace"}, "metrics": [
            {"name": "usagetrace.calls", "sum": {"dataPoints": [point, zero], "aggregationTemporality": 1}}]}]}]},
    ]
    p = tmp_path / "x.json"
    p.write_text("\n".join(json.dumps(x) for x in lines) + "\n")
    e = DuckDBEngine.from_path(p)
    (row,) = e.execute("SELECT ts_ns, duration_ns, ci, is_error, kind FROM (SELECT *, 0 AS kind FROM ut_spans)")[1]
    assert row[:4] == (1763800000000000000, 2_000_000, 1, 0)
    assert Analytics(e, k=1).feature_usage()[0]["calls"] == 7


# What a collector that cut a value inside a character stores: the first byte of "é" alone.
_CUT = "é".encode()[:1]


def _with_cut_character(line: str, key: str = "usagetrace.session.id") -> bytes:
    """The line as bytes, with the value of ``key`` ending in half a UTF-8 character."""
    marker = f'"key": "{key}", "value": {{"stringValue": "'.encode()
    data = line.encode()
    assert marker in data, key
    start = data.index(marker) + len(marker)
    end = data.index(b'"', start)
    return data[:end] + _CUT + data[end:]


@pytest.mark.parametrize("compressed", [False, True])
def test_invalid_utf8_in_values_keeps_every_line_and_warns_once(truth, tmp_path, compressed):
    """Bytes that are not UTF-8 inside values cost nothing: every line loads, each bad byte reads as U+FFFD,
    and the file gets exactly one warning (not one per line, and no skipped lines)."""
    bad_lines = {0, 5, 9}
    body = b"\n".join(
        _with_cut_character(line) if i in bad_lines else line.encode() for i, line in enumerate(truth.lines)
    ) + b"\n"
    with pytest.raises(UnicodeDecodeError):
        body.decode("utf-8")
    p = tmp_path / ("usage.jsonl.zst" if compressed else "usage.jsonl")
    p.write_bytes(zstandard.ZstdCompressor().compress(body) if compressed else body)
    e = DuckDBEngine.from_path(p)
    assert e.skipped_lines == 0
    assert e.counts()["spans"] == len(truth.spans)
    assert len(e.warnings) == 1, e.warnings
    assert str(p) in e.warnings[0] and "3 line(s)" in e.warnings[0] and "U+FFFD" in e.warnings[0]
    sessions = {r[0] for r in e.execute("SELECT DISTINCT session_id FROM ut_spans")[1]}
    assert any(s.endswith("\ufffd") for s in sessions)
    good = DuckDBEngine.from_path(_write_plain(tmp_path / "clean", truth.lines))
    assert Analytics(e, package=fixtures.PKG).feature_usage() == Analytics(good, package=fixtures.PKG).feature_usage()


def _write_plain(directory, lines):
    directory.mkdir()
    path = directory / "usage.jsonl"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def test_invalid_utf8_warning_names_only_the_bad_file_and_survives_the_cache(truth, tmp_path):
    """In a directory, only the file with bad bytes is named; a cached second run reports the same warning."""
    data = tmp_path / "data"
    data.mkdir()
    (data / "a.jsonl").write_bytes(b"\n".join(_with_cut_character(x) for x in truth.lines[:50]) + b"\n")
    (data / "b.jsonl").write_text("\n".join(truth.lines[50:]) + "\n", encoding="utf-8")
    cache = tmp_path / "cache.duckdb"
    for _ in range(2):
        e = DuckDBEngine.from_path(data, cache=cache)
        assert e.skipped_lines == 0
        assert [w for w in e.warnings if "U+FFFD" in w] == [w for w in e.warnings if "a.jsonl" in w]
        assert len(e.warnings) == 1 and "50 line(s)" in e.warnings[0]
        assert e.counts()["spans"] == len(truth.spans)
        e.close()


def test_scan_file_repairs_instead_of_stopping(tmp_path):
    """The line-by-line reader keeps going past a bad byte; it stops only on a file it cannot decompress."""
    p = tmp_path / "x.jsonl"
    ok = json.dumps({"resourceSpans": []}).encode()
    p.write_bytes(b"\n".join([ok, b'{"resourceSpans": [], "x": "\xff"}', ok]) + b"\n")
    result = otlp_json.scan_file(p)
    assert (result.good_lines, result.repaired_lines, result.problems) == (3, 1, [])
    assert len(result.notes(p)) == 1


def test_deeply_nested_line_is_skipped_with_its_own_number(truth, tmp_path):
    """A line nested deeper than the JSON parser allows (RecursionError) is skipped and named; every later line loads."""
    lines = list(truth.lines[:10])
    deep = '{"resourceSpans": ' + "[" * 100_000 + "]" * 100_000 + "}"
    lines.insert(4, deep)  # line 5
    p = tmp_path / "deep.jsonl"
    p.write_text("\n".join(lines) + "\n")
    result = otlp_json.scan_file(p)
    assert [(pr.line, pr.reason) for pr in result.problems] == [(5, "invalid JSON (nested too deeply)")]
    assert result.good_lines == 10
    e = DuckDBEngine.from_path(p)
    assert e.skipped_lines == 1 and any(f"{p}:5:" in w for w in e.warnings), e.warnings
    want = sum(len(sc["spans"]) for t in truth.lines[:10] for rs in json.loads(t).get("resourceSpans", [])
               for sc in rs["scopeSpans"] if sc["scope"].get("name") == "usagetrace")
    assert e.counts()["spans"] == want


def test_array_values_of_any_shape_read_without_losing_lines(tmp_path):
    """usagetrace.params.set arrays are read from any shape a writer sends: strings kept, the rest ignored, no line lost."""
    def line(value):
        return json.dumps({"resourceSpans": [{
            "resource": {"attributes": [{"key": "service.name", "value": {"stringValue": "hp"}},
                                        {"key": "usagetrace.install.id", "value": {"stringValue": "i1"}}]},
            "scopeSpans": [{"scope": {"name": "usagetrace"}, "spans": [{
                "name": "hp.f", "traceId": "00", "spanId": "01", "startTimeUnixNano": "1", "endTimeUnixNano": "2",
                "attributes": [{"key": "code.function.name", "value": {"stringValue": "hp.f"}},
                               {"key": "usagetrace.params.set", "value": value}]}]}]}]})

    values = [{"arrayValue": "x"}, {"arrayValue": {"values": "oops"}}, {"arrayValue": 5}, {"arrayValue": None},
              {"arrayValue": {"values": [1, {"intValue": "3"}, {"stringValue": "sep"}, [1]]}}, {"arrayValue": []},
              {"stringValue": "sep"}, {"arrayValue": {"values": [{"stringValue": "sep"}, {"stringValue": "mode"}]}}]
    p = tmp_path / "arrays.jsonl"
    p.write_text("\n".join(line(v) for v in values) + "\n")
    e = DuckDBEngine.from_path(p)
    assert e.warnings == [] and e.counts()["spans"] == len(values)
    got = {(r["parameter"], r["sampled_calls"]) for r in Analytics(e, package="hp", k=1).parameters()}
    assert got == {("sep", 2), ("mode", 1)}
