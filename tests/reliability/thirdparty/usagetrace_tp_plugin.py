"""pytest plugin loaded (``-p usagetrace_tp_plugin``) into a third-party library's own test run.

Both runs load it, so both get the same hypothesis settings (no deadline,
derandomized: timing and random examples must not decide the comparison).
With ``UT_TP_INSTRUMENT=1`` it also imports the library and instruments it with
usagetrace, consent granted through ``<PKG>_TELEMETRY=1``, exporting to the
receiver named by ``OTEL_EXPORTER_OTLP_ENDPOINT``; at the end it flushes and
writes what was wrapped to ``UT_TP_REPORT``.
"""

import importlib
import json
import os

import pytest

_HANDLES = {}


@pytest.hookimpl(trylast=True)
def pytest_configure(config):
    try:
        from hypothesis import HealthCheck, settings

        settings.register_profile(
            "usagetrace-compare",
            deadline=None,
            derandomize=True,
            database=None,
            suppress_health_check=list(HealthCheck),
        )
        settings.load_profile("usagetrace-compare")
    except ImportError:
        pass
    if os.environ.get("UT_TP_INSTRUMENT") != "1":
        return
    import usagetrace

    for name in os.environ["UT_TP_PACKAGES"].split(","):
        importlib.import_module(name)
        _HANDLES[name] = usagetrace.instrument(name, consent="opt-in", endpoint="http://127.0.0.1:9")


def pytest_unconfigure(config):
    if not _HANDLES:
        return
    report = {}
    for name, handle in _HANDLES.items():
        report[name] = {
            "enabled": handle.enabled,
            "wrapped": len(handle.wrapped_names),
            "flushed": handle.flush(20.0),
        }
    with open(os.environ["UT_TP_REPORT"], "w") as fh:
        json.dump(report, fh)
