"""Run popular third-party libraries' own test suites with and without usagetrace; compare.

For each library (pinned version): download the sdist with pip, install it and
its pinned test requirements with ``pip install --no-deps --target`` into a
cached per-library directory, run its own tests from a fresh copy of the sdist
twice with the same Python (plain, then instrumented by usagetrace with consent
granted and exporting to a local :class:`usagetrace.testing.OTLPReceiver`), and
compare the per-test outcomes (JUnit XML), the summary counts and the exit
status, which must all be equal.

Both passes get the same environment, the same plugin (hypothesis pinned,
the library imported before collection) and the same fixed ``PYTHONHASHSEED``;
pytest plugin auto-loading is off, so only the plugins a library names are
loaded (no randomising or parallelising plugin can sneak in). The only
difference is ``UT_TP_INSTRUMENT=1``.

Sdists and installed targets are cached under ``$UT_TP_CACHE`` (default
``$XDG_CACHE_HOME/usagetrace-tests/thirdparty``), keyed by name, version,
requirements and Python version, so only the first run needs the package index.
Suites run in parallel processes (``--jobs``, default: the number of cores).

Usage: ``python tests/reliability/thirdparty/run.py [--jobs N] [--workdir DIR] [NAME ...]``.
Exit status 0 when every comparison is identical. Needs pytest and hypothesis in
the running environment.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import contextlib
import dataclasses
import fcntl
import hashlib
import json
import os
import re
import resource
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
import xml.etree.ElementTree as ET

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.abspath(os.path.join(HERE, "..", "..", ".."))
RUN_TIMEOUT = 900  # seconds for one pass of one suite: a hang, not slowness, is what this catches
HASH_SEED = "1234"


@dataclasses.dataclass(frozen=True)
class Lib:
    """One library of the corpus."""

    version: str
    packages: tuple  # import packages instrumented (and imported before collection in both passes)
    style: str  # what about it exercises the wrappers
    args: tuple = ("tests",)  # pytest arguments from the sdist root: paths, -o overrides, deselections
    deps: tuple = ()  # pinned runtime and test requirements (installed --no-deps: list them all)
    plugins: tuple = ()  # pytest plugins to load (auto-loading is off)
    max_examples: int | None = None  # hypothesis examples, where the library's own "fast" mode has fewer
    instance_api: bool = False  # its API is a module-level instance: counted only once public instances are


_HYPOTHESIS = "_hypothesis_pytestplugin"
_ASYNCIO = ("pytest_asyncio.plugin",)
_PYTEST_ASYNCIO = ("pytest-asyncio==1.5.0", "backports.asyncio.runner==1.0.0; python_version < '3.11'",
                   "typing-extensions==4.16.0; python_version < '3.13'")

#: The corpus. ``args`` that override ``addopts`` only drop coverage options (pytest-cov is not installed)
#: and keep every other option the library's own configuration sets.
LIBS: dict[str, Lib] = {
    "attrs": Lib("26.1.0", ("attr", "attrs"), "class generation, descriptors, `__slots__`, pickling",
                 plugins=(_HYPOTHESIS,)),
    "more-itertools": Lib("11.2.1", ("more_itertools",), "generators and iterator protocols, seeded random"),
    "boltons": Lib("26.2.0", ("boltons",), "many small modules, caches, sentinels, traceback utilities"),
    "toolz": Lib("1.2.0", ("toolz",), "functional: curry, compose, signature introspection, dispatch",
                 args=("toolz",)),
    "funcy": Lib("2.1", ("funcy",), "functional helpers and decorator factories", deps=("whatever==0.7",)),
    "cachetools": Lib("8.0.2", ("cachetools",), "caching decorators with default key functions"),
    "decorator": Lib("5.3.1", ("decorator",), "signature-preserving decorators, FunctionType checks",
                     args=("tests/test.py",)),
    "blinker": Lib("1.9.0", ("blinker",), "signals: weak references to receivers, sender identity",
                   args=("tests", "-o", "asyncio_default_fixture_loop_scope=function"),
                   deps=_PYTEST_ASYNCIO, plugins=_ASYNCIO),
    "pluggy": Lib("1.7.0", ("pluggy",), "plugin/hook system (the one pytest itself runs on)",
                  args=("testing",)),
    "tabulate": Lib("0.10.0", ("tabulate",), "table formatting, module-level format registries",
                    args=("test",), deps=("wcwidth==0.9.4",)),
    "prettytable": Lib("3.18.0", ("prettytable",), "table classes with properties, module `__getattr__`",
                       deps=("wcwidth==0.9.4", "pytest-lazy-fixtures==1.4.1"),
                       plugins=("pytest_lazy_fixtures.plugin",)),
    "humanize": Lib("4.17.0", ("humanize",), "number/date humanizing, gettext, module-level state",
                    args=("tests", "--ignore=tests/test_benchmarks.py"),
                    deps=("freezegun==1.5.5", "python-dateutil==4.0.0", "tzdata==2026.6")),
    "python-dateutil": Lib("4.0.0", ("dateutil",), "date parsing, tz classes with caches and singletons",
                           # the conftest adds pytest-cov's marker; warnings are errors in its config
                           args=("tests", "-W", "ignore::pytest.PytestUnknownMarkWarning"),
                           deps=("freezegun==1.5.5", "tzdata==2026.6", "attrs==26.1.0"),
                           plugins=(_HYPOTHESIS,)),
    "pyparsing": Lib("3.3.3", ("pyparsing",), "parser combinators, operators, diagnostics warnings",
                     deps=("railroad-diagrams==3.0.1", "jinja2==3.1.6", "markupsafe==3.0.4")),
    "parse": Lib("1.22.4", ("parse",), "format-string parser",
                 args=("tests", "-o", "addopts=--doctest-modules --doctest-glob=README.rst")),
    "tomlkit": Lib("0.15.2", ("tomlkit",), "TOML parser with container classes subclassing dict/list"),
    "docopt-ng": Lib("0.9.0", ("docopt",), "CLI parser from usage text",
                     deps=("pytest==8.4.2",)),  # its conftest uses the py.path hook argument pytest 9 removed
    "marshmallow": Lib("4.4.0", ("marshmallow",), "schemas: metaclass, descriptors, class registry",
                       # this test's parameter ids hold the wall-clock time: they differ between any two runs
                       args=("tests", "--deselect", "tests/test_deserialization.py::TestFieldDeserialization"
                             "::test_invalid_datetime_deserialization"),
                       deps=("simplejson==4.3.0",)),
    "cattrs": Lib("26.2.1", ("cattrs", "cattr"), "attrs/dataclass structuring with generated code",
                  args=("tests", "-o", "addopts=-l"),
                  deps=("attrs==26.1.0", "immutables==0.21", "msgpack==1.2.4", "tomli-w==1.2.0",
                        "tomlkit==0.15.2", "cbor2==6.3.0", "ujson==6.1.0", "orjson==3.13.0",
                        "pymongo==4.20.1", "dnspython==2.8.0", "msgspec==0.23.0", "pyyaml==6.0.4",
                        "exceptiongroup==1.3.2; python_version < '3.11'"),
                  plugins=(_HYPOTHESIS,), max_examples=10),  # its FAST=1 profile: 100 examples take 7 minutes
    "aiostream": Lib("0.8.1", ("aiostream",), "async generators and operators",
                     args=("tests", "-o", "addopts=--strict-markers"),
                     deps=_PYTEST_ASYNCIO, plugins=_ASYNCIO),
    "janus": Lib("2.0.0", ("janus",), "sync/async queues across threads and event loops",
                 args=("tests", "-o", "addopts=", "--ignore=tests/test_benchmarks.py"),
                 deps=_PYTEST_ASYNCIO, plugins=_ASYNCIO),
    "asgiref": Lib("3.13.0", ("asgiref",), "sync_to_async/async_to_sync, thread-sensitive contexts",
                   deps=_PYTEST_ASYNCIO, plugins=_ASYNCIO),
    "inflect": Lib("7.6.0", ("inflect",), "typeguard-checked engine class", args=(),
                   deps=("jaraco.functools==4.6.0", "more-itertools==11.2.1", "typeguard==4.6.1")),
    "glom": Lib("25.12.0", ("glom",), "nested data access, spec classes", args=("glom/test",),
                deps=("boltons==26.2.0", "face==26.0.1", "attrs==26.1.0")),
    "cached-property": Lib("2.0.1", ("cached_property",), "caching descriptors, sync and async",
                           deps=("freezegun==1.5.5", "python-dateutil==4.0.0")),
    "fire": Lib("0.7.1", ("fire",), "CLI framework that introspects callables and classes", args=("fire",),
                deps=("termcolor==3.1.0",), plugins=(_HYPOTHESIS,)),
    "jinja2": Lib("3.1.6", ("jinja2",), "templating: compiled code, traceback rewriting, async rendering",
                  deps=("markupsafe==3.0.4", "trio==0.35.0", "outcome==1.3.0.post0", "sniffio==1.3.1",
                        "sortedcontainers==2.4.0", "idna==3.20", "attrs==26.1.0",
                        "exceptiongroup==1.3.2; python_version < '3.11'")),
    "markdown": Lib("3.11.3", ("markdown",), "text processing with extension and processor registries",
                    # tests/test_legacy.py makes warnings errors at import, so pytest's warning about a
                    # helper class named TestSuite fails collection; every test is a unittest.TestCase,
                    # collected whatever python_classes says, so plain classes are not collected at all
                    args=("tests", "-o", "python_classes=_NoPlainClasses"), deps=("pyyaml==6.0.4",)),
    "sqlparse": Lib("0.6.1", ("sqlparse",), "SQL lexer/parser, token classes"),
    "tenacity": Lib("9.2.1", ("tenacity",), "retry decorators, sync and async, wait/stop strategy objects",
                    deps=("tornado==6.6.1",)),
    "voluptuous": Lib("0.16.0", ("voluptuous",), "schema validation: validators as callables and classes",
                      args=("voluptuous/tests/tests.py",)),
    "six": Lib("1.17.0", ("six",), "lazy module attributes, meta-path importer, metaclass helpers",
               args=("test_six.py",)),
    # 59 of its tests error in both passes: they need the en_US/de_DE locales, which this machine kind lacks
    "natsort": Lib("8.4.0", ("natsort",), "natural sorting key factories",
                   deps=("pytest-mock==3.17.0",), plugins=(_HYPOTHESIS, "pytest_mock")),
    # The second set (issue 20): the kinds whose main APIs are where the hazards are.
    "structlog": Lib("26.1.0", ("structlog",), "logging: a frame walker reached back through stdlib logging, "
                     "module-level logger instances, faked clocks",
                     # twisted is not installed; asyncio's event loop warnings are not about usagetrace
                     args=("tests", "--ignore=tests/test_twisted.py"),
                     deps=(*_PYTEST_ASYNCIO, "time-machine==3.6.0", "simplejson==4.3.0", "greenlet==3.5.6",
                           "rich==15.0.0", "markdown-it-py==4.3.0", "mdurl==0.1.2", "pygments==2.21.0"),
                     plugins=_ASYNCIO),
    "loguru": Lib("0.7.2", ("loguru",), "logging: the whole API is a module-level instance of a private class",
                  instance_api=True,
                  # 0.7.3's sdist has no tests. The files about the logger's API (its whole suite takes
                  # ~4 minutes a pass: file rotation, threads, child processes, mypy)
                  args=tuple(f"tests/test_{n}.py" for n in (
                      "opt", "formatting", "levels", "bind", "patch", "contextualize", "interception",
                      "standard_handler", "propagation", "get_frame", "add_option_filter", "add_option_format",
                      "add_option_level", "add_option_kwargs", "add_option_serialize", "exceptions_catch",
                      "pickling", "deepcopy", "repr", "defaults", "configure", "remove", "activation")),
                  deps=("colorama==0.4.6", "freezegun==1.5.5")),
    "deprecated": Lib("1.3.1", ("deprecated",), "wrapt-based decorators warning with stacklevel later",
                      # tests/test.py checks the version with pkg_resources (setuptools, gone from 3.12's venvs)
                      args=("tests", "--ignore=tests/test.py")),
    "typeguard": Lib("4.6.1", ("typeguard",), "runtime type checking: import hook, code transformer, frames",
                     # its pytest-plugin tests need pytester, which restores sys.modules (issue 20 item 3)
                     args=("tests", "--ignore=tests/test_pytest_plugin.py", "--ignore=tests/mypy"),
                     deps=("typing-extensions==4.16.0",)),
    "dacite": Lib("1.9.2", ("dacite",), "serialisation: dataclasses from dicts, type hints, caches",
                  # its addopts need pytest-benchmark; the sdist lacks the helpers test_types.py imports
                  args=("tests", "-o", "addopts=", "--ignore=tests/test_types.py")),
    "multimethod": Lib("2.1", ("multimethod",), "dispatch: multimethod objects made by decorators"),
    "stackprinter": Lib("0.2.13", ("stackprinter",), "debugging: formats the caller's frames and tracebacks",
                        # the sdist lacks the sample module this test file imports
                        args=("tests", "--ignore=tests/test_source_inspection.py")),
    "pysnooper": Lib("1.2.3", ("pysnooper",), "debugging: a tracer decorator that reads frames and settrace"),
}


def cache_root() -> str:
    """Where sdists and installed targets are kept between runs."""
    root = os.environ.get("UT_TP_CACHE")
    if not root:
        base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
        root = os.path.join(base, "usagetrace-tests", "thirdparty")
    os.makedirs(root, exist_ok=True)
    return root


@contextlib.contextmanager
def _locked(path: str):
    """Hold an exclusive lock on ``path + '.lock'`` (parallel runs share the cache)."""
    with open(path + ".lock", "a") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def _pip(*args: str) -> None:
    proc = subprocess.run([sys.executable, "-m", "pip", *args, "-q", "--disable-pip-version-check"],
                          capture_output=True, text=True, timeout=900)
    if proc.returncode:
        raise RuntimeError(f"pip {' '.join(args)} failed ({proc.returncode}): {proc.stderr[-3000:]}")


def sdist_path(name: str) -> str:
    """Return the cached sdist of a library, downloading it first if needed."""
    version = LIBS[name].version
    folder = os.path.join(cache_root(), "sdists")
    os.makedirs(folder, exist_ok=True)
    def norm(text):
        return re.sub(r"[-_.]+", "-", text).lower()

    def find():
        found = []
        for f in os.listdir(folder):
            if f.endswith(".tar.gz"):
                dist, _, ver = f[: -len(".tar.gz")].rpartition("-")
                if norm(dist) == norm(name) and ver == version:
                    found.append(f)
        return found

    with _locked(os.path.join(folder, name)):
        found = find()
        if not found:
            tmp = tempfile.mkdtemp(prefix="dl-", dir=folder)
            try:
                _pip("download", "--no-binary", ":all:", "--no-deps", f"{name}=={version}", "-d", tmp)
                for f in os.listdir(tmp):
                    os.replace(os.path.join(tmp, f), os.path.join(folder, f))
            finally:
                shutil.rmtree(tmp, ignore_errors=True)
            found = find()
    if not found:
        raise RuntimeError(f"no sdist of {name}=={version} after download")
    return os.path.join(folder, found[0])


def target_path(name: str) -> str:
    """Return the cached install target (library + its pinned requirements), installing it if needed."""
    lib = LIBS[name]
    key = hashlib.sha256(json.dumps([name, lib.version, sorted(lib.deps)]).encode()).hexdigest()[:12]
    folder = os.path.join(cache_root(), f"site-py{sys.version_info[0]}.{sys.version_info[1]}")
    os.makedirs(folder, exist_ok=True)
    target = os.path.join(folder, f"{name}-{lib.version}-{key}")
    sdist = sdist_path(name)
    with _locked(target):
        if not os.path.isdir(target):
            tmp = tempfile.mkdtemp(prefix=f".{name}-", dir=folder)
            try:
                _pip("install", "--no-deps", "--no-compile", "--target", tmp, sdist, *lib.deps)
                os.replace(tmp, target)
            except BaseException:
                shutil.rmtree(tmp, ignore_errors=True)
                raise
    return target


def prepare(name: str) -> tuple[str, str]:
    """Return (sdist, install target) for one library, from the cache or the package index."""
    return sdist_path(name), target_path(name)


def _extract(sdist: str, dest: str) -> str:
    """Unpack a fresh copy of the sdist (each pass gets its own: tests may write into their tree)."""
    with tarfile.open(sdist) as tar:
        top = tar.getnames()[0].split("/")[0]
        if hasattr(tarfile, "data_filter"):
            tar.extractall(dest, filter="data")
        else:
            tar.extractall(dest)
    return os.path.join(dest, top)


_SUMMARY = re.compile(r"(\d+) (passed|failed|skipped|deselected|xfailed|xpassed|errors?|warnings?|"
                      r"subtests passed|subtests failed|subtests skipped)")


def _summary(output: str) -> dict:
    lines = [ln for ln in output.splitlines() if re.search(r"\d+ (passed|failed|errors?|skipped)\b", ln)]
    counts = {}
    if lines:
        for number, kind in _SUMMARY.findall(lines[-1]):
            if not kind.startswith("warning"):
                counts["error" if kind == "errors" else kind] = int(number)
    return counts


def _cases(junit: str):
    """(key, element) for every JUnit testcase, in file order; a repeated name gets ``#2``, ``#3``...

    Names repeat when parametrize ids collide or a teardown error adds a second entry; numbering them in
    collection order (the same in both passes) keeps each one compared instead of letting one hide another.
    """
    seen = {}
    for case in ET.parse(junit).getroot().iter("testcase"):
        key = f"{case.get('classname')}::{case.get('name')}"
        seen[key] = seen.get(key, 0) + 1
        yield (key if seen[key] == 1 else f"{key}#{seen[key]}"), case


def _outcomes(junit: str) -> dict:
    out = {}
    for key, case in _cases(junit):
        tags = {child.tag for child in case}
        out[key] = "failed" if "failure" in tags else "error" if "error" in tags else \
            "skipped" if "skipped" in tags else "passed"
    return out


def _failure_messages(junit: str, keys) -> dict:
    """First lines of the failure/error message of the given tests (to say why they differ)."""
    wanted, out = set(keys), {}
    for key, case in _cases(junit):
        if key in wanted:
            for child in case:
                if child.tag in ("failure", "error"):
                    text = (child.get("message") or "") + "\n" + (child.text or "")
                    out[key] = text.strip()[-1500:]
    return out


def pytest_command(name: str, junit: str) -> list:
    """The pytest command line for one pass (identical in both passes)."""
    lib = LIBS[name]
    cmd = [sys.executable, "-m", "pytest", *lib.args, "-q", "-p", "no:cacheprovider",
           "-p", "usagetrace_tp_plugin",
           f"--junitxml={junit}", "-o", "junit_family=xunit2", "-o", "junit_logging=no"]
    for plugin in lib.plugins:
        cmd += ["-p", plugin]
    return cmd


def run_suite(name: str, workdir: str, instrument: bool) -> dict:
    """Run the library's own tests once; return summary counts, per-test outcomes and the plugin report."""
    from usagetrace.testing import OTLPReceiver

    lib = LIBS[name]
    sdist, target = prepare(name)
    tag = "instrumented" if instrument else "plain"
    base = os.path.join(workdir, f"{name}-{tag}")
    os.makedirs(base)
    tree = _extract(sdist, base)
    junit = os.path.join(base, "junit.xml")
    report = os.path.join(base, "report.json")
    home = os.path.join(base, "home")
    tmp = os.path.join(base, "tmp")
    os.makedirs(home)
    os.makedirs(tmp)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OTEL_", "USAGETRACE_", "PYTEST_"))
           and not k.endswith("_TELEMETRY") and k not in ("DO_NOT_TRACK", "PYTHONWARNINGS")}
    receiver = OTLPReceiver().start()
    try:
        # Everything but UT_TP_INSTRUMENT is the same in both passes (paths differ by the pass's own folder).
        env.update(
            PYTHONPATH=os.pathsep.join([target, HERE, os.path.join(REPO, "src")]),
            PATH=os.pathsep.join([os.path.join(target, "bin"), os.environ.get("PATH", "")]),  # its scripts
            PYTHONHASHSEED=HASH_SEED,
            PYTHONDONTWRITEBYTECODE="1",
            PYTEST_DISABLE_PLUGIN_AUTOLOAD="1",
            TMPDIR=tmp,
            HOME=home,
            USAGETRACE_HOME=home,
            USAGETRACE_EXPORT_INTERVAL="5",  # the default; see RELIABILITY.md on tracemalloc-based tests
            USAGETRACE_DETACHED_SEND="0",
            OTEL_EXPORTER_OTLP_ENDPOINT=receiver.endpoint,
            UT_TP_PACKAGES=",".join(lib.packages),
            UT_TP_REPORT=report,
        )
        if lib.max_examples:
            env["UT_TP_MAX_EXAMPLES"] = str(lib.max_examples)
        for pkg in lib.packages:
            env[pkg.upper() + "_TELEMETRY"] = "1"
        if instrument:
            env["UT_TP_INSTRUMENT"] = "1"
        started = time.monotonic()
        try:
            proc = subprocess.run(pytest_command(name, junit), cwd=tree, env=env, capture_output=True,
                                  text=True, timeout=RUN_TIMEOUT, stdin=subprocess.DEVNULL)
            returncode, stdout, stderr = proc.returncode, proc.stdout, proc.stderr
        except subprocess.TimeoutExpired as exc:
            returncode = "timeout"
            stdout, stderr = (out.decode(errors="replace") if isinstance(out, bytes) else out or ""
                              for out in (exc.stdout, exc.stderr))
        seconds = time.monotonic() - started
        points = receiver.points("usagetrace.calls")
        calls = sum(p["value"] for p in points)
        functions = {p["attributes"].get("code.function.name") for p in points}
        spans = len(receiver.all_spans())
    finally:
        receiver.stop()
    plugin = {}
    if os.path.exists(report):
        with open(report) as fh:
            plugin = json.load(fh)
    return {
        "returncode": returncode,
        "seconds": round(seconds, 1),
        "summary": _summary(stdout),
        "outcomes": _outcomes(junit) if os.path.exists(junit) else {},
        "junit": junit,
        "plugin": plugin,
        "calls_received": calls,
        "functions_called": len(functions - {None}),
        "spans_received": spans,
        "tail": stdout[-3000:] + stderr[-3000:],
    }


def _result(name: str, plain: dict, inst: dict) -> dict:
    """Compare the two passes of one library."""
    differing = sorted(k for k in set(plain["outcomes"]) | set(inst["outcomes"])
                       if plain["outcomes"].get(k) != inst["outcomes"].get(k))
    same = plain["summary"] == inst["summary"] and not differing and plain["returncode"] == inst["returncode"]
    result = {
        "library": f"{name}=={LIBS[name].version}",
        "plain": plain["summary"],
        "instrumented": inst["summary"],
        "returncodes": [plain["returncode"], inst["returncode"]],
        "seconds": [plain["seconds"], inst["seconds"]],
        "tests_compared": len(plain["outcomes"]),
        "differing_tests": {k: [plain["outcomes"].get(k), inst["outcomes"].get(k)] for k in differing[:50]},
        # a comparison of nothing (the suite did not even collect) is not "identical"
        "identical": same and plain["summary"].get("passed", 0) > 0 and bool(plain["outcomes"]),
        "instrumentation": {pkg: {k: v for k, v in rep.items() if not k.endswith("_names")}
                            for pkg, rep in inst["plugin"].items()},
        "skipped_reasons": skipped_reasons(inst["plugin"]),
        "calls_received": inst["calls_received"],
        "functions_called": inst["functions_called"],
        "spans_received": inst["spans_received"],
    }
    if not result["identical"]:
        messages = {}
        for tag, run in (("plain", plain), ("instrumented", inst)):
            if os.path.exists(run["junit"]):
                messages[tag] = _failure_messages(run["junit"], differing[:50])
        result.update(failure_messages=messages, plain_tail=plain["tail"], instrumented_tail=inst["tail"])
    return result


def _durations_file() -> str:
    return os.path.join(cache_root(), "durations.json")


def run_corpus(names, workdir: str, jobs: int | None = None, log=None) -> dict:
    """Prepare and compare the given libraries, both passes of every suite in a pool of ``jobs`` processes.

    Returns ``{name: result}``; a library that could not be prepared gets ``{"prepare_error": ...}``.
    """
    jobs = jobs or os.cpu_count() or 2
    results, ready = {}, []
    with concurrent.futures.ThreadPoolExecutor(max_workers=jobs) as pool:  # pip works on the first run only
        prepared = {name: pool.submit(prepare, name) for name in names}
    for name in names:
        try:
            prepared[name].result()
            ready.append(name)
        except Exception as exc:
            results[name] = {"library": f"{name}=={LIBS[name].version}", "prepare_error": str(exc)[-3000:],
                             "identical": False}
    try:
        with open(_durations_file()) as fh:
            durations = json.load(fh)
    except (OSError, ValueError):
        durations = {}
    # longest first, both passes of a library side by side (same machine load for both)
    order = sorted(ready, key=lambda n: -durations.get(f"{n}=={LIBS[n].version}", 60))
    passes = {}
    with concurrent.futures.ThreadPoolExecutor(max_workers=jobs) as pool:
        futures = {pool.submit(run_suite, name, workdir, inst): (name, inst)
                   for name in order for inst in (False, True)}
        for future in concurrent.futures.as_completed(futures):
            name, inst = futures[future]
            try:
                passes[(name, inst)] = future.result()
            except Exception as exc:
                results[name] = {"library": f"{name}=={LIBS[name].version}", "run_error": repr(exc),
                                 "identical": False}
            if (name, not inst) in passes and (name, inst) in passes and name not in results:
                results[name] = _result(name, passes[(name, False)], passes[(name, True)])
                durations[f"{name}=={LIBS[name].version}"] = max(results[name]["seconds"])
                if log:
                    log(name, results[name])
    with contextlib.suppress(OSError):
        with open(_durations_file(), "w") as fh:
            json.dump(durations, fh, indent=1, sort_keys=True)
    return results


def compare(name: str, workdir: str) -> dict:
    """Prepare one library and run both passes; return a result dict with ``identical``."""
    return run_corpus([name], workdir)[name]


def _counts(summary: dict) -> str:
    return ", ".join(f"{n} {k}" for k, n in summary.items()) or "nothing ran"


def markdown_table(results: dict, names) -> str:
    """The results as the Markdown table RELIABILITY.md shows."""
    lines = ["| library | what it exercises | tests | plain | instrumented | wrapped | left unwrapped "
             "| calls exported |", "| --- | --- | --- | --- | --- | --- | --- | --- |"]
    for name in names:
        r, lib = results[name], LIBS[name]
        inst = r.get("instrumentation", {})
        same = "identical" if r.get("identical") else _counts(r.get("instrumented", {})) or "not run"
        wrapped = sum(v.get("wrapped", 0) for v in inst.values())
        skipped = sum(v.get("skipped", 0) for v in inst.values())
        lines.append(f"| {name} {lib.version} | {lib.style} | {r.get('tests_compared', 0)} | "
                     f"{_counts(r.get('plain', {}))} | {same} | {wrapped} | {skipped} | "
                     f"{r.get('calls_received', 0):,} |")
    return "\n".join(lines)


#: Reason kinds of ``Instrumentation.skipped`` (the texts of usagetrace's hazards and instrumentation).
_REASON_KINDS = (
    ("frame(s) up the stack", "frames"),
    ("held by", "identity"),
    ("calls itself", "recursion"),
    ("not a plain Python function", "not a function"),
    ("not exact on this interpreter", "free-threaded"),
    ("monitoring", "no monitoring"),
    ("entry point", "CLI"),
    ("CLI main function", "CLI"),
    ("left out by instrument", "excluded"),
)


def reason_kind(reason: str) -> str:
    """A short name for the kind of a skip reason."""
    for marker, kind in _REASON_KINDS:
        if marker in reason:
            return kind
    return reason.split(":", 1)[0][:40]


def skipped_reasons(plugin: dict) -> dict:
    """``{kind: count}`` over every instrumented package's skipped callables."""
    out: dict = {}
    for report in plugin.values():
        for reason in (report.get("skipped_names") or {}).values():
            kind = reason_kind(reason)
            out[kind] = out.get(kind, 0) + 1
    return dict(sorted(out.items(), key=lambda kv: (-kv[1], kv[0])))


def coverage(result: dict) -> dict:
    """Public callables usagetrace found, and how many are counted: (wrapped + monitored) / public."""
    inst = result.get("instrumentation", {})
    wrapped = sum(v.get("wrapped", 0) for v in inst.values())
    monitored = sum(v.get("monitored", 0) for v in inst.values())
    skipped = sum(v.get("skipped", 0) for v in inst.values())
    public = wrapped + monitored + skipped
    return {"public": public, "wrapped": wrapped, "monitored": monitored, "skipped": skipped,
            "coverage": (wrapped + monitored) / public if public else None}


def coverage_table(results: dict, names) -> str:
    """Coverage per library as the Markdown table RELIABILITY.md shows."""
    lines = ["| library | public callables | wrapped | monitored | skipped | coverage | skipped, by reason |",
             "| --- | --- | --- | --- | --- | --- | --- |"]
    for name in names:
        r = results[name]
        c = coverage(r)
        share = "-" if c["coverage"] is None else f"{100 * c['coverage']:.0f} %"
        reasons = ", ".join(f"{kind} {n}" for kind, n in (r.get("skipped_reasons") or {}).items()) or "-"
        lines.append(f"| {name} {LIBS[name].version} | {c['public']} | {c['wrapped']} | {c['monitored']} | "
                     f"{c['skipped']} | {share} | {reasons} |")
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("names", nargs="*", default=list(LIBS))
    parser.add_argument("--workdir", default=None)
    parser.add_argument("--jobs", type=int, default=None)
    parser.add_argument("--keep", action="store_true")
    parser.add_argument("--markdown", action="store_true", help="also print the results as a Markdown table")
    parser.add_argument("--coverage", action="store_true",
                        help="also print coverage, (wrapped + monitored) / public callables, as a Markdown table")
    args = parser.parse_args(argv)
    unknown = [n for n in args.names if n not in LIBS]
    if unknown:
        parser.error(f"unknown libraries: {', '.join(unknown)} (known: {', '.join(LIBS)})")
    sys.path.insert(0, os.path.join(REPO, "src"))
    workdir = args.workdir or tempfile.mkdtemp(prefix="ut-thirdparty-")
    os.makedirs(workdir, exist_ok=True)
    started = time.monotonic()

    def log(name, result):
        print(json.dumps(result, indent=1), flush=True)

    try:
        results = run_corpus(args.names, workdir, args.jobs, log=log)
    finally:
        if not args.keep and args.workdir is None:
            shutil.rmtree(workdir, ignore_errors=True)
    for name in args.names:
        result = results[name]
        if "prepare_error" in result or "run_error" in result:
            print(json.dumps(result, indent=1))
    print(f"\n{'library':28} {'identical':9} {'tests':>6} {'wrapped':>7} {'verified':>8} {'skipped':>7} "
          f"{'calls':>9} {'s plain/inst':>14}")
    for name in args.names:
        r = results[name]
        inst = r.get("instrumentation", {})
        print(f"{r['library']:28} {str(r['identical']):9} {r.get('tests_compared', 0):>6} "
              f"{sum(v.get('wrapped', 0) for v in inst.values()):>7} "
              f"{sum(v.get('wrapped_verified', 0) for v in inst.values()):>8} "
              f"{sum(v.get('skipped', 0) for v in inst.values()):>7} {r.get('calls_received', 0):>9} "
              f"{'/'.join(str(s) for s in r.get('seconds', [])):>14}")
    if args.markdown:
        print(markdown_table(results, args.names))
    if args.coverage:
        print(coverage_table(results, args.names))
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    print(f"wall time {time.monotonic() - started:.0f} s with {args.jobs or os.cpu_count()} parallel jobs; "
          f"suites used {usage.ru_utime + usage.ru_stime:.0f} s of CPU (other load adds wall time)")
    return 0 if all(results[n]["identical"] for n in args.names) else 1


if __name__ == "__main__":
    sys.exit(main())
