"""Benchmark the embedded analytics engine on 1,000,000 synthetic spans.

Generates OTLP JSON lines (spans plus matching delta counters) into a
temporary directory (deleted afterwards, never committed), loads them once into
DuckDB, times every standard question on a fresh :class:`Analytics` (no cached
results) and the full report render, and prints a Markdown table.

    .venv/bin/python benchmarks/bench_analytics.py [--spans 1000000] [--keep DIR]
"""

from __future__ import annotations

import argparse
import os
import platform
import random
import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from usagetrace._internal.analytics.core import Analytics, build_report
from usagetrace._internal.analytics.duckdb_engine import DuckDBEngine
from usagetrace._internal.analytics.render import render

DAY_NS = 86400 * 10**9
T0 = 1_760_000_000 * 10**9


def _kv(k: str, v: str) -> str:
    return '{"key":"%s","value":{"stringValue":"%s"}}' % (k, v)


def generate(directory: Path, n_spans: int, seed: int = 1) -> tuple[int, int, int]:
    """Write about ``n_spans`` spans and their counters; return (spans, points, lines)."""
    rng = random.Random(seed)
    n_installs, days = 3000, 90
    fns = [f"bigpkg.mod{m}.{'Cls%d.' % c if c else ''}func{f}" for m in range(8) for c in range(3) for f in range(3)]
    versions = ["1.0.0", "1.1.0", "1.2.0", "2.0.0", "2.1.0"]
    pys, oss = ["3.9", "3.10", "3.11", "3.12", "3.13"], [("linux", "amd64"), ("darwin", "arm64"), ("windows", "amd64")]
    ctxs = ["script", "notebook", "interactive", "ci"]
    spans_written = points_written = lines = 0
    fh = open(directory / "usage.jsonl", "w", encoding="utf-8")  # noqa: SIM115
    part = 0
    sid = 0
    while spans_written < n_spans:
        inst = rng.randrange(n_installs)
        day = rng.randrange(days)
        ver = versions[min(len(versions) - 1, (day + inst % 30) // 20)]
        os_, arch = oss[inst % 3]
        ctx = ctxs[inst % 4]
        res = ('{"attributes":[' + ",".join([
            _kv("service.name", "bigpkg"), _kv("service.version", ver),
            _kv("usagetrace.install.id", f"inst-{inst:06d}"), _kv("usagetrace.session.id", f"s{sid}"),
            _kv("process.runtime.version", pys[inst % 5]), _kv("os.type", os_), _kv("host.arch", arch),
            _kv("usagetrace.run.context", ctx)])
            + ',{"key":"usagetrace.ci","value":{"boolValue":%s}}]}' % ("true" if ctx == "ci" else "false"))
        sid += 1
        base = T0 + day * DAY_NS + rng.randrange(0, DAY_NS // 2)
        used = rng.sample(fns, rng.randrange(2, 10))
        spans, points, err_points = [], [], []
        for fn in used:
            calls = rng.randrange(1, 200)
            errors = calls // 20 if rng.random() < 0.2 else 0
            mod = fn.split(".")[0] + "." + fn.split(".")[1]
            for j in range(min(3, calls) + (1 if errors else 0)):
                err = errors and j == min(3, calls)
                st = base + j * 10**9
                attrs = [_kv("code.function.name", fn), _kv("usagetrace.module", mod)]
                extra = ""
                if err:
                    attrs += [_kv("error.type", "ValueError"), _kv("usagetrace.exception.signature", "sig" + fn[-1])]
                    extra = (',"events":[{"name":"exception","timeUnixNano":"%d","attributes":[%s,%s]}],'
                             '"status":{"code":2}') % (st, _kv("exception.type", "ValueError"),
                                                       _kv("exception.stacktrace", mod + ":f:1"))
                spans.append('{"traceId":"%032x","spanId":"%016x","name":"%s","kind":1,"startTimeUnixNano":"%d",'
                             '"endTimeUnixNano":"%d","attributes":[%s]%s}'
                             % (rng.getrandbits(64), rng.getrandbits(32), fn, st, st + rng.randrange(10**5, 10**8),
                                ",".join(attrs), extra))
            if errors:
                err_points.append('{"attributes":[%s,%s],"startTimeUnixNano":"%d","timeUnixNano":"%d","asInt":"%d"}'
                                  % (_kv("code.function.name", fn), _kv("error.type", "ValueError"), base,
                                     base + 60 * 10**9, errors))
            for outcome, n in (("ok", calls - errors), ("error", errors)):
                if n:
                    points.append('{"attributes":[%s,%s],"startTimeUnixNano":"%d","timeUnixNano":"%d","asInt":"%d"}'
                                  % (_kv("code.function.name", fn), _kv("usagetrace.outcome", outcome), base,
                                     base + 60 * 10**9, n))
        if rng.random() < 0.05:
            st = base + 10**9
            spans.append('{"traceId":"%032x","spanId":"%016x","name":"usagetrace.command","kind":1,'
                         '"startTimeUnixNano":"%d","endTimeUnixNano":"%d","attributes":[%s,%s]}'
                         % (rng.getrandbits(64), rng.getrandbits(32), st, st + rng.randrange(10**7, 10**10),
                            _kv("usagetrace.command.name", rng.choice(["big run", "big init"])),
                            '{"key":"process.exit.code","value":{"intValue":"%d"}}' % rng.choice([0, 0, 0, 1])))
        fh.write('{"resourceSpans":[{"resource":%s,"scopeSpans":[{"scope":{"name":"usagetrace"},"spans":[%s]}]}]}\n'
                 % (res, ",".join(spans)))
        fh.write('{"resourceMetrics":[{"resource":%s,"scopeMetrics":[{"scope":{"name":"usagetrace"},"metrics":['
                 '{"name":"usagetrace.calls","unit":"{call}","sum":{"dataPoints":[%s],"aggregationTemporality":1,'
                 '"isMonotonic":true}}%s]}]}]}\n'
                 % (res, ",".join(points), (',{"name":"usagetrace.errors","unit":"{error}","sum":{"dataPoints":[%s],'
                                            '"aggregationTemporality":1,"isMonotonic":true}}' % ",".join(err_points))
                    if err_points else ""))
        spans_written += len(spans)
        points_written += len(points) + len(err_points)
        lines += 2
        if lines % 40000 == 0:  # rotate files like the collector does
            fh.close()
            part += 1
            fh = open(directory / f"usage-{part:04d}.jsonl", "w", encoding="utf-8")  # noqa: SIM115
    fh.close()
    return spans_written, points_written, lines


QUESTIONS = [
    ("overview", {}), ("feature_usage", {}), ("rollup", {"level": "module"}), ("rollup", {"level": "class"}),
    ("adoption", {"interval": "day"}), ("adoption", {"interval": "week"}), ("python_versions", {}),
    ("platforms", {}), ("run_contexts", {}), ("error_rates", {}), ("exceptions", {}), ("signatures", {}),
    ("crashes", {}), ("commands", {}), ("command_measures", {}), ("events", {}), ("page_views", {}),
    ("callbacks", {}), ("user_count", {}), ("dropped", {}),
]


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--spans", type=int, default=1_000_000)
    ap.add_argument("--keep", help="keep the generated data in this directory")
    args = ap.parse_args()
    tmp = Path(args.keep or tempfile.mkdtemp(prefix="usagetrace-bench-"))
    tmp.mkdir(parents=True, exist_ok=True)
    try:
        t = time.perf_counter()
        n_spans, n_points, n_lines = generate(tmp, args.spans)
        gen_s = time.perf_counter() - t
        size = sum(f.stat().st_size for f in tmp.iterdir())
        t = time.perf_counter()
        engine = DuckDBEngine.from_path(tmp)
        load_s = time.perf_counter() - t
        rows = []
        for name, params in QUESTIONS:
            a = Analytics(engine, package="bigpkg")
            t = time.perf_counter()
            res = getattr(a, name)(**params)
            dt = time.perf_counter() - t
            label = name + ("(" + ", ".join(f"{v}" for v in params.values()) + ")" if params else "")
            rows.append((label, dt, len(res) if isinstance(res, list) else 1))
        engine.close()
        # The report below runs on the warm cached engine; cache_dir is removed at the very end.
        cache_dir = Path(tempfile.mkdtemp(prefix="usagetrace-bench-cache-"))
        cache = cache_dir / "report.duckdb"
        t = time.perf_counter()
        DuckDBEngine.from_path(tmp, cache=cache).close()
        cold_s = time.perf_counter() - t
        t = time.perf_counter()
        engine = DuckDBEngine.from_path(tmp, cache=cache)
        warm_s = time.perf_counter() - t
        cache_mb = cache.stat().st_size / 1e6
        a = Analytics(engine, package="bigpkg")
        t = time.perf_counter()
        report = build_report(a, source=str(tmp))
        build_s = time.perf_counter() - t
        t = time.perf_counter()
        html = render(report, "html")
        table = render(report, "table")
        render_s = time.perf_counter() - t
        print(f"Machine: {os.cpu_count()} cores, Python {platform.python_version()}, "
              f"DuckDB {__import__('duckdb').__version__}\n")
        print(f"Data: {n_spans:,} spans + {n_points:,} metric points in {n_lines:,} OTLP JSON lines, "
              f"{size / 1e6:,.0f} MB uncompressed (generated in {gen_s:.1f} s)\n")
        print("| step | time | rows |")
        print("|---|---:|---:|")
        print(f"| load into DuckDB (once per run: read_json + flatten) | {load_s:.2f} s | "
              f"{engine.counts()['spans']:,} spans / {engine.counts()['points']:,} points |")
        print(f"| load with `--cache`, first run (read_json + flatten + write cache) | {cold_s:.2f} s | "
              f"cache file {cache_mb:,.0f} MB |")
        print(f"| load with `--cache`, next run, no input changed (the CLI default) | {warm_s:.2f} s | "
              f"{engine.counts()['spans']:,} spans |")
        for label, dt, n in rows:
            print(f"| `{label}` | {dt * 1000:.0f} ms | {n} |")
        print(f"| full report: all questions (`build_report`) | {build_s:.2f} s | {len(report.sections)} sections |")
        print(f"| render html + table | {render_s * 1000:.0f} ms | {len(html) // 1024} KiB html, "
              f"{len(table) // 1024} KiB text |")
        slow = [r for r in rows if r[1] >= 1.0]
        print(f"\nslowest question: {max(rows, key=lambda r: r[1])[0]} "
              f"({max(r[1] for r in rows) * 1000:.0f} ms); questions >= 1 s: {len(slow)}")
        return 0 if not slow else 1
    finally:
        if not args.keep:
            shutil.rmtree(tmp, ignore_errors=True)
        if "cache_dir" in locals():
            shutil.rmtree(cache_dir, ignore_errors=True)


if __name__ == "__main__":
    raise SystemExit(main())
