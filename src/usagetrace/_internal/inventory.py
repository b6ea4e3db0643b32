"""What one package can send: its attributes, found from its source without importing it.

``usagetrace inventory PACKAGE`` must describe that package, not every package:
its name and version in the examples, the measurements it declares, and only
the integrations it uses. This module finds them by *reading* the package's
source (``importlib.util.find_spec`` locates it; nothing of it is imported or
run) and looking, with :mod:`ast`, for

* imports of ``usagetrace.integrations.<name>`` (click, argparse, crash,
  flask, dash, email), and
* calls of ``usagetrace.command``, ``usagetrace.event`` and
  ``usagetrace.instrument``, with their literal ``measures={...}`` and
  ``version=`` arguments.

Dependencies declared by the distribution are not used: depending on flask
does not mean a package records page views. What the scan cannot see (an
integration imported by name at run time, measures built in code) is said in
the output. A package that cannot be found gets the full table.
"""

from __future__ import annotations

import ast
import os
from dataclasses import dataclass, field

from . import allowlist

#: ``usagetrace.integrations.<module>`` -> the allowlist features it sends.
INTEGRATIONS = {
    "click": ("cli",),
    "argparse": ("cli",),
    "crash": ("crash",),
    "flask": ("pages",),
    "dash": ("pages", "callbacks"),
    "email": ("email",),
}
#: ``usagetrace.<function>`` calls that add a feature.
CALLS = {"command": "command", "event": "event"}
MAX_FILES = 5000
MAX_FILE_BYTES = 2 * 1024 * 1024
_GENERIC_PACKAGE = "mypkg"


@dataclass
class Measure:
    """One declared measurement, as written in the source."""

    key: str
    type: str  # int, double, bool, or "string, one of: a, b"
    scope: str  # "command generate" or "events"
    where: str  # file:line


@dataclass
class Profile:
    """What the scan of one package found."""

    package: str
    source: str | None = None  # the directory or file scanned; None: not found
    files: int = 0
    unreadable: int = 0
    version: str | None = None
    version_from: str = ""
    features: dict[str, list[str]] = field(default_factory=dict)  # feature -> ["file:line: what", ...]
    instrument_calls: list[str] = field(default_factory=list)
    measures: list[Measure] = field(default_factory=list)
    opaque_measures: list[str] = field(default_factory=list)  # file:line of measures not written literally
    function: str | None = None  # a real public function, for the examples
    consent: str | None = None  # the consent= policy given to instrument(), if literal


# ------------------------------------------------------------------- scanning
def _files(spec) -> tuple[str | None, list[str]]:
    if spec is None:
        return None, []
    roots = list(spec.submodule_search_locations or ())
    if not roots:
        origin = spec.origin or ""
        return (origin, [origin]) if origin.endswith(".py") and os.path.isfile(origin) else (None, [])
    found = []
    for root in roots:
        for dirpath, dirnames, filenames in os.walk(root):
            dirnames[:] = sorted(d for d in dirnames if d != "__pycache__" and not d.startswith("."))
            found += [os.path.join(dirpath, f) for f in sorted(filenames) if f.endswith(".py")]
            if len(found) >= MAX_FILES:
                return roots[0], found[:MAX_FILES]
    return roots[0], found


def _dotted(node) -> str | None:
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        base = _dotted(node.value)
        return f"{base}.{node.attr}" if base else None
    return None


def _spec_text(node) -> str | None:
    """The declared type of one measurement, or None when it is not written literally."""
    if isinstance(node, ast.Name) and node.id in ("int", "float", "bool"):
        return {"float": "double"}.get(node.id, node.id)
    if isinstance(node, (ast.Tuple, ast.List, ast.Set)) and all(
        isinstance(e, ast.Constant) and isinstance(e.value, str) for e in node.elts
    ):
        return "string, one of: " + ", ".join(e.value for e in node.elts)
    return None


class _Scanner(ast.NodeVisitor):
    def __init__(self, profile: Profile, where: str, is_init: bool) -> None:
        self.p = profile
        self.where = where
        self.is_init = is_init
        self.modules: dict[str, str] = {}  # local name -> "usagetrace" / "usagetrace.integrations.x"
        self.functions: dict[str, str] = {}  # local name -> "command" / "event" / "instrument"

    def _at(self, node) -> str:
        return f"{self.where}:{node.lineno}"

    def _feature(self, integration: str, node, what: str) -> None:
        for feature in INTEGRATIONS.get(integration, ()):
            self.p.features.setdefault(feature, []).append(f"{self._at(node)}: {what}")

    def visit_Import(self, node) -> None:
        for alias in node.names:
            if alias.name == "usagetrace" or alias.name.startswith("usagetrace."):
                # `import usagetrace.x` binds `usagetrace`; `import usagetrace.x as y` binds y to usagetrace.x
                self.modules[alias.asname or "usagetrace"] = alias.name if alias.asname else "usagetrace"
                parts = alias.name.split(".")
                if parts[1:2] == ["integrations"] and len(parts) > 2:
                    self._feature(parts[2], node, f"imports {alias.name}")

    def visit_ImportFrom(self, node) -> None:
        module = node.module or ""
        if node.level or not (module == "usagetrace" or module.startswith("usagetrace.")):
            return
        parts = module.split(".")
        if parts[1:2] == ["integrations"] and len(parts) > 2:
            self._feature(parts[2], node, f"imports {module}")
        for alias in node.names:
            local = alias.asname or alias.name
            if module == "usagetrace.integrations":
                self._feature(alias.name, node, f"imports usagetrace.integrations.{alias.name}")
            elif module == "usagetrace" and alias.name in ("command", "event", "instrument"):
                self.functions[local] = alias.name

    def visit_FunctionDef(self, node) -> None:
        if self.is_init and self.p.function is None and not node.name.startswith("_") and node.col_offset == 0:
            self.p.function = f"{self.p.package}.{node.name}"
        self.generic_visit(node)

    def visit_Call(self, node) -> None:
        name = _dotted(node.func) or ""
        head, _, attr = name.rpartition(".")
        what = self.functions.get(name) or (attr if self.modules.get(head) == "usagetrace" else None)
        if what in CALLS:
            self.p.features.setdefault(CALLS[what], []).append(f"{self._at(node)}: calls usagetrace.{what}()")
        if what in ("command", "instrument"):
            self._call_details(what, node)
        self.generic_visit(node)

    def _call_details(self, what: str, node) -> None:
        keywords = {k.arg: k.value for k in node.keywords if k.arg}
        if what == "instrument":
            self.p.instrument_calls.append(self._at(node))
            consent = keywords.get("consent")
            if isinstance(consent, ast.Constant) and consent.value in ("opt-in", "opt-out"):
                self.p.consent = consent.value
            version = keywords.get("version")
            if isinstance(version, ast.Constant) and isinstance(version.value, str) and version.value:
                self.p.version, self.p.version_from = version.value, f"the version= of instrument() at {self._at(node)}"
        measures = keywords.get("measures")
        if measures is None or (isinstance(measures, ast.Constant) and measures.value is None):
            return
        first = node.args[0] if node.args else None
        scope = "events"
        if what == "command":
            named = isinstance(first, ast.Constant) and isinstance(first.value, str)
            scope = f"command {first.value}" if named else "a command"
        if not isinstance(measures, ast.Dict):
            self.p.opaque_measures.append(self._at(node))
            return
        for key, value in zip(measures.keys, measures.values):
            spec = _spec_text(value)
            if not (isinstance(key, ast.Constant) and isinstance(key.value, str)) or spec is None:
                self.p.opaque_measures.append(self._at(node))
                continue
            self.p.measures.append(Measure(key.value, spec, scope, self._at(node)))


def _module_version(tree) -> str | None:
    for node in tree.body:
        if (isinstance(node, ast.Assign) and any(isinstance(t, ast.Name) and t.id == "__version__" for t in node.targets)
                and isinstance(node.value, ast.Constant) and isinstance(node.value.value, str)):
            return node.value.value
    return None


def _distribution_version(package: str) -> tuple[str, str] | None:
    """(distribution name, version) of the installed distribution providing ``package``, if any."""
    from importlib import metadata

    try:
        try:
            names = metadata.packages_distributions().get(package, [])
        except AttributeError:  # Python 3.9
            names = [d.metadata["Name"] for d in metadata.distributions()
                     if package in (d.read_text("top_level.txt") or "").split()]
        for name in names:
            return name, metadata.version(name)
        return package, metadata.version(package)
    except Exception:  # not installed, or unreadable metadata
        return None


def scan(package: str) -> Profile:
    """Find what ``package`` can send by reading its source; never imports it. Never raises."""
    from importlib.util import find_spec

    profile = Profile(package)
    try:
        spec = find_spec(package)
    except Exception:  # a broken parent, or an odd finder
        spec = None
    profile.source, files = _files(spec)
    if profile.source is None:
        return profile
    root = os.path.dirname(profile.source)  # paths are shown from the package's own name on
    init = profile.source if os.path.isfile(profile.source) else os.path.join(profile.source, "__init__.py")
    module_version = None
    for path in files:
        try:
            if os.path.getsize(path) > MAX_FILE_BYTES:
                raise ValueError("too large")
            with open(path, "rb") as fh:
                tree = ast.parse(fh.read(), filename=path)
        except (OSError, ValueError, SyntaxError):
            profile.unreadable += 1
            continue
        profile.files += 1
        if path == init:
            module_version = _module_version(tree)
        _Scanner(profile, os.path.relpath(path, root), path == init).visit(tree)
    if profile.version is None and module_version:
        profile.version, profile.version_from = module_version, f"__version__ in {package}'s own source"
    if profile.version is None:
        dist = _distribution_version(package)
        if dist:
            profile.version, profile.version_from = dist[1], f"the installed distribution {dist[0]}"
    return profile


# ------------------------------------------------------------------- rendering
def _installed_version(distribution: str) -> str | None:
    from importlib import metadata

    try:
        return metadata.version(distribution)
    except Exception:
        return None


def _example(example: str, key: str, profile: Profile | None) -> str:
    """The example value of ``key``: for a package, its own where known (name, version, policy, a function)."""
    if profile is None:
        return example
    if key == "service.version":
        return profile.version or "unknown"
    function = profile.function
    own = {
        "code.function.name": function,
        # Its own function and CLI name, never the generic ones (mypkg.io.read_table, mycli run),
        # which would not exist in this package.
        "exception.stacktrace": "{}:{}:12".format(*(function or f"{profile.package}.function").rsplit(".", 1)),
        "usagetrace.command.name": profile.package,
        "usagetrace.command.line": f"{profile.package} --option *****",
        "usagetrace.module": profile.function and profile.function.rsplit(".", 1)[0],
        "usagetrace.consent.policy": profile.consent,
        "telemetry.sdk.version": _installed_version("opentelemetry-sdk"),
        "telemetry.distro.version": _installed_version("usagetrace"),
    }.get(key)
    return own or example.replace(_GENERIC_PACKAGE, profile.package)


def features(profile: Profile | None) -> set[str]:
    """The allowlist features ``profile`` can send (every feature for None or a package not found)."""
    if profile is None or profile.source is None:
        return set(allowlist.FEATURES)
    return {"core"} | set(profile.features)


def rows(profile: Profile | None = None) -> list[dict]:
    """Every attribute, declared measurement and metric that ``profile``'s package can send (None: any package)."""
    usable = features(profile)
    out = [
        {"key": a.key, "where": a.where, "type": a.type, "meaning": a.meaning,
         "example": _example(a.example, a.key, profile), "features": list(a.features)}
        for a in allowlist.ATTRIBUTES
        if usable & set(a.features)
    ]
    for m in profile.measures if profile else ():
        out.append({"key": allowlist.MEASURE_PREFIX + m.key, "where": "span", "type": m.type,
                    "meaning": f"Declared measurement of {m.scope} ({m.where}).", "example": "",
                    "features": ["command" if m.scope != "events" else "event"]})
    for metric in allowlist.METRICS:
        if usable & set(metric.features):
            out.append({"key": metric.name, "where": "metric", "type": f"delta sum {metric.unit}",
                        "meaning": metric.meaning + f" Attributes: {', '.join(metric.attributes) or 'none'}.",
                        "example": "", "features": list(metric.features)})
    return out


def _how(profile: Profile) -> list[str]:
    """How this inventory was worked out, as Markdown lines."""
    p = profile
    if p.source is None:
        return [
            f"`{p.package}` was not found in this environment, so there is no source to read: this is the "
            "full table of everything usagetrace can send for any package. Run this where the package is "
            "installed to see only what it can send."
        ]
    names = ", ".join(allowlist.FEATURES[f] for f in sorted(set(p.features)))
    lines = [
        f"How this was worked out: usagetrace read {p.files} Python file{'' if p.files == 1 else 's'} of "
        f"`{p.package}` ({p.source}) without importing them, looking for imports of "
        "`usagetrace.integrations.*` and calls of `usagetrace.command`, `usagetrace.event` and "
        "`usagetrace.instrument`.",
        "",
        f"- `instrument()` calls: {', '.join(p.instrument_calls) or 'none found'}",
        f"- Integrations and declared features found: {names or 'none'}",
    ]
    for feature in sorted(p.features):
        lines += [f"  - {where}" for where in p.features[feature][:5]]
    lines.append(f"- Version: {p.version + ' (from ' + p.version_from + ')' if p.version else 'unknown (sent as `unknown`)'}")
    left_out = [allowlist.FEATURES[f] for f in allowlist.FEATURES if f not in features(p)]
    if left_out:
        lines.append(f"- Left out, as `{p.package}` does not use them: {'; '.join(left_out)}.")
    if p.opaque_measures:
        lines.append(f"- Measurements not written literally (not listed; see the code): {', '.join(p.opaque_measures)}")
    if p.unreadable:
        lines.append(f"- {p.unreadable} file(s) could not be read or parsed and were skipped.")
    lines.append("- An integration imported in another way (e.g. by name at run time) is not seen: "
                 "`usagetrace inventory --all` lists everything usagetrace can send.")
    return lines


def markdown(profile: Profile | None = None) -> str:
    """The inventory as Markdown for privacy docs: ``profile``'s package, or (None) the generic full table."""

    def cell(text: str) -> str:
        return text.replace("|", "\\|").replace("\n", " ")

    if profile is None:
        lines = [
            "Everything usagetrace can send, for any package: the generic full table (generated by "
            "`usagetrace inventory --all`; `usagetrace inventory PACKAGE` lists only what that package can "
            f"send, with its own name and version in the examples). Examples use a package named `{_GENERIC_PACKAGE}`.",
        ]
    else:
        version = f" {profile.version}" if profile.version else ""
        lines = [f"What usagetrace can send for `{profile.package}`{version} "
                 f"(generated by `usagetrace inventory {profile.package}`).", ""] + _how(profile)
    lines += ["", "| Key | Where | Type | Meaning | Example |", "|---|---|---|---|---|"]
    for row in rows(profile):
        example = f"`{cell(row['example'])}`" if row["example"] else ""
        lines.append(f"| `{row['key']}` | {row['where']} | {row['type']} | {cell(row['meaning'])} | {example} |")
    usable = features(profile)
    if usable & {"command", "event"}:
        lines += ["", f"Maintainer-declared command/event measurements travel as `{allowlist.MEASURE_PREFIX}<name>` "
                  "(numbers, booleans or values from a declared list only)."]
    lines += ["", "Every string value sent is one of:", ""]
    lines += [f"- {item}" for item in allowlist.STRING_SOURCES]
    lines += ["", "Times:", ""]
    lines += [f"- {item}" for item in allowlist.TIMES]
    lines += ["", "Never sent:", ""]
    lines += [f"- {item}" for item in allowlist.NEVER_SENT]
    package = profile.package if profile is not None else _GENERIC_PACKAGE
    lines += [
        "",
        "What you can check and change:",
        "",
        f"- `usagetrace history {package}` shows every request that left this machine, decoded, with when, "
        "where (scheme://host:port) and how many bytes: a receipt kept locally per package (the newest 2 MiB).",
        f"- `usagetrace disable {package}` stops sending and deletes what was waiting to be sent and the install "
        "id; a later re-enable gets a new id, so data from before and after cannot be joined. To have data "
        "already sent deleted, quote the install id (`usagetrace status`) to the maintainers.",
        "- When the maintainers change what is collected (a new consent version), an opt-out package shows "
        "its notice again and sends nothing until it was shown, and an earlier yes stops counting: you are "
        "asked again. A no always stays a no.",
        "- A consent file or variable that cannot be read turns telemetry off until it is fixed; "
        "`usagetrace status` says where and how.",
    ]
    return "\n".join(lines) + "\n"


def to_json(profile: Profile | None = None) -> dict:
    """The inventory as JSON-able data."""
    data = {"attributes": rows(profile), "strings": list(allowlist.STRING_SOURCES), "times": list(allowlist.TIMES),
            "never_sent": list(allowlist.NEVER_SENT)}
    if profile is not None:
        data.update(
            package=profile.package, version=profile.version, version_from=profile.version_from or None,
            source=profile.source, files_read=profile.files, features=sorted(features(profile)),
            found=profile.features, instrument_calls=profile.instrument_calls,
            measures_not_literal=profile.opaque_measures,
        )
    return data


# ------------------------------------------------------------ callables

_ACCOUNT_CHILD = r"""
import importlib, json, sys
name = sys.argv[1]
notes = []
try:
    importlib.import_module(name)
except BaseException as exc:
    print(json.dumps({"error": f"importing {name} failed: {type(exc).__name__}"}))
    raise SystemExit(0)
from usagetrace._internal import discovery, instrumentation
handle = instrumentation.get(name)
if handle is None:
    notes.append(f"{name} does not call usagetrace.instrument(); accounted as if it did")
    handle = instrumentation.instrument(name)
pending, seen = [sys.modules[name]], set()
while pending and len(seen) < 500:  # public submodules, so lazily imported ones are accounted for too
    module = pending.pop()
    for child in discovery.child_module_names(module):
        if child in seen:
            continue
        seen.add(child)
        try:
            pending.append(importlib.import_module(child))
        except BaseException as exc:
            notes.append(f"{child} could not be imported ({type(exc).__name__}): its callables are not listed")
print(json.dumps({"consent": str(handle.consent), "wrapped": handle.wrapped_names,
                  "monitored": dict(handle.monitored), "skipped": dict(handle.skipped), "notes": notes,
                  "python": "%d.%d" % sys.version_info[:2]}))
"""


def callables(package: str, timeout: float = 120.0) -> dict:
    """Which public callables ``package`` counts, and which it leaves unwrapped and why.

    Only running the package's code can tell (what it holds, what its code
    reaches), so this imports it and its public submodules in a child process
    with telemetry on and every export kept in a temporary directory: nothing
    leaves the machine and no per-user file is touched.
    """
    import json
    import subprocess
    import sys
    import tempfile

    from . import env

    with tempfile.TemporaryDirectory(prefix="usagetrace-inventory-") as tmp:
        child_env = {k: v for k, v in os.environ.items()
                     if not k.startswith("OTEL_EXPORTER_OTLP") and k not in ("DO_NOT_TRACK", "OTEL_SDK_DISABLED")}
        child_env.update({env.package_var(package): "1", "USAGETRACE_HOME": os.path.join(tmp, "home"),
                          "USAGETRACE_PREVIEW_FILE": os.path.join(tmp, "exports.jsonl"),
                          "USAGETRACE_DETACHED_SEND": "0"})
        try:
            proc = subprocess.run([sys.executable, "-c", _ACCOUNT_CHILD, package], env=child_env,
                                  capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL)
        except subprocess.TimeoutExpired:
            return {"error": f"importing {package} took longer than {timeout:.0f} s"}
    for line in reversed(proc.stdout.strip().splitlines()):
        try:
            return json.loads(line)
        except ValueError:
            continue
    return {"error": f"importing {package} failed (exit status {proc.returncode})"}


def callables_markdown(package: str, account: dict) -> str:
    """The account of :func:`callables` as Markdown."""
    if "error" in account:
        return f"\nCallables of `{package}`: {account['error']}.\n"
    wrapped, skipped = account["wrapped"], account["skipped"]
    monitored = account.get("monitored", {})
    total = len(wrapped) + len(monitored) + len(skipped)
    python = f" on Python {account['python']}" if account.get("python") else ""
    lines = ["", f"Callables of `{package}` (found by importing it with telemetry on, in a child "
                 f"process{python}; nothing was sent):", "",
             f"- counted (wrapped): {len(wrapped)}",
             f"- counted without a wrapper (monitored, sys.monitoring on Python 3.12+): {len(monitored)}",
             f"- not counted (skipped): {len(skipped)}"]
    if total:
        lines.append(f"- coverage: {100 * (len(wrapped) + len(monitored)) / total:.0f} % of {total}")
    lines += [f"- note: {note}" for note in account.get("notes", [])]
    if skipped:
        lines += ["", "| Not counted | Why |", "|---|---|"]
        lines += [f"| `{name}` | {reason.replace('|', '/')} |" for name, reason in sorted(skipped.items())]
    if monitored:
        lines += ["", "| Counted without a wrapper | Why not wrapped |", "|---|---|"]
        lines += [f"| `{name}` | {reason.replace('|', '/')} |" for name, reason in sorted(monitored.items())]
    if wrapped:
        lines += ["", "Counted (wrapped): " + ", ".join(f"`{name}`" for name in wrapped)]
    return "\n".join(lines) + "\n"
