"""Fuzz targets (hypothesis) for every parser of outside input."""

from __future__ import annotations

import json
import os

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from usagetrace._internal import config, consent, env

FUZZ = settings(max_examples=300, deadline=None, suppress_health_check=list(HealthCheck))
text = st.text(st.characters(codec="utf-8"), max_size=300)
lines = st.lists(st.sampled_from(["[consent]", "[other]", "tinystats = true", '"*" = false', "x = 1", "# c",
                                  "a = true # c", "[", "=", "'q' = false", '"a.b" = true', "k=", "",
                                  "[consent_version]", 'mypkg = "2"', "numpy = 3", "mypkg = true", "numpy = false",
                                  'x = """', "\r"]) | text,
                 max_size=12).map(lambda xs: "\n".join(x if isinstance(x, str) else "" for x in xs))


@FUZZ
@given(st.one_of(text, lines))
def test_parse_choices_only_returns_or_raises_valueerror(data):
    """consent.parse_choices returns {str: bool} or raises ValueError, nothing else, for any text."""
    try:
        out = consent.parse_choices(data)
    except ValueError:
        return
    assert isinstance(out, dict)
    assert all(isinstance(k, str) and isinstance(v, bool) for k, v in out.items())


@FUZZ
@given(st.binary(max_size=2000))
def test_read_choices_returns_choices_or_names_the_problem(tmp_path_factory, data):
    """consent.read_choices on arbitrary bytes returns a dict of bools or raises BrokenSource, nothing else."""
    path = tmp_path_factory.mktemp("c") / "consent.toml"
    path.write_bytes(data)
    try:
        out = consent.read_choices(str(path))
    except consent.BrokenSource as exc:
        assert exc.path == str(path) and exc.problem and exc.fix
        return
    assert all(isinstance(k, str) and isinstance(v, bool) for k, v in out.items())


@FUZZ
@given(st.one_of(text, lines), st.sampled_from(["mypkg", "*", "numpy"]), st.sampled_from([True, False, None]),
       st.sampled_from([None, "2"]))
def test_edit_changes_exactly_one_choice_or_refuses(data, package, granted, version):
    """An edit in place of any parseable text changes exactly the one choice (and its version) asked for, or refuses."""
    try:
        before = consent._parse(data)
    except consent._Bad:
        return
    try:
        new_text, _ = consent.edit(data, before, package, granted, version)
    except ValueError:
        assert not before.editable  # only TOML outside what usagetrace can edit safely is refused
        return
    after = consent._parse(new_text)
    expected = dict(before.choices)
    removed = set()
    if package == "*" and granted is False:
        removed = {k for k, v in expected.items() if v and k != "*"}
    expected = {k: v for k, v in expected.items() if k not in removed}
    if granted is None:
        expected.pop(package, None)
    else:
        expected[package] = granted
    assert after.choices == expected
    versions = {k: v for k, v in before.versions.items() if k not in removed and k != package}
    if granted and package != "*" and version:
        versions[package] = version
    assert after.versions == versions


@FUZZ
@given(st.dictionaries(st.from_regex(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,30}", fullmatch=True) | st.just("*"),
                       st.booleans(), max_size=8))
def test_consent_file_roundtrip(choices):
    """What usagetrace writes it reads back identically."""
    assert consent.parse_choices(consent.format_choices(choices)) == choices


@FUZZ
@given(text)
def test_parse_headers(data):
    """parse_headers returns None or clean (key, value) pairs: no CR, LF or NUL can reach a request."""
    out = config.parse_headers(data)
    if out is None:
        return
    for key, value in out:
        assert key and all(c.isalnum() or c in "-_." for c in key)
        assert not any(c in value for c in "\r\n\x00")


ENV_NAMES = ["OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "OTEL_EXPORTER_OTLP_PROTOCOL",
             "OTEL_EXPORTER_OTLP_HEADERS", "OTEL_EXPORTER_OTLP_TIMEOUT", "OTEL_EXPORTER_OTLP_COMPRESSION",
             "OTEL_EXPORTER_OTLP_INSECURE", "OTEL_EXPORTER_OTLP_CERTIFICATE", "USAGETRACE_DEV_FILE"]
env_text = st.text(st.characters(codec="utf-8", exclude_characters="\x00"), max_size=120) | st.sampled_from(
    ["http://127.0.0.1:4318", "https://[::1]:99999", "grpc", "http/json", "1e400", "nan", "gzip", "true"])


@FUZZ
@given(st.dictionaries(st.sampled_from(ENV_NAMES), env_text), st.sampled_from(["traces", "metrics"]),
       st.none() | env_text)
def test_config_resolve_never_raises(values, signal, maintainer):
    """config.resolve returns a well-formed Target for any environment and maintainer endpoint."""
    saved = {k: os.environ.get(k) for k in ENV_NAMES}
    try:
        for k in ENV_NAMES:
            os.environ.pop(k, None)
        os.environ.update(values)
        t = config.resolve(signal, maintainer, "fuzzpkg")
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
    assert t.kind in ("http", "grpc", "file", "none")
    assert 0 < t.timeout <= 60
    assert t.protocol in config.PROTOCOLS + ("",)
    if t.kind == "http":
        assert config._valid_http_url(t.url)


@FUZZ
@given(env_text, st.floats(allow_nan=False, min_value=-1e6, max_value=1e6))
def test_env_readers(value, default):
    """env.get/flag/seconds/integer never raise; numbers come back clamped to their bounds or the default."""
    os.environ["USAGETRACE_FUZZ"] = value
    try:
        assert env.get("USAGETRACE_FUZZ") in (None, value)
        assert env.flag("USAGETRACE_FUZZ") in (None, True, False)
        s = env.seconds("USAGETRACE_FUZZ", default, low=0.05, high=3600.0)
        assert s == default or 0.05 <= s <= 3600.0
        i = env.integer("USAGETRACE_FUZZ", 7, low=0, high=100)
        assert i == 7 or 0 <= i <= 100
        env.do_not_track()
    finally:
        del os.environ["USAGETRACE_FUZZ"]


@FUZZ
@given(st.binary(max_size=200))
def test_env_non_utf8_bytes(raw):
    """Undecodable bytes set through os.environb read as None, never a surrogate-laden string."""
    os.environb[b"USAGETRACE_FUZZ"] = raw.replace(b"\x00", b"")
    try:
        value = env.get("USAGETRACE_FUZZ")
        if value is not None:
            value.encode("utf-8")  # would raise on lone surrogates
    finally:
        del os.environb[b"USAGETRACE_FUZZ"]


# ---------------------------------------------------------------- the report's OTLP JSON loader

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda kids: st.lists(kids, max_size=4) | st.dictionaries(
        st.sampled_from(["resourceSpans", "resourceMetrics", "resource", "attributes", "scopeSpans", "spans",
                         "scopeMetrics", "metrics", "key", "value", "stringValue", "name", "sum", "dataPoints",
                         "x"]), kids, max_size=4),
    max_leaves=30,
)


@FUZZ
@given(json_values)
def test_report_validate_request(obj):
    """The report's line validator returns None or a reason string for any JSON value."""
    otlp = pytest.importorskip("usagetrace._internal.analytics.otlp_json")
    reason = otlp.validate_request(obj)
    assert reason is None or isinstance(reason, str)


@settings(max_examples=150, deadline=None, suppress_health_check=list(HealthCheck))
@given(st.lists(st.binary(max_size=200) | json_values.map(lambda v: json.dumps(v).encode()), max_size=6),
       st.sampled_from([".jsonl", ".json", ".jsonl.zst"]))
def test_report_scan_file(tmp_path_factory, chunks, suffix):
    """scan_file reads any bytes (including a fake .zst) and reports problems instead of raising."""
    otlp = pytest.importorskip("usagetrace._internal.analytics.otlp_json")
    from pathlib import Path

    path = Path(tmp_path_factory.mktemp("r")) / f"data{suffix}"
    path.write_bytes(b"\n".join(chunks))
    result = otlp.scan_file(path)
    assert result.good_lines >= 0
    assert all(p.line >= 1 for p in result.problems)


# ---------------------------------------------------------------- e-mail tracking tokens

KEY = "k" * 32


@FUZZ
@given(st.text(max_size=700) | st.from_regex(r"[A-Za-z0-9_-]{1,80}\.[A-Za-z0-9_-]{43}", fullmatch=True))
def test_email_verify_rejects_garbage(token):
    """verify() either returns a decoded token or raises TokenError with a 4xx status; nothing else."""
    email = pytest.importorskip("usagetrace.integrations.email")
    try:
        email.verify(KEY, token)
    except email.TokenError as exc:
        assert 400 <= exc.status < 500


@FUZZ
@given(st.from_regex(r"[A-Za-z0-9][A-Za-z0-9._-]{0,20}", fullmatch=True), st.sampled_from(["o", "c"]),
       st.integers(0, 1000), st.integers(0, 2 * 10**9), st.data())
def test_email_token_roundtrip_and_tamper(campaign, action, index, expires, data):
    """A signed token verifies to its fields; any single-character change is refused."""
    email = pytest.importorskip("usagetrace.integrations.email")
    rhash = email.recipient_hash(KEY, campaign, "a@b.c")
    token = email.sign(KEY, campaign, action, rhash, index, expires)
    if expires >= 1:
        assert email.verify(KEY, token, now=0) == (campaign, action, rhash, index)
    i = data.draw(st.integers(0, len(token) - 1))
    c = data.draw(st.sampled_from("AQgw_-.0z"))
    tampered = token[:i] + c + token[i + 1:]
    if tampered != token:
        with pytest.raises(email.TokenError):
            got = email.verify(KEY, tampered, now=0)
            # base64 padding bits can make two spellings decode to the same bytes
            if got == (campaign, action, rhash, index):
                raise email.TokenError(400, "equivalent spelling")


@FUZZ
@given(st.text(max_size=300), st.text(max_size=300), st.sampled_from(["GET", "HEAD", "POST", "", "\x00"]))
def test_email_tracking_app_answers_any_request(path, query, method):
    """The WSGI app answers every request with a status line and never raises."""
    email = pytest.importorskip("usagetrace.integrations.email")
    app = _app(email)
    seen = []

    def start_response(status, headers, exc_info=None):
        seen.append(status)

    body = app({"PATH_INFO": path, "QUERY_STRING": query, "REQUEST_METHOD": method}, start_response)
    b"".join(body)
    assert len(seen) == 1 and seen[0][:3].isdigit()


_APP = []


def _app(email):
    if not _APP:
        _APP.append(email.TrackingApp(key=KEY, package="fuzzmail", campaigns={"c1": ["https://example.org/"]}))
    return _APP[0]
