"""pytest plugin loaded (``-p usagetrace_tp_plugin``) into a third-party library's own test run.

Both runs load it, so both get the same hypothesis settings (no deadline,
derandomized, no example database: timing and random examples must not decide
the comparison) and both import the library's packages (``UT_TP_PACKAGES``, in
order) at the same point, before collection. With ``UT_TP_INSTRUMENT=1`` each
package is instrumented with usagetrace right after its import, consent
granted through ``<PKG>_TELEMETRY=1``, exporting to the receiver named by
``OTEL_EXPORTER_OTLP_ENDPOINT``; at the end it flushes and writes what was
wrapped (and what was left unwrapped, and why) to ``UT_TP_REPORT``.
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

        fewer = os.environ.get("UT_TP_MAX_EXAMPLES")  # a library whose own fast mode runs fewer examples
        examples = {"max_examples": int(fewer)} if fewer else {}

        settings.register_profile(
            "usagetrace-compare",
            deadline=None,
            derandomize=True,
            database=None,
            suppress_health_check=list(HealthCheck),
            **examples,
        )
        settings.load_profile("usagetrace-compare")
    except ImportError:
        pass
    instrument = os.environ.get("UT_TP_INSTRUMENT") == "1"
    for name in os.environ["UT_TP_PACKAGES"].split(","):
        # as a maintainer would: each package instruments itself once it is imported
        importlib.import_module(name)
        if instrument:
            import usagetrace

            _HANDLES[name] = usagetrace.instrument(name, consent="opt-in", endpoint="http://127.0.0.1:9")


def _candidates(qualname):
    """The objects a wrapped name can stand for: attributes from each loaded module prefix of the name.

    Either reading can be the right one: ``dateutil.parser.isoparser`` is a class that shadows the
    submodule of that name, ``tenacity.retry`` a function that shadows the module ``tenacity.retry``.
    """
    import sys

    parts = qualname.split(".")
    for cut in range(1, len(parts) + 1):
        obj = sys.modules.get(".".join(parts[:cut]))
        if obj is None:
            continue
        try:
            for attr in parts[cut:]:
                obj = getattr(obj, attr)
        except Exception:
            continue
        if isinstance(obj, type):
            yield vars(obj).get("__init__")  # a class: its own __init__
            continue
        yield obj
        yield getattr(obj, "__func__", None)  # a method reached through a public instance
        for klass in type(obj).__mro__:  # a public callable instance: usagetrace wraps its class's __call__
            if "__call__" in vars(klass):
                yield vars(klass)["__call__"]
                break


def _not_wrapped(names) -> list:
    """The names that do not resolve to a usagetrace wrapper right now."""
    from usagetrace.testing import is_wrapped

    return [name for name in names if not any(is_wrapped(obj) for obj in _candidates(name))]


def pytest_unconfigure(config):
    if not _HANDLES:
        return
    report = {}
    for name, handle in _HANDLES.items():
        skipped = dict(getattr(handle, "skipped", None) or {})  # public account of what was left unwrapped
        missing = _not_wrapped(handle.wrapped_names)
        report[name] = {
            "enabled": handle.enabled,
            "wrapped": len(handle.wrapped_names),
            # the names say what usagetrace meant to wrap; this checks the module attributes really are
            "wrapped_verified": len(handle.wrapped_names) - len(missing),
            "not_wrapped_names": missing,
            "skipped": len(skipped),
            "skipped_names": {str(k): str(v) for k, v in sorted(skipped.items())},
            # counted through sys.monitoring where a wrapper would change behaviour (3.12+), when available
            "monitored": len(getattr(handle, "monitored_names", None) or ()),
            "flushed": handle.flush(20.0),
        }
    with open(os.environ["UT_TP_REPORT"], "w") as fh:
        json.dump(report, fh)
