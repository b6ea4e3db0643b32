"""Compact JSON text for the exit path, without importing :mod:`json`.

A consented run in daily mode ends by appending one line to the package's
journal (``aggregate.record``). ``import json`` compiles six regular
expressions and costs 2-4 ms of CPU: more than everything else that exit
does, in a process that otherwise never needs json. This writes the same
text as ``json.dumps(obj, separators=(",", ":"), ensure_ascii=False)`` for the
plain data the journal holds (dicts with string keys, lists, tuples, strings,
ints, floats, bools, None), and readers keep using ``json.loads``. With
``ascii=True, separators=(", ", ": ")`` it is ``json.dumps(obj)``'s text, which
the destination digest (``config.destination_env``) has always hashed.
tests/test_jsonline.py checks both forms against the json module.

Two differences, both towards valid output: a lone surrogate in a string is
written as a ``\\uXXXX`` escape (``json.dumps`` would pass it through and the
UTF-8 encoding of the line would fail), and anything else is refused with
TypeError (``json.dumps`` would call ``default``; there is none here).
"""

from __future__ import annotations

# What JSON requires escaped in a string: the quote, the backslash and the control characters.
_ESCAPES = {i: f"\\u{i:04x}" for i in range(0x20)}
_ESCAPES.update({0x22: '\\"', 0x5C: "\\\\", 0x08: "\\b", 0x09: "\\t", 0x0A: "\\n", 0x0C: "\\f", 0x0D: "\\r"})
#: Deeper than any journal line: a bound instead of json's circular-reference check.
MAX_DEPTH = 32


def dumps(obj, *, separators: tuple = (",", ":"), ascii: bool = False) -> str:
    """Return ``obj`` as JSON text; TypeError for a type JSON has no form for, ValueError when too deep.

    ``ascii``: every character outside printable ASCII escaped, as ``json.dumps``'s ``ensure_ascii``.
    """
    out: list = []
    _write(obj, out.append, 0, separators, _ascii if ascii else _string)
    return "".join(out)


def _ascii(s: str) -> str:
    text = s.translate(_ESCAPES)
    if text.isascii() and "\x7f" not in text:
        return f'"{text}"'
    out = []
    for c in text:
        n = ord(c)
        if 0x20 <= n < 0x7F:
            out.append(c)
        elif n > 0xFFFF:  # a surrogate pair, as json writes it
            n -= 0x10000
            out.append(f"\\u{0xD800 | (n >> 10):04x}\\u{0xDC00 | (n & 0x3FF):04x}")
        else:
            out.append(f"\\u{n:04x}")
    return '"' + "".join(out) + '"'


def _string(s: str) -> str:
    text = s.translate(_ESCAPES)
    if not text.isascii():
        try:
            text.encode("utf-8")
        except UnicodeEncodeError:  # lone surrogates: escaped, as json.dumps does with ensure_ascii
            text = "".join(f"\\u{ord(c):04x}" if 0xD800 <= ord(c) <= 0xDFFF else c for c in text)
    return f'"{text}"'


def _float(x: float) -> str:
    # float.__repr__ as json does (not a subclass's __repr__); its names for the non-finite values.
    if float.__sub__(x, x) == 0.0:
        return float.__repr__(x)
    if x != x:
        return "NaN"
    return "Infinity" if x > 0 else "-Infinity"


def _write(obj, out, depth: int, separators: tuple, string) -> None:
    if depth > MAX_DEPTH:
        raise ValueError("too deeply nested for a journal line")
    if isinstance(obj, str):
        out(string(obj))
    elif obj is None:
        out("null")
    elif obj is True:
        out("true")
    elif obj is False:
        out("false")
    elif isinstance(obj, int):
        out(int.__repr__(obj))
    elif isinstance(obj, float):
        out(_float(obj))
    elif isinstance(obj, (list, tuple)):
        out("[")
        for i, item in enumerate(obj):
            if i:
                out(separators[0])
            _write(item, out, depth + 1, separators, string)
        out("]")
    elif isinstance(obj, dict):
        out("{")
        for i, (key, value) in enumerate(obj.items()):
            if not isinstance(key, str):
                raise TypeError(f"keys must be str, not {type(key).__name__}")
            if i:
                out(separators[0])
            out(string(key))
            out(separators[1])
            _write(value, out, depth + 1, separators, string)
        out("}")
    else:
        raise TypeError(f"{type(obj).__name__} has no JSON form here")
