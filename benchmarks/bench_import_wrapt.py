"""Where the consented import's time goes: usagetrace's own share vs `import wrapt`, with wrapt 2.x and 1.17.

Usage: python benchmarks/bench_import_wrapt.py PYTHON_WITH_WRAPT_2 PYTHON_WITH_WRAPT_1_17 [runs]
Both interpreters import usagetrace from this checkout's src/ (PYTHONPATH), so only wrapt differs.
Every case runs in a fresh interpreter, interleaved, and the median of `runs` is printed as JSON.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CODE = "import sys, time\nt = time.perf_counter()\nimport {module}\nprint((time.perf_counter() - t) * 1e3)\n"


def run(python: str, module: str, telemetry: str, home: str) -> float:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OTEL_", "USAGETRACE_", "PYTHON"))}
    env.pop("DO_NOT_TRACK", None)
    env.update(PYTHONPATH=os.pathsep.join([os.path.join(ROOT, "src"), os.path.join(ROOT, "examples", "tinystats")]),
               TINYSTATS_TELEMETRY=telemetry, USAGETRACE_HOME=home, USAGETRACE_DETACHED_SEND="0",
               OTEL_EXPORTER_OTLP_ENDPOINT="http://127.0.0.1:9")
    out = subprocess.run([python, "-c", CODE.format(module=module)], env=env, capture_output=True, text=True,
                         check=True, timeout=60)
    return float(out.stdout.strip().splitlines()[-1])


def importtime(python: str, home: str, runs: int) -> dict:
    """Cumulative ms (min of runs) of what `import wrapt` pulls in, from `python -X importtime`."""
    best: dict[str, float] = {}
    for _ in range(runs):
        err = subprocess.run([python, "-X", "importtime", "-c", "import wrapt"], capture_output=True, text=True,
                             env={"PATH": os.environ.get("PATH", ""), "HOME": home}, check=True).stderr
        for line in err.splitlines():
            if not line.startswith("import time:") or "|" not in line or "self [us]" in line:
                continue
            _, cumulative, name = line[len("import time:"):].split("|")
            name = name.strip()
            if name in ("wrapt", "asyncio", "importlib.metadata", "inspect"):
                best[name] = min(best.get(name, 1e9), int(cumulative) / 1e3)
    return {k: round(v, 1) for k, v in best.items()}


def main() -> None:
    py2, py117 = sys.argv[1], sys.argv[2]
    runs = int(sys.argv[3]) if len(sys.argv) > 3 else 15
    cases = {
        "tinystats, off (TINYSTATS_TELEMETRY=0)": (py2, "tinystats", "0"),
        "tinystats, consented, wrapt 2.x": (py2, "tinystats", "1"),
        "tinystats, consented, wrapt 1.17": (py117, "tinystats", "1"),
        "`import wrapt` alone, wrapt 2.x": (py2, "wrapt", "0"),
        "`import wrapt` alone, wrapt 1.17": (py117, "wrapt", "0"),
    }
    times: dict[str, list[float]] = {name: [] for name in cases}
    with tempfile.TemporaryDirectory() as home:
        for python, module, telemetry in cases.values():  # warm-up: bytecode caches
            run(python, module, telemetry, home)
        for _ in range(runs):
            for name, (python, module, telemetry) in cases.items():
                times[name].append(run(python, module, telemetry, home))
        parts = {label: importtime(python, home, 5) for label, python in (("2.x", py2), ("1.17", py117))}
    versions = {label: subprocess.run([python, "-c", "import wrapt; print(wrapt.__version__)"], capture_output=True,
                                      text=True).stdout.strip() for label, python in (("2.x", py2), ("1.17", py117))}
    med = {k: statistics.median(v) for k, v in times.items()}
    off = med["tinystats, off (TINYSTATS_TELEMETRY=0)"]
    out = ["## Consented import: usagetrace's share and wrapt's", "",
           f"`benchmarks/bench_import_wrapt.py`: medians of {runs} fresh interpreters per case, interleaved; the same "
           f"usagetrace source (this checkout's `src/`) under two environments that differ only in wrapt "
           f"({versions['2.x']} and {versions['1.17']}; `wrapt>=1.16` allows both, the host's other dependencies "
           "decide which is installed).", "",
           "| case | ms (median) | added vs off |", "|---|---:|---:|"]
    for name, value in med.items():
        added = f"+{value - off:.1f}" if name.startswith("tinystats, consented") else ""
        out.append(f"| {name} | {value:.1f} | {added} |")
    p2, p1 = parts["2.x"], parts["1.17"]

    def of(p: dict, name: str) -> str:
        return f"{p[name]:.1f} ms" if name in p else "not imported"

    out += ["", f"What `import wrapt` pulls in (`-X importtime`, cumulative, best of 5, in a bare interpreter): wrapt "
            f"{versions['2.x']} {of(p2, 'wrapt')}, of which asyncio {of(p2, 'asyncio')} (imported by "
            f"`wrapt.synchronization`/`wrapt.caching`), importlib.metadata {of(p2, 'importlib.metadata')} (imported "
            f"by `wrapt.importer`) and inspect {of(p2, 'inspect')}; wrapt {versions['1.17']} {of(p1, 'wrapt')} "
            f"(asyncio {of(p1, 'asyncio')}, importlib.metadata {of(p1, 'importlib.metadata')}, inspect "
            f"{of(p1, 'inspect')}).", ""]
    print("\n".join(out))


if __name__ == "__main__":
    main()
