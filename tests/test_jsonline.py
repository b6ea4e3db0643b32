"""jsonline writes what json.dumps writes (compact, or json's defaults with ascii=True), without importing json."""

import json
import random
import subprocess
import sys

import pytest

from usagetrace._internal import jsonline

STRINGS = [
    "", "plain", 'quote " and backslash \\', "tab\tnew\nline\rcr\bbs\fff", "nul\x00 bell\x07 esc\x1b del\x7f",
    "café", "日本語", "emoji 😀 astral", "\u2028 line separators \u2029", "/slash", "mixed \x01é😀\"\\",
]
NUMBERS = [0, -1, 2**63 - 1, -(2**63), 2**100, 1.5, -0.0, 1e16, 1e-7, 123456789.123456789, 1e308, float("inf"),
           float("-inf")]


def _random_value(rng: random.Random, depth: int = 0):
    kinds = ["str", "int", "float", "bool", "none"] + (["list", "tuple", "dict"] if depth < 4 else [])
    kind = rng.choice(kinds)
    if kind == "str":
        return "".join(chr(rng.choice([rng.randrange(0, 0x80), rng.randrange(0x80, 0x800),
                                        rng.randrange(0x800, 0xD800), rng.randrange(0x10000, 0x110000)]))
                       for _ in range(rng.randrange(0, 12)))
    if kind == "int":
        return rng.randrange(-(2**70), 2**70)
    if kind == "float":
        return rng.choice([rng.uniform(-1e6, 1e6), rng.random() * 10 ** rng.randrange(-300, 300)])
    if kind == "bool":
        return rng.random() < 0.5
    if kind == "none":
        return None
    items = [_random_value(rng, depth + 1) for _ in range(rng.randrange(0, 5))]
    if kind == "list":
        return items
    if kind == "tuple":
        return tuple(items)
    return {str(rng.randrange(1000)) + 'ké"y': v for v in items}


@pytest.mark.parametrize("value", STRINGS + NUMBERS + [True, False, None, [], {}, (), [1, [2, [3]]],
                                                       {"a": {"b": [1, "x", None]}, "c": ()}])
def test_same_text_as_json(value):
    assert jsonline.dumps(value) == json.dumps(value, separators=(",", ":"), ensure_ascii=False)
    assert jsonline.dumps(value, separators=(", ", ": "), ascii=True) == json.dumps(value)


def test_random_structures_match_json_both_ways():
    rng = random.Random(20261203)
    for _ in range(2000):
        value = _random_value(rng)
        compact = jsonline.dumps(value)
        assert compact == json.dumps(value, separators=(",", ":"), ensure_ascii=False)
        assert jsonline.dumps(value, separators=(", ", ": "), ascii=True) == json.dumps(value)
        assert json.loads(compact.encode("utf-8")) == json.loads(json.dumps(value))


def test_nan_reads_back_as_nan():
    text = jsonline.dumps([float("nan")])
    assert text == "[NaN]"
    back = json.loads(text)[0]
    assert back != back


def test_lone_surrogates_are_escaped_so_the_line_encodes():
    value = {"k": "a\ud800b\udfff"}
    text = jsonline.dumps(value)
    text.encode("utf-8")  # json.dumps(..., ensure_ascii=False) would leave them raw: this would raise
    assert json.loads(text) == value
    assert jsonline.dumps(value, separators=(", ", ": "), ascii=True) == json.dumps(value)


def test_int_and_float_subclasses_are_written_as_their_values():
    class Weird(int):
        def __repr__(self):
            return "not a number"

    class Odd(float):
        def __repr__(self):
            return "nope"

    assert jsonline.dumps([Weird(3), Odd(2.5)]) == "[3,2.5]" == json.dumps([Weird(3), Odd(2.5)], separators=(",", ":"))


@pytest.mark.parametrize("bad", [{1: "int key"}, {None: 1}, object(), {"set": {1, 2}}, b"bytes"])
def test_what_json_has_no_form_for_is_refused(bad):
    with pytest.raises(TypeError):
        jsonline.dumps(bad)


def test_depth_is_bounded():
    value: list = []
    for _ in range(jsonline.MAX_DEPTH + 2):
        value = [value]
    with pytest.raises(ValueError):
        jsonline.dumps(value)


def test_using_it_imports_no_json():
    import usagetrace

    root = usagetrace.__file__.rsplit("/usagetrace/", 1)[0]
    code = (f"import sys; sys.path.insert(0, {root!r}); from usagetrace._internal import jsonline; "
            "jsonline.dumps({'a': [1.5, 'x', None]}, ascii=True); print('json' in sys.modules)")
    out = subprocess.run([sys.executable, "-I", "-c", code], capture_output=True, text=True, timeout=60, check=True,
                         cwd="/")
    assert out.stdout.strip() == "False", out.stdout + out.stderr
