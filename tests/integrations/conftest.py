"""Test setup for the integration tests: isolated usagetrace home, no real consent files."""

from __future__ import annotations

import itertools
import sys
from pathlib import Path

import pytest

try:
    import usagetrace  # noqa: F401
except ImportError:  # not installed: use the source tree
    sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "src"))


@pytest.fixture(autouse=True)
def _isolated_home(tmp_path, monkeypatch):
    """Keep every usagetrace file (consent, spool, dev output) inside the test's temp dir."""
    monkeypatch.setenv("USAGETRACE_HOME", str(tmp_path / "ut-home"))
    monkeypatch.setenv("USAGETRACE_DETACHED_SEND", "0")
    for var in ("DO_NOT_TRACK", "OTEL_SDK_DISABLED", "OTEL_EXPORTER_OTLP_ENDPOINT"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.chdir(tmp_path)
    yield


_counter = itertools.count()


@pytest.fixture
def fresh_package():
    """Yield a unique package name and uninstrument it afterwards."""

    from usagetrace._internal import instrumentation

    names = []

    def make(prefix: str = "pkg") -> str:
        name = f"ut_{prefix}_{next(_counter)}"
        names.append(name)
        return name

    yield make
    for name in names:
        handle = instrumentation.get(name)
        if handle is not None:
            handle.shutdown(0.1)


