"""Run your own test suite with your package instrumented: any behaviour change shows up in your CI.

Telemetry is off under pytest, so a maintainer's CI never sees what the people
who install the package get. This plugin turns it on for the packages you
name, keeps every export on the machine, and reports what was wrapped::

    pytest -p usagetrace.pytest_plugin --usagetrace=mypkg

Run the suite twice in CI, plain and with the plugin: a test that passes only
without it is a behaviour change usagetrace made (please report it); exclude
the function with ``instrument(..., exclude=[...])`` meanwhile.

What it does, before any conftest or test module is imported:

* grants consent with the package's own switch (``MYPKG_TELEMETRY=1``), so the
  package's ``usagetrace.instrument()`` line wraps the API exactly as on a
  person's machine (a package that does not call it yet is instrumented when
  it is imported);
* keeps exports in memory in this process, and has subprocesses the tests
  start write theirs to a file in a temporary directory (never the network);
* points ``USAGETRACE_HOME`` at that directory: your own consent file, install
  ids and spool are neither read nor written.

At the end it prints, per package, how many callables were wrapped, how many
were monitored (counted without a wrapper through ``sys.monitoring``, Python
3.12+: ``Instrumentation.monitored``) and which were skipped (not counted) and
why (``Instrumentation.skipped``), and how many usages were recorded.
"""

from __future__ import annotations

import os
import sys
import tempfile

import pytest

__all__ = ["pytest_addoption", "pytest_configure", "pytest_load_initial_conftests", "pytest_terminal_summary",
           "pytest_unconfigure"]

_STATE: dict = {}


def pytest_addoption(parser) -> None:
    group = parser.getgroup("usagetrace", "usagetrace: run the suite with your package instrumented")
    group.addoption(
        "--usagetrace",
        action="append",
        default=[],
        metavar="PACKAGE",
        help="instrument PACKAGE (import name; repeat or comma-separate for several) with consent forced on "
             "and exports kept on this machine",
    )
    parser.addini("usagetrace_packages", "packages to instrument, as with --usagetrace", type="args", default=[])


def _packages(option_values, ini_values) -> list[str]:
    names = []
    for value in list(option_values or []) + list(ini_values or []):
        for name in str(value).split(","):
            name = name.strip()
            if name and name not in names:
                names.append(name)
    return names


def _start(packages: list[str]) -> None:
    if _STATE or not packages:
        return
    from ._internal import delivery, env, transport

    tmp = tempfile.mkdtemp(prefix="usagetrace-pytest-")
    changes = {
        "USAGETRACE_HOME": os.path.join(tmp, "home"),
        "USAGETRACE_PREVIEW_FILE": os.path.join(tmp, "subprocesses.jsonl"),
        "USAGETRACE_DETACHED_SEND": "0",
    }
    for name in packages:
        changes[env.package_var(name)] = "1"
    _STATE["environ"] = {k: os.environ.get(k) for k in changes}
    os.environ.update(changes)
    _STATE.update(packages=packages, directory=tmp)
    memory = transport.MemoryTransport()
    service = delivery.get()
    service.override = memory
    # The spool of the throwaway home is empty: never look for one (after the run, the
    # environment is the person's again, and the background thread would look in their home).
    service._spool_checked = True
    _STATE["memory"] = memory
    for name in packages:
        if name in sys.modules:
            _instrument(sys.modules[name])
        else:
            import wrapt

            wrapt.register_post_import_hook(_instrument, name)


def _instrument(module) -> None:
    """Instrument a package that did not call ``usagetrace.instrument()`` itself (after its own import)."""
    from ._internal import instrumentation

    name = module.__name__
    handle = instrumentation.get(name)
    if handle is None:
        instrumentation.instrument(name)
    else:
        handle.refresh_consent()
        if handle.enabled and not handle.instrumented:
            handle._start()


@pytest.hookimpl(tryfirst=True)
def pytest_load_initial_conftests(early_config, parser, args) -> None:
    # Loaded with -p: before any conftest (and so the package) is imported.
    _start(_packages(getattr(early_config.known_args_namespace, "usagetrace", None), ()))


def pytest_configure(config) -> None:
    # Loaded from a conftest's pytest_plugins, or named in the ini file only.
    _start(_packages(config.getoption("usagetrace"), config.getini("usagetrace_packages")))


def pytest_terminal_summary(terminalreporter, exitstatus, config) -> None:
    if not _STATE:
        return
    from ._internal import instrumentation

    write = terminalreporter.write_line
    terminalreporter.section("usagetrace")
    write(f"exports kept on this machine (in memory; subprocesses: {_STATE['directory']})")
    for name in _STATE["packages"]:
        handle = instrumentation.get(name)
        if handle is None:
            write(f"{name}: never imported during this run: nothing was instrumented")
            continue
        if not handle.instrumented:
            write(f"{name}: not instrumented ({handle.consent})")
            continue
        handle.flush(5.0)
        usages = sum(v for k, v in handle.recorder.counts().items() if k[0] == "calls")
        counts = handle.callable_counts
        write(f"{name}: {counts['wrapped']} callables wrapped, {counts['monitored']} monitored (counted "
              f"without a wrapper), {counts['skipped']} skipped (not counted); {usages} usages recorded "
              "in this process")
        for qualname, reason in sorted(handle.monitored.items()):
            write(f"  monitored: {qualname}: {reason}")
        for qualname, reason in sorted(handle.skipped.items()):
            write(f"  skipped: {qualname}: {reason}")


def pytest_unconfigure(config) -> None:
    # The environment goes back as it was; the in-memory transport stays in place
    # for the rest of the process, so nothing recorded here can leave it at exit.
    # Everything recorded is exported into memory first: nothing is left for the
    # exit handler to spool, into a home directory that is the person's again.
    if _STATE.get("packages"):
        from ._internal import instrumentation

        for handle in instrumentation.registered().values():
            try:
                handle.flush(5.0)
            except Exception:  # noqa: BLE001 - the run is over; never fail it here
                pass
    for key, value in _STATE.pop("environ", {}).items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value
