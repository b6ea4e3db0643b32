"""A frame walker of the package reached back through foreign code sees no frame of usagetrace's.

Found by the corpus: a logging package's logger method calls the standard ``logging`` module through a
computed ``getattr``; ``logging`` calls back the package's own ``findCaller``, which walks up from its frame
and skips frames whose module starts with the package's name or ``logging``. The call graph cannot follow
package -> stdlib -> package, so the logger method was wrapped, and the wrapper's frame (in usagetrace's
own module) was the first frame not skipped: ``funcName=wrapper`` instead of the host's function. The
wrapper's frames now carry the package function's globals, file and name, as the trampoline's do.
"""

from __future__ import annotations

import json
import os
import textwrap

from .conftest import clean_env, run_py

PACKAGE = {
    "__init__.py": '''
        import logging

        from ._stdlib import _PackageAwareLogger

        __all__ = ["Logger", "get_logger"]


        class Logger:
            """The public logger: every level goes to a standard library logger."""

            def __init__(self, name):
                self._logger = _PackageAwareLogger(name)

            def _proxy_to_logger(self, method_name, event, *args):
                return getattr(self._logger, method_name)(event, *args)  # a computed name

            def info(self, event, *args):
                return self._proxy_to_logger("info", event, *args)

            async def ainfo(self, event):
                return self._proxy_to_logger("info", event)

            def stream(self, events):
                for event in events:
                    self._proxy_to_logger("info", event)
                    yield event


        def get_logger(name):
            return Logger(name)


        import usagetrace
        HANDLE = usagetrace.instrument(__name__, consent="opt-in", endpoint="http://127.0.0.1:9")
    ''',
    "_stdlib.py": '''
        import logging
        import sys


        class _PackageAwareLogger(logging.Logger):
            """Reports the first frame outside this package and ``logging``, by module name."""

            def findCaller(self, stack_info=False, stacklevel=1):
                frame = sys._getframe()
                while frame.f_back is not None and frame.f_globals.get("__name__", "").startswith(
                        ("fglog", "logging")):
                    frame = frame.f_back
                return frame.f_code.co_filename, frame.f_lineno, frame.f_code.co_name, None
    ''',
}

HOST = r'''
import asyncio, json, logging, os
import fglog
seen = []

class Keep(logging.Handler):
    def emit(self, record):
        seen.append([record.funcName, os.path.basename(record.pathname), record.msg])

def my_function(log):
    log.info("sync")

async def my_coroutine(log):
    await log.ainfo("async")

def my_consumer(log):
    return list(log.stream(["gen"]))

log = fglog.get_logger("app")
log._logger.addHandler(Keep())
log._logger.setLevel(logging.INFO)
my_function(log)
asyncio.run(my_coroutine(log))
my_consumer(log)
handle = fglog.HANDLE
print(json.dumps({"seen": seen, "wrapped": sorted(handle.wrapped_names) if handle.enabled else []}))
'''


def _run(tmp_path, telemetry: str) -> dict:
    pkg = tmp_path / "pkgs" / "fglog"
    pkg.mkdir(parents=True, exist_ok=True)
    for name, text in PACKAGE.items():
        (pkg / name).write_text(textwrap.dedent(text))
    env = clean_env(tmp_path / f"home-{telemetry}", FGLOG_TELEMETRY=telemetry)
    env["PYTHONPATH"] = os.pathsep.join([str(tmp_path / "pkgs"), env["PYTHONPATH"]])
    proc = run_py(HOST, env, timeout=60)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


def test_findcaller_reached_through_stdlib_logging_reports_the_hosts_function(tmp_path):
    plain, instrumented = _run(tmp_path, "0"), _run(tmp_path, "1")
    expected = [["my_function", "<string>", "sync"], ["my_coroutine", "<string>", "async"],
                ["my_consumer", "<string>", "gen"]]
    assert plain["seen"] == expected
    # the logger's methods really are wrapped (sync, coroutine and generator wrappers) ...
    assert {"fglog.Logger.info", "fglog.Logger.ainfo", "fglog.Logger.stream"} <= set(instrumented["wrapped"])
    # ... and the package's own walker still finds the host's function, not a frame of usagetrace's
    assert instrumented["seen"] == expected


def test_wrapper_code_looks_up_no_global():
    """The wrappers run with the package's globals: their code must look up no name there (a package's own
    global ``next`` or ``BaseException`` would be found instead), and every frame of ours is recognised."""
    import dis

    from usagetrace._internal import wrappers

    for code in wrappers._OWN_CODES:
        loads = [i.argval for i in dis.get_instructions(code) if i.opname in ("LOAD_GLOBAL", "LOAD_NAME")]
        assert code.co_name in ("sync_wrapper", "coroutine_wrapper", "generator_wrapper", "asyncgen_wrapper") \
            or loads == [], (code.co_name, loads)
    assert {c.co_name for c in wrappers._OWN_CODES} >= {"wrapper", "run", "drive"}

    def host_like(a, b=2):
        return a + b

    class R:
        class outside:
            set = reset = get = None

    class S:
        ok = marker = None

    for kind in ("sync", "coroutine", "generator", "asyncgen"):
        made = wrappers._rehomed(wrappers.FACTORIES.get(kind, wrappers.sync_wrapper)(R, S), host_like)
        inner = [made] + [c.cell_contents for c in made.__closure__
                          if callable(c.cell_contents) and wrappers.is_own_code(getattr(c.cell_contents, '__code__', host_like.__code__))]
        for fn in inner:
            assert fn.__globals__ is host_like.__globals__
            assert (fn.__code__.co_filename, fn.__code__.co_name, fn.__code__.co_firstlineno) == (
                __file__, "host_like", host_like.__code__.co_firstlineno)
            assert wrappers.is_own_code(fn.__code__)
        assert len(inner) == (1 if kind == "sync" else 2)
    assert not wrappers.is_own_code(host_like.__code__)
