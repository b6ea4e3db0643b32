"""The ``usagetrace`` command: see, choose and verify what is sent.

Exit codes: 0 success, 1 the action failed (e.g. a file could not be written),
2 bad usage; ``preview`` exits with the previewed command's status. ``--json``
gives machine-readable output where it makes sense.
"""

from __future__ import annotations

import argparse
import json
import os
import sys

from . import allowlist, consent, paths, resource, state

PROG = "usagetrace"


def _print_json(data) -> None:
    print(json.dumps(data, indent=2, sort_keys=True))


def _validate_package(name: str) -> str:
    top = name.split(".", 1)[0]
    if not top.isidentifier():
        raise argparse.ArgumentTypeError(f"{name!r} is not a Python package name (e.g. mypkg)")
    return top


# ---------------------------------------------------------------- discovery


def known_packages() -> dict[str, dict]:
    """Return instrumented packages known on this machine, with what is recorded about each.

    Sources: installed distributions that depend on usagetrace, packages seen
    with telemetry on (state file), packages with an install id, and packages
    named in the consent file.
    """
    found: dict[str, dict] = {}
    try:
        from importlib import metadata

        for dist in metadata.distributions():
            requires = dist.requires or []
            if any(r.split(";")[0].strip().lower().startswith("usagetrace") for r in requires):
                top = (dist.read_text("top_level.txt") or "").split()
                names = top or [dist.metadata["Name"].replace("-", "_").lower()]
                for name in names:
                    found.setdefault(name, {})["distribution"] = dist.metadata["Name"]
    except Exception:
        pass
    for name, settings in state.load().get("packages", {}).items():
        if isinstance(settings, dict):
            found.setdefault(name, {}).update(settings)
    try:
        for entry in os.listdir(paths.ids_dir()):
            if entry.endswith(".id"):
                found.setdefault(entry[:-3], {})
    except OSError:
        pass
    for name in consent.read_choices(paths.consent_file()) or {}:
        if name != consent.ALL:
            found.setdefault(name, {})
    return dict(sorted(found.items()))


def _stored_install_id(package: str) -> str | None:
    try:
        with open(os.path.join(paths.ids_dir(), f"{package}.id"), encoding="ascii") as fh:
            return fh.read(64).strip() or None
    except OSError:
        return None


def _status_row(package: str, info: dict) -> dict:
    from . import config

    policy = info.get("policy", consent.OPT_IN)
    decision = consent.resolve(package, policy, ci=info.get("ci", "off"), under_pytest=False, notice_shown=True)
    traces, metrics = (config.resolve(signal, info.get("endpoint"), package) for signal in config.SIGNALS)
    endpoint = traces.describe()
    if (metrics.kind, metrics.protocol) != (traces.kind, traces.protocol):  # e.g. ..._TRACES_PROTOCOL=grpc only
        endpoint = f"traces: {endpoint}; metrics: {metrics.describe()}"
    return {
        "package": package,
        "enabled": decision.enabled,
        "state": decision.state,
        "decided_by": decision.source,
        "policy": policy if "policy" in info else "unknown (not yet run with telemetry on)",
        "endpoint": endpoint,
        "install_id": _stored_install_id(package),
    }


# ----------------------------------------------------------------- commands


def cmd_status(args) -> int:
    packages = known_packages()
    if args.package:
        packages = {args.package: packages.get(args.package, {})}
    rows = [_status_row(name, info) for name, info in packages.items()]
    from . import env

    switch = env.do_not_track()
    if args.json:
        _print_json({"global_switch": switch, "consent_file": paths.consent_file(), "packages": rows})
        return 0
    print(f"consent file: {paths.consent_file()}")
    if switch:
        print(f"{switch} is set: telemetry is off for every package.")
    if not rows:
        print("No usagetrace-instrumented packages known on this machine yet.")
        return 0
    for row in rows:
        print(f"\n{row['package']}: {'ON' if row['enabled'] else 'off'}")
        print(f"  your choice:  {row['state']} (decided by {row['decided_by']})")
        print(f"  policy:       {row['policy']}")
        print(f"  sends to:     {row['endpoint']}")
        print(f"  install id:   {row['install_id'] or '(none yet)'}")
    return 0


def _set_choice(args, granted: bool | None) -> int:
    target = consent.ALL if args.all else args.package
    if target is None:
        print(f"{PROG}: name a package or use --all", file=sys.stderr)
        return 2
    try:
        path = consent.write_choice(target, granted)
    except OSError as exc:
        print(f"{PROG}: cannot write {paths.consent_file()}: {exc.strerror or exc}", file=sys.stderr)
        return 1
    what = "every package" if target == consent.ALL else target
    verb = {True: "enabled", False: "disabled", None: "reset to the package's default"}[granted]
    if args.json:
        _print_json({"package": target, "granted": granted, "file": path})
    else:
        print(f"Telemetry {verb} for {what} (saved in {path}).")
        if granted is False:
            print("Running processes stop sending within a few seconds.")
        from . import env

        switch = env.do_not_track()
        if granted and switch:
            print(f"Note: {switch} is set in this environment and still turns everything off.")
    return 0


def cmd_enable(args) -> int:
    return _set_choice(args, True)


def cmd_disable(args) -> int:
    return _set_choice(args, False)


def cmd_reset(args) -> int:
    return _set_choice(args, None)


def cmd_reset_id(args) -> int:
    try:
        value = resource.reset_install_id(args.package)
    except OSError as exc:
        print(f"{PROG}: cannot write a new install id: {exc.strerror or exc}", file=sys.stderr)
        return 1
    if args.json:
        _print_json({"package": args.package, "install_id": value})
    else:
        print(f"New install id for {args.package}: {value}")
    return 0


def cmd_inventory(args) -> int:
    from . import inventory

    profile = None if args.all else inventory.scan(args.package)
    account = inventory.callables(args.package) if args.callables and args.package else None
    if args.json:
        data = inventory.to_json(profile)
        if account is not None:
            data["callables"] = account
        _print_json(data)
    else:
        sys.stdout.write(inventory.markdown(profile))
        if account is not None:
            sys.stdout.write(inventory.callables_markdown(args.package, account))
        elif args.package:
            sys.stdout.write(f"\n`usagetrace inventory {args.package} --callables` lists which public callables "
                             "are counted and which are left unwrapped, and why.\n")
    return 0 if account is None or "error" not in account else 1


def cmd_preview(args) -> int:
    import subprocess
    import tempfile

    command = list(args.command_line)
    if not command:
        command = [sys.executable, "-c", f"import {args.package}"]
    with tempfile.TemporaryDirectory(prefix="usagetrace-preview-") as tmp:
        out = os.path.join(tmp, "preview.jsonl")
        child_env = {
            k: v
            for k, v in os.environ.items()
            if not k.startswith("OTEL_EXPORTER_OTLP") and k not in ("DO_NOT_TRACK", "OTEL_SDK_DISABLED")
        }
        child_env["USAGETRACE_PREVIEW_FILE"] = out
        from . import env

        child_env[env.package_var(args.package)] = "1"
        sys.stdout.flush()  # whatever we wrote comes before the command's own output
        try:
            completed = subprocess.run(command, env=child_env, timeout=args.timeout)
        except FileNotFoundError:
            print(f"{PROG}: command not found: {command[0]}", file=sys.stderr)
            return 127
        except PermissionError:
            print(f"{PROG}: command not executable: {command[0]}", file=sys.stderr)
            return 126
        except subprocess.TimeoutExpired:
            print(f"{PROG}: command did not finish within {args.timeout} s", file=sys.stderr)
            return 124
        requests = []
        try:
            with open(out, encoding="utf-8") as fh:
                requests = [json.loads(line) for line in fh if line.strip()]
        except FileNotFoundError:
            pass
    requests = [r for r in requests if _service(r) == args.package]
    # The command's exit status, as a shell reports it (killed by signal n: 128 + n).
    status = completed.returncode if completed.returncode >= 0 else 128 - completed.returncode
    if args.json:
        _print_json({"package": args.package, "exit_code": completed.returncode, "requests": requests})
        return status
    # One stream (stdout) for the header and the body, so they stay in order when piped together.
    print(f"\n--- what {args.package} would have sent (nothing left this machine) ---")
    if not requests:
        print(f"Nothing: {args.package} recorded no usage during this command.")
    else:
        sys.stdout.write(render_preview(requests))
        print(f"\n({len(requests)} OTLP request(s); `--json` prints them exactly as sent.)")
    if status:
        print(f"(the command exited with status {status})")
    return status


def render_preview(requests: list[dict]) -> str:
    """Render decoded OTLP/JSON requests as readable text: resource once, then spans and counts."""
    from ..testing import flatten

    lines: list[str] = []
    spans = [s for r in requests if "resourceSpans" in r for s in flatten("traces", r)]
    points = [p for r in requests if "resourceMetrics" in r for p in flatten("metrics", r)]
    resource_attrs = (spans or points)[0]["resource"] if (spans or points) else {}
    lines.append("Resource (sent with everything):")
    lines += [f"  {k} = {v!r}" for k, v in resource_attrs.items()]
    lines.append(f"\nSpans ({len(spans)}):")
    for span in spans:
        duration_us = (span["end"] - span["start"]) / 1000
        status = " ERROR" if span["status"] == 2 else ""
        lines.append(f"  {span['name']}  {duration_us:.0f} us{status}")
        lines += [f"      {k} = {v!r}" for k, v in span["attributes"].items()]
        for event in span["events"]:
            lines.append(f"      event {event['name']}: {event['attributes']!r}")
    lines.append(f"\nCounters ({len(points)} points, delta sums):")
    for point in points:
        attrs = ", ".join(f"{k}={v}" for k, v in point["attributes"].items())
        lines.append(f"  {point['metric']} {{{attrs}}} = {point['value']}")
    return "\n".join(lines) + "\n"


def _service(request: dict) -> str | None:
    for key in ("resourceSpans", "resourceMetrics"):
        for rs in request.get(key, []):
            for kv in rs.get("resource", {}).get("attributes", []):
                if kv.get("key") == "service.name":
                    return kv.get("value", {}).get("stringValue")
    return None


def cmd_flush(args) -> int:
    from . import spool

    delivered = spool.deliver(deadline=None)
    if args.json:
        _print_json({"delivered_files": delivered})
    else:
        print(f"Delivered {delivered} spooled batch(es).")
    return 0


def cmd_report(args) -> int:
    from .analytics import cli as report_cli

    return report_cli.run(args)


# ------------------------------------------------------------------- parser


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=PROG,
        description="See, choose and verify the anonymous usage telemetry of usagetrace-instrumented packages.",
        epilog="Turn everything off with DO_NOT_TRACK=1. Docs: the usagetrace README.",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    def add(name, func, help_text):
        p = sub.add_parser(name, help=help_text, description=help_text)
        p.set_defaults(func=func)
        p.add_argument("--json", action="store_true", help="machine-readable output")
        return p

    p = add("status", cmd_status, "Show every known instrumented package, its consent state and why.")
    p.add_argument("package", nargs="?", type=_validate_package, help="only this package")
    for name, func, verb in (
        ("enable", cmd_enable, "Allow"),
        ("disable", cmd_disable, "Stop"),
        ("reset", cmd_reset, "Forget your choice for"),
    ):
        p = add(name, func, f"{verb} anonymous usage telemetry of a package (or --all).")
        group = p.add_mutually_exclusive_group(required=True)
        group.add_argument("package", nargs="?", type=_validate_package, help="package import name")
        group.add_argument("--all", action="store_true", help="every package")
    p = add("reset-id", cmd_reset_id, "Replace a package's anonymous install id with a new random one.")
    p.add_argument("package", type=_validate_package)
    p = add(
        "preview",
        cmd_preview,
        "Run a command (default: import the package) with telemetry captured locally, and print "
        "exactly what would have been sent. Nothing leaves the machine.",
    )
    p.add_argument("package", type=_validate_package)
    p.set_defaults(command_line=[])
    p.epilog = (
        "Usage: usagetrace preview PACKAGE [--json] -- COMMAND [ARGS...]. Exits with the command's "
        "exit status (128+N if killed by signal N; 127 not found, 126 not executable, 124 timed out)."
    )
    p.add_argument("--timeout", type=float, default=600.0, help="seconds before giving up (default 600)")
    p = add(
        "inventory",
        cmd_inventory,
        "Print what a package can send, as a Markdown table for privacy docs: found by reading its source "
        "(never importing it) for the usagetrace integrations and declared measurements it uses.",
    )
    group = p.add_mutually_exclusive_group(required=True)
    group.add_argument("package", nargs="?", type=_validate_package, help="package import name")
    group.add_argument("--all", action="store_true", help="everything usagetrace can send, for any package")
    p.add_argument("--callables", action="store_true",
                   help="also list which public callables are counted and which are left unwrapped, and why "
                        "(imports the package in a child process, telemetry kept local)")
    add("flush", cmd_flush, "Send telemetry waiting in the spool now (it is otherwise sent in the background).")
    from .analytics import cli as report_cli

    p = sub.add_parser(
        "report",
        help="Answer usage questions from collected data (needs `pip install 'usagetrace[report]'`).",
        description=report_cli.DESCRIPTION,
    )
    report_cli.add_arguments(p)
    p.set_defaults(func=cmd_report)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run the command line; return the exit code."""
    parser = build_parser()
    argv = list(sys.argv[1:] if argv is None else argv)
    tail: list[str] = []
    if argv and argv[0] == "preview" and "--" in argv:
        # Everything after `--` is the command to preview, options included.
        cut = argv.index("--")
        argv, tail = argv[:cut], argv[cut + 1 :]
    args = parser.parse_args(argv)
    if tail:
        args.command_line = tail
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        return int(args.func(args) or 0)
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        return 0
