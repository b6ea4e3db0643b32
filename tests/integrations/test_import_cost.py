"""Off means nothing imported: every integration and entry point, with telemetry off, undecided or withdrawn.

Each case is a small program run twice in fresh interpreters: once as written
(with usagetrace) and once "plain", with every usagetrace line removed. The
modules loaded by the end of the run (an ``atexit`` hook registered first, so
it runs last and sees what other exit hooks imported) are compared: with
telemetry off, usagetrace may add only its own small modules and the few
standard-library modules listed in ``ALLOWED_STDLIB`` (and, per entry point, in
``ALLOWED_BY_CASE``: what the integration needs for its own job, e.g. the e-mail
links' signing); never wrapt, OpenTelemetry, protobuf, asyncio,
importlib.metadata, typing, json or anything else in ``DENIED``. No thread is
started either. A consented run is held to ``import wrapt``'s own modules plus
JSON (``test_consented_daily_run_imports_no_more_than_wrapt_does``). Counting
modules, not timing them: the times are in ``benchmarks/bench_cli.py`` (BENCHMARKS.md).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SRC = os.path.join(ROOT, "src")

#: Never imported to say "off" (prefixes): the cost the README promises is not paid.
DENIED = (
    "wrapt",
    "opentelemetry",
    "google.protobuf",
    "grpc",
    "asyncio",
    "importlib.metadata",
    "importlib_metadata",
    "typing",
    "tomllib",
    "tomli",
    "inspect",
    "ast",
    "dis",
    "json",
    "threading",
    "concurrent",
    "subprocess",
    "socket",
    "ssl",
    "http",
    "urllib.request",
    "email",
    "sqlite3",
    "duckdb",
    "platformdirs",
    "logging",
    "warnings",
)
#: What usagetrace itself may add while off, beyond its own modules: reading the
#: environment, the consent file and the clock; the e-mail integration's signing.
ALLOWED_STDLIB = {
    "_sre", "_bisect", "_random", "_sha512", "bisect", "contextvars", "_contextvars", "errno", "random", "re",
    "re._casefix", "re._compiler", "re._constants", "re._parser", "sre_compile", "sre_constants",
    "sre_parse", "copyreg", "enum", "functools", "itertools", "keyword", "operator", "reprlib", "collections",
    "_collections", "_functools", "_operator", "types", "stat", "_stat", "time", "math", "_weakrefset",
    "weakref", "_weakref", "posixpath", "ntpath", "genericpath", "os", "heapq", "_heapq",
}
#: Per entry point: standard-library modules its module needs to do its own job
#: (the e-mail integration signs links and answers requests with telemetry off too).
ALLOWED_BY_CASE = {
    # Installs threading.excepthook at install(), so a grant later in the run records thread crashes too.
    "crash": {"threading", "_weakrefset", "__future__"},
    # Not on a CLI's path: their modules keep ``from __future__ import annotations`` (usagetrace._internal's docstring).
    "command": {"__future__"}, "event": {"__future__"}, "ask_consent": {"__future__"},
    "email": {"warnings", "__future__",
        "base64", "binascii", "_hashlib", "_blake2", "hashlib", "hmac", "html", "html.entities", "html.parser",
        "_markupbase", "urllib", "urllib.parse", "struct", "_struct", "unicodedata", "ipaddress",
    },
    "flask": {"__future__", "hashlib", "_hashlib", "_blake2", "secrets", "base64", "binascii", "hmac", "random", "_random"},
    "dash": {"__future__", "hashlib", "_hashlib", "_blake2", "secrets", "base64", "binascii", "hmac", "random", "_random"},
}

#: usagetrace's modules that only consent on needs: wrapping, recording, delivering, sending.
OURS_ONLY_WHEN_ON = {
    "wrappers", "delivery", "recorder", "allowlist", "hazards", "discovery", "pipeline", "transport", "config",
    "spool", "aggregate", "sanitize", "resource", "receipts", "uploader", "otlp_json", "jsonline",
}

PACKAGE = """
import sys as _sys


def api(n=1):
    return n * 2


class Thing:
    def go(self):
        return api(3)


import usagetrace  # UT
usagetrace.instrument(__name__, endpoint="http://127.0.0.1:9", consent="opt-in")  # UT
"""

CLICK_CLI = """
import click

from . import api


@click.group()
def cli():
    pass


@cli.command()
@click.option("--n", default=1)
def run(n):
    api(n)


from usagetrace.integrations.click import track  # UT
cli = track(cli, package="utapp")  # UT
"""

TYPER_CLI = """
import typer

from . import api

app = typer.Typer()


@app.command()
def run(n: int = 1):
    api(n)


@app.command()
def other():
    pass


from usagetrace.integrations.click import track  # UT
cli = track(app, package="utapp")  # UT
cli = typer.main.get_command(app)  # PLAIN
"""

ARGPARSE_CLI = """
import argparse

from . import api

parser = argparse.ArgumentParser(prog="utapp")
sub = parser.add_subparsers(dest="cmd")
run = sub.add_parser("run")
run.add_argument("--n", type=int, default=1)


def do_run(args):
    api(args.n)


run.set_defaults(func=do_run)

from usagetrace.integrations.argparse import track  # UT


@track(parser, package="utapp")  # UT
def main(argv=None):
    args = parser.parse_args(argv)
    args.func(args)
    return 0
"""

#: Each entry point's program; ``# UT`` lines exist only with usagetrace, ``# PLAIN`` lines only without.
PROGRAMS = {
    "instrument": """
        import utapp
        utapp.api(1)
        utapp.Thing().go()
    """,
    "click": """
        import sys
        from utapp.cli_click import cli
        sys.argv = ["utapp", "run", "--n", "2"]
        cli()
    """,
    "typer": """
        import sys
        from utapp.cli_typer import cli
        sys.argv = ["utapp", "run", "--n", "2"]
        cli()
    """,
    "argparse": """
        import sys
        from utapp.cli_argparse import main
        sys.exit(main(["run", "--n", "2"]))
    """,
    "crash": """
        import utapp
        from usagetrace.integrations import crash  # UT
        crash.install("utapp")  # UT
        utapp.api(1)
        raise ValueError("crash")
    """,
    "command": """
        import utapp
        import usagetrace  # UT
        with usagetrace.command("run", package="utapp", measures={"n": int}) as cmd:  # UT
            cmd.set(n=utapp.api(1))  # UT
        utapp.api(1)  # PLAIN
    """,
    "event": """
        import utapp
        import usagetrace  # UT
        usagetrace.event("session_start", package="utapp")  # UT
        utapp.api(1)
    """,
    "ask_consent": """
        import utapp
        import usagetrace  # UT
        usagetrace.ask_consent("utapp")  # UT
        utapp.api(1)
    """,
    "flask": """
        from flask import Flask
        app = Flask("utweb")

        @app.route("/")
        def index():
            return "hello"

        from usagetrace.integrations.flask import track  # UT
        track(app, package="utweb", endpoint="http://127.0.0.1:9", consent="opt-in")  # UT
        assert app.test_client().get("/").status_code == 200
    """,
    "dash": """
        from dash import Dash, html
        app = Dash("utdash")
        app.layout = html.Div("hello")
        from usagetrace.integrations.dash import track  # UT
        track(app, package="utdash", endpoint="http://127.0.0.1:9", consent="opt-in")  # UT
        assert app.server.test_client().get("/").status_code == 200
    """,
    "email": """
        from usagetrace.integrations.email import Campaign, TrackingApp  # UT
        campaign = Campaign("launch", key=b"k" * 32, base_url="http://127.0.0.1:9/m")  # UT
        out = campaign.personalize('<a href="https://example.org/x">x</a>', ["a@example.org"])  # UT
        app = TrackingApp(key=b"k" * 32, package="utmail", campaigns={"launch": campaign.links},  # UT
                          endpoint="http://127.0.0.1:9", consent="opt-in")  # UT
        token = out["a@example.org"].split("/c/")[1].split('"')[0]  # UT
        status = []  # UT
        app({"REQUEST_METHOD": "GET", "PATH_INFO": "/c/" + token}, lambda s, h: status.append(s))  # UT
        assert status[0].startswith("302"), status  # UT
    """,
}

PRELUDE = """
import atexit as _atexit, sys as _sys
def _dump():
    mods = sorted(_sys.modules)
    th = _sys.modules.get("threading")
    threads = th.active_count() if th is not None else 1
    with open({out!r}, "w") as f:
        f.write(repr((mods, threads)))
_atexit.register(_dump)
"""

#: (name, environment, consent file content)
STATES = {
    "do-not-track": ({"DO_NOT_TRACK": "1"}, None),
    "otel-sdk-disabled": ({"OTEL_SDK_DISABLED": "true"}, None),
    "package-env-off": ({"UTAPP_TELEMETRY": "0", "UTWEB_TELEMETRY": "0", "UTDASH_TELEMETRY": "0",
                         "UTMAIL_TELEMETRY": "0"}, None),
    "undecided": ({}, None),
    "withdrawn": ({}, "cli"),  # `usagetrace disable PKG`, run for real
    "consented-daily": ({"UTAPP_TELEMETRY": "1", "USAGETRACE_UPLOAD": "daily"}, None),
}


def _strip(text: str, with_usagetrace: bool) -> str:
    keep = []
    for line in textwrap.dedent(text).splitlines():
        if line.rstrip().endswith("# UT") and not with_usagetrace:
            continue
        if line.rstrip().endswith("# PLAIN") and with_usagetrace:
            continue
        keep.append(line)
    return "\n".join(keep) + "\n"


def _environment(home: str, pkgs: str, extra: dict) -> dict:
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("PYTEST", "OTEL_", "USAGETRACE_", "UTAPP", "UTWEB", "UTDASH", "UTMAIL"))
        and k not in ("DO_NOT_TRACK", "PYTHONPATH", "CI")
    }
    env.update(USAGETRACE_HOME=home, USAGETRACE_DETACHED_SEND="0", PYTHONPATH=os.pathsep.join([pkgs, SRC]))
    env.update(extra)
    return env


def _write_package(base, with_usagetrace: bool) -> str:
    pkgs = base / ("pkgs-ut" if with_usagetrace else "pkgs-plain")
    if not pkgs.exists():
        (pkgs / "utapp").mkdir(parents=True)
        for name, text in (("__init__", PACKAGE), ("cli_click", CLICK_CLI), ("cli_typer", TYPER_CLI),
                           ("cli_argparse", ARGPARSE_CLI)):
            (pkgs / "utapp" / f"{name}.py").write_text(_strip(text, with_usagetrace))
    return str(pkgs)


def _run(base, case: str, with_usagetrace: bool, state: str) -> tuple[set, int]:
    pkgs = _write_package(base, with_usagetrace)
    extra, consent_file = STATES[state]
    package = {"flask": "utweb", "dash": "utdash", "email": "utmail"}.get(case, "utapp")
    if consent_file == "cli":  # one withdrawn home per package, shared by its cases (off runs write nothing)
        home = base / f"home-withdrawn-{package}"
    else:
        home = base / f"home-{case}-{state}-{int(with_usagetrace)}"
    env = _environment(str(home), pkgs, extra)
    if not home.exists():
        home.mkdir()
        if consent_file == "cli":
            done = subprocess.run([sys.executable, "-m", "usagetrace", "disable", "--force", package], env=env,
                                  capture_output=True, text=True, timeout=120, cwd=str(base))
            assert done.returncode == 0, done.stderr
    out = base / f"modules-{case}-{state}-{int(with_usagetrace)}.txt"
    code = PRELUDE.format(out=str(out)) + _strip(PROGRAMS[case], with_usagetrace)
    proc = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120,
                          cwd=str(base))
    expected = 1 if case == "crash" else 0
    assert proc.returncode == expected, proc.stderr[-4000:]
    mods, threads = eval(out.read_text())  # our own repr of a list of str and an int
    return set(mods), threads


def _needed(case: str) -> None:
    module = {"click": "click", "typer": "typer", "flask": "flask", "dash": "dash"}.get(case)
    if module is not None:
        pytest.importorskip(module)


_PLAIN: dict = {}


def _plain(base, case: str) -> tuple[set, int]:
    if case not in _PLAIN:
        _PLAIN[case] = _run(base, case, False, "undecided")
    return _PLAIN[case]


@pytest.fixture(scope="module")
def base(tmp_path_factory):
    return tmp_path_factory.mktemp("import-cost")


CASES = [(case, state) for case in PROGRAMS for state in ("do-not-track", "undecided", "withdrawn")]
CASES += [(case, state) for case in ("instrument", "click", "argparse") for state in
          ("otel-sdk-disabled", "package-env-off")]


@pytest.mark.parametrize(("case", "state"), CASES, ids=[f"{c}-{s}" for c, s in CASES])
def test_off_imports_nothing_beyond_saying_off(base, case, state):
    """With telemetry off, undecided or withdrawn, an entry point adds only usagetrace's own small modules."""
    _needed(case)
    plain, plain_threads = _plain(base, case)
    mods, threads = _run(base, case, True, state)
    added = sorted(m for m in mods - plain if not (m == "usagetrace" or m.startswith("usagetrace.")))
    allowed = ALLOWED_STDLIB | ALLOWED_BY_CASE.get(case, set())
    denied = [m for m in added if any(m == d or m.startswith(d + ".") for d in DENIED) and m not in allowed]
    assert denied == [], f"{case}/{state} imports {denied}"
    extra = [m for m in added if m not in allowed]
    assert extra == [], f"{case}/{state} imports more than it needs to say off: {extra}"
    assert threads == plain_threads, "no thread is started while off"
    ours = sorted(m for m in mods if m.startswith("usagetrace."))
    assert [m for m in ours if m.rsplit(".", 1)[-1] in OURS_ONLY_WHEN_ON] == [], ours


def test_events_measure_prefix_is_the_allowlists():
    """events keeps its own copy of the measurement prefix (so it need not import the allowlist while off)."""
    from usagetrace._internal import allowlist, events

    assert events.MEASURE_PREFIX == allowlist.MEASURE_PREFIX


#: What a consented run may import beyond the plain program, ``import wrapt``'s own modules and usagetrace's:
#: the first run of the day records the package in the state file, JSON (with a file lock; the later runs
#: need no json: test_later_daily_runs_exit_without_json); the endpoint is parsed (urllib.parse); the
#: SDK's one-line version module names the resource's SDK version (realtime); the destination's digest is the
#: interpreter's built-in SHA-256 (config.destination_env). (wrapt 2.x imports most of these itself.)
ON_ALLOWED = ALLOWED_STDLIB | {"__future__",
    "json", "json.decoder", "json.encoder", "json.scanner", "_json", "encodings.ascii", "_sha256", "_sha2",
    "urllib", "urllib.parse", "ipaddress", "base64", "binascii", "struct", "_struct", "fcntl",
    "opentelemetry", "opentelemetry.sdk", "opentelemetry.sdk.version",
}


@pytest.fixture(scope="module")
def wrapt_modules():
    proc = subprocess.run([sys.executable, "-c", "import sys, wrapt; print(repr(sorted(sys.modules)))"],
                          capture_output=True, text=True, timeout=120, env={"PATH": os.environ.get("PATH", "")})
    assert proc.returncode == 0, proc.stderr
    return set(eval(proc.stdout))  # our own repr of a list of str


@pytest.mark.parametrize("case", ["click", "argparse", "command"])
def test_consented_daily_run_imports_no_more_than_wrapt_does(base, wrapt_modules, case):
    """A consented CLI run (daily: nothing sent) imports wrapt's modules, usagetrace's and JSON: no SDK, no protobuf."""
    _needed(case)
    plain, _ = _plain(base, case)
    mods, _threads = _run(base, case, True, "consented-daily")
    assert "wrapt" in mods and "usagetrace._internal.wrappers" in mods, "consented: the API is wrapped"
    beyond = sorted(m for m in mods - plain - wrapt_modules
                    if not (m == "usagetrace" or m.startswith("usagetrace.")) and m not in ON_ALLOWED)
    assert beyond == [], f"a consented {case} run imports more than wrapt does: {beyond}"


@pytest.mark.parametrize("case", ["click", "argparse"])
def test_later_daily_runs_exit_without_json(base, case):
    """After the day's first run, a consented daily run's exit appends its line without importing json.

    The journal line is written by jsonline, the destination digest too, and the state file is not read
    again (a stamp says it already names the package for today): ``import json`` alone costs 2-4 ms.
    """
    _needed(case)
    _run(base, case, True, "consented-daily")  # the day's first run (or the earlier test's): state recorded
    mods, _threads = _run(base, case, True, "consented-daily")
    assert "usagetrace._internal.aggregate" in mods, "the run was recorded into the daily store"
    assert sorted(m for m in mods if m == "json" or m.startswith(("json.", "_json")) or m == "encodings.ascii") == []
    home = base / f"home-{case}-consented-daily-1"
    journals = list(home.rglob("utapp.journal"))
    assert len(journals) == 1
    runs = [json.loads(line) for line in journals[0].read_text().splitlines() if line.strip()]
    assert len(runs) >= 2 and runs[-1]["run"] == 1 and runs[-1]["counts"], runs[-1]
