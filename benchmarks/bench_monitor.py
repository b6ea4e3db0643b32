"""Counting without a wrapper: a monitored call (sys.monitoring, 3.12+) vs a wrapped call vs a bare call.

    python benchmarks/bench_monitor.py            # writes its section of BENCHMARKS.md
    python benchmarks/bench_monitor.py --print    # prints the section only

Run with Python 3.12+ and usagetrace importable (the worktree's .venv-3.13). One fresh child process does
everything, round-robin: `timeit` of the same call shape (`def f(a, b=None)`), bare (a copy of the package
never instrumented), wrapped, monitored (a function that calls itself in a branch never taken: recursion
makes it monitored, not wrapped), a monitored function whose code is shared with another (3.13+: told
apart by its closure cells, read at each call), and both again as inner calls (inside a usage of the package). It also
times an exception leaving two frames of the host's own code with the process-wide PY_UNWIND event off
(before instrument()) and on: the cost monitoring puts on code that is not the package's. Counts are
checked exact at the end. Nothing leaves the machine (the endpoint is a closed 127.0.0.1 port, daily upload).
"""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
import tempfile
import textwrap

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
START, END = "<!-- bench_monitor.py: start -->", "<!-- bench_monitor.py: end -->"

PKG = '''
def f(a, b=None):
    return a

def fm(a, b=None):
    if a is fm:
        return fm(None)   # never taken: makes it recursive, so monitored
    return a

def call_with(fn):
    return fn()

def _made(tag):
    def fs(a, b=None):
        if a is tag:
            return fs(None)   # never taken: recursive, so monitored; its code is shared (made here)
        return a
    return fs

fs = _made([1])
fs_other = _made([2])   # a second public function on the same code: told apart by its closure
'''

CHILD = r'''
import json, statistics, sys, timeit
sys.path.insert(0, sys.argv[1])
import mb_bare, mb
from usagetrace._internal import instrumentation, monitor

def host_inner():
    raise ValueError("x")

def host_outer():
    host_inner()

def host_raise():
    try:
        host_outer()
    except ValueError:
        pass

N, REPEAT = int(sys.argv[2]), int(sys.argv[3])
h = instrumentation.instrument("mb")
assert h.enabled, h.consent
assert h.wrapped_names == ["mb.call_with", "mb.f"], h.wrapped_names
SHARED = sys.version_info >= (3, 13)
assert h.monitored_names == (["mb.fm", "mb.fs", "mb.fs_other"] if SHARED else ["mb.fm"]), h.monitored
bare, f, fm, fs = mb_bare.f, mb.f, mb.fm, mb.fs
cases = {
    "bare": lambda: timeit.timeit("f(1, b=2)", globals={"f": bare}, number=N),
    "wrapped": lambda: timeit.timeit("f(1, b=2)", globals={"f": f}, number=N),
    "monitored": lambda: timeit.timeit("f(1, b=2)", globals={"f": fm}, number=N),
    "monitored shared": lambda: timeit.timeit("f(1, b=2)", globals={"f": fs}, number=N),
    "wrapped inner": lambda: mb.call_with(lambda: timeit.timeit("f(1, b=2)", globals={"f": f}, number=N)),
    "monitored inner": lambda: mb.call_with(lambda: timeit.timeit("f(1, b=2)", globals={"f": fm}, number=N)),
    "host exception": lambda: timeit.timeit(host_raise, number=N // 10) * 10,
    "host exception, monitoring off": lambda: events_off(
        lambda: timeit.timeit(host_raise, number=N // 10) * 10),
}

def events_off(run):
    """The process-wide events off for one timing (what the process has before instrument())."""
    ev = sys.monitoring.events
    sys.monitoring.set_events(monitor.tool_id(), 0)
    try:
        return run()
    finally:
        sys.monitoring.set_events(monitor.tool_id(), ev.PY_UNWIND | ev.PY_THROW)

for case in cases.values():  # warm-up (the first calls are sampled: span budget)
    case()
times = {k: [] for k in cases}
for _ in range(REPEAT):
    for name, case in cases.items():
        times[name].append(case() / N * 1e9)
counts = h.recorder.counts()
made = N * (REPEAT + 1)
out = {k: statistics.median(v) for k, v in times.items()}
out["counts exact"] = (counts.get(("calls", "mb.fm", "ok")) == made
                       and counts.get(("calls", "mb.f", "ok")) == made
                       and counts.get(("calls", "mb.fs", "ok")) == (made if SHARED else None)
                       and counts.get(("calls", "mb.fs_other", "ok")) is None)
out["tool id"] = monitor.tool_id()
h.uninstrument()
out["tool freed"] = monitor.tool_id() is None and sys.monitoring.get_tool(3) is None
print(json.dumps(out))
'''


def measure(n: int = 500_000, repeat: int = 5) -> dict:
    load = os.getloadavg()
    with tempfile.TemporaryDirectory(prefix="usagetrace-bench-monitor-") as tmp:
        for name in ("mb", "mb_bare"):
            os.makedirs(os.path.join(tmp, name))
            with open(os.path.join(tmp, name, "__init__.py"), "w") as fh:
                fh.write(textwrap.dedent(PKG))
        env = {k: v for k, v in os.environ.items() if not k.startswith(("OTEL_", "USAGETRACE_"))}
        env.pop("DO_NOT_TRACK", None)
        env.update(MB_TELEMETRY="1", USAGETRACE_HOME=os.path.join(tmp, "home"), USAGETRACE_DETACHED_SEND="0",
                   OTEL_EXPORTER_OTLP_ENDPOINT="http://127.0.0.1:9",
                   PYTHONPATH=os.pathsep.join([os.path.join(ROOT, "src"), env.get("PYTHONPATH", "")]))
        proc = subprocess.run([sys.executable, "-c", CHILD, tmp, str(n), str(repeat)], env=env,
                              capture_output=True, text=True, timeout=900, cwd=tmp)
        if proc.returncode != 0:
            raise SystemExit(proc.stderr)
        result = json.loads(proc.stdout.strip().splitlines()[-1])
        result["load"] = ", ".join(f"{x:.2f}" for x in load)
        return result


def section(r: dict) -> str:
    import wrapt

    bare, wrapped = r["bare"], r["wrapped"]
    rows = [
        ("bare call", bare),
        ("wrapped usage call (trampoline + wrapt)", wrapped),
        ("monitored usage call (sys.monitoring PY_START + PY_RETURN, same function object)", r["monitored"]),
        ("monitored usage call, code shared by two public functions (3.13+: + two closure cells read "
         "through the frame's locals proxy)" if sys.version_info >= (3, 13) else
         "the same, code shared by two public functions (before 3.13 not counted: a bare call)",
         r["monitored shared"]),
        ("wrapped, inner call (inside a usage: wrapt pass-through)", r["wrapped inner"]),
        ("monitored, inner call (inside a usage: two callbacks that return early)", r["monitored inner"]),
    ]
    lines = [START, "", "## Counting without a wrapper: monitored vs wrapped vs bare (Python 3.12+)", "",
             f"Written by `benchmarks/bench_monitor.py` (one child process, round-robin, median of 5 "
             f"repeats of 500,000 calls of `f(1, b=2)`, `timeit` loop overhead included in every row). "
             f"CPython {platform.python_version()}, wrapt {wrapt.__version__}, usagetrace tool id "
             f"{r['tool id']}; counts exact: {r['counts exact']}; tool id freed by uninstrument(): "
             f"{r['tool freed']}. Load average at start: {r.get('load', '?')} (2 cores, shared machine: "
             f"compare the ratios, not the nanoseconds).", "",
             "| case | ns/call (median) | × bare | × wrapped |", "|---|---:|---:|---:|"]
    for name, value in rows:
        lines.append(f"| {name} | {value:,.0f} | {value / bare:.2f}× | {value / wrapped:.2f}× |")
    off, on = r["host exception, monitoring off"], r["host exception"]
    lines += ["", "The price on code that is not the package's: PY_UNWIND (and PY_THROW) cannot be local "
              "events, so they are on for the whole process while anything is monitored; each frame an "
              "exception leaves costs one callback that looks the code object up and returns.", "",
              "| host code, exception raised two frames down and caught | ns/call (median) | × off |",
              "|---|---:|---:|",
              f"| process-wide events off (as before instrument()) | {off:,.0f} | 1.00× |",
              f"| monitoring on (events on while a callable is monitored) | {on:,.0f} | {on / off:.2f}× |",
              "", END, ""]
    return "\n".join(lines)


def main() -> int:
    if sys.version_info < (3, 12):
        raise SystemExit("sys.monitoring needs Python 3.12+: run this with .venv-3.13/bin/python")
    text = section(measure())
    if "--print" in sys.argv:
        print(text)
        return 0
    path = os.path.join(ROOT, "BENCHMARKS.md")
    with open(path) as fh:
        current = fh.read()
    if START in current and END in current:
        before, rest = current.split(START, 1)
        current = before + text.rstrip("\n") + rest.split(END, 1)[1]
    else:
        current = current.rstrip("\n") + "\n\n" + text
    with open(path, "w") as fh:
        fh.write(current)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
