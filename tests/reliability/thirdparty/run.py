"""Run popular third-party libraries' own test suites with and without usagetrace; compare.

For each library (pinned version): download the sdist with pip, install it with
``pip install --no-deps --target``, run its own tests from the sdist twice with
the same Python (plain, then instrumented by usagetrace with consent granted and
exporting to a local :class:`usagetrace.testing.OTLPReceiver`), and compare
the per-test outcomes (JUnit XML) and the summary counts, which must be equal.

Usage: ``python tests/reliability/thirdparty/run.py [--workdir DIR] [NAME ...]``.
Exit status 0 when every comparison is identical. Needs network access to the
package index (pip) and pytest + hypothesis in the running environment.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tarfile
import tempfile
import xml.etree.ElementTree as ET

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.abspath(os.path.join(HERE, "..", "..", ".."))

#: name -> (pinned version, import packages to instrument, tests directory in the sdist)
LIBS = {
    "attrs": ("26.1.0", ["attr", "attrs"], "tests"),
    "more-itertools": ("11.2.1", ["more_itertools"], "tests"),
    "boltons": ("26.2.0", ["boltons"], "tests"),
}
RUN_TIMEOUT = 900


def _pip(*args: str) -> None:
    subprocess.run([sys.executable, "-m", "pip", *args, "-q", "--disable-pip-version-check"], check=True,
                   timeout=600)


def prepare(name: str, workdir: str) -> tuple[str, str]:
    """Download and install one library; return (source tree, install target)."""
    version = LIBS[name][0]
    dl = os.path.join(workdir, "sdists")
    os.makedirs(dl, exist_ok=True)
    norm = name.replace("-", "_")
    sdist = [f for f in os.listdir(dl) if f.lower().startswith(f"{norm}-{version}".lower())
             and f.endswith(".tar.gz")]
    if not sdist:
        _pip("download", "--no-binary", ":all:", "--no-deps", f"{name}=={version}", "-d", dl)
        sdist = [f for f in os.listdir(dl) if f.lower().startswith(f"{norm}-{version}".lower())
                 and f.endswith(".tar.gz")]
    path = os.path.join(dl, sdist[0])
    src_root = os.path.join(workdir, "src")
    with tarfile.open(path) as tar:
        top = tar.getnames()[0].split("/")[0]
        tree = os.path.join(src_root, top)
        if not os.path.isdir(tree):
            tar.extractall(src_root, filter="data") if hasattr(tarfile, "data_filter") else tar.extractall(src_root)
    target = os.path.join(workdir, "site", name)
    if not os.path.isdir(target):
        _pip("install", "--no-deps", "--no-compile", "--target", target, path)
    return tree, target


_SUMMARY = re.compile(r"(\d+) (passed|failed|skipped|xfailed|xpassed|errors?|warnings?|subtests passed|"
                      r"subtests failed|subtests skipped)")


def _summary(output: str) -> dict:
    lines = [ln for ln in output.splitlines() if re.search(r"\d+ (passed|failed|error)", ln)]
    counts = {}
    if lines:
        for number, kind in _SUMMARY.findall(lines[-1]):
            if not kind.startswith("warning"):
                counts[kind.rstrip("s") if kind in ("errors",) else kind] = int(number)
    return counts


def _outcomes(junit: str) -> dict:
    out = {}
    for case in ET.parse(junit).getroot().iter("testcase"):
        key = f"{case.get('classname')}::{case.get('name')}"
        tags = {child.tag for child in case}
        outcome = "failed" if "failure" in tags else "error" if "error" in tags else \
            "skipped" if "skipped" in tags else "passed"
        # a test can appear twice (teardown error): keep the worst
        if out.get(key) in ("failed", "error"):
            continue
        out[key] = outcome
    return out


def run_suite(name: str, tree: str, target: str, workdir: str, instrument: bool) -> dict:
    """Run the library's own tests once; return summary counts, per-test outcomes and the plugin report."""
    from usagetrace.testing import OTLPReceiver

    packages = LIBS[name][1]
    tag = "instrumented" if instrument else "plain"
    junit = os.path.join(workdir, f"{name}-{tag}.xml")
    report = os.path.join(workdir, f"{name}-{tag}.json")
    home = tempfile.mkdtemp(prefix=f"ut-home-{name}-", dir=workdir)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OTEL_", "USAGETRACE_", "PYTEST_"))}
    env.pop("DO_NOT_TRACK", None)
    env.update(
        PYTHONPATH=os.pathsep.join([target, HERE, os.path.join(REPO, "src")]),
        USAGETRACE_HOME=home,
        USAGETRACE_EXPORT_INTERVAL="5",  # the default; see RELIABILITY.md on tracemalloc-based tests
        USAGETRACE_DETACHED_SEND="0",
        UT_TP_PACKAGES=",".join(packages),
        UT_TP_REPORT=report,
        PYTHONDONTWRITEBYTECODE="1",
    )
    receiver = OTLPReceiver().start()
    try:
        if instrument:
            env["UT_TP_INSTRUMENT"] = "1"
            env["OTEL_EXPORTER_OTLP_ENDPOINT"] = receiver.endpoint
            for pkg in packages:
                env[pkg.upper() + "_TELEMETRY"] = "1"
        cmd = [sys.executable, "-m", "pytest", LIBS[name][2], "-q", "-p", "no:cacheprovider",
               "-p", "usagetrace_tp_plugin", "-p", "no:randomly", f"--junitxml={junit}", "-o", "junit_family=xunit2"]
        proc = subprocess.run(cmd, cwd=tree, env=env, capture_output=True, text=True, timeout=RUN_TIMEOUT)
        calls = sum(p["value"] for p in receiver.points("usagetrace.calls"))
        spans = len(receiver.all_spans())
    finally:
        receiver.stop()
    plugin = {}
    if os.path.exists(report):
        with open(report) as fh:
            plugin = json.load(fh)
    return {
        "returncode": proc.returncode,
        "summary": _summary(proc.stdout),
        "outcomes": _outcomes(junit) if os.path.exists(junit) else {},
        "plugin": plugin,
        "calls_received": calls,
        "spans_received": spans,
        "tail": proc.stdout[-2000:] + proc.stderr[-2000:],
    }


def compare(name: str, workdir: str) -> dict:
    """Prepare one library and run both passes; return a result dict with ``identical``."""
    tree, target = prepare(name, workdir)
    plain = run_suite(name, tree, target, workdir, instrument=False)
    inst = run_suite(name, tree, target, workdir, instrument=True)
    differing = sorted(k for k in set(plain["outcomes"]) | set(inst["outcomes"])
                       if plain["outcomes"].get(k) != inst["outcomes"].get(k))
    return {
        "library": f"{name}=={LIBS[name][0]}",
        "plain": plain["summary"],
        "instrumented": inst["summary"],
        "tests_compared": len(plain["outcomes"]),
        "differing_tests": differing[:50],
        "identical": plain["summary"] == inst["summary"] and not differing and bool(plain["summary"]),
        "instrumentation": inst["plugin"],
        "calls_received": inst["calls_received"],
        "spans_received": inst["spans_received"],
        "plain_tail": plain["tail"] if differing or plain["summary"] != inst["summary"] else "",
        "instrumented_tail": inst["tail"] if differing or plain["summary"] != inst["summary"] else "",
    }


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("names", nargs="*", default=list(LIBS))
    parser.add_argument("--workdir", default=None)
    parser.add_argument("--keep", action="store_true")
    args = parser.parse_args(argv)
    sys.path.insert(0, os.path.join(REPO, "src"))
    workdir = args.workdir or tempfile.mkdtemp(prefix="ut-thirdparty-")
    os.makedirs(workdir, exist_ok=True)
    ok = True
    try:
        for name in args.names:
            result = compare(name, workdir)
            print(json.dumps(result, indent=1))
            ok = ok and result["identical"]
    finally:
        if not args.keep and args.workdir is None:
            shutil.rmtree(workdir, ignore_errors=True)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
