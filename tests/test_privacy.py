"""Privacy by construction: canary values never appear in any exported byte."""

from __future__ import annotations

import getpass
import json
import os
import re
import socket

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from usagetrace._internal import allowlist, inventory, pipeline
from usagetrace.testing import OTLPReceiver, capture

from .conftest import ROOT, run_python

CANARY_PKG = {
    "__init__.py": '''
        class Secretive:
            def __init__(self, token):
                self.token = token

            def reveal(self, value, *, note=None):
                raise RuntimeError(f"failed for {value} with {note} and {self.token}")

        def echo(*args, **kwargs):
            return args, kwargs

        def boom(message):
            raise ValueError(message)

        import usagetrace
        usagetrace.instrument(__name__)
    '''
}

# Canaries: things that must never leave the process, whatever the code does with them.
# Each carries a marker ("cnry"/"Zq") so it can never collide with OTLP field names
# (a bare local part like "scop" would match "scopeSpans").
canary = st.one_of(
    st.from_regex(r"cnry[a-z0-9._]{2,12}@[a-z]{3,10}\.(com|org|io)", fullmatch=True),
    st.from_regex(r"/home/[a-z]{3,8}/(secret|private)_Zq[a-z0-9]{6}\.csv", fullmatch=True),
    st.from_regex(r"tok_[A-Za-z0-9]{24}", fullmatch=True),
    st.from_regex(r"10\.\d{1,3}\.\d{1,3}\.\d{1,3}", fullmatch=True).map(lambda ip: f"Zq-ip-{ip}"),
    st.from_regex(r"canary-host-[a-z0-9]{8}\.corp\.example", fullmatch=True),
)


@pytest.fixture
def cpkg(packages, monkeypatch):
    monkeypatch.setenv("CPKG_TELEMETRY", "1")
    return packages.load("cpkg", CANARY_PKG)


def _exercise(cpkg, values):
    for value in values:
        cpkg.echo(value, value.encode(), key=value)
        cpkg.echo(**{"kw": value})
        with pytest.raises(ValueError):
            cpkg.boom(value)
        obj = cpkg.Secretive(value)
        with pytest.raises(RuntimeError):
            obj.reveal(value, note=value)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(values=st.lists(canary, min_size=1, max_size=3))
def test_canaries_never_exported_in_memory(cpkg, values):
    """Canaries passed as argument values and in exception messages never appear in exported OTLP bytes."""
    with capture("cpkg") as cap:
        cap.handle.recorder.reset_budgets()
        _exercise(cpkg, values)
    raw = cap.raw_bytes()
    decoded = json.dumps(cap.requests)
    assert cap.calls("cpkg.boom", "error") == len(values)
    for value in values:
        for needle in {value, value.split("@")[0] if "@" in value else value}:
            assert len(needle) >= 5
            assert needle.encode() not in raw, needle
            assert needle not in decoded, needle


@pytest.mark.parametrize("protocol", ["http/protobuf", "grpc"])
def test_canaries_never_cross_the_wire(tmp_path, protocol):
    """Over both OTLP transports, no canary from arguments, messages, environment or cwd is sent."""
    user = getpass.getuser()
    host = socket.gethostname()
    secret_dir = tmp_path / "canary_dir_7f3a9"
    secret_dir.mkdir()
    pkg_dir = tmp_path / "pkgs"
    (pkg_dir / "cpkg").mkdir(parents=True)
    (pkg_dir / "cpkg" / "__init__.py").write_text(__import__("textwrap").dedent(CANARY_PKG["__init__.py"]))
    code = f"""
    import cpkg
    for v in ["alice@example.com", "/home/alice/private_x1y2z3.csv", "tok_ABCDEFGHIJKLMNOPQRSTUVWX", {str(secret_dir)!r}]:
        cpkg.echo(v, key=v)
        try:
            cpkg.boom(v)
        except ValueError:
            pass
    from usagetrace._internal import instrumentation
    print("FLUSHED", instrumentation.get("cpkg").flush(10))
    """
    with OTLPReceiver(grpc=True) as rx:
        proc = run_python(
            code,
            {
                "PYTHONPATH": str(pkg_dir),
                "CPKG_TELEMETRY": "1",
                "OTEL_EXPORTER_OTLP_ENDPOINT": rx.grpc_endpoint if protocol == "grpc" else rx.endpoint,
                "OTEL_EXPORTER_OTLP_PROTOCOL": protocol,
                "OTEL_RESOURCE_ATTRIBUTES": "host.name=canary-host-env,user.name=canary-user-env",
                "CANARY_ENV_VALUE": "canary-env-value-5521",
            },
            cwd=str(secret_dir),
        )
        assert "FLUSHED True" in proc.stdout, proc.stderr
        raw = rx.raw_bytes() + json.dumps(rx.requests).encode()
    assert rx.calls("cpkg.boom", "error") == 4
    for needle in ["alice", "private_x1y2z3", "tok_ABCDEFGH", "canary_dir_7f3a9", "canary-host-env",
                   "canary-user-env", "canary-env-value", str(tmp_path)]:
        assert needle.encode() not in raw, needle
    if len(user) >= 4:
        assert f"/{user}/".encode() not in raw
    if len(host) >= 4 and host not in ("localhost",):
        assert host.encode() not in raw


def test_allowlist_is_enforced_at_export():
    """Keys outside the allowlist are dropped and values are capped, whatever the caller passes."""
    cleaned = pipeline.clean(
        {
            "code.function.name": "x" * 1000,
            "host.name": "laptop",
            "usagetrace.params.set": [str(i) for i in range(100)] + [object()],
            "user.email": "a@b.c",
            "usagetrace.args.count": 3,
            "usagetrace.module": {"nested": "dict"},
        },
        allowlist.allowed_keys("span"),
    )
    assert set(cleaned) == {"code.function.name", "usagetrace.params.set", "usagetrace.args.count"}
    assert len(cleaned["code.function.name"]) == allowlist.MAX_VALUE_LENGTH
    assert len(cleaned["usagetrace.params.set"]) == allowlist.MAX_ARRAY_ITEMS


def test_allowlist_keys_are_unique_and_documented():
    """Every allowlisted key is unique, has a meaning and an example, and metric attributes are allowlisted."""
    keys = [a.key for a in allowlist.ATTRIBUTES]
    assert len(keys) == len(set(keys))
    assert all(a.meaning and a.where in ("resource", "span", "event", "metric") for a in allowlist.ATTRIBUTES)
    for metric in allowlist.METRICS:
        assert set(metric.attributes) <= set(keys)


def test_inventory_lists_every_allowlisted_key():
    """`usagetrace inventory --all` renders every key of the allowlist and every metric."""
    text = inventory.markdown()
    for attr in allowlist.ATTRIBUTES:
        assert f"`{attr.key}`" in text
    for metric in allowlist.METRICS:
        assert f"`{metric.name}`" in text


def test_readme_what_is_collected_matches_the_inventory():
    """The README's "What is collected" table is exactly what `usagetrace inventory --all` generates."""
    with open(os.path.join(ROOT, "README.md"), encoding="utf-8") as fh:
        readme = fh.read()
    match = re.search(r"<!-- inventory:start -->\n(.*?)<!-- inventory:end -->", readme, re.S)
    assert match, "README.md lacks the generated inventory block"
    assert match.group(1) == inventory.markdown(), (
        "README inventory is stale: regenerate with `python scripts/update_readme_inventory.py`"
    )
