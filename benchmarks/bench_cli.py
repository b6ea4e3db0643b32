"""A CLI's whole run (issue 21): click, typer and argparse, with and without usagetrace. Prints a Markdown section.

    python benchmarks/bench_cli.py [--runs N] [--quick] [--wrapt1 PYTHON] [--no-instructions] [--json FILE]

Each framework gets the same small CLI over a small instrumented package
(``benchcli``: a function and a method the command calls), run as a fresh
process per run (``python run_<framework>.py``: import, one command, exit),
bytecode caches on (PYTHONDONTWRITEBYTECODE unset, one warm-up run per case).
Cases, interleaved run by run, medians of ``--runs`` (default 21):

* plain: the same CLI and package with every usagetrace line removed;
* off: ``DO_NOT_TRACK=1``;
* opt-in undecided: nobody answered (no consent file);
* consented, daily: ``usagetrace enable benchcli`` once, ``USAGETRACE_UPLOAD=daily`` (counted on this machine;
  set explicitly because the default becomes realtime in CI, containers and temporary directories);
* consented, realtime: ``USAGETRACE_UPLOAD=realtime`` with the project's OTLPReceiver up on 127.0.0.1
  (nothing is sent from the run itself: pending data is spooled at exit for the detached sender,
  which is waited for, bounded, before the next run so it does not compete for the CPU);
* ``python -c pass`` and ``python -c "import wrapt"``, for reference.

The at-exit work is timed inside the process: an ``atexit`` hook registered
after the command runs first, one registered before everything runs last; the
difference is every exit hook (usagetrace's fold into the daily store, or the
realtime spool). ``-X importtime`` of the consented daily click run, against the
plain run's modules, itemises where the remaining import time goes. With
``--wrapt1 PYTHON`` (an interpreter with wrapt 1.17, e.g. benchmarks/.venv-wrapt1)
the argparse CLI (no third-party framework) is run there too, plain vs consented daily.

Only 127.0.0.1 is contacted; every loop is bounded; nothing asserts a time.
"""

from __future__ import annotations

import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

from _spool import quiet  # benchmarks/ is the script's directory

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
SRC = os.path.join(ROOT, "src")
PY = sys.executable

PACKAGE = '''
"""A small library with a CLI; every usagetrace line ends with "# UT"."""


__version__ = "1.0.0"  # read at exit for service.version (else the installed distribution's)


def api(n=1):
    return sum(range(n))


class Thing:
    def go(self, n=1):
        return api(n) + 1


import usagetrace  # UT
usagetrace.instrument(__name__, endpoint="http://127.0.0.1:9", consent="opt-in")  # UT
'''

CLICK_CLI = '''
import click

from . import Thing, api


@click.group()
def cli():
    """benchcli"""


@cli.command()
@click.option("--n", default=1, type=int)
@click.option("--verbose", is_flag=True)
def run(n, verbose):
    click.echo(api(n) + Thing().go(n))


@cli.command()
def other():
    pass


from usagetrace.integrations.click import track  # UT
cli = track(cli, package="benchcli")  # UT


def main():
    cli()
'''

TYPER_CLI = '''
import typer

from . import Thing, api

app = typer.Typer()


@app.command()
def run(n: int = 1, verbose: bool = False):
    print(api(n) + Thing().go(n))


@app.command()
def other():
    pass


from usagetrace.integrations.click import track  # UT
app = track(app, package="benchcli")  # UT


def main():
    app()
'''

ARGPARSE_CLI = '''
import argparse

from . import Thing, api

parser = argparse.ArgumentParser(prog="benchcli")
sub = parser.add_subparsers(dest="cmd", required=True)
p = sub.add_parser("run")
p.add_argument("--n", type=int, default=1)
p.add_argument("--verbose", action="store_true")
p.set_defaults(func=lambda args: print(api(args.n) + Thing().go(args.n)))
sub.add_parser("other").set_defaults(func=lambda args: None)

from usagetrace.integrations.argparse import track  # UT


@track(parser, package="benchcli")  # UT
def main(argv=None):
    args = parser.parse_args(argv)
    args.func(args)
    return 0
'''

#: The program a console script would run; the exit hooks bracket every other exit hook.
RUNNER = '''
import atexit as _atexit, os as _os, sys as _sys, time as _time
_marks = []
def _mark():
    _marks.append((_time.perf_counter_ns(), _time.thread_time_ns()))
def _last():
    _mark()
    out = _os.environ.get("BENCH_EXIT_FILE")
    if out and len(_marks) == 2:
        with open(out, "w") as fh:
            fh.write(f"{(_marks[1][0] - _marks[0][0]) / 1e6} {(_marks[1][1] - _marks[0][1]) / 1e6}")
_atexit.register(_last)
_sys.argv = ["benchcli", "run", "--n", "3", "--verbose"]
try:
    from benchcli.cli_{framework} import main
    _sys.exit(main())
finally:
    _atexit.register(_mark)
    # For counting the exit hooks' instructions (instructions()): leave right after the command,
    # with or without running the hooks first, and without the interpreter's own teardown.
    if _os.environ.get("BENCH_EXIT") in ("hooks", "none"):
        _sys.stdout.flush()
        if _os.environ["BENCH_EXIT"] == "hooks":
            _atexit._run_exitfuncs()
        _os._exit(0)
'''

FRAMEWORKS = {"click": CLICK_CLI, "typer": TYPER_CLI, "argparse": ARGPARSE_CLI}
CASES = ("plain", "off", "undecided", "daily", "realtime")
CASE_NAMES = {
    "plain": "without usagetrace",
    "off": "off (`DO_NOT_TRACK=1`)",
    "undecided": "opt-in, undecided",
    "daily": "consented, daily",
    "realtime": "consented, realtime, collector up",
}


def strip(text: str, keep_usagetrace: bool) -> str:
    return "".join(ln for ln in text.splitlines(True) if keep_usagetrace or not ln.rstrip().endswith("# UT"))


class Bench:
    def __init__(self, python: str = PY, frameworks=tuple(FRAMEWORKS)) -> None:
        self.python = python
        self.frameworks = frameworks
        self.data = tempfile.mkdtemp(prefix="ut-bench-cli-")
        for flavour in ("ut", "plain"):
            pkg = os.path.join(self.data, flavour, "benchcli")
            os.makedirs(pkg)
            files = {"__init__": PACKAGE, **{f"cli_{k}": v for k, v in FRAMEWORKS.items()}}
            for name, text in files.items():
                with open(os.path.join(pkg, f"{name}.py"), "w") as fh:
                    fh.write(strip(text, flavour == "ut"))
        for framework in FRAMEWORKS:
            with open(os.path.join(self.data, f"run_{framework}.py"), "w") as fh:
                fh.write(RUNNER.replace("{framework}", framework))
        self.endpoint = "http://127.0.0.1:9"

    def home(self, framework: str, case: str) -> str:
        return os.path.join(self.data, f"home-{framework}-{case}")

    def env(self, framework: str, case: str, **extra) -> dict:
        env = {k: v for k, v in os.environ.items()
               if not k.startswith(("PYTEST", "OTEL_", "USAGETRACE_", "BENCHCLI_", "PYTHON"))
               and k not in ("DO_NOT_TRACK", "CI", "GITHUB_ACTIONS", "GITLAB_CI", "BUILDKITE")}
        flavour = "plain" if case == "plain" else "ut"
        env.update(USAGETRACE_HOME=self.home(framework, case),
                   PYTHONPATH=os.pathsep.join([os.path.join(self.data, flavour), SRC]))
        if case == "off":
            env["DO_NOT_TRACK"] = "1"
        if case == "daily":
            # Set, not left to the default: the default is realtime in CI, a container or a temporary
            # state directory (config.upload_mode), and this benchmark may run in any of them.
            env["USAGETRACE_UPLOAD"] = "daily"
        if case == "realtime":
            env.update(USAGETRACE_UPLOAD="realtime", OTEL_EXPORTER_OTLP_ENDPOINT=self.endpoint)
        env.update(extra)
        return env

    def setup_consent(self) -> None:
        for framework in self.frameworks:
            for case in ("daily", "realtime"):
                proc = subprocess.run([self.python, "-m", "usagetrace", "enable", "benchcli"],
                                      env=self.env(framework, case), capture_output=True, text=True, timeout=300)
                if proc.returncode != 0:
                    raise RuntimeError(proc.stdout[-2000:] + proc.stderr[-2000:])

    def run(self, framework: str, case: str) -> tuple[float, float, tuple | None]:
        """One fresh process: (whole run in ms of wall time, its CPU ms, at-exit hooks (wall ms, CPU ms) or None)."""
        exit_file = os.path.join(self.data, "exit.txt")
        if os.path.exists(exit_file):
            os.remove(exit_file)
        env = self.env(framework, case, BENCH_EXIT_FILE=exit_file)
        wall, cpu, err = spawn([self.python, os.path.join(self.data, f"run_{framework}.py")], env, self.data)
        if err:
            raise RuntimeError(f"{framework}/{case}: {err}")
        at_exit = None
        if os.path.exists(exit_file):
            with open(exit_file) as fh:
                at_exit = tuple(float(x) for x in fh.read().split())
        if case == "realtime":
            quiet(self.home(framework, case), 20.0)
        return wall, cpu, at_exit

    def reference(self, code: str) -> tuple[float, float]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("PYTHON")}
        wall, cpu, err = spawn([self.python, "-c", code], env, self.data)
        if err:
            raise RuntimeError(err)
        return wall, cpu

    def importtime(self, framework: str, case: str) -> tuple[dict, set]:
        """{module: self µs} and the set of modules of one run under ``-X importtime``."""
        env = self.env(framework, case)
        proc = subprocess.run([self.python, "-X", "importtime", os.path.join(self.data, f"run_{framework}.py")],
                              env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, timeout=120,
                              cwd=self.data)
        own = {}
        for line in proc.stderr.splitlines():
            if not line.startswith("import time:") or "self [us]" in line:
                continue
            own_us, _cumulative, name = line[len("import time:"):].split("|")
            own[name.strip()] = int(own_us)
        return own, set(own)


def spawn(cmd: list, env: dict, cwd: str) -> tuple[float, float, str]:
    """Run ``cmd``; return (wall ms, CPU ms of the process and the children it waited for, error or "").

    CPU time (user + system, from wait4) is what the run costs the machine; on a shared,
    loaded machine it varies far less than wall time, which also counts waiting for a core.
    """
    t = time.perf_counter()
    proc = subprocess.Popen(cmd, env=env, cwd=cwd, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE)
    err = proc.stderr.read()
    proc.stderr.close()
    _pid, status, usage = os.wait4(proc.pid, 0)
    wall = (time.perf_counter() - t) * 1e3
    proc.returncode = os.waitstatus_to_exitcode(status)
    code = proc.returncode
    if code != 0 or err:
        return wall, 0.0, f"exit {code}\n{err[-2000:].decode(errors='replace')}"
    return wall, (usage.ru_utime + usage.ru_stime) * 1e3, ""


def group(module: str) -> str:
    top = module.split(".")[0]
    if top == "usagetrace":
        parts = module.split(".")
        return ".".join(parts[:3]) if len(parts) > 2 else module
    if module.startswith("importlib.metadata") or module.startswith("importlib.resources"):
        return ".".join(module.split(".")[:2])
    return top


def itemise(b: Bench, framework: str, case: str, runs: int) -> dict:
    """Median self time (ms) of modules imported in ``case`` but not ``plain``, grouped (wrapt, asyncio, ...).

    Keys are ``"wrapt:<group>"`` for modules that a bare ``import wrapt`` imports too, else ``"<group>"``.
    """
    proc = subprocess.run([b.python, "-X", "importtime", "-c", "import wrapt"], capture_output=True, text=True,
                          timeout=60, env={k: v for k, v in os.environ.items() if not k.startswith("PYTHON")})
    by_wrapt = {ln.split("|")[2].strip() for ln in proc.stderr.splitlines()
                if ln.startswith("import time:") and "self [us]" not in ln}
    samples: dict[str, list[float]] = {}
    for _ in range(runs):
        _plain_own, plain_mods = b.importtime(framework, "plain")
        own, mods = b.importtime(framework, case)
        sums: dict[str, float] = {}
        for name in mods - plain_mods:
            key = ("wrapt:" if name in by_wrapt else "") + group(name)
            sums[key] = sums.get(key, 0.0) + own[name] / 1e3
        for key in set(sums) | set(samples):
            samples.setdefault(key, []).append(sums.get(key, 0.0))
    return {k: statistics.median(v) for k, v in samples.items()}


SHARE = r'''
import sys, time
import wrapt, json, typing, urllib.parse  # preloaded: what is left is usagetrace's own work
sys.argv = ["benchcli", "run", "--n", "3"]
t0, w0 = time.thread_time_ns(), time.perf_counter_ns()
import benchcli.cli_argparse
t1, w1 = time.thread_time_ns(), time.perf_counter_ns()
benchcli.cli_argparse.main(["run", "--n", "3"])
t2, w2 = time.thread_time_ns(), time.perf_counter_ns()
print((t1 - t0) / 1e6, (t2 - t1) / 1e6, (w1 - w0) / 1e6, (w2 - w1) / 1e6)
'''


def share(b: Bench, runs: int) -> dict:
    """usagetrace's own work in the argparse CLI, off vs consented daily, with wrapt (json, typing, urllib.parse)
    imported first: {case: (import CPU ms, command CPU ms, import wall ms, command wall ms)}, medians."""
    out: dict = {"off": [], "daily": []}
    for i in range(runs + 1):
        for case in out:
            proc = subprocess.run([b.python, "-c", SHARE], env=b.env("argparse", case), capture_output=True,
                                  text=True, timeout=120, cwd=b.data)
            if proc.returncode != 0:
                raise RuntimeError(proc.stderr[-2000:])
            if i:
                out[case].append([float(x) for x in proc.stdout.split()[-4:]])
    return {case: [statistics.median(v[k] for v in vals) for k in range(4)] for case, vals in out.items()}


def instructions(b: Bench) -> dict:
    """Instructions executed by one run of each case, counted by valgrind's callgrind (main process only).

    Unlike times, the count does not depend on what else the machine is doing: the added
    instructions compare the cases even on a shared, loaded machine. Needs ``valgrind``;
    runs after the timed runs (bytecode caches warm, daily store present). PYTHONHASHSEED=0.
    """
    valgrind = shutil.which("valgrind")
    if valgrind is None:
        return {}
    out = {}

    def count(cmd: list, env: dict) -> int:
        proc = subprocess.run([valgrind, "--tool=callgrind", "--callgrind-out-file=/dev/null", *cmd],
                              env={**env, "PYTHONHASHSEED": "0"}, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                              text=True, timeout=900, cwd=b.data)
        for line in proc.stderr.splitlines():
            if "Collected :" in line:
                return int(line.rsplit(":", 1)[1].strip())
        raise RuntimeError(proc.stderr[-2000:])

    ref_env = {k: v for k, v in os.environ.items() if not k.startswith("PYTHON")}
    out["bare"] = count([b.python, "-c", "pass"], ref_env)
    out["wrapt"] = count([b.python, "-c", "import wrapt"], ref_env)
    for f in b.frameworks:
        run = [b.python, os.path.join(b.data, f"run_{f}.py")]
        for c in ("plain", "off", "undecided", "daily"):
            out[f"{f}/{c}"] = count(run, b.env(f, c))
        # The daily exit hooks alone: the same run leaving right after the command, hooks run or not.
        out[f"{f}/daily/exit"] = count(run, b.env(f, "daily", BENCH_EXIT="hooks")) - count(
            run, b.env(f, "daily", BENCH_EXIT="none"))
    return out


def measure(b: Bench, runs: int) -> dict:
    from usagetrace.testing import OTLPReceiver

    rx = OTLPReceiver().start()
    b.endpoint = rx.endpoint
    keys = [f"{f}/{c}" for f in b.frameworks for c in CASES] + ["bare", "wrapt"]
    wall: dict = {k: [] for k in keys}
    cpu: dict = {k: [] for k in keys}
    exit_wall: dict = {}
    exit_cpu: dict = {}
    try:
        b.setup_consent()
        for i in range(runs + 1):  # run 0 warms the bytecode caches and creates the daily store
            for f in b.frameworks:
                for c in CASES:
                    w, u, at_exit = b.run(f, c)
                    if i:
                        wall[f"{f}/{c}"].append(w)
                        cpu[f"{f}/{c}"].append(u)
                        if at_exit is not None:
                            exit_wall.setdefault(f"{f}/{c}", []).append(at_exit[0])
                            exit_cpu.setdefault(f"{f}/{c}", []).append(at_exit[1])
            for key, code in (("bare", "pass"), ("wrapt", "import wrapt")):
                w, u = b.reference(code)
                if i:
                    wall[key].append(w)
                    cpu[key].append(u)
        received = len(rx.requests)
    finally:
        rx.stop()

    def med(d: dict) -> dict:
        return {k: statistics.median(v) for k, v in d.items() if v}

    return {"wall": med(wall), "cpu": med(cpu), "exit_wall": med(exit_wall), "exit_cpu": med(exit_cpu),
            "requests_received": received, "runs": runs}


def table(values: dict, frameworks: list) -> list:
    out = ["| case | " + " | ".join(frameworks) + " |", "|---|" + "---:|" * len(frameworks)]
    for c in CASES:
        cells = []
        for f in frameworks:
            v, p = values[f"{f}/{c}"], values[f"{f}/plain"]
            cells.append(f"{v:.1f}" if c == "plain" else f"{v:.1f} ({v / p:.2f}×, {v - p:+.1f})")
        out.append(f"| {CASE_NAMES[c]} | " + " | ".join(cells) + " |")
    return out


def verdicts(values: dict, exits: dict, frameworks: list, what: str) -> list:
    wrapt_cost = values["wrapt"] - values["bare"]
    out = []
    for f in frameworks:
        p = values[f"{f}/plain"]
        off, daily = values[f"{f}/off"] - p, values[f"{f}/daily"] - p
        at = exits.get(f"{f}/daily")
        out.append(f"- {what}, {f}: off {off:+.1f} ms ({'met' if off <= 3 else 'NOT met'}); consented daily "
                   f"{daily:+.1f} ms, allowed `import wrapt` + 10 = {wrapt_cost + 10:.1f} "
                   f"({'met' if daily <= wrapt_cost + 10 else 'NOT met'}); daily at-exit "
                   f"{at:.1f} ms ({'met' if at is not None and at <= 5 else 'NOT met'}).")
    return out


def markdown(res: dict, items: dict, w1: dict | None, versions: dict) -> str:
    wall, cpu = res["wall"], res["cpu"]
    frameworks = [f for f in FRAMEWORKS if f"{f}/plain" in wall]
    out = ["## A CLI's whole run (click, typer, argparse)", "",
           "`benchmarks/bench_cli.py`: one command per fresh process (import, `run --n 3 --verbose`, exit), "
           f"bytecode caches on, medians of {res['runs']} interleaved runs, and the ratio to the same CLI without "
           f"usagetrace. wrapt {versions.get('wrapt', '?')}, click {versions.get('click', '?')}, typer "
           f"{versions.get('typer', '?')}, Python {versions.get('python', '?')}. Daily: `USAGETRACE_UPLOAD=daily` "
           "(the default turns realtime in containers and CI). Realtime: the project's OTLPReceiver on 127.0.0.1 "
           f"({res['requests_received']} requests received, all from the detached sender, waited for between runs). "
           + (f"Load average {res['load'][0]:.1f} before, {res['load'][1]:.1f} after, on {res['cpus']} CPUs: compare "
              "rows of one run, not runs." if res.get("load") else ""),
           "", "CPU time of the run (user + system of the process, from `wait4`; ms):", ""]
    out += table(cpu, frameworks)
    out += ["", "Wall time seen by the parent (ms; on a shared machine it also counts waiting for a core):", ""]
    out += table(wall, frameworks)
    out += ["", "| at-exit hooks (in-process, main thread) | " + " | ".join(frameworks) + " |",
            "|---|" + "---:|" * len(frameworks)]
    for c in ("daily", "realtime"):
        cells = []
        for f in frameworks:
            k = f"{f}/{c}"
            cells.append(f"{res['exit_cpu'][k]:.1f} CPU / {res['exit_wall'][k]:.1f} wall" if k in res["exit_cpu"]
                         else "")
        out.append(f"| {CASE_NAMES[c]} | " + " | ".join(cells) + " |")
    out += ["", f"Reference, same runs: `python -c pass` {cpu['bare']:.1f} ms CPU / {wall['bare']:.1f} ms wall, "
                f"`python -c \"import wrapt\"` {cpu['wrapt']:.1f} CPU / {wall['wrapt']:.1f} wall: `import wrapt` "
                f"costs {cpu['wrapt'] - cpu['bare']:.1f} ms CPU ({wall['wrapt'] - wall['bare']:.1f} wall).", "",
            "Targets (issue 21): off ≤ +3 ms over plain; consented daily ≤ `import wrapt` + 10 ms over plain; "
            "daily at-exit ≤ 5 ms.", ""]
    out += verdicts(cpu, res["exit_cpu"], frameworks, "CPU")
    out += verdicts(wall, res["exit_wall"], frameworks, "wall")
    if items:
        def listing(part: dict) -> str:
            top = sorted(part.items(), key=lambda kv: -kv[1])
            shown = [f"{k} {v:.1f}" for k, v in top if v >= 0.3]
            rest = sum(v for _k, v in top if v < 0.3)
            return f"{sum(part.values()):.1f} ms: " + ", ".join(shown) + (f", others {rest:.1f}" if rest else "")

        wrapt_part = {k[len("wrapt:"):]: v for k, v in items.items() if k.startswith("wrapt:")}
        ours = {k: v for k, v in items.items() if not k.startswith("wrapt:")}
        out += ["", "Where the consented daily click run's extra import time goes (`-X importtime`: self times of "
                f"the modules the plain run does not import, grouped, medians of {res.get('items_runs', 5)} runs; "
                "importtime's own overhead inflates them):", "",
                f"- modules a bare `import wrapt` imports too: {listing(wrapt_part)};",
                f"- the rest (usagetrace's own modules, and what they import beyond wrapt): {listing(ours)}."]
    ins = res.get("instructions")
    if ins:
        m = 1e6
        out += ["", "Instructions executed (valgrind callgrind, one run each, main process; millions, and added over "
                "plain): load-independent, so these compare the cases even on a busy machine. "
                f"`python -c pass` {ins['bare'] / m:.1f} M, `import wrapt` adds {(ins['wrapt'] - ins['bare']) / m:.1f} M.",
                "", "| case | " + " | ".join(frameworks) + " |", "|---|" + "---:|" * len(frameworks)]
        for c in ("plain", "off", "undecided", "daily"):
            cells = []
            for f in frameworks:
                v, p = ins.get(f"{f}/{c}"), ins.get(f"{f}/plain")
                if v is None:
                    cells.append("")
                elif c == "plain":
                    cells.append(f"{v / m:.1f}")
                else:
                    cells.append(f"{v / m:.1f} (+{(v - p) / m:.1f}, {100 * (v - p) / p:+.1f}%)")
            out.append(f"| {CASE_NAMES[c]} | " + " | ".join(cells) + " |")
        out.append("| daily at-exit hooks alone | " + " | ".join(
            f"{ins[f'{f}/daily/exit'] / m:.1f}" if f"{f}/daily/exit" in ins else "" for f in frameworks) + " |")
        # Times from instructions: each framework's plain run gives this machine's CPU ms per instruction.
        out += ["", "The targets in instructions, converted to CPU ms at the rate of each framework's plain run "
                "(its CPU ms over its instructions, same session): load-independent, unlike the medians above.", ""]
        wrapt_m = (ins["wrapt"] - ins["bare"]) / m
        for f in frameworks:
            rate = cpu[f"{f}/plain"] / (ins[f"{f}/plain"] / m)
            off = (ins[f"{f}/off"] - ins[f"{f}/plain"]) / m
            daily = (ins[f"{f}/daily"] - ins[f"{f}/plain"]) / m
            at = ins.get(f"{f}/daily/exit", 0) / m
            out.append(
                f"- {f} ({rate:.3f} ms per M): off +{off:.1f} M = {off * rate:+.1f} ms "
                f"({'met' if off * rate <= 3 else 'NOT met'}); consented daily +{daily:.1f} M against `import wrapt`'s "
                f"{wrapt_m:.1f} M + 10 ms = {(daily - wrapt_m) * rate:+.1f} ms beyond wrapt "
                f"({'met' if (daily - wrapt_m) * rate <= 10 else 'NOT met'}); daily at-exit {at:.1f} M = "
                f"{at * rate:.1f} ms ({'met' if at * rate <= 5 else 'NOT met'}).")
    if res.get("share"):
        off, on = res["share"]["off"], res["share"]["daily"]
        out += ["", "usagetrace's own work beyond `import wrapt` (the argparse CLI, `wrapt`, `json`, `typing` and "
                "`urllib.parse` imported first, timed in-process, main-thread CPU ms, wall ms in brackets, medians of "
                f"{res['runs']}): importing the CLI package off {off[0]:.1f} ({off[2]:.1f}), consented daily "
                f"{on[0]:.1f} ({on[2]:.1f}), so {on[0] - off[0]:+.1f} ({on[2] - off[2]:+.1f}) for discovering, "
                f"analysing and wrapping the API and the modules that do it; the command off {off[1]:.2f} "
                f"({off[3]:.2f}), consented {on[1]:.2f} ({on[3]:.2f}); then the at-exit hooks above."]
    if res.get("off_items"):
        out += ["", "What off (`DO_NOT_TRACK=1`) imports beyond the plain run (`-X importtime` self times, medians of "
                f"{res.get('items_runs', 5)} runs): "
                + "; ".join(f"{f} {sum(v.values()):.1f} ms ("
                            + ", ".join(f"{k} {x:.1f}" for k, x in sorted(v.items(), key=lambda kv: -kv[1])
                                        if x >= 0.2) + ")"
                            for f, v in res["off_items"].items()) + "."]
    if w1:
        out += ["", f"The argparse CLI with wrapt {w1['version']} (benchmarks/.venv-wrapt1, same source), medians "
                f"of {w1['runs']}, CPU ms (wall ms): plain {w1['cpu']['plain']:.1f} ({w1['wall']['plain']:.1f}), "
                f"consented daily {w1['cpu']['daily']:.1f} ({w1['wall']['daily']:.1f}), "
                f"{w1['cpu']['daily'] - w1['cpu']['plain']:+.1f} ({w1['wall']['daily'] - w1['wall']['plain']:+.1f}); "
                f"`python -c pass` {w1['cpu']['bare']:.1f} ({w1['wall']['bare']:.1f}), `import wrapt` "
                f"{w1['cpu']['wrapt']:.1f} ({w1['wall']['wrapt']:.1f}): wrapt {w1['version']} itself costs "
                f"{w1['cpu']['wrapt'] - w1['cpu']['bare']:.1f} ms CPU ({w1['wall']['wrapt'] - w1['wall']['bare']:.1f} "
                "wall)."]
    return "\n".join(out) + "\n"


def wrapt1(python: str, runs: int) -> dict:
    b = Bench(python, frameworks=("argparse",))
    b.setup_consent()
    wall: dict = {"plain": [], "daily": [], "bare": [], "wrapt": []}
    cpu: dict = {k: [] for k in wall}
    for i in range(runs + 1):
        for key in wall:
            w, u = b.reference("pass" if key == "bare" else "import wrapt") if key in ("bare", "wrapt") \
                else b.run("argparse", key)[:2]
            if i:
                wall[key].append(w)
                cpu[key].append(u)
    version = subprocess.run([python, "-c", "import wrapt; print(wrapt.__version__)"], capture_output=True,
                             text=True).stdout.strip()
    shutil.rmtree(b.data, ignore_errors=True)
    return {"wall": {k: statistics.median(v) for k, v in wall.items()},
            "cpu": {k: statistics.median(v) for k, v in cpu.items()}, "version": version, "runs": runs}


def main() -> int:
    args = sys.argv[1:]
    runs = 7 if "--quick" in args else 21
    if "--runs" in args:
        runs = int(args[args.index("--runs") + 1])
    b = Bench()
    load_before = os.getloadavg()[0]
    try:
        res = measure(b, runs)
        res["items_runs"] = 3 if "--quick" in args else 5
        items = itemise(b, "click", "daily", res["items_runs"])
        res["off_items"] = {f: itemise(b, f, "off", res["items_runs"]) for f in b.frameworks}
        res["share"] = share(b, runs)
        if "--no-instructions" not in args:
            res["instructions"] = instructions(b)
    finally:
        shutil.rmtree(b.data, ignore_errors=True)
    w1 = None
    if "--wrapt1" in args:
        w1 = wrapt1(os.path.abspath(args[args.index("--wrapt1") + 1]), runs)
    versions = {"python": sys.version.split()[0]}
    for name in ("wrapt", "click", "typer"):
        try:
            from importlib import metadata

            versions[name] = metadata.version(name)
        except Exception:
            pass
    res.update(items=items, wrapt1=w1, versions=versions, load=(load_before, os.getloadavg()[0]),
               cpus=os.cpu_count())
    if "--json" in args:
        with open(args[args.index("--json") + 1], "w") as fh:
            json.dump(res, fh, indent=1, sort_keys=True)
    print(markdown(res, items, w1, versions))
    return 0


if __name__ == "__main__":
    sys.exit(main())
