"""The usagetrace demo: an instrumented package used with consent, in development mode.

Runs entirely on this machine (no collector, nothing leaves it):

1. a person installs ``tinystats`` (instrumented with ``consent="opt-in"``) and agrees;
2. their script uses it: functions, a class, a generator, async, a failure;
3. the run exits immediately; pending telemetry is spooled and delivered,
   here into the development-mode file (OTLP JSON lines);
4. we show exactly what was sent, what ``usagetrace status`` says, a usage
   report, and that ``DO_NOT_TRACK=1`` sends nothing;
5. the same script in daily upload mode: the runs send nothing, their counts
   wait on the machine, ``preview --pending`` shows the next report and
   ``flush`` sends it.

Run with ``make demo``. Everything lives under ``.demo/`` in the repository.
"""

from __future__ import annotations

import json
import os
import shlex
import shutil
import subprocess
import sys
import textwrap

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DEMO = os.path.join(ROOT, ".demo")
DEV_FILE = os.path.join(DEMO, "telemetry.jsonl")

USER_SCRIPT = textwrap.dedent(
    """
    import asyncio
    import tinystats
    from tinystats import Table

    print("mean:", tinystats.mean([3, 4, 5]))
    print("summary:", tinystats.summarize([1, 2, 3, 10], digits=1))
    table = Table.from_rows([{"a": 1, "b": 2}, {"a": 5, "b": 3}])
    print("describe:", table.describe("a"), "rows:", list(table.iter_rows()))
    for _ in range(1000):
        tinystats.median([5, 1, 3])            # counted exactly, sampled into a few spans
    import tinystats.io                         # instrumented on import by a post-import hook
    print("async:", asyncio.run(tinystats.io.fetch_numbers("1,2,3")))
    try:
        tinystats.zscore([2, 2, 2], 2)          # raises: type and in-package frames only
    except ValueError as exc:
        print("caught:", exc)
    """
)


def shown(cmd, env) -> str:
    """The command as a person can paste it into a shell, with every environment change the demo made."""
    prefix = []
    removed = sorted(k for k in os.environ if k not in env)
    if removed:
        prefix += ["env"] + [f"-u {k}" for k in removed]
    prefix += [f"{k}={shlex.quote(v)}" for k, v in sorted(env.items()) if os.environ.get(k) != v]
    exe = [os.path.relpath(sys.executable, ROOT) if sys.executable.startswith(ROOT + os.sep) else sys.executable]
    words = exe + [os.path.relpath(c, ROOT) if c.startswith(ROOT + os.sep) else c for c in cmd[1:]]
    return " ".join(prefix + [shlex.quote(w) for w in words])


def run(cmd, env, capture=False):
    """Run a command from the repository root, echoing it as it can be pasted; return its stdout when captured."""
    print(f"\n$ {shown(cmd, env)}", flush=True)
    result = subprocess.run(cmd, env=env, check=True, text=True, capture_output=capture, cwd=ROOT)
    if capture:
        return result.stdout
    return ""


def main() -> int:
    shutil.rmtree(DEMO, ignore_errors=True)
    os.makedirs(DEMO)
    env = {k: v for k, v in os.environ.items() if not k.startswith("OTEL_") and k != "DO_NOT_TRACK"}
    env.update(
        USAGETRACE_HOME=os.path.join(DEMO, "home"),  # keep the demo's consent and ids out of yours
        USAGETRACE_DEV_FILE=DEV_FILE,  # development mode: no endpoint, so OTLP JSON lines go here
        USAGETRACE_DETACHED_SEND="0",  # deliver with `usagetrace flush` below, so the demo is deterministic
        PYTHONPATH=os.pathsep.join(p for p in [os.path.join(ROOT, "examples", "tinystats"), env.get("PYTHONPATH")] if p),
    )
    for ci_var in ("CI", "GITHUB_ACTIONS", "GITLAB_CI", "BUILDKITE"):
        env.pop(ci_var, None)  # the demo shows an interactive person's run
    cli = [sys.executable, "-m", "usagetrace"]
    script = os.path.join(DEMO, "user_script.py")
    with open(script, "w") as fh:
        fh.write(USER_SCRIPT)

    print("Every command below is printed as you can paste it (from the repository root), with the")
    print("environment the demo gave it: USAGETRACE_HOME keeps the demo's consent and ids out of yours.")
    print("\n== 1. tinystats is opt-in: before the person agrees, nothing is even wrapped")
    run(cli + ["status", "tinystats"], env)
    print("\n== 2. The person agrees")
    run(cli + ["enable", "tinystats"], env)
    print("\n== 3. Their script runs (telemetry never prints, blocks or raises)")
    run([sys.executable, script], env)
    print("\n== 4. The run exited at once; its telemetry waited in the spool. Deliver it:")
    run(cli + ["flush"], env)

    with open(DEV_FILE, encoding="utf-8") as fh:
        requests = [json.loads(line) for line in fh if line.strip()]
    from usagetrace._internal.cli import render_preview
    from usagetrace.testing import flatten

    print(f"\n== 5. Exactly what was sent ({DEV_FILE}, OTLP JSON lines):\n")
    print(render_preview(requests))

    print("== 6. What the person sees")
    run(cli + ["status", "tinystats"], env)

    print("\n== 7. A usage report (k-anonymity lowered to 1: the demo has a single install)")
    try:
        run(cli + ["report", DEV_FILE, "--package", "tinystats", "--k", "1"], env)
    except subprocess.CalledProcessError as exc:
        print(f"(report unavailable: exit {exc.returncode})")

    print("\n== 8. DO_NOT_TRACK=1 turns everything off")
    before = sum(1 for _ in open(DEV_FILE))
    run([sys.executable, script], dict(env, DO_NOT_TRACK="1"))
    run(cli + ["flush"], env)
    after = sum(1 for _ in open(DEV_FILE))
    print(f"\nOTLP requests in the file before: {before}, after a DO_NOT_TRACK=1 run: {after}")
    if after != before:
        print("ERROR: something was sent despite DO_NOT_TRACK=1", file=sys.stderr)
        return 1

    print("\n== 9. Daily upload, the default for a library with a collector: the runs send nothing; their exact")
    print("      counts wait on this machine and leave once a day, as one report (here forced with")
    print("      USAGETRACE_UPLOAD=daily, since the demo has no collector and would otherwise be realtime)")
    daily = dict(env, USAGETRACE_UPLOAD="daily")
    for _ in range(3):
        run([sys.executable, script], daily)
    after_runs = sum(1 for _ in open(DEV_FILE))
    print(f"\nOTLP requests in the file after three daily runs: {after_runs} (was {after}): nothing left yet.")
    run(cli + ["status", "tinystats"], daily)
    print("\n   The next report, exactly, before anything leaves:")
    shown = json.loads(run(cli + ["preview", "tinystats", "--pending", "--json"], daily, capture=True))
    medians = [p for r in shown["requests"] for p in flatten("metrics", r)
               if p["metric"] == "usagetrace.calls" and p["attributes"].get("code.function.name") == "tinystats.median"]
    runs = [p["value"] for r in shown["requests"] for p in flatten("metrics", r) if p["metric"] == "usagetrace.runs"]
    print(f"   {shown['runs']} runs, {sum(p['value'] for p in medians)} calls of tinystats.median (3 x 1000, exact), "
          f"usagetrace.runs = {sum(runs)}, no session id; `usagetrace preview tinystats --pending` prints it all.")
    run(cli + ["flush", "tinystats"], daily)
    print(f"\nOTLP requests in the file now: {sum(1 for _ in open(DEV_FILE))}: one report (spans and counts).")
    report = os.path.join(DEMO, "report.html")
    print("\n== 10. The report as a web page")
    try:
        run(cli + ["report", DEV_FILE, "--package", "tinystats", "--k", "1", "--format", "html", "--output", report], env)
        print(f"\nOpen it: {report}")
    except subprocess.CalledProcessError as exc:
        print(f"(report unavailable: exit {exc.returncode}; it needs `pip install 'usagetrace[report]'`)")
    print(NEXT_STEPS)
    print(f"Demo complete. Files are under {DEMO}.")
    return 0


NEXT_STEPS = """
== Next: your own package, your own report (no Docker; see the README's "See your own data")

 1. Add usagetrace to your package's dependencies, and at the top of mypkg/__init__.py:

        import usagetrace
        usagetrace.instrument(__name__, endpoint="https://telemetry.example.org", consent="opt-in")

 2. In one terminal, a collector on this machine with the same rules as the bundled one:

        usagetrace collect --dir usagetrace-data

 3. In another, use your package with consent, sending to it:

        MYPKG_TELEMETRY=1 USAGETRACE_UPLOAD=realtime OTEL_EXPORTER_OTLP_ENDPOINT=http://127.0.0.1:4318 python -c "import mypkg; ..."

 4. Your report:

        usagetrace report usagetrace-data --package mypkg --k 1
"""


if __name__ == "__main__":
    sys.exit(main())
