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

from . import consent, paths, resource, state

PROG = "usagetrace"


def _print_json(data) -> None:
    print(json.dumps(data, indent=2, sort_keys=True))


def _validate_package(name: str) -> str:
    """Syntax only: an import name (``mypkg``, ``mypkg.sub``) or a distribution name (``my-pkg``)."""
    top = name.strip().split(".", 1)[0]
    if not top or not top.replace("-", "_").isidentifier():
        raise argparse.ArgumentTypeError(f"{name!r} is not a Python package name (e.g. mypkg)")
    return top


def _import_name(name: str) -> str:
    top = name.split(".", 1)[0]
    if not top.isidentifier():
        raise argparse.ArgumentTypeError(f"{name!r} is not a Python package name (e.g. mypkg)")
    return top


# ------------------------------------------------------------ checked names


def _canon(name: str) -> str:
    """What two spellings of one package share: case, ``-``/``_``/``.`` do not matter (PEP 503's rule)."""
    return name.lower().replace("-", "_").replace(".", "_")


def _import_names(dist) -> list[str]:
    """The top-level import names one installed distribution provides: top_level.txt, else its RECORD."""
    try:
        top = (dist.read_text("top_level.txt") or "").split()
        if top:
            return [t for t in top if t.isidentifier()]
        names = []
        # RECORD read as text (first column, '/'-separated): independent of importlib.metadata's path objects.
        for line in (dist.read_text("RECORD") or "").splitlines():
            parts = tuple(p for p in line.split(",", 1)[0].strip().strip('"').split("/") if p)
            if not parts or parts[0] in ("..", "__pycache__") or parts[0].endswith((".dist-info", ".egg-info")):
                continue
            name = parts[0][:-3] if len(parts) == 1 and parts[0].endswith(".py") else parts[0]
            if len(parts) == 1 and not parts[0].endswith(".py"):
                continue
            if name.isidentifier() and name not in names:
                names.append(name)
        return names
    except Exception:
        return []


def _instruments_itself(name: str) -> bool:
    """True when ``name`` is importable here (found, not imported) and its ``__init__`` uses usagetrace's instrument."""
    try:
        from importlib.util import find_spec

        spec = find_spec(name)
        origin = spec.origin if spec is not None else None
        if not origin or not origin.endswith(".py"):
            return False
        with open(origin, encoding="utf-8", errors="replace") as fh:
            text = fh.read(1 << 20)
        return "usagetrace" in text and "instrument" in text
    except Exception:
        return False


def resolve_name(name: str, *, force: bool = False, known: dict | None = None) -> tuple[str | None, str]:
    """Return ``(the package's import name, "")``, or ``(None, why and the closest known names)``.

    Known: what ``status`` lists (installed distributions that use usagetrace, packages seen here,
    the consent file), and a package importable here whose source uses usagetrace. A distribution
    name resolves to its import name (``scikit-learn`` -> ``sklearn``), read from that one
    distribution's top_level.txt or RECORD. ``force`` accepts a name usagetrace knows nothing about
    (a choice stored before the package is installed).
    """
    known = known_packages() if known is None else known
    by_canon = {_canon(k): k for k in known}
    if _canon(name) in by_canon:
        return by_canon[_canon(name)], ""
    dist_names: list[str] = []
    try:
        from importlib import metadata

        dist_names = _import_names(metadata.distribution(name))
    except Exception:
        pass
    for candidate in dist_names:
        if _canon(candidate) in by_canon:
            return by_canon[_canon(candidate)], ""
    for candidate in [name, *dist_names]:
        if candidate.isidentifier() and _instruments_itself(candidate):
            return candidate, ""
    if force:
        chosen = dist_names[0] if len(dist_names) == 1 else name
        if not chosen.isidentifier():
            return None, f"{name!r} is not an import name; give the name you `import`"
        return chosen, ""
    import difflib

    pool = set(known)
    try:
        from importlib import metadata

        pool |= {d.metadata["Name"] for d in metadata.distributions() if d.metadata["Name"]}
    except Exception:
        pass
    by_pool = {_canon(k): k for k in pool}
    close = [by_pool[c] for c in difflib.get_close_matches(_canon(name), list(by_pool), n=5, cutoff=0.6)]
    hint = f" Did you mean: {', '.join(close)}?" if close else ""
    listed = f" Known here: {', '.join(list(known)[:10])}." if known and not close else ""
    return None, (f"usagetrace knows no package named {name!r} on this machine (not installed with "
                  f"usagetrace, never seen running, not in your consent file).{hint}{listed} "
                  "Use --force to store a choice for a package not yet installed.")


def _checked(args, attr: str = "package") -> str | None:
    """The checked import name of ``args.package``; prints the refusal and returns None for an unknown one."""
    value = getattr(args, attr, None)
    if value is None:
        return None
    name, why = resolve_name(value, force=getattr(args, "force", False))
    if name is None:
        print(f"{PROG}: {why}", file=sys.stderr)
        return None
    setattr(args, attr, name)
    return name


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text!r} is not a positive whole number")
    return value


# ---------------------------------------------------------------- discovery


def known_packages() -> dict[str, dict]:
    """Return instrumented packages known on this machine, with what is recorded about each.

    Sources: installed distributions that depend on usagetrace, packages seen
    with telemetry on (state file), packages with an install id, a declared
    consent version or receipts, and packages named in the consent file.
    """
    from . import aggregate, receipts

    found: dict[str, dict] = {}
    try:
        from importlib import metadata

        for dist in metadata.distributions():
            requires = dist.requires or []
            if any(r.split(";")[0].strip().lower().startswith("usagetrace") for r in requires):
                names = _import_names(dist) or [dist.metadata["Name"].replace("-", "_").lower()]
                for name in names:
                    found.setdefault(name, {})["distribution"] = dist.metadata["Name"]
    except Exception:
        pass
    known = state.load().get("packages", {})
    for name, settings in (known.items() if isinstance(known, dict) else ()):
        if isinstance(settings, dict):
            found.setdefault(name, {}).update(settings)
    for directory, suffix in ((paths.ids_dir(), ".id"), (paths.state_path("consent-versions"), "")):
        try:
            for entry in os.listdir(directory):
                if entry.endswith(suffix) and "." not in entry[: len(entry) - len(suffix)]:
                    found.setdefault(entry[: len(entry) - len(suffix)], {})
        except OSError:
            pass
    for name in receipts.packages() + aggregate.packages():
        found.setdefault(name, {})
    try:
        names = consent.read_choices(paths.consent_file()) or {}
    except consent.BrokenSource:
        names = {}
    for name in names:
        if name != consent.ALL:
            found.setdefault(name, {})
    return dict(sorted(found.items()))


_STATE_TEXT = {
    consent.GRANTED: "yes",
    consent.DENIED: "no",
    consent.UNSET: "not given",
    consent.INVALID: "cannot be read: telemetry is off until it can",
}
UNKNOWN = "unknown until {package} runs with telemetry on"


def _declared_version(package: str, info: dict | None = None) -> str | None:
    """The consent version ``package`` declared when it last ran here, if any."""
    if info is None:
        known = state.load().get("packages")
        info = known.get(package) if isinstance(known, dict) else None
    recorded = info.get("consent_version") if isinstance(info, dict) else None
    return consent.declared_version(package) or recorded


def _why(package: str, source: str, policy: str | None) -> str:
    """The deciding source, in plain words."""
    kind, _, rest = source.partition(":")
    if kind == "env":
        return f"{rest} is set in this environment"
    if kind == "user":
        return f"your choice, in {rest}"
    if kind == "project":
        return f"a project file, {rest} (project files can turn telemetry off, never on)"
    if source == "pytest":
        return "running under pytest (off unless its variable grants it)"
    if source == "ci":
        return "running in CI (off unless you choose)"
    if source == consent.NOTICE_THIS_RUN:
        return "the notice was just shown; sending starts with the next run"
    if source.startswith("policy:opt-out (notice not"):
        return (f"nobody chose; {package}'s default is on (opt-out), but only once its one-time notice has been "
                "shown on a terminal, which has not happened here")
    if source == "policy:opt-out":
        return f"nobody chose; {package}'s default is on (opt-out) and its notice was shown here"
    if source == "policy:opt-in":
        if policy is None:
            return f"nobody chose; {package}'s default is {UNKNOWN.format(package=package)}"
        return f"nobody chose; {package}'s default is off (opt-in): it sends only if you say yes"
    return source


def _decide(package: str, info: dict) -> consent.ConsentState:
    """The decision a run of ``package`` from this shell would get (its policy as last recorded; opt-in if never)."""
    policy = info.get("policy")
    version = _declared_version(package, info)
    notice = state.notice_shown(package, version) if policy == consent.OPT_OUT else True
    return consent.resolve(package, policy or consent.OPT_IN, ci=info.get("ci", "off"), under_pytest=False,
                           notice_shown=notice, consent_version=version)


def _status_row(package: str, info: dict, *, state_problem: str | None = None) -> dict:
    from . import config, receipts

    policy = info.get("policy")
    version = _declared_version(package, info)
    decision = _decide(package, info)
    # The package's default decides only when nobody chose; unknown when it never ran with telemetry on.
    enabled = None if policy is None and decision.source.startswith("policy:") else decision.enabled
    history = receipts.last(package)
    ran = bool(info.get("last_on")) or bool(history)
    env_endpoint = any(config.env.get(v) for v in ("OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"))
    endpoint_known = "endpoint" in info or env_endpoint
    traces, metrics = (config.resolve(signal, info.get("endpoint"), package) for signal in config.SIGNALS)
    if endpoint_known:
        technical = traces.describe()
        where = config.where(traces)
        if (metrics.kind, metrics.protocol) != (traces.kind, traces.protocol):  # e.g. ..._TRACES_PROTOCOL=grpc only
            technical = where = f"traces: {technical}; metrics: {metrics.describe()}"
    else:
        technical = where = None
    upload = _upload_row(package, info, metrics.kind if endpoint_known else None)
    return {
        "package": package,
        "enabled": enabled,
        "state": decision.state,
        "decided_by": decision.source,
        "why": _why(package, decision.source, policy),
        "policy": policy,
        "consent_version": version,
        "stale_grants": consent.stale_grants(package, version),
        "ignored_project_grants": consent.ignored_grants(package),
        "sends_to": where,
        "endpoint": technical,
        "last_run_target": info.get("target"),
        "network": traces.kind in ("http", "grpc") if endpoint_known else None,
        "install_id": resource.stored_install_id(package),
        "ran_with_telemetry_on": ran,
        "state_file_problem": state_problem,
        "first_on": info.get("first_on"),
        "last_on": info.get("last_on"),
        "last_attempt": history.get("attempt"),
        "last_delivered": history.get("delivered"),
        "receipts": receipts.count(package),
        "problems": [p.as_dict() for p in consent.problems(package) if p.kind == "env"],
        "upload": upload,
    }


_MODE_TEXT = {
    "realtime": "realtime: sent as it happens (every few seconds, and after each run by a separate process)",
    "daily": "daily: counted on this machine; one report a day, sent by a separate process (nothing leaves "
             "during runs)",
    "weekly": "weekly: counted on this machine; one report a week, sent by a separate process (nothing leaves "
              "during runs)",
}


def _iso(ns) -> str | None:
    from . import clock

    return clock.utc("%Y-%m-%d %H:%M UTC", ns / 1e9) if ns else None


def _upload_row(package: str, info: dict, target_kind: str | None) -> dict:
    """The upload mode runs here get (None when it depends on an endpoint not known yet), and what waits."""
    from . import aggregate, config

    mode = config.upload_mode(info.get("upload"), target_kind) if target_kind else None
    doc, problem = aggregate.load(package)
    pending = aggregate.summary(doc)
    ends = pending.pop("period_ends_ns")
    due = max(min(ends), pending["retry_ns"]) if ends else (pending["retry_ns"] or None)
    return {"mode": mode.mode if mode else None, "source": mode.source if mode else None,
            "note": mode.note if mode else "", "last_run_mode": info.get("upload_mode"),
            "store": aggregate.store_path(package), "store_problem": problem,
            "next_upload_after": _iso(due) if pending["runs"] else None, **pending}


def _upload_text(package: str, up: dict) -> str:
    """One plain sentence: how data leaves, and why when it is not what the package asked for."""
    if up["mode"] is None:
        return UNKNOWN.format(package=package)
    text = _MODE_TEXT[up["mode"]]
    note = up["note"]
    if note.startswith("not ") and ": " in note:
        # config's "not daily (the default): <reason>" said once, without contradicting the mode above
        asked, _, reason = note[4:].partition(": ")
        asked = asked.replace("(the default)", "is the default").replace("(the maintainer asked for it)",
                                                                         "was asked for")
        return f"{text}; {asked}, but {reason}"
    if note:
        return f"{text} ({note})"
    return text


def _print_upload(package: str, up: dict, verbose: bool) -> None:
    print(f"  upload:         {_upload_text(package, up)}")
    if verbose and up["source"]:
        print(f"                  [mode {up['mode']}, from {up['source']}; store {up['store']}]")
    if up["last_run_mode"] and up["mode"] and up["last_run_mode"] != up["mode"]:
        print(f"  last run:       uploaded {up['last_run_mode']} (its environment differed from this shell's)")
    if up["store_problem"]:
        print(f"  PROBLEM:        {up['store_problem']}")
    if up["runs"]:
        periods = ", ".join(up["periods"])
        print(f"  waiting:        the counts of {up['runs']} run(s) ({periods}); sent after {up['next_upload_after']} "
              f"(`usagetrace preview {package} --pending` shows it, `usagetrace flush {package}` sends it now)")
    elif up["mode"] in ("daily", "weekly"):
        print("  waiting:        nothing")
    last = up["last_upload"]
    if last:
        print(f"  last upload:    {last['time']}: {last['reports']} report(s), {last['runs']} run(s) "
              f"({', '.join(last['periods'])})")
    lost = [f"{up[key]} {text}" for key, text in (
        ("rejected", "report(s) rejected by the collector"), ("expired", "report(s) older than three weeks"),
        ("set_aside", "unreadable store(s) set aside")) if up[key]]
    if lost:
        print(f"  lost so far:    {'; '.join(lost)} (counted in the reports)")


def _print_problem(problem: dict, indent: str = "") -> None:
    where = f"{problem['path']}, line {problem['line']}" if problem["line"] else problem["path"]
    print(f"{indent}PROBLEM: {where}: {problem['problem']}.")
    print(f"{indent}  While it cannot be read, telemetry is off for {problem['off_for']}.")
    print(f"{indent}  To fix it: {problem['fix']}")


def _headline(row: dict) -> str:
    if row["enabled"] is None:
        return "off unless its default is on (unknown until it runs with telemetry on)"
    return "ON" if row["enabled"] else "off"


def _print_row(row: dict, verbose: bool = False) -> None:
    package = row["package"]
    print(f"\n{package}: {_headline(row)}")
    for problem in row["problems"]:
        _print_problem(problem, "  ")
    print(f"  your choice:    {_STATE_TEXT.get(row['state'], row['state'])}")
    print(f"  why:            {row['why']}")
    if verbose:
        print(f"                  [decided by {row['decided_by']}; policy {row['policy'] or 'unknown'}]")
    if row["consent_version"]:
        print(f"  consent version: {row['consent_version']} (what {package} declares it collects)")
    for source in row["stale_grants"]:
        print(f"  note:           your yes in {source.split(':', 1)[1]} was given for another consent version "
              f"(now {row['consent_version']}), so it counts as not given; `usagetrace enable {package}` agrees "
              "to this one")
    for path in row["ignored_project_grants"]:
        print(f"  note:           {path} says yes for {package}; a project file can only turn telemetry off "
              f"now, so it is ignored (`usagetrace enable {package}` is how you say yes)")
    print(f"  sends to:       {row['sends_to'] or UNKNOWN.format(package=package)}")
    if verbose and row["endpoint"] and row["endpoint"] != row["sends_to"]:
        print(f"                  [{row['endpoint']}]")
    if row["last_run_target"] and row["endpoint"] and row["last_run_target"] != row["endpoint"]:
        print(f"  last run:       sent to {row['last_run_target']} (its environment differed from this shell's)")
    if row["state_file_problem"]:
        print(f"  PROBLEM:        {row['state_file_problem']}: what usagetrace knows about past runs is lost "
              "until a package runs with telemetry on again (delete the file to start afresh)")
    if row["ran_with_telemetry_on"]:
        span = f"last {row['last_on']}, first {row['first_on']}" if row["last_on"] else "yes"
        print(f"  ran with telemetry on: {span}")
    else:
        print("  ran with telemetry on: never (on this machine, as far as usagetrace recorded)")
    attempt, delivered = row["last_attempt"], row["last_delivered"]
    if attempt:
        print(f"  last send:      {attempt['time']} to {attempt['endpoint']}: {attempt['outcome']}")
        if verbose:
            print(f"                  [{attempt['signal']}]")
    if delivered and delivered != attempt:
        print(f"  last delivered: {delivered['time']} to {delivered['endpoint']}")
    if not attempt:
        where = " (it writes to a local file; nothing goes over the network)" if row["network"] is False else ""
        print(f"  last send:      none recorded{where}")
    _print_upload(package, row["upload"], verbose)
    receipts_text = f"{row['receipts']} (usagetrace history {package})" if row["receipts"] else "none"
    print(f"  receipts:       {receipts_text}")
    if row["install_id"]:
        print(f"  install id:     {row['install_id']}")
    else:
        from . import paths

        unwritable = paths.home_state() == "unwritable"
        print("  install id:     " + ("(none: the data directory is not writable; runs send under an id made for "
                                      "that run only, marked run-...)" if unwritable else "(none)"))


# ----------------------------------------------------------------- commands


def cmd_status(args) -> int:
    from . import config, env

    packages = known_packages()
    if args.package:
        name = _checked(args)
        if name is None:
            return 2
        packages = {name: packages.get(name, {})}
    _, state_problem = state.load_checked()
    rows = [_status_row(name, info, state_problem=state_problem) for name, info in packages.items()]
    problems = [p.as_dict() for p in consent.problems() if p.kind != "env"]
    switch = env.do_not_track()
    env_problems = [{"variable": name, "problem": problem} for name, problem in config.env_problems()]
    if args.json:
        _print_json({"global_switch": switch, "consent_file": paths.consent_file(), "problems": problems,
                     "environment_problems": env_problems, "state_file_problem": state_problem,
                     "packages": rows})
        return 0
    print(f"consent file: {paths.consent_file()}")
    for problem in problems:
        _print_problem(problem)
    if switch:
        print(f"{switch} is set: telemetry is off for every package.")
    for problem in env_problems:
        print(f"PROBLEM: {problem['variable']}{'' if problem['problem'].startswith('=') else ' '}"
              f"{problem['problem']}")
    if state_problem and not rows:
        print(f"PROBLEM: {state_problem}")
    if not rows:
        print("No usagetrace-instrumented packages known on this machine yet.")
        return 0
    for row in rows:
        _print_row(row, verbose=args.verbose)
    return 0


def _refuse(exc: consent.BrokenSource) -> int:
    print(f"{PROG}: nothing was changed: {exc.where}: {exc.problem}.", file=sys.stderr)
    print(f"  Every choice in that file is kept as it is. While it cannot be read, telemetry is off for "
          f"{exc.scope}.", file=sys.stderr)
    print(f"  To fix it: {exc.fix}", file=sys.stderr)
    return 1


def _set_choice(args, granted: bool | None) -> int:
    if not args.all and args.package is not None and _checked(args) is None:
        return 2
    target = consent.ALL if args.all else args.package
    if target is None:
        print(f"{PROG}: name a package or use --all", file=sys.stderr)
        return 2
    version = _declared_version(target) if granted and target != consent.ALL else None
    try:
        report = consent.write_choice(target, granted, version=version)
    except consent.BrokenSource as exc:
        return _refuse(exc)
    except paths.LockTimeout:
        print(f"{PROG}: another usagetrace command is changing {paths.consent_file()}; nothing was changed, "
              "try again.", file=sys.stderr)
        return 1
    except OSError as exc:
        print(f"{PROG}: cannot write {paths.consent_file()}: {exc.strerror or exc}", file=sys.stderr)
        return 1
    forgotten = {}
    if granted is False:
        from .forget import forget

        names = list(known_packages()) if target == consent.ALL else [target]
        forgotten = {name: forget(name) for name in names}
    if args.json:
        _print_json({"package": target, "granted": granted, "file": report["path"], "changed": report["changed"],
                     "consent_version": version, "removed_grants": report["removed_grants"],
                     "kept_denials": report["kept_denials"], "forgotten": forgotten})
        return 0
    what = "every package" if target == consent.ALL else target
    verb = {True: "enabled", False: "disabled", None: "reset to the package's default"}[granted]
    if report["changed"]:
        print(f"Telemetry {verb} for {what} (saved in {report['path']}).")
    else:
        print(f"Telemetry was already {verb} for {what} ({report['path']} unchanged).")
    if granted is None:
        print(_default_text(target))
    if version is not None:
        print(f"Your yes is for consent version {version}, what {target} declares it collects now; "
              "if that changes, you will be asked again.")
    if report["removed_grants"]:
        print(f"Removed your earlier yes for: {', '.join(report['removed_grants'])}.")
    if report["kept_denials"]:
        print(f"Kept your earlier no for: {', '.join(report['kept_denials'])} (`usagetrace enable PACKAGE` "
              "changes one).")
    for name, done in forgotten.items():
        _print_forgotten(name, done)
    if granted is False:
        print("Running processes stop sending within a few seconds.")
    from . import env

    switch = env.do_not_track()
    if granted and switch:
        print(f"Note: {switch} is set in this environment and still turns everything off.")
    elif granted and target != consent.ALL:
        decision = consent.resolve(target, under_pytest=False, notice_shown=True, consent_version=version)
        if not decision.enabled:
            print(f"Note: telemetry for {target} stays off here: decided by {decision.source}.")
    return 0


def _default_text(target: str) -> str:
    """What applies after `reset`: the package's own default, in plain words."""
    if target == consent.ALL:
        return ("Your choice for \"*\" is gone: each package's own choices and defaults apply "
                "(`usagetrace status` shows them).")
    known = state.load().get("packages")
    policy = (known.get(target) or {}).get("policy") if isinstance(known, dict) else None
    if policy == consent.OPT_OUT:
        return (f"The default for {target} now applies: on (its maintainers chose opt-out), after its one-time "
                f"notice. `usagetrace disable {target}` turns it off.")
    if policy == consent.OPT_IN:
        return f"The default for {target} now applies: off (opt-in) until you say yes."
    return (f"The default for {target} now applies: off if its maintainers chose opt-in, on after a one-time "
            f"notice if opt-out ({UNKNOWN.format(package=target)}).")


def _print_forgotten(name: str, done: dict) -> None:
    parts = []
    if done["spooled_batches"]:
        parts.append(f"{done['spooled_batches']} spooled batch(es) not yet sent")
    if done.get("aggregated_runs"):
        parts.append(f"the counts of {done['aggregated_runs']} run(s) waiting for the daily upload")
    if done.get("local_copies"):
        parts.append(f"{done['local_copies']} other local file(s) (set-aside stores, the development file, "
                     "its report cache)")
    if done["install_id"]:
        parts.append(f"install id {done['install_id']} (a later re-enable gets a new one; quote this id to "
                     f"{name}'s maintainers to have the data sent under it deleted)")
    if parts:
        print(f"Deleted for {name}: {'; '.join(parts)}.")
    for error in done["errors"]:
        print(f"{PROG}: could not delete for {name}: {error}", file=sys.stderr)


def cmd_enable(args) -> int:
    return _set_choice(args, True)


def cmd_disable(args) -> int:
    return _set_choice(args, False)


def cmd_reset(args) -> int:
    return _set_choice(args, None)


def cmd_reset_id(args) -> int:
    if _checked(args) is None:
        return 2
    try:
        value = resource.reset_install_id(args.package)
    except OSError as exc:
        print(f"{PROG}: cannot write a new install id: {exc.strerror or exc}", file=sys.stderr)
        return 1
    if args.json:
        _print_json({"package": args.package, "install_id": value})
    else:
        print(f"New install id for {args.package}: {value}. What is sent from now on cannot be joined with "
              "what was sent under the old one.")
    return 0


def _history_summary(name: str, items: list[dict]) -> None:
    """A few lines per package: how many requests, when, where, how big, with which outcome."""
    from collections import Counter

    first, last = items[0].get("time"), items[-1].get("time")
    size = sum(int(i.get("bytes") or 0) for i in items)
    print(f"{name}: {len(items)} request(s) left this machine, {first} to {last}, {size} bytes in all")
    for (endpoint, signal, outcome), n in sorted(Counter(
            (i.get("endpoint"), i.get("signal"), i.get("outcome")) for i in items).items(), key=str):
        print(f"  {n:6d} x {signal} to {endpoint}: {outcome}")
    print(f"  `usagetrace history {name} --last 5` shows the newest five decoded; --full shows every one.")


def cmd_history(args) -> int:
    from . import receipts

    names = [resolve_name(args.package, force=True)[0] or args.package] if args.package else receipts.packages()
    found = {}
    unreadable = 0
    last = args.last or args.limit
    for name in names:
        items, bad = receipts.load(name)
        unreadable += bad
        if last:
            items = items[-last:]
        found[name] = items
    if args.json:
        _print_json({"packages": found, "unreadable_lines": unreadable})
        return 0
    if not any(found.values()):
        who = args.package or "any package"
        print(f"No receipts: nothing has left this machine for {who} since usagetrace started keeping them.")
    for name, items in found.items():
        if not items:
            continue
        if not (args.full or last):
            _history_summary(name, items)
            continue
        print(f"{name}: {len(items)} request(s) left this machine (oldest first)")
        for item in items:
            print(f"\n=== {item.get('time')}  {item.get('signal')}  {item.get('bytes')} bytes  "
                  f"{item.get('protocol')} to {item.get('endpoint')}: {item.get('outcome')}")
            if item.get("request") is not None:
                sys.stdout.write(_indent(render_preview([item["request"]])))
            else:
                print(f"  ({item.get('omitted')})\n  {json.dumps(item.get('summary'))}")
    if unreadable:
        print(f"\n({unreadable} unreadable receipt line(s) skipped)")
    return 0


def _indent(text: str) -> str:
    return "".join("  " + line if line.strip() else line for line in text.splitlines(True))


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
    import tempfile

    if _checked(args) is None:
        return 2
    if args.pending:
        if args.command_line:
            print(f"{PROG}: preview --pending shows what waits for upload; it runs no command", file=sys.stderr)
            return 2
        return cmd_preview_pending(args)
    command = list(args.command_line)
    if not command:
        command = [sys.executable, "-c", f"import {args.package}"]
    decision = _decide(args.package, known_packages().get(args.package, {}))
    if decision.state in (consent.DENIED, consent.INVALID):
        return _preview_nothing(args, command, decision)
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
        completed = _run_command(command, args.timeout, child_env)
        if isinstance(completed, int):
            return completed
        requests = []
        try:
            with open(out, encoding="utf-8") as fh:
                requests = [json.loads(line) for line in fh if line.strip()]
        except FileNotFoundError:
            pass
    requests = [r for r in requests if _service(r) == args.package]
    # The child ran with <PKG>_TELEMETRY=1 so that it records; a real send carries the source that
    # decides from this shell (or, before any yes, the one `usagetrace enable` would store).
    source = decision.source.split(":", 1)[0] if decision.enabled else "user"
    _set_resource_attribute(requests, "usagetrace.consent.source", source)
    status = _exit_status(completed.returncode)
    stored_id = resource.stored_install_id(args.package)
    if args.json:
        _print_json({"package": args.package, "exit_code": completed.returncode, "would_send": decision.enabled,
                     "decided_by": decision.source, "requests": requests})
        return status
    # One stream (stdout) for the header and the body, so they stay in order when piped together.
    if decision.enabled:
        print(f"\n--- what {args.package} would have sent (nothing left this machine) ---")
    else:
        print(f"\n--- what {args.package} would send if you agreed (`usagetrace enable {args.package}`); "
              f"now it sends nothing: {_why(args.package, decision.source, None)} ---")
    if requests and stored_id is None:
        print("(No install id is stored yet: the one below is for this preview only; a new random one is made "
              "at the first real send.)")
    if not requests:
        print(f"Nothing: {args.package} recorded no usage during this command.")
    else:
        sys.stdout.write(render_preview(requests))
        print(f"\n({len(requests)} OTLP request(s); `--json` prints them exactly as sent.)")
        mode = _real_upload_mode(args.package)
        if mode in ("daily", "weekly"):
            print(f"(Runs here upload {mode}: these counts would be added to one report a "
                  f"{'day' if mode == 'daily' else 'week'} instead, without a session id; "
                  f"`usagetrace preview {args.package} --pending` shows the next report exactly.)")
    if status:
        print(f"(the command exited with status {status})")
    return status


def _real_upload_mode(package: str) -> str | None:
    """How a real run of ``package`` from this shell would upload; None when that depends on the unknown."""
    from . import config, env

    info = known_packages().get(package, {})
    if "endpoint" not in info and not env.get("OTEL_EXPORTER_OTLP_ENDPOINT"):
        return None
    target = config.resolve("metrics", info.get("endpoint"), package)
    return config.upload_mode(info.get("upload"), target.kind).mode


def _exit_status(code: int) -> int:
    """The command's exit status, as a shell reports it (killed by signal n: 128 + n)."""
    return code if code >= 0 else 128 - code


def _set_resource_attribute(requests: list[dict], key: str, value: str) -> None:
    for request in requests:
        for group in ("resourceSpans", "resourceMetrics"):
            for rs in request.get(group, []):
                for kv in rs.get("resource", {}).get("attributes", []):
                    if kv.get("key") == key:
                        kv["value"] = {"stringValue": value}


def _run_command(command: list[str], timeout, env=None):
    """Run ``preview``'s command: its CompletedProcess, or the shell's exit code when it could not run."""
    import subprocess

    sys.stdout.flush()  # whatever we wrote comes before the command's own output
    try:
        return subprocess.run(command, env=env, timeout=timeout)
    except FileNotFoundError:
        print(f"{PROG}: command not found: {command[0]}", file=sys.stderr)
        return 127
    except PermissionError:
        print(f"{PROG}: command not executable: {command[0]}", file=sys.stderr)
        return 126
    except subprocess.TimeoutExpired:
        print(f"{PROG}: command did not finish within {timeout} s", file=sys.stderr)
        return 124


def _preview_nothing(args, command: list[str], decision) -> int:
    """Telemetry is off for good here (your no, or a source that cannot be read): run the command, send nothing."""
    why = _why(args.package, decision.source, None)
    completed = _run_command(command, args.timeout)
    if isinstance(completed, int):
        return completed
    status = _exit_status(completed.returncode)
    if args.json:
        _print_json({"package": args.package, "exit_code": completed.returncode, "would_send": False,
                     "decided_by": decision.source, "requests": []})
        return status
    print(f"\n--- {args.package} would send nothing: telemetry is off here ({why}) ---")
    if decision.state == consent.DENIED and decision.source.startswith("user:"):
        print(f"`usagetrace enable {args.package}` turns it on; then this preview shows what it would send.")
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
    from . import aggregate, spool, uploader

    if args.package:
        args.package = resolve_name(args.package, force=True)[0] or args.package
    only = {args.package} if args.package else None
    counts = spool.deliver(packages=only, deadline=None)
    stores = [args.package] if args.package else aggregate.packages()
    sent = uploader.upload(stores, everything=True)
    if args.json:
        _print_json({**counts, "aggregate": sent})
    else:
        _print_spool(counts)
        _print_uploads(sent, bool(stores))
    failed = counts["busy"] or counts["failed"] or counts["left"] or sent["busy"] or sent["failed"]
    return 1 if failed else 0


def _print_spool(counts: dict) -> None:
    from . import spool

    if counts["busy"]:
        print("Another usagetrace sender is delivering the spool right now; nothing was done here.")
    elif not any(counts[k] for k in (*spool.OUTCOMES, "left")):
        print("Nothing was waiting in the spool.")
    else:
        print(f"Delivered {counts['delivered']} spooled batch(es) ({counts['requests']} request(s) accepted).")
        for key, text in (
            ("withdrawn", "deleted unsent: consent was withdrawn or cannot be read"),
            ("expired", f"deleted unsent: older than {spool.MAX_AGE // 86400} days"),
            ("rejected", "deleted: the collector rejected them (they would never be accepted)"),
            ("unreadable", "deleted: unreadable"),
            ("failed", "kept for a later attempt: the collector could not be reached or asked to retry"),
            ("undecided", "kept unsent: consent came from a source this process cannot see (an environment "
                          "variable or a project directory)"),
            ("elsewhere", "kept unsent: recorded for another destination (OTEL_EXPORTER_OTLP_* as the run had it)"),
            ("left", "not tried: out of time; run `usagetrace flush` again"),
        ):
            if counts[key]:
                print(f"  {counts[key]} {text}")


def _print_uploads(sent: dict, any_store: bool) -> None:
    from . import aggregate

    if not any(sent.values()):
        if any_store:
            print("Nothing was waiting for a daily or weekly upload either.")
        return
    if sent["reports"] or not sent["busy"]:
        print(f"Uploaded {sent['reports']} daily/weekly report(s) with the counts of {sent['runs']} run(s) "
              f"({sent['requests']} request(s) accepted).")
    for key, text in (
        ("withdrawn", "report(s) deleted unsent: consent was withdrawn, cannot be read or is off here"),
        ("expired", f"report(s) deleted unsent: older than {aggregate.MAX_AGE_NS // aggregate.DAY_NS} days"),
        ("rejected", "report(s) dropped: the collector rejected them (counted, sent with the next report)"),
        ("failed", "report(s) kept for a later attempt: the collector could not be reached or asked to retry"),
        ("undecided", "report(s) kept unsent: consent came from a source this process cannot see"),
        ("elsewhere", "report(s) kept unsent: recorded for another destination (OTEL_EXPORTER_OTLP_* of the runs)"),
        ("set_aside", "broken local store(s) set aside (counted)"),
        ("busy", "package(s) skipped: another usagetrace uploader is at work on them"),
    ):
        if sent[key]:
            print(f"  {sent[key]} {text}")


def cmd_preview_pending(args) -> int:
    from . import aggregate, otlp_json, uploader

    try:
        aggregate.fold(args.package)  # the runs' journal into the store: the buckets (and ids) the upload sends
    except OSError:
        pass  # shown from the journal below, as it stands
    doc, problem = aggregate.load(args.package)
    if problem:
        print(f"{PROG}: {problem}", file=sys.stderr)
        return 1
    buckets = (doc["outbox"] + doc["buckets"]) if doc else []
    requests = [otlp_json.to_dict(signal, payload)
                for group in uploader.requests_for(args.package, buckets) for signal, payload, _ in group["payloads"]]
    if args.json:
        _print_json({"package": args.package, "periods": sorted({b["period"] for b in buckets}),
                     "runs": sum(b["runs"] for b in buckets), "requests": requests})
        return 0
    if not requests:
        print(f"Nothing waits for upload for {args.package}.")
        return 0
    import time

    now = time.time_ns()
    ended = sorted({b["period"] for b in buckets if b["end_ns"] <= now or b in doc["outbox"]})
    running = sorted({b["period"] for b in buckets if b["end_ns"] > now and b not in doc["outbox"]})
    print(f"--- the next upload of {args.package}: exactly what `usagetrace flush {args.package}` would send now "
          "(nothing was sent) ---")
    print(f"Counts of {sum(b['runs'] for b in buckets)} run(s); periods ended: {', '.join(ended) or 'none'}; "
          f"still counting: {', '.join(running) or 'none'} (the daily upload sends a period once it has ended).\n")
    sys.stdout.write(render_preview(requests))
    print(f"\n({len(requests)} OTLP request(s); `--json` prints them exactly as they would be sent.)")
    return 0


def cmd_report(args) -> int:
    from .analytics import cli as report_cli

    return report_cli.run(args)


def cmd_collect(args) -> int:
    from . import collect

    return collect.run(args.dir or collect.default_directory(), host=args.host, port=args.port,
                       max_megabytes=args.max_megabytes, max_backups=args.max_backups)


def _add_collect(sub) -> None:
    """``usagetrace collect``: the development collector (collect.py)."""
    help_text = ("Receive OTLP/HTTP on 127.0.0.1 with the bundled collector's rules and store it where "
                 "`usagetrace report` reads it: for development and small deployments, no Docker needed.")
    p = sub.add_parser("collect", help=help_text, description=help_text,
                       epilog="Stop with Ctrl-C (or SIGTERM): every acknowledged request is on disk. "
                              "Production path: the bundled otelcol-contrib with ClickHouse (docs/deployment.md).")
    p.add_argument("--port", type=int, default=4318, help="TCP port (default 4318, the OTLP/HTTP port; 0: any free)")
    p.add_argument("--host", default="127.0.0.1",
                   help="address to listen on (default 127.0.0.1: this machine only)")
    p.add_argument("--dir", metavar="DIR",
                   help="where traces.jsonl and metrics.jsonl go (default: the per-user data dir, "
                        "e.g. ~/.local/share/usagetrace/collected)")
    p.add_argument("--max-megabytes", type=_positive_int, default=64, help="rotate a file at this size (default 64)")
    p.add_argument("--max-backups", type=_positive_int, default=100, help="rotated files kept per signal (default 100)")
    p.set_defaults(func=cmd_collect)


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

    force_help = "accept a package usagetrace knows nothing about yet (e.g. not installed)"
    p = add("status", cmd_status, "Show every known instrumented package, whether it sends, why, and where to.")
    p.add_argument("package", nargs="?", type=_validate_package, help="only this package")
    p.add_argument("--verbose", "-v", action="store_true", help="also the technical detail (sources, protocol, "
                                                                 "full endpoint path)")
    p.add_argument("--force", action="store_true", help=force_help)
    for name, func, verb in (
        ("enable", cmd_enable, "Allow"),
        ("disable", cmd_disable, "Stop"),
        ("reset", cmd_reset, "Forget your choice for"),
    ):
        help_text = f"{verb} anonymous usage telemetry of a package (or --all)."
        if name == "disable":
            help_text += " Also deletes its unsent data and install id."
        if name == "reset":
            help_text = "Forget your choice for a package (or, with --all, your choice for \"*\"): its default applies."
        p = add(name, func, help_text)
        group = p.add_mutually_exclusive_group(required=True)
        group.add_argument("package", nargs="?", type=_validate_package,
                           help="package name (import or distribution name; case and -/_ do not matter)")
        group.add_argument("--all", action="store_true", help="every package")
        p.add_argument("--force", action="store_true", help=force_help)
    p = add("reset-id", cmd_reset_id, "Replace a package's anonymous install id with a new random one.")
    p.add_argument("package", type=_validate_package,
                   help="the package whose install id to replace (what it sends from now on cannot be joined "
                        "with what it sent before)")
    p.add_argument("--force", action="store_true", help=force_help)
    p = add(
        "preview",
        cmd_preview,
        "Run a command (default: import the package) with telemetry captured locally, and print "
        "exactly what would have been sent. Nothing leaves the machine.",
    )
    p.add_argument("package", type=_validate_package, help="the package whose telemetry to show")
    p.add_argument("--force", action="store_true", help=force_help)
    p.set_defaults(command_line=[])
    p.epilog = (
        "Usage: usagetrace preview PACKAGE [--json] -- COMMAND [ARGS...], or usagetrace preview PACKAGE "
        "--pending [--json]. Exits with the command's "
        "exit status (128+N if killed by signal N; 127 not found, 126 not executable, 124 timed out)."
    )
    p.add_argument("--timeout", type=float, default=600.0, help="seconds before giving up (default 600)")
    p.add_argument("--pending", action="store_true",
                   help="instead of running a command, print the next daily/weekly upload waiting on this machine")
    p = add(
        "inventory",
        cmd_inventory,
        "Print what a package can send, as a Markdown table for privacy docs: found by reading its source "
        "(never importing it) for the usagetrace integrations and declared measurements it uses.",
    )
    group = p.add_mutually_exclusive_group(required=True)
    group.add_argument("package", nargs="?", type=_import_name, help="package import name")
    group.add_argument("--all", action="store_true", help="everything usagetrace can send, for any package")
    p.add_argument("--callables", action="store_true",
                   help="also list which public callables are counted and which are left unwrapped, and why "
                        "(imports the package in a child process, telemetry kept local)")
    p = add("flush", cmd_flush, "Send what waits now: the spool, and daily/weekly counts whatever their period "
                                "(otherwise sent in the background).")
    p.add_argument("package", nargs="?", type=_validate_package, help="only this package")
    p = add("history", cmd_history, "Show what left this machine (receipts): a summary, or each request decoded.")
    p.add_argument("package", nargs="?", type=_validate_package, help="only this package")
    p.add_argument("--last", type=_positive_int, default=0, metavar="N",
                   help="the newest N requests per package, decoded")
    p.add_argument("--limit", type=_positive_int, default=0, help=argparse.SUPPRESS)  # the old name of --last
    p.add_argument("--full", action="store_true", help="every request, decoded (default: a summary)")
    from .analytics import cli as report_cli

    p = sub.add_parser(
        "report",
        help="Answer usage questions from collected data (needs `pip install 'usagetrace[report]'`).",
        description=report_cli.DESCRIPTION,
    )
    report_cli.add_arguments(p)
    p.set_defaults(func=cmd_report)
    _add_collect(sub)
    return parser


NO_HOME = (
    f"{PROG}: there is no home directory (HOME is unset or relative, and no passwd entry gives one), so "
    "nothing is stored: no consent file, no install id, no spool, no daily store, and nothing in the current "
    "directory either.\n"
    "  realtime uploads: sent only with consent from an environment variable (or a project file), under an "
    "install id made for that run only and marked as such (run-...);\n"
    "  daily and weekly uploads: nothing is sent (they need the local store)."
)


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
    from . import paths

    try:
        return int(args.func(args) or 0)
    except paths.NoHome:
        # HOME unset (and no passwd entry) or relative: no per-user files exist, none is made in the
        # current directory. What runs do then, for `status` and every other command alike:
        print(NO_HOME, file=sys.stdout if args.func is cmd_status else sys.stderr)
        return 0 if args.func is cmd_status else 1
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        return 0
