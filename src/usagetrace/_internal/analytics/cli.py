"""``usagetrace report``: answers about a package's usage, from files or ClickHouse.

One argument definition (:func:`add_arguments`) serves both the ``report``
subcommand of the ``usagetrace`` command and :func:`build_parser` (this
module run on its own); :func:`run` takes the parsed arguments and returns an
exit status (0 ok, 1 no usable data or a runtime problem, 2 bad usage).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from . import kanon
from .render import FORMATS, render, terminal_safe

__all__ = ["DESCRIPTION", "add_arguments", "build_parser", "main", "run"]

DESCRIPTION = (
    "Summarize collected usage telemetry: feature usage, adoption, reliability, commands, events and "
    "pages, with k-anonymity applied to every row."
)


def add_arguments(p: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """Add the arguments of ``usagetrace report`` to ``p`` (options go before or after the source)."""
    p.add_argument("source", metavar="PATH|clickhouse://user:pass@host:port/db",
                   help="an OTLP JSON-lines file or directory (.json/.jsonl, rotated, .zst), or a ClickHouse URL")
    p.add_argument("--package", help="the instrumented package (service.name); required if the data holds several")
    p.add_argument("--since", help="only data from this window: 30d, 12h, 2w or an ISO date")
    p.add_argument("--format", default="table", help=f"output format: {', '.join(FORMATS)} (default: table)")
    p.add_argument("--output", "-o", help="write to this file instead of standard output")
    p.add_argument("--k", type=int, default=kanon.DEFAULT_K,
                   help=f"k-anonymity threshold: rows describing fewer installs are folded or left out "
                        f"(default {kanon.DEFAULT_K}; --k 1 shows every row, e.g. your own development data)")
    p.add_argument("--interval", choices=("auto", "day", "week"), default="auto", help="adoption curve resolution")
    p.add_argument("--cache", metavar="FILE",
                   help="DuckDB file keeping loaded data between runs; only new or changed input files are "
                        "read again (default: one per source in the per-user cache dir)")
    p.add_argument("--no-cache", action="store_true", help="read every input file, keep nothing")
    return p


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of ``usagetrace report`` on its own."""
    return add_arguments(argparse.ArgumentParser(prog="usagetrace report", description=DESCRIPTION))


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``usagetrace report`` with ``argv`` (the arguments after ``report``); return the exit status."""
    return run(build_parser().parse_args(list(argv) if argv is not None else None))


def run(args: argparse.Namespace) -> int:
    """Run ``usagetrace report`` with parsed arguments; return the exit status."""
    err = sys.stderr
    if args.format not in FORMATS:
        print(f"usagetrace report: unknown format {args.format!r}; choose one of: {', '.join(FORMATS)}", file=err)
        return 2
    if args.k < 1:
        print("usagetrace report: --k must be at least 1", file=err)
        return 2
    from .core import Analytics, AnalyticsError, NoSuchPackage, build_report

    try:
        if args.source.startswith(("clickhouse://", "clickhouses://")):
            from .clickhouse_engine import ClickHouseEngine

            engine = ClickHouseEngine.from_url(args.source)
            shown = args.source.split("@", 1)[-1]  # never echo the password
        else:
            from .duckdb_engine import DuckDBEngine, default_cache_path

            cache = None if args.no_cache else (args.cache or default_cache_path(args.source))
            engine = DuckDBEngine.from_path(args.source, cache=cache)
            shown = args.source
        for w in engine.warnings:
            print(f"usagetrace report: warning: {terminal_safe(w)}", file=err)  # names files and bad lines
        analytics = Analytics(engine, package=args.package, since=args.since, k=args.k)
        report = build_report(analytics, interval=args.interval, source=shown)
        text = render(report, args.format)
    except NoSuchPackage as exc:
        print(f"usagetrace report: {exc}", file=err)
        return 1
    except (FileNotFoundError, AnalyticsError, ValueError) as exc:
        print(f"usagetrace report: {terminal_safe(str(exc))}", file=err)
        return 2 if isinstance(exc, (AnalyticsError, ValueError)) else 1
    except RuntimeError as exc:  # missing optional dependency, engine failures
        print(f"usagetrace report: {terminal_safe(str(exc))}", file=err)
        return 1
    if args.output:
        with open(args.output, "w", encoding="utf-8") as fh:
            fh.write(text)
        print(f"usagetrace report: wrote {args.format} report to {args.output}", file=err)
    else:
        sys.stdout.write(text)
    if report.meta["points_loaded"] == 0 and report.meta["spans_loaded"] == 0:
        print("usagetrace report: no usagetrace data found in the input", file=err)
        return 1
    return 0


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
