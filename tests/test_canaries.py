"""The canary matrix (issue 19): every caller-controlled channel x every way data leaves or is kept.

Channels: argument values, ``**kwargs`` keys, exception messages, exception
class names and modules (the host's own, a dynamically named one), callback
names, environment, current directory, paths (of the package, the script,
the files it touches) and host names. Each carries a canary string.

Ways: realtime (a real OTLPReceiver on 127.0.0.1), daily (the local store,
then ``usagetrace flush`` to the receiver), development mode (the dev file)
and the spool (a black-holed collector at exit, then the spool sender to the
receiver). For each: 0 canaries in the bytes on the wire (and in their decoded
form) and 0 in any file usagetrace wrote under its home.

Each case is real processes: a person's run and, where it applies, the CLI.
"""

from __future__ import annotations

import getpass
import json
import os
import socket
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from usagetrace.testing import OTLPReceiver

from .conftest import child_env

PKG = '''
import os


def process(text, sep=None, **options):
    return text


def call(callback, *args):
    return callback(*args)


def boom(message):
    raise ValueError(message)


def read(path):
    with open(path) as fh:
        return fh.read()


def missing(path):
    open(path)


def where():
    return os.getcwd(), os.environ.get("ZQ_ENV_SECRET")


import usagetrace
H = usagetrace.instrument(__name__)
'''

#: The host's own module: its name, class names, function names and messages are canaries.
HOST_MODULE = '''
class ZqSecretBillingError(ValueError):
    pass


def zq_callback_name(value):
    raise ZqSecretBillingError("zq-message-" + value)


def zq_dynamic_callback():
    raise type("ZqDynamicErrorName", (KeyError,), {"__module__": "zq_dyn_module"})("zq-dyn-message")
'''

RUN = '''
import os, sys
import cpkg
import zq_host_module as host

KEYS = {"alice@example.com": 1, "AKIAIOSFODNN7EXAMPLE": 2, "/home/alice/taxes.pdf": 3, "zq_alice_smith": 4}
cpkg.process("zq-argument-value", "zq-positional-sep")
cpkg.process("zq-argument-value", sep="zq-keyword-sep", **KEYS)
for fn, args in ((cpkg.call, (host.zq_callback_name, "zq-callback-arg")), (cpkg.call, (host.zq_dynamic_callback,)),
                 (cpkg.boom, ("zq-exception-message alice@example.com /home/alice/taxes.pdf",)),
                 (cpkg.missing, (os.path.join(os.getcwd(), "zq-missing-file.txt"),))):
    try:
        fn(*args)
    except Exception:
        pass
cpkg.read(os.path.join(os.getcwd(), "zq-data-file.txt"))
cpkg.where()
if sys.argv[1:] == ["flush"]:
    from usagetrace._internal import instrumentation
    print("FLUSHED", instrumentation.get("cpkg").flush(10))
'''

#: Substrings that must never appear: every canary above, and the environment's.
CANARIES = [
    "zq-argument-value", "zq-positional-sep", "zq-keyword-sep",
    "alice@example.com", "AKIAIOSFODNN7EXAMPLE", "/home/alice/taxes.pdf", "zq_alice_smith", "alice",
    "zq-callback-arg", "zq-message-", "zq-dyn-message", "zq-exception-message",
    "ZqSecretBillingError", "zq_host_module", "ZqDynamicErrorName", "zq_dyn_module",
    "zq_callback_name", "zq_dynamic_callback",
    "zq-missing-file", "zq-data-file", "zq-cwd-dir", "zq-pkg-dir",
    "zq-env-secret", "zq-otel-host", "zq-otel-user", "zq-otel-service", "zq-hostname-env",
]


def _needles() -> list[str]:
    needles = list(CANARIES)
    host = socket.gethostname()
    if len(host) >= 4 and host != "localhost":
        needles.append(host)
    return needles


def _assert_clean(blob: bytes, where: str) -> None:
    for needle in _needles():
        assert needle.encode() not in blob, f"{needle!r} found in {where}"
    user = getpass.getuser()
    if len(user) >= 4:
        assert f"/{user}/".encode() not in blob, f"user name in {where}"


def _assert_files_clean(home: Path) -> int:
    """Every file usagetrace wrote under its home is free of canaries; returns how many files were read."""
    files = [p for p in home.rglob("*") if p.is_file()]
    for path in files:
        _assert_clean(path.read_bytes(), str(path.relative_to(home)))
    return len(files)


class World:
    """A package under a canary-named directory, the host's module and data in a canary-named working directory."""

    def __init__(self, tmp_path: Path) -> None:
        self.pkgs = tmp_path / "zq-pkg-dir"
        (self.pkgs / "cpkg").mkdir(parents=True)
        (self.pkgs / "cpkg" / "__init__.py").write_text(PKG)
        self.cwd = tmp_path / "zq-cwd-dir"
        self.cwd.mkdir()
        (self.cwd / "zq_host_module.py").write_text(textwrap.dedent(HOST_MODULE))
        (self.cwd / "zq-data-file.txt").write_text("zq-file-content")
        (self.cwd / "run_zq.py").write_text(textwrap.dedent(RUN))
        self.home = Path(os.environ["USAGETRACE_HOME"])

    def env(self, **extra) -> dict:
        return child_env({
            "PYTHONPATH": os.pathsep.join([str(self.pkgs), str(self.cwd)]),
            "CPKG_TELEMETRY": "1",
            "USAGETRACE_DETACHED_SEND": "0",
            "ZQ_ENV_SECRET": "zq-env-secret",
            "HOSTNAME": "zq-hostname-env",
            "OTEL_RESOURCE_ATTRIBUTES": "host.name=zq-otel-host,user.name=zq-otel-user",
            "OTEL_SERVICE_NAME": "zq-otel-service",
            **extra,
        })

    def run(self, *args: str, **extra) -> subprocess.CompletedProcess:
        before = self._cwd_files()
        proc = subprocess.run([sys.executable, str(self.cwd / "run_zq.py"), *args], cwd=str(self.cwd),
                              capture_output=True, text=True, env=self.env(**extra), timeout=120)
        assert proc.returncode == 0, proc.stderr
        assert self._cwd_files() == before  # usagetrace writes nothing where the person works
        return proc

    def _cwd_files(self) -> set:
        return {p for p in self.cwd.rglob("*") if "__pycache__" not in p.parts}

    def python(self, code: str, **extra) -> subprocess.CompletedProcess:
        proc = subprocess.run([sys.executable, "-c", code], cwd=str(self.cwd), capture_output=True, text=True,
                              env=self.env(**extra), timeout=120)
        assert proc.returncode == 0, proc.stderr
        return proc


def _wire(rx: OTLPReceiver) -> bytes:
    return rx.raw_bytes() + json.dumps(rx.requests).encode()


def _delivered(rx: OTLPReceiver) -> None:
    """What arrived is the run: the package's calls, its failures, the extra keywords counted."""
    assert rx.calls("cpkg.process") == 2 and rx.calls("cpkg.call", "error") == 2
    assert rx.calls("cpkg.boom", "error") == 1 and rx.calls("cpkg.missing", "error") == 1
    errors = {p["attributes"]["error.type"] for p in rx.points("usagetrace.errors")}
    assert errors == {"ValueError+subclass", "KeyError+subclass", "ValueError", "FileNotFoundError"}
    spans = rx.spans("cpkg.process")
    if spans:  # realtime: every call; daily: the exemplars kept
        assert {tuple(sp["attributes"]["usagetrace.params.set"]) for sp in spans} == {("sep",)}
        assert {sp["attributes"]["usagetrace.kwargs.extra"] for sp in spans} <= {0, 4}


def test_realtime_wire_and_files(tmp_path):
    """Realtime: nothing caller-controlled in any request, nor in any file (receipts, state, ids)."""
    w = World(tmp_path)
    with OTLPReceiver() as rx:
        proc = w.run("flush", OTEL_EXPORTER_OTLP_ENDPOINT=rx.endpoint, USAGETRACE_UPLOAD="realtime")
        assert "FLUSHED True" in proc.stdout
        _delivered(rx)
        assert rx.spans("cpkg.process")
        _assert_clean(_wire(rx), "realtime requests")
    assert _assert_files_clean(w.home) >= 1


def test_daily_store_then_upload(tmp_path):
    """Daily: the local store holds no canary, and neither does the report `usagetrace flush` sends."""
    w = World(tmp_path)
    with OTLPReceiver() as rx:
        w.run(OTEL_EXPORTER_OTLP_ENDPOINT=rx.endpoint, USAGETRACE_UPLOAD="daily")
        assert rx.connections == 0
        stores = list(w.home.rglob("aggregate/cpkg.journal"))  # a run appends to the journal (folded later)
        assert len(stores) == 1 and stores[0].stat().st_size > 0
        _assert_files_clean(w.home)
        flushed = subprocess.run([sys.executable, "-m", "usagetrace", "flush"], cwd=str(w.cwd), capture_output=True,
                                 text=True, env=w.env(OTEL_EXPORTER_OTLP_ENDPOINT=rx.endpoint,
                                                      USAGETRACE_UPLOAD="daily"), timeout=120)
        assert flushed.returncode == 0, flushed.stderr
        _delivered(rx)
        assert all(r["usagetrace.upload"] == "daily" for r in (p["resource"] for p in rx.points()))
        _assert_clean(_wire(rx), "daily report")
    _assert_files_clean(w.home)


def test_development_mode_dev_file(tmp_path):
    """Development mode (no endpoint): the dev file holds no canary, nor does any other file."""
    w = World(tmp_path)
    proc = w.run("flush", USAGETRACE_UPLOAD="realtime")
    assert "FLUSHED True" in proc.stdout
    dev = list(w.home.rglob("dev/cpkg.jsonl"))
    assert len(dev) == 1 and b"cpkg.process" in dev[0].read_bytes()
    _assert_files_clean(w.home)


def test_spool_then_sender(tmp_path):
    """A collector that never answers: the spool holds no canary; the sender's later requests neither."""
    w = World(tmp_path)
    with OTLPReceiver() as rx:  # one collector: spooled data goes only where it was recorded for
        rx.blackhole = True
        w.run(OTEL_EXPORTER_OTLP_ENDPOINT=rx.endpoint, USAGETRACE_UPLOAD="realtime")
        spooled = list(w.home.rglob("spool/*.json"))
        assert spooled
        _assert_files_clean(w.home)
        rx.blackhole = False
        sender = w.python("from usagetrace._internal import spool; print(spool.deliver()['delivered'])",
                          OTEL_EXPORTER_OTLP_ENDPOINT=rx.endpoint, USAGETRACE_UPLOAD="realtime")
        assert int(sender.stdout.strip()) >= 1, sender.stderr
        assert rx.calls("cpkg.process") == 2
        _assert_clean(_wire(rx), "spooled requests")
    _assert_files_clean(w.home)
