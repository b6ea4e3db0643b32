"""The collector config's strings and patterns under Go's own strconv and regexp packages.

The collector is a Go program: it unquotes OTTL string literals Go-style and
compiles every pattern with Go's ``regexp``. ``tests/go_regexp_check.go`` runs
them through those packages (Debian's Go; ``scripts/ensure-go.sh``, run by
``make test``, installs it). Checked here: every string literal in the
generated statements unquotes, every pattern compiles, masking gives the same
result as google-re2, the invalid-UTF-8 repair turns any bytes into valid UTF-8
(Go reads each bad byte as U+FFFD), and the cut keeps exactly 256 characters.
"""

from __future__ import annotations

import base64
import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.collector_emulator import _tokens, go_unquote, load
from usagetrace._internal import allowlist, collector_rules

ROOT = Path(__file__).resolve().parents[1]
CONFIG = [ROOT / "collector-config" / "collector.yaml", ROOT / "collector-config" / "allowlist.yaml"]
CAP = allowlist.MAX_VALUE_LENGTH


def _go() -> str:
    for candidate in (shutil.which("go"), "/usr/lib/go-1.19/bin/go", "/usr/lib/go/bin/go"):
        if candidate and os.path.exists(candidate):
            return candidate
    pytest.skip("no Go toolchain (scripts/ensure-go.sh installs Debian's golang-1.19-go as root)")


@pytest.fixture(scope="module")
def go_check(tmp_path_factory):
    """Run requests through the compiled checker; returns results."""
    work = tmp_path_factory.mktemp("go")
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": str(work),
        "GOCACHE": str(work / "cache"),
        "GOPATH": str(work / "gopath"),
        "GO111MODULE": "off",
        "GOPROXY": "off",
        "CGO_ENABLED": "0",
    }
    binary = work / "regexcheck"
    build = subprocess.run(
        [_go(), "build", "-o", str(binary), str(ROOT / "tests" / "go_regexp_check.go")],
        env=env, capture_output=True, text=True, timeout=300, check=False,
    )
    assert build.returncode == 0, build.stderr

    def run(requests: list[dict]) -> list[dict]:
        for r in requests:
            r["input"] = base64.b64encode(r.get("input", b"")).decode()
        proc = subprocess.run(
            [str(binary)], input=json.dumps(requests), capture_output=True, text=True, timeout=120, check=True
        )
        out = json.loads(proc.stdout)
        for r in out:
            r["output"] = base64.b64decode(r["output"] or "")
        return out

    return run


def _config_literals() -> list[str]:
    """Every OTTL string literal token (still quoted) in the filter conditions and transform statements."""
    cfg = load(CONFIG, env={})["processors"]
    texts = []
    for name, proc in cfg.items():
        if name.startswith("filter/"):
            texts += [c for signal in ("traces", "metrics") for ctx in proc.get(signal, {}).values() for c in ctx]
        if name.startswith("transform/"):
            texts += [s for key in ("trace_statements", "metric_statements") for g in proc[key] for s in g["statements"]]
    return sorted({text for statement in texts for kind, text in _tokens(statement) if kind == "str"})


def test_every_ottl_string_literal_unquotes_in_go(go_check):
    """Go's strconv.Unquote accepts every literal (a stray regex backslash would make the config invalid),
    with the same result as the emulator, and the rules' patterns are what the config really holds."""
    literals = _config_literals()
    results = go_check([{"op": "unquote", "input": lit.encode()} for lit in literals])
    values = set()
    for lit, res in zip(literals, results):
        assert res["error"] == "", (lit, res["error"])
        assert res["output"].decode() == go_unquote(lit), lit
        values.add(res["output"].decode())
    for pattern in (collector_rules.VERSION, collector_rules.IDENTIFIER, collector_rules.QUALIFIED_NAME,
                    collector_rules.NAME_LENGTH, collector_rules.TRUNCATE, collector_rules.INVALID_UTF8):
        assert pattern in values, pattern


def test_every_pattern_compiles_in_go(go_check):
    """Go's regexp compiles every blocked value and every pattern in the statements."""
    blocked = load(CONFIG, env={})["processors"]["redaction/allowlist"]["blocked_values"]
    patterns = blocked + [
        collector_rules.VERSION, collector_rules.IDENTIFIER, collector_rules.QUALIFIED_NAME,
        collector_rules.NAME_LENGTH, collector_rules.TRUNCATE, collector_rules.INVALID_UTF8,
    ]
    for pattern, res in zip(patterns, go_check([{"op": "compile", "patterns": [p]} for p in patterns])):
        assert res["error"] == "", (pattern, res["error"])


MASK_CASES = [
    "jane.doe@example.com", "пользователь@пример.рф", "用户@例子.广告", "jörg.müller@bücher.de", "jane＠example。com",
    "from 10.0.0.1:8080", "hosts 1.1.1.1 2.2.2.2 3.3.3.3", "fe80::1", "addr=2001:db8::ff00:42:8329",
    "2001:0db8:85a3:0000:0000:8a2e:0370:7334", "::ffff:192.0.2.1",
    "1.2.3.4.5", "2.0.0.0.dev1", "ab::cd", "::1", "x[::2]", "3.11", "mypkg.cafe:beef:12", "pkg @ https://x.org/p",
]


def test_masking_in_go_matches_re2(go_check):
    """The redaction processor's masking gives the same text under Go's regexp as under google-re2."""
    re2 = pytest.importorskip("re2")
    blocked = load(CONFIG, env={})["processors"]["redaction/allowlist"]["blocked_values"]
    compiled = [re2.compile(p) for p in blocked]
    results = go_check([{"op": "mask", "patterns": blocked, "input": c.encode()} for c in MASK_CASES])
    for case, res in zip(MASK_CASES, results):
        expected = case
        for rx in compiled:
            if rx.search(expected):
                expected = rx.sub(collector_rules.MASK, expected)
        assert res["output"].decode() == expected, case


INVALID = [b"a\xc3", b"\xff\xfe", b"caf\xc3", b"ok\xed\xa0\x80", b"\xc0\xaf", b"\x80" * 5, "é".encode() * 3 + b"\xe2\x82"]


def test_invalid_utf8_becomes_valid_in_go(go_check):
    """replace_all_patterns with INVALID_UTF8 turns every bad byte into U+FFFD and keeps the rest as it was."""
    repl = collector_rules.REPLACEMENT_CHARACTER
    results = go_check([{"op": "replace", "patterns": [collector_rules.INVALID_UTF8], "input": b, "repl": repl}
                        for b in INVALID])
    for raw, res in zip(INVALID, results):
        assert res["error"] == "" and res["valid"], raw
        text = res["output"].decode("utf-8")
        assert text.replace("\ufffd", "") == raw.decode("utf-8", errors="ignore"), (raw, text)
        assert text.count("\ufffd") == sum(1 for _ in _bad_bytes(raw)), (raw, text)


def _bad_bytes(raw: bytes):
    """Go's view: each byte not part of a valid UTF-8 sequence is one bad byte."""
    i = 0
    while i < len(raw):
        for size in (1, 2, 3, 4):
            try:
                raw[i:i + size].decode("utf-8")
                i += size
                break
            except UnicodeDecodeError:
                continue
        else:
            yield i
            i += 1


def test_cut_keeps_whole_characters_in_go(go_check):
    """The cut (replacement "$1", what the config's "$$1" becomes) keeps exactly CAP characters of any width."""
    statements = load(CONFIG, env={})["processors"]["transform/allowlist"]["trace_statements"]
    span = [s for g in statements if g["context"] == "span" for s in g["statements"]]
    assert any(s.endswith(', "$1")') and "replace_all_patterns" in s for s in span)  # after the config resolver
    cases = [(ch, n) for ch in ("a", "é", "€", "𝄞") for n in (1, CAP - 1, CAP, CAP + 1, 3 * CAP)]
    results = go_check([{"op": "replace", "patterns": [collector_rules.TRUNCATE], "input": (ch * n).encode(), "repl": "$1"}
                        for ch, n in cases])
    for (ch, n), res in zip(cases, results):
        assert res["valid"] and res["output"].decode() == (ch * n)[:CAP], (ch, n)
