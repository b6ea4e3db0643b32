"""Whether a package may send telemetry, and why.

Sources, highest first (the README's "Turning it off" section documents the same):

1. ``DO_NOT_TRACK`` / ``OTEL_SDK_DISABLED``: off, always wins.
2. ``<PACKAGE>_TELEMETRY=0|1``: the person's explicit choice for this process.
3. Under pytest: off, unless granted by 2.
4. Files: a ``.usagetrace_do_not_track`` marker or a ``.usagetrace`` file in the
   current directory or a parent (up to the repository root), and the per-user
   ``consent.toml``. A denial in any file wins over a grant in another, so a
   cloned repository can never override a person's ``usagetrace disable``.
5. In CI with no explicit choice: off (``ci="off"``, the default) or policy.
6. The maintainer's policy: ``opt-in`` (off) or ``opt-out`` (on, but only once
   the one-time notice has been shown on a terminal).

Everything here only reads small files with ``os`` and plain string parsing:
it runs on the import path of every instrumented package, including when the
answer is "off", where the budget is a few milliseconds.
"""

from __future__ import annotations

import os

from . import env, log, paths, runenv

OPT_IN = "opt-in"
OPT_OUT = "opt-out"
POLICIES = (OPT_IN, OPT_OUT)

GRANTED = "granted"
DENIED = "denied"
UNSET = "unset"

PROJECT_FILE = ".usagetrace"
PROJECT_MARKER = ".usagetrace_do_not_track"
ALL = "*"
_MAX_PARENT_LEVELS = 64
_MAX_FILE_BYTES = 64 * 1024


class ConsentState(tuple):
    """The consent decision for one package, with the source that decided it.

    A tuple ``(enabled, state, source)``: ``state`` is the person's own choice
    (granted, denied or unset); ``source`` names what decided, e.g.
    ``env:DO_NOT_TRACK``, ``user:/home/ana/.config/usagetrace/consent.toml`` or
    ``policy:opt-in``. (A plain tuple subclass: ``typing.NamedTuple`` would
    cost an import of ``typing`` on the import path.)
    """

    __slots__ = ()

    def __new__(cls, enabled: bool, state: str, source: str) -> ConsentState:
        return tuple.__new__(cls, (enabled, state, source))

    enabled = property(lambda self: self[0], doc="True when data may be recorded and sent.")
    state = property(lambda self: self[1], doc="granted, denied or unset.")
    source = property(lambda self: self[2], doc="Which source decided.")

    def __repr__(self) -> str:
        return f"ConsentState(enabled={self[0]!r}, state={self[1]!r}, source={self[2]!r})"

    def __str__(self) -> str:
        return f"{'on' if self[0] else 'off'} ({self[1]}, decided by {self[2]})"


# ---------------------------------------------------------------- file parsing


def _parse_value(text: str) -> bool | None:
    text = text.strip()
    if text == "true":
        return True
    if text == "false":
        return False
    raise ValueError(text)


def _parse_key(text: str) -> str:
    text = text.strip()
    if len(text) >= 2 and text[0] == text[-1] and text[0] in "\"'":
        return text[1:-1]
    if text and all(ch.isalnum() or ch in "-_" for ch in text):
        return text
    raise ValueError(text)


def parse_choices(text: str) -> dict[str, bool]:
    """Parse the ``[consent]`` table of a consent file into ``{package: granted}``.

    Files usagetrace writes are a tiny TOML subset parsed here by hand (tomllib
    costs 16 ms to import). Anything outside the subset falls back to tomllib.
    Raises ValueError on invalid content.
    """
    choices: dict[str, bool] = {}
    table = None
    try:
        for raw in text.splitlines():
            line = raw.strip()
            if not line or line.startswith("#"):
                continue
            if line.startswith("["):
                if not line.endswith("]"):
                    raise ValueError(line)
                table = line[1:-1].strip()
                continue
            key, sep, value = line.partition("=")
            if not sep:
                raise ValueError(line)
            if "#" in value:
                value = value.split("#", 1)[0]
            if table is None:
                raise ValueError(line)  # a top-level key (e.g. dotted): let tomllib decide
            if table == "consent":
                choices[_parse_key(key)] = _parse_value(value)
        return choices
    except ValueError:
        pass
    try:
        import tomllib  # type: ignore[import-not-found]
    except ImportError:  # Python < 3.11
        import tomli as tomllib  # type: ignore[no-redef]
    try:
        data = tomllib.loads(text)
    except Exception as exc:
        raise ValueError(f"not valid TOML: {exc}") from None
    section = data.get("consent", {})
    if not isinstance(section, dict):
        raise ValueError("[consent] is not a table")
    out = {}
    for key, value in section.items():
        if not isinstance(value, bool):
            raise ValueError(f"consent.{key} must be true or false")
        out[str(key)] = value
    return out


def read_choices(path: str) -> dict[str, bool] | None:
    """Return the choices in a consent file; None when absent, unreadable or corrupt."""
    try:
        with open(path, "rb") as fh:
            raw = fh.read(_MAX_FILE_BYTES + 1)
    except FileNotFoundError:
        return None
    except Exception:
        log.debug("cannot read consent file %s; treating as unset", path, exc_info=True)
        return None
    if len(raw) > _MAX_FILE_BYTES:
        log.debug("consent file %s is larger than %d bytes; treating as unset", path, _MAX_FILE_BYTES)
        return None
    try:
        return parse_choices(raw.decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as exc:
        log.debug("consent file %s is corrupt (%s); treating as unset", path, exc)
        return None


def _choice_for(choices: dict[str, bool] | None, package: str) -> bool | None:
    if not choices:
        return None
    if package in choices:
        return choices[package]
    return choices.get(ALL)


def format_choices(choices: dict[str, bool]) -> str:
    """Render choices as the consent file's TOML."""
    lines = [
        "# usagetrace consent: true sends anonymous usage data, false never does.",
        "# Edit by hand or with `usagetrace enable|disable PACKAGE`. \"*\" means every package.",
        "[consent]",
    ]
    for key in sorted(choices, key=lambda k: (k != ALL, k)):
        lines.append(f'"{key}" = {"true" if choices[key] else "false"}')
    return "\n".join(lines) + "\n"


def write_choice(package: str, granted: bool | None, path: str | None = None) -> str:
    """Record a person's choice for a package (or ``*``) in the user consent file.

    ``granted=None`` removes the choice. Choosing for ``*`` clears per-package
    choices that contradict it. Returns the file's path. Raises OSError when
    the file cannot be written (the CLI reports it; the SDK never calls this).
    """
    path = path or paths.consent_file()
    choices = read_choices(path) or {}
    if package == ALL and granted is not None:
        choices = {k: v for k, v in choices.items() if v == granted}
    if granted is None:
        choices.pop(package, None)
    else:
        choices[package] = granted
    paths.atomic_write(path, format_choices(choices))
    return path


# ------------------------------------------------------------- project files


def project_files(start: str | None = None) -> list[str]:
    """Return consent-relevant files from the current directory up to the repository root."""
    found = []
    try:
        directory = os.path.abspath(start or os.getcwd())
    except OSError:  # cwd deleted under us
        return found
    for _ in range(_MAX_PARENT_LEVELS):
        for name in (PROJECT_MARKER, PROJECT_FILE):
            candidate = os.path.join(directory, name)
            if os.path.isfile(candidate):
                found.append(candidate)
        if os.path.exists(os.path.join(directory, ".git")) or os.path.exists(os.path.join(directory, ".hg")):
            break
        parent = os.path.dirname(directory)
        if parent == directory:
            break
        directory = parent
    return found


def _project_choice(package: str, files: list[str]) -> tuple[bool | None, str]:
    """Return (choice, path) from project files; the nearest file decides, a marker denies all."""
    for path in files:
        if os.path.basename(path) == PROJECT_MARKER:
            return False, path
        choice = _choice_for(read_choices(path), package)
        if choice is not None:
            return choice, path
    return None, ""


# ------------------------------------------------------------------ decision


def resolve(
    package: str,
    policy: str = OPT_IN,
    *,
    ci: str = "off",
    under_pytest: bool | None = None,
    notice_shown: bool | None = None,
) -> ConsentState:
    """Decide whether ``package`` may send telemetry now. Never raises."""
    try:
        return _resolve(package, policy, ci=ci, under_pytest=under_pytest, notice_shown=notice_shown)
    except Exception:
        log.internal_error("consent.resolve")
        return ConsentState(False, UNSET, "error")


def _resolve(package, policy, *, ci, under_pytest, notice_shown) -> ConsentState:
    switch = env.do_not_track()
    if switch:
        return ConsentState(False, DENIED, f"env:{switch}")
    var = env.package_var(package)
    explicit = env.flag(var)
    if explicit is not None:
        return ConsentState(explicit, GRANTED if explicit else DENIED, f"env:{var}")
    if under_pytest is None:
        under_pytest = runenv.under_pytest()
    if under_pytest:
        return ConsentState(False, UNSET, "pytest")

    top = package.split(".", 1)[0]
    files = project_files()
    project, project_path = _project_choice(top, files)
    user_path = paths.consent_file()
    user = _choice_for(read_choices(user_path), top)
    if project is False:
        return ConsentState(False, DENIED, f"project:{project_path}")
    if user is False:
        return ConsentState(False, DENIED, f"user:{user_path}")
    if project is True:
        return ConsentState(True, GRANTED, f"project:{project_path}")
    if user is True:
        return ConsentState(True, GRANTED, f"user:{user_path}")

    if ci != "policy" and runenv.ci_provider():
        return ConsentState(False, UNSET, "ci")
    if policy == OPT_OUT:
        if notice_shown is None:
            from . import notice

            notice_shown = notice.ensure_shown(top)
        if not notice_shown:
            return ConsentState(False, UNSET, "policy:opt-out (notice not yet shown)")
        return ConsentState(True, UNSET, "policy:opt-out")
    return ConsentState(False, UNSET, "policy:opt-in")


def fingerprint(package: str) -> tuple:
    """Return a cheap value that changes whenever any consent source may have changed.

    Used by the background refresher so a running process notices
    ``usagetrace disable`` within seconds without re-reading files on every call.
    """
    stats = []
    for path in [paths.consent_file(), *project_files()]:
        try:
            st = os.stat(path)
            stats.append((path, st.st_mtime_ns, st.st_size))
        except OSError:
            stats.append((path, None, None))
    return (
        env.get("DO_NOT_TRACK"),
        env.get("OTEL_SDK_DISABLED"),
        env.get(env.package_var(package)),
        tuple(stats),
    )
