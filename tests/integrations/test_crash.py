"""Crash integration: unhandled exceptions through the package, chained hooks, flushed at exit."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import threading

import pytest

import usagetrace
from usagetrace.integrations import crash
from usagetrace.testing import OTLPReceiver, capture


@pytest.fixture
def crashpkg(tmp_path, monkeypatch, fresh_package):
    """A real importable package whose function raises, and its crash hooks (uninstalled afterwards)."""
    name = fresh_package("crash")
    root = tmp_path / "src"
    (root / name).mkdir(parents=True)
    (root / name / "__init__.py").write_text(
        "def explode(text):\n    return _inner(text)\n\ndef _inner(text):\n    raise ValueError(text)\n"
    )
    monkeypatch.syspath_prepend(str(root))
    module = __import__(name)
    installed = []
    saved = sys.excepthook, threading.excepthook
    yield name, module, installed
    for hooks in installed:
        hooks.uninstall()
    sys.excepthook, threading.excepthook = saved


def _exc_info(fn, *args):
    try:
        fn(*args)
    except BaseException:
        return sys.exc_info()
    raise AssertionError("did not raise")


def test_main_thread_crash_is_recorded_and_previous_hook_chained(crashpkg, monkeypatch):
    """An unhandled exception through the package yields one crash span (type + in-package frames) and the previous hook still runs."""
    name, module, installed = crashpkg
    seen = []
    monkeypatch.setattr(sys, "excepthook", lambda *a: seen.append(a[0]))
    with capture(name) as cap:
        installed.append(crash.install(name))
        sys.excepthook(*_exc_info(module.explode, "secret /home/ana/data.csv"))
    assert seen == [ValueError]
    (span,) = cap.spans("usagetrace.crash")
    assert span["attributes"]["usagetrace.crash.thread"] == "main"
    assert span["attributes"]["error.type"] == "ValueError"
    (event,) = span["events"]
    stack = event["attributes"]["exception.stacktrace"].splitlines()
    assert [line.rsplit(":", 1)[0] for line in stack] == [f"{name}:explode", f"{name}:_inner"]
    raw = cap.raw_bytes()
    assert b"/home/ana" not in raw and b"secret" not in raw and b"test_crash" not in raw


def test_thread_crash_is_recorded_and_chained(crashpkg, monkeypatch):
    """An unhandled exception in a thread is recorded with usagetrace.crash.thread=thread; the previous threading hook still runs."""
    name, module, installed = crashpkg
    seen = []
    monkeypatch.setattr(threading, "excepthook", lambda args: seen.append(args.exc_type))
    with capture(name) as cap:
        installed.append(crash.install(name))
        t = threading.Thread(target=module.explode, args=("x",))
        t.start()
        t.join(10)
    assert seen == [ValueError]
    (span,) = cap.spans("usagetrace.crash")
    assert span["attributes"]["usagetrace.crash.thread"] == "thread"


def test_crashes_outside_the_package_interactive_or_interrupts_are_not_recorded(crashpkg, monkeypatch):
    """Tracebacks not passing through the package, KeyboardInterrupt and interactive shells record nothing but still chain."""
    name, module, installed = crashpkg
    seen = []
    monkeypatch.setattr(sys, "excepthook", lambda *a: seen.append(a[0]))
    with capture(name) as cap:
        installed.append(crash.install(name))

        def elsewhere():
            raise RuntimeError("not ours")

        def interrupt():
            raise KeyboardInterrupt

        sys.excepthook(*_exc_info(elsewhere))
        sys.excepthook(*_exc_info(interrupt))
        monkeypatch.setattr(sys, "ps1", ">>> ", raising=False)
        sys.excepthook(*_exc_info(module.explode, "x"))
    assert seen == [RuntimeError, KeyboardInterrupt, ValueError]
    assert cap.spans("usagetrace.crash") == []


def test_consent_off_records_nothing_and_uninstall_restores(crashpkg, monkeypatch):
    """With consent off a crash queues nothing; uninstall() puts the previous hooks back."""
    name, module, installed = crashpkg
    seen = []
    previous = lambda *a: seen.append(a[0])  # noqa: E731
    monkeypatch.setattr(sys, "excepthook", previous)
    handle = usagetrace.instrument(name, consent="opt-in")
    hooks = crash.install(name)
    installed.append(hooks)
    assert crash.install(name) is hooks  # idempotent
    sys.excepthook(*_exc_info(module.explode, "x"))
    assert seen == [ValueError] and handle.recorder is None
    hooks.uninstall()
    assert sys.excepthook is previous


def test_real_crash_is_delivered_after_exit(tmp_path):
    """A real process crashing through the package exits with the usual traceback, and its crash span reaches a real OTLP receiver."""
    pkg = "crashdemo_pkg"
    src = tmp_path / "child"
    (src / pkg).mkdir(parents=True)
    (src / pkg / "__init__.py").write_text(
        textwrap.dedent("""
        import os, usagetrace
        from usagetrace.integrations import crash
        usagetrace.instrument(__name__, endpoint=os.environ["RECEIVER"], consent="opt-in")
        crash.install(__name__)

        def run(path):
            return _load(path)

        def _load(path):
            raise FileNotFoundError(path)
    """)
    )
    (src / "main.py").write_text(f"import {pkg}\n{pkg}.run('/home/ana/private.csv')\n")
    with OTLPReceiver() as receiver:
        env = dict(os.environ)
        env.update(
            {
                "RECEIVER": receiver.endpoint,
                "CRASHDEMO_PKG_TELEMETRY": "1",
                "USAGETRACE_HOME": str(tmp_path / "home"),
                "USAGETRACE_DETACHED_SEND": "1",
                "PYTHONPATH": str(src) + os.pathsep + os.environ.get("PYTHONPATH", ""),
            }
        )
        env.pop("PYTEST_CURRENT_TEST", None)
        proc = subprocess.run(
            [sys.executable, str(src / "main.py")], env=env, capture_output=True, text=True, timeout=60
        )
        assert proc.returncode == 1
        assert "FileNotFoundError" in proc.stderr  # Python's own hook still printed the traceback
        assert receiver.wait_for(lambda r: r.spans("usagetrace.crash"), timeout=30)
        (span,) = receiver.spans("usagetrace.crash")
        assert span["attributes"]["usagetrace.crash.thread"] == "main"
        assert span["attributes"]["error.type"] == "FileNotFoundError"
        assert span["resource"]["service.name"] == pkg
        assert b"/home/ana" not in receiver.raw_bytes()
