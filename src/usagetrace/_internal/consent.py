"""Whether a package may send telemetry, and why.

Sources, highest first (the README's "Turning it off" section documents the same):

1. ``DO_NOT_TRACK`` / ``OTEL_SDK_DISABLED``: off, always wins.
2. ``<PACKAGE>_TELEMETRY=0|1``: the person's explicit choice for this process.
   Any other value is a choice that cannot be read: off.
3. Under pytest: off, unless granted by 2.
4. Files: a ``.usagetrace_do_not_track`` marker or a ``.usagetrace`` file in the
   current directory or a parent (never above the repository root or ``$HOME``,
   whichever is nearer), and the per-user ``consent.toml``. Project files can
   only say no: a grant in one is ignored (``status`` shows it as a note), since
   anyone can put a file in ``/tmp`` or commit one to a repository a person
   clones. Only the person grants: ``consent.toml`` (``usagetrace enable``,
   ``ask_consent``) or ``<PACKAGE>_TELEMETRY=1``. A denial in any file wins.
5. In CI with no explicit choice: off (``ci="off"``, the default) or policy.
6. The maintainer's policy: ``opt-in`` (off) or ``opt-out`` (on, but only once
   the one-time notice has been shown on a terminal).

Fail closed: a file that exists but cannot be read or parsed in full (not
UTF-8, truncated, a bad line, a duplicate key, a directory, a symlink loop,
unreadable, oversized) turns telemetry off for every package it could concern,
until it is fixed; only 1 and 2 still apply. ``usagetrace status`` names the
file, the line and what to do (:class:`BrokenSource`).

Re-consent: a maintainer may declare a consent version (``instrument(...,
consent_version=2)``). A grant in a file counts only when it was given for that
version (``[consent_version]`` table); an opt-out notice counts only when shown
for it (``state.py``). Denials never expire.

Everything read on the import path uses ``os`` and plain string parsing: it
runs on the import path of every instrumented package, including when the
answer is "off", where the budget is a few milliseconds. Files outside the
small subset usagetrace writes fall back to ``tomllib``.
"""

import errno
import os
import stat
import sys

from . import env, log

# paths and runenv: bound by _load() once the environment has not decided (DO_NOT_TRACK answers "off"
# on every import of every instrumented package, with as little imported as possible), then held, so
# no import statement runs here again (the delivery thread refreshes consent: delivery._Deps).
paths = runenv = None


def _load() -> None:
    global paths, runenv
    if runenv is None:
        from . import paths as _paths, runenv as _runenv

        paths, runenv = _paths, _runenv

OPT_IN = "opt-in"
OPT_OUT = "opt-out"
POLICIES = (OPT_IN, OPT_OUT)

GRANTED = "granted"
DENIED = "denied"
UNSET = "unset"
#: The person's choice exists but cannot be read (a broken file, an unusable variable).
INVALID = "invalid"

#: The decision in the run that showed an opt-out notice: off; sending starts with the next run.
NOTICE_THIS_RUN = "policy:opt-out (notice shown in this run; sending starts with the next run)"
PROJECT_FILE = ".usagetrace"
PROJECT_MARKER = ".usagetrace_do_not_track"
ALL = "*"
CONSENT_TABLE = "consent"
VERSION_TABLE = "consent_version"
_MAX_PARENT_LEVELS = 64
_MAX_FILE_BYTES = 64 * 1024
_BARE = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_")
_NONBLOCK = getattr(os, "O_NONBLOCK", 0)  # a FIFO named consent.toml must not block the import
HEADER = (
    "# usagetrace consent: true sends anonymous usage data, false never does.\n"
    '# Edit by hand or with `usagetrace enable|disable PACKAGE`. "*" means every package.\n'
)


class ConsentState(tuple):
    """The consent decision for one package, with the source that decided it.

    A tuple ``(enabled, state, source)``: ``state`` is the person's own choice
    (granted, denied, unset, or invalid when it cannot be read); ``source``
    names what decided, e.g. ``env:DO_NOT_TRACK``,
    ``user:/home/ana/.config/usagetrace/consent.toml`` or ``policy:opt-in``.
    (A plain tuple subclass: ``typing.NamedTuple`` would cost an import of
    ``typing`` on the import path.)
    """

    __slots__ = ()

    def __new__(cls, enabled: bool, state: str, source: str) -> "ConsentState":
        return tuple.__new__(cls, (enabled, state, source))

    enabled = property(lambda self: self[0], doc="True when data may be recorded and sent.")
    state = property(lambda self: self[1], doc="granted, denied, unset or invalid.")
    source = property(lambda self: self[2], doc="Which source decided.")

    def __repr__(self) -> str:
        return f"ConsentState(enabled={self[0]!r}, state={self[1]!r}, source={self[2]!r})"

    def __str__(self) -> str:
        return f"{'on' if self[0] else 'off'} ({self[1]}, decided by {self[2]})"


class BrokenSource(ValueError):
    """A consent source that exists but cannot be read or parsed in full (or not edited safely).

    ``kind`` is ``user``, ``project`` or ``env``; ``path`` the file (or the
    variable's name); ``line`` the 1-based line when one is to blame;
    ``problem`` what is wrong and ``fix`` what the person can do.
    """

    def __init__(self, kind: str, path: str, problem: str, line: "int | None" = None, fix: str = "") -> None:
        super().__init__(problem)
        self.kind = kind
        self.path = path
        self.problem = problem
        self.line = line
        self.fix = fix

    @property
    def where(self) -> str:
        return f"{self.path}, line {self.line}" if self.line else self.path

    @property
    def scope(self) -> str:
        """Which packages are off while this source is broken."""
        if self.kind == "env":
            return "that package"
        if self.kind == "project":
            return "every package run in this directory tree"
        return "every package"

    def __str__(self) -> str:
        return f"{self.where}: {self.problem}"

    def as_dict(self) -> dict:
        return {"source": self.kind, "path": self.path, "line": self.line, "problem": self.problem,
                "fix": self.fix, "off_for": self.scope}


class _Bad(Exception):
    """A parse error at a line (1-based), turned into BrokenSource by the reader."""

    def __init__(self, line: "int | None", problem: str) -> None:
        super().__init__(problem)
        self.line = line
        self.problem = problem


# ---------------------------------------------------------------- file parsing


class Parsed:
    """A parsed consent file: choices, grant versions, and where each entry sits (for editing in place)."""

    __slots__ = ("choices", "versions", "entries", "version_entries", "headers", "comments", "editable")

    def __init__(self) -> None:
        self.choices: dict[str, bool] = {}
        self.versions: dict[str, str] = {}
        self.entries: dict[str, int] = {}  # key -> 0-based line index, [consent]
        self.version_entries: dict[str, int] = {}  # key -> line index, [consent_version]
        self.headers: dict[str, int] = {}  # table name -> line index
        self.comments: dict[int, str] = {}  # line index -> trailing comment kept on rewrite
        self.editable = True


def _key(text: str) -> "str | None":
    """A key in the subset (bare, or quoted without escapes); None when tomllib must decide."""
    text = text.strip(" \t")
    if len(text) >= 2 and text[0] == text[-1] and text[0] in "\"'":
        inner = text[1:-1]
        if inner and text[0] not in inner and "\\" not in inner and inner.isprintable():
            return inner
        return None
    if text and all(ch in _BARE for ch in text):
        return text
    return None


def _split_comment(value: str) -> tuple[str, str]:
    """Split ``true  # why`` into (``true``, ``  # why``) for values that hold no ``#`` themselves."""
    cut = value.find("#")
    if cut < 0:
        return value.strip(" \t"), ""
    head = value[:cut]
    return head.strip(" \t"), value[len(head.rstrip(" \t")):]


def _version_value(value: str) -> "tuple[str, str] | None":
    """Parse a ``[consent_version]`` value: a plain "string" or an integer; None when not one."""
    value = value.strip(" \t")
    if value.startswith('"'):
        end = value.find('"', 1)
        if end < 1 or "\\" in value[:end]:
            return None
        rest = value[end + 1:]
        if rest.strip(" \t") and not rest.strip(" \t").startswith("#"):
            return None
        return value[1:end], rest
    number, comment = _split_comment(value)
    if number.isdigit() and number.isascii():
        return str(int(number)), comment
    return None


def _parse(text: str) -> "Parsed":
    """Parse a consent file; raise :class:`_Bad` with the line to blame.

    The files usagetrace writes are a tiny TOML subset parsed here by hand
    (tomllib costs 16 ms to import). A line outside the subset hands the whole
    file to tomllib; an error found by the subset before any such line is
    certain and reported at its line.
    """
    p = Parsed()
    table = None
    outside = False  # saw something the subset does not cover: tomllib has the last word
    deferred: _Bad | None = None
    for index, raw in enumerate(text.split("\n")):
        line = raw[:-1] if raw.endswith("\r") else raw
        line = line.strip(" \t")
        if not line:
            continue
        if not line.replace("\t", " ").isprintable():
            outside = True  # control characters, exotic spaces: tomllib knows which are allowed
            continue
        if line[0] == "#":
            continue
        try:
            if line[0] == "[":
                close = line.find("]")
                name = line[1:close].strip(" \t") if close > 1 else ""
                rest = line[close + 1:].strip(" \t") if close > 1 else ""
                if line.startswith("[[") or not name or not all(ch in _BARE for ch in name) or (
                    rest and rest[0] != "#"
                ):
                    outside, table = True, "?"
                    continue
                if name in p.headers:
                    raise _Bad(index + 1, f"[{name}] appears twice (first on line {p.headers[name] + 1})")
                p.headers[name] = index
                table = name
                continue
            key_text, sep, value = line.partition("=")
            if not sep and table in (CONSENT_TABLE, VERSION_TABLE):
                raise _Bad(index + 1, f"`{line[:60]}` is not `name = value`")
            key = _key(key_text)
            if key is None:
                outside = True  # an escaped, dotted or odd key: tomllib decides what it means
                continue
            if table == CONSENT_TABLE:
                word, comment = _split_comment(value)
                if word not in ("true", "false"):
                    raise _Bad(index + 1, f"the value of `{key}` must be true or false, not `{word[:40]}`")
                if key in p.choices:
                    raise _Bad(index + 1, f"`{key}` is set twice (also on line {p.entries[key] + 1})")
                p.choices[key] = word == "true"
                p.entries[key] = index
                p.comments[index] = comment
            elif table == VERSION_TABLE:
                parsed = _version_value(value)
                if parsed is None:
                    raise _Bad(index + 1, f'`{line[:60]}` is not `name = "version"`')
                if key in p.versions:
                    raise _Bad(index + 1, f"`{key}` is set twice (also on line {p.version_entries[key] + 1})")
                p.versions[key], p.comments[index] = parsed
                p.version_entries[key] = index
            else:
                outside = True  # another table or a top-level key: not ours to interpret
        except _Bad as bad:
            if not outside:
                raise
            deferred = deferred or bad  # an earlier line may have opened a multi-line string
    if not outside:
        return p
    return _parse_with_tomllib(text, p, deferred)


def _parse_with_tomllib(text: str, subset: "Parsed", deferred: "_Bad | None") -> "Parsed":
    try:
        import tomllib  # type: ignore[import-not-found]
    except ImportError:  # Python < 3.11
        import tomli as tomllib  # type: ignore[no-redef]
    try:
        data = tomllib.loads(text)
    except Exception as exc:
        message = str(exc)
        line = None
        marker = "(at line "
        if marker in message:
            digits = message[message.index(marker) + len(marker):].split(",")[0].split(")")[0]
            line = int(digits) if digits.isdigit() else None
            message = message[: message.index(marker)].strip()
        elif "(at end of document)" in message:
            line = len(text.rstrip("\n").split("\n"))
            message = message.replace("(at end of document)", "at the end of the file").strip()
        raise _Bad(line, f"not valid TOML: {message}") from None
    out = Parsed()
    for table, target in ((CONSENT_TABLE, out.choices), (VERSION_TABLE, out.versions)):
        section = data.get(table, {})
        if not isinstance(section, dict):
            raise _Bad(_find_line(text, table), f"`{table}` must be a table ([{table}])")
        for key, value in section.items():
            if table == CONSENT_TABLE and not isinstance(value, bool):
                raise _Bad(_find_line(text, key), f"the value of `{key}` must be true or false")
            if table == VERSION_TABLE:
                if isinstance(value, bool) or not isinstance(value, (int, str)):
                    raise _Bad(_find_line(text, key), f'the consent version of `{key}` must be a "string" or a number')
                value = str(value)
            target[str(key)] = value
    if deferred is None and out.choices == subset.choices and out.versions == subset.versions:
        subset.editable = True  # the subset's view of our tables is the real one: safe to edit in place
        return subset
    out.editable = False
    return out


def _find_line(text: str, key: str) -> "int | None":
    """Best effort: the first line that assigns ``key`` (tomllib reports no positions for types)."""
    for index, raw in enumerate(text.split("\n")):
        line = raw.strip(" \t")
        for form in (key, f'"{key}"', f"'{key}'", f"consent.{key}"):
            if line.startswith(form) and line[len(form):].lstrip(" \t")[:1] in ("=", "."):
                return index + 1
    return None


def parse_choices(text: str) -> dict[str, bool]:
    """Parse the ``[consent]`` table of a consent file into ``{package: granted}``; ValueError when invalid."""
    try:
        return _parse(text).choices
    except _Bad as bad:
        raise ValueError(f"line {bad.line}: {bad.problem}" if bad.line else bad.problem) from None


_FIX_EDIT = ("Edit that line so it reads `name = true` or `name = false` (or remove it). Deleting the whole "
             "file also works, but drops every other choice in it.")


def _broken(kind: str, path: str, problem: str, fix: str, line: "int | None" = None) -> "BrokenSource":
    return BrokenSource(kind, path, problem, line, fix)


def _read_bytes(path: str, kind: str) -> "bytes | None":
    """Return a consent file's bytes; None when there is none; BrokenSource when it cannot be read."""
    try:
        fd = os.open(path, os.O_RDONLY | _NONBLOCK)
    except (FileNotFoundError, NotADirectoryError):
        if os.path.lexists(path):
            raise _broken(kind, path, "is a symbolic link to a file that does not exist",
                          "Point the link at an existing file, or remove the link.") from None
        return None
    except PermissionError:
        raise _broken(kind, path, "cannot be read (permission denied)",
                      f"Make it readable (chmod u+r {path}), or delete it.") from None
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise _broken(kind, path, "is a symbolic link loop", "Remove the link or point it at a real file.") from None
        raise _broken(kind, path, f"cannot be opened ({exc.strerror or exc})", "Check the file, or delete it.") from None
    try:
        st = os.fstat(fd)
        if stat.S_ISDIR(st.st_mode):
            raise _broken(kind, path, "is a directory, not a file", "Remove that directory (usagetrace expects a file).")
        if not stat.S_ISREG(st.st_mode):
            raise _broken(kind, path, "is not a regular file", "Replace it with a regular file, or remove it.")
        chunks = []
        size = 0
        while size <= _MAX_FILE_BYTES:
            chunk = os.read(fd, _MAX_FILE_BYTES + 1 - size)
            if not chunk:
                break
            chunks.append(chunk)
            size += len(chunk)
    except OSError as exc:
        raise _broken(kind, path, f"cannot be read ({exc.strerror or exc})", "Check the file, or delete it.") from None
    finally:
        os.close(fd)
    if size > _MAX_FILE_BYTES:
        raise _broken(kind, path, f"is larger than {_MAX_FILE_BYTES // 1024} KiB",
                      "A consent file is a few lines: remove what does not belong, or delete it.")
    return b"".join(chunks)


def _decode(raw: bytes, path: str, kind: str) -> str:
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        raise _broken(kind, path, "is not UTF-8 text", "Save it as UTF-8 text, or delete it.", line) from None


def read_file(path: str, kind: str = "user") -> "Parsed | None":
    """Read and parse a consent file; None when absent; BrokenSource when it cannot be read in full."""
    raw = _read_bytes(path, kind)
    if raw is None:
        return None
    return _parse_source(_decode(raw, path, kind), path, kind)


def _parse_source(text: str, path: str, kind: str) -> "Parsed":
    try:
        return _parse(text)
    except _Bad as bad:
        fix = _FIX_EDIT if bad.line else "Fix the file; deleting it also works, but drops every choice in it."
        raise _broken(kind, path, bad.problem, fix, bad.line) from None


def read_choices(path: str, kind: str = "user") -> "dict[str, bool] | None":
    """Return the choices in a consent file; None when absent; BrokenSource when it cannot be read in full."""
    parsed = read_file(path, kind)
    return None if parsed is None else parsed.choices


def _format_key(key: str) -> str:
    return key if key and all(ch in _BARE for ch in key) else f'"{key}"'


def _entry(key: str, granted: bool) -> str:
    return f"{_format_key(key)} = {'true' if granted else 'false'}"


def _version_entry(key: str, version: str) -> str:
    return f'{_format_key(key)} = "{version}"'


def format_choices(choices: dict[str, bool], versions: "dict[str, str] | None" = None) -> str:
    """Render choices (and grant versions) as a fresh consent file."""
    lines = [HEADER + "[consent]"]
    for key in sorted(choices, key=lambda k: (k != ALL, k)):
        lines.append(_entry(key, choices[key]))
    if versions:
        lines.append(f"\n[{VERSION_TABLE}]")
        lines += [_version_entry(k, versions[k]) for k in sorted(versions)]
    return "\n".join(lines) + "\n"


def _check_key(key: str) -> None:
    if not key or '"' in key or "\\" in key or not key.isprintable():
        raise ValueError(f"{key!r} cannot be a consent key")


def edit(
    text: str, parsed: "Parsed", package: str, granted: "bool | None", version: "str | None" = None
) -> tuple[str, dict]:
    """Return ``text`` with one choice changed in place, and a report of what changed.

    Every other line (entries, comments, other tables) is kept as it was.
    ``granted=None`` removes the choice. ``*`` with ``False`` also removes
    per-package grants (they would contradict "nothing, from any package");
    ``*`` with ``True`` keeps per-package denials (a specific choice beats
    ``*``). A grant with a ``version`` records it in ``[consent_version]``.
    Raises ValueError when the result would not read back as intended.
    """
    _check_key(package)
    if not parsed.editable:
        raise ValueError("it uses TOML that usagetrace cannot edit without risking your other entries")
    choices = dict(parsed.choices)
    versions = dict(parsed.versions)
    report = {"changed": False, "removed_grants": [], "kept_denials": []}
    removals = []
    if package == ALL and granted is False:
        report["removed_grants"] = sorted(k for k, v in choices.items() if v and k != ALL)
        removals = list(report["removed_grants"])
    if package == ALL and granted is True:
        report["kept_denials"] = sorted(k for k, v in choices.items() if v is False and k != ALL)
    for key in removals:
        del choices[key]
        versions.pop(key, None)
    if granted is None:
        choices.pop(package, None)
    else:
        choices[package] = granted
    if granted and version is not None and package != ALL:
        versions[package] = str(version)
    else:
        versions.pop(package, None)

    newline = "\r\n" if "\r\n" in text else "\n"
    if not text.strip():
        new_text = format_choices(choices, versions).replace("\n", newline)
    else:
        new_text = _apply(text, parsed, choices, versions, newline)
    if _parse_or_none(new_text) != (choices, versions):
        raise ValueError("an edit in place would not read back as intended")
    report["changed"] = new_text != text
    return new_text, report


def _apply(text: str, parsed: "Parsed", choices: dict, versions: dict, newline: str) -> str:
    lines = text.split("\n")  # a CRLF file keeps its "\r" on each line; new lines get one too
    cr = "\r" if newline == "\r\n" else ""
    replace: dict[int, str | None] = {}
    after: dict[int, list[str]] = {}
    appended: list[str] = []
    for table, old, new, where, render in (
        (CONSENT_TABLE, parsed.choices, choices, parsed.entries, _entry),
        (VERSION_TABLE, parsed.versions, versions, parsed.version_entries, _version_entry),
    ):
        for key in old:
            if key not in new:
                replace[where[key]] = None
            elif new[key] != old[key]:
                index = where[key]
                replace[index] = render(key, new[key]) + parsed.comments.get(index, "") + cr
        added = [render(key, new[key]) + cr for key in new if key not in old]
        if not added:
            continue
        if table in parsed.headers:
            after.setdefault(max([parsed.headers[table], *where.values()]), []).extend(added)
        else:
            appended += [cr, f"[{table}]{cr}", *added]
    out = []
    for index, line in enumerate(lines):
        new_line = replace.get(index, line)
        if new_line is not None:
            out.append(new_line)
        out += after.get(index, ())
    if appended:
        while out and not out[-1].strip():
            out.pop()
        out += [*appended, ""]
    return "\n".join(out)


def _parse_or_none(text: str):
    try:
        parsed = _parse(text)
    except _Bad:
        return None
    return parsed.choices, parsed.versions


def write_choice(
    package: str, granted: "bool | None", path: "str | None" = None, *, version: "str | None" = None
) -> dict:
    """Record a person's choice for a package (or ``*``) in a consent file, in place.

    Holds a lock across read-modify-write and replaces the file atomically, so
    two commands at once never lose an entry. Returns :func:`edit`'s report
    plus ``path``. Raises BrokenSource when the file cannot be read or edited
    safely (nothing is changed then), OSError when it cannot be written.
    """
    _load()
    path = path or paths.consent_file()
    real = os.path.realpath(path)  # written through a (dotfile manager's) symlink, which stays a symlink
    with paths.locked(real + ".lock"):
        raw = _read_bytes(path, "user")  # via the link: a dangling link or a loop is broken, not replaced
        text = "" if raw is None else _decode(raw, path, "user")
        parsed = _parse_source(text, path, "user")
        try:
            new_text, report = edit(text, parsed, package, granted, version)
        except ValueError as exc:
            raise _broken("user", path, f"was not changed: {exc}",
                          "Make this change by hand in the file.") from None
        if report["changed"]:
            paths.atomic_write(real, new_text, durable=True)
    report["path"] = path
    return report


# ------------------------------------------------------------- project files


def _homes() -> tuple[str, ...]:
    """$HOME as given and as resolved (the walk's directories come from getcwd, which resolves links)."""
    home = env.get("HOME") if os.name != "nt" else env.get("USERPROFILE")
    if not home or not os.path.isabs(home):
        return ()
    given = os.path.normcase(os.path.abspath(home))
    try:
        return (given, os.path.normcase(os.path.realpath(home)))
    except (OSError, ValueError):
        return (given,)


def project_files(start: "str | None" = None) -> list[str]:
    """Return consent-relevant files from the current directory up to the repository root or ``$HOME``.

    The walk stops at whichever of the two it meets first (so ``$HOME`` itself
    is read, never its parent, and a repository's parent never is); from a
    directory in neither it goes up to ``/``, which is harmless since a
    project file can only say no. Anything by those names counts, not only
    regular files: a directory or a dangling link named ``.usagetrace`` is a
    broken source (off), and a marker denies whatever it is.
    """
    found = []
    try:
        directory = os.path.abspath(start or os.getcwd())
    except OSError:  # cwd deleted under us
        return found
    homes = _homes()
    for _ in range(_MAX_PARENT_LEVELS):
        for name in (PROJECT_MARKER, PROJECT_FILE):
            candidate = os.path.join(directory, name)
            if os.path.lexists(candidate):
                found.append(candidate)
        if os.path.exists(os.path.join(directory, ".git")) or os.path.exists(os.path.join(directory, ".hg")):
            break
        if os.path.normcase(directory) in homes:
            break
        parent = os.path.dirname(directory)
        if parent == directory:
            break
        directory = parent
    return found


#: ``project_dir`` for a process that decides for data recorded elsewhere (the detached sender and
#: uploader): no project files at all. They can only say no, and the recording run read its own.
NO_PROJECT = False


def _sources(project_dir=None) -> list[tuple[str, str]]:
    _load()
    projects = [] if project_dir is NO_PROJECT else project_files(project_dir)
    return [("project", p) for p in projects] + [("user", paths.consent_file())]


def _grant_counts(parsed: "Parsed", package: str, version: "str | None") -> bool:
    """A grant counts when no consent version is declared, or it was given for this one."""
    if version is None:
        return True
    return package in parsed.choices and parsed.versions.get(package) == version


def _from_files(
    package: str, version: "str | None", project_dir: "str | None" = None
) -> "ConsentState | None":
    """The files' decision; None when no file decides (broken files decide: off)."""
    grant = broken = None
    for kind, path in _sources(project_dir):
        if kind == "project" and os.path.basename(path) == PROJECT_MARKER:
            return ConsentState(False, DENIED, f"project:{path}")
        try:
            parsed = read_file(path, kind)
        except BrokenSource as exc:
            broken = broken or exc
            continue
        if parsed is None:
            continue
        choice = parsed.choices.get(package, parsed.choices.get(ALL))
        if choice is False:
            return ConsentState(False, DENIED, f"{kind}:{path}")
        if choice is True and kind == "user" and grant is None and _grant_counts(parsed, package, version):
            grant = f"{kind}:{path}"
    if broken is not None:
        return ConsentState(False, INVALID, f"{broken.kind}:{broken.path}")
    if grant is not None:
        return ConsentState(True, GRANTED, grant)
    return None


def problems(package: "str | None" = None) -> "list[BrokenSource]":
    """Every consent source that cannot be read: files here and, for ``package``, its variable."""
    found = []
    if package is not None:
        var = env.package_var(package)
        if env.choice(var) is env.INVALID:
            shown = (env.get(var) or "")[:40]
            found.append(BrokenSource("env", var, f"{shown!r} is not 1/0, true/false, yes/no or on/off",
                                      fix=f"Set {var}=1 or {var}=0, or unset it."))
    for kind, path in _sources():
        if os.path.basename(path) == PROJECT_MARKER:
            continue
        try:
            read_file(path, kind)
        except BrokenSource as exc:
            found.append(exc)
    return found


def ignored_grants(package: str) -> list[str]:
    """Project files holding a grant for ``package``: ignored since grants are personal (a ``status`` note)."""
    out = []
    for kind, path in _sources():
        if kind != "project" or os.path.basename(path) == PROJECT_MARKER:
            continue
        try:
            parsed = read_file(path, kind)
        except BrokenSource:
            continue
        if parsed is not None and parsed.choices.get(package, parsed.choices.get(ALL)) is True:
            out.append(path)
    return out


def stale_grants(package: str, version: "str | None") -> list[str]:
    """Files holding a grant for ``package`` that does not count for consent version ``version``."""
    if version is None:
        return []
    out = []
    for kind, path in _sources():
        try:
            parsed = read_file(path, kind) if os.path.basename(path) != PROJECT_MARKER else None
        except BrokenSource:
            continue
        if kind == "user" and parsed is not None and parsed.choices.get(package, parsed.choices.get(ALL)) is True:
            if not _grant_counts(parsed, package, version):
                out.append(f"{kind}:{path}")
    return out


# ---------------------------------------------------------- consent versions


def _version_file(package: str) -> str:
    _load()
    return paths.state_path("consent-versions", package)


def declared_version(package: str) -> "str | None":
    """The consent version ``package`` declared when it last ran here (None when unknown or none)."""
    try:
        with open(_version_file(package), encoding="utf-8") as fh:
            return fh.read(200).strip() or None
    except (OSError, UnicodeDecodeError):
        return None


def remember_version(package: str, version: str) -> None:
    """Record the declared consent version, so ``usagetrace enable`` grants that version.

    One small read per import of a package that declares a version; a write
    only when the version changed. Never raises.
    """
    try:
        if declared_version(package) != version:
            _load()
            paths.atomic_write(_version_file(package), version + "\n")
    except Exception:
        log.debug("cannot record the consent version of %s", package, exc_info=True)


def normalize_version(value) -> "str | None":
    """A consent version as stored: None, or the text of an int or a short printable string."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, str)):
        raise ValueError(f"consent_version must be an int or a str, not {type(value).__name__}")
    text = str(value).strip()
    if not text or len(text) > 64 or not text.isprintable() or '"' in text or "\\" in text:
        raise ValueError(f"consent_version {value!r} must be 1-64 printable characters without quotes")
    return text


# ------------------------------------------------------------------ decision


def resolve(
    package: str,
    policy: str = OPT_IN,
    *,
    ci: str = "off",
    under_pytest: "bool | None" = None,
    notice_shown: "bool | None" = None,
    consent_version: "str | None" = None,
    project_dir=None,
) -> "ConsentState":
    """Decide whether ``package`` may send telemetry now. Never raises.

    ``project_dir``: where project files are looked for instead of the current
    directory; :data:`NO_PROJECT` for none (a sender deciding for data recorded by another run).
    """
    try:
        return _resolve(package, policy, ci=ci, under_pytest=under_pytest, notice_shown=notice_shown,
                        version=consent_version, project_dir=project_dir)
    except Exception:
        log.internal_error("consent.resolve")
        return ConsentState(False, UNSET, "error")


def _resolve(package, policy, *, ci, under_pytest, notice_shown, version, project_dir=None) -> "ConsentState":
    switch = env.do_not_track()
    if switch:
        return ConsentState(False, DENIED, f"env:{switch}")
    var = env.package_var(package)
    explicit = env.choice(var)
    if explicit is env.INVALID:
        return ConsentState(False, INVALID, f"env:{var}")
    if explicit is not None:
        return ConsentState(explicit, GRANTED if explicit else DENIED, f"env:{var}")
    _load()
    if under_pytest is None:
        under_pytest = runenv.under_pytest()
    if under_pytest:
        return ConsentState(False, UNSET, "pytest")

    top = package.split(".", 1)[0]
    decided = _from_files(top, version, project_dir)
    if decided is not None:
        return decided

    if ci != "policy" and runenv.ci_provider():
        return ConsentState(False, UNSET, "ci")
    if policy == OPT_OUT:
        shown = sys.modules.get(__package__ + ".notice")
        if shown is not None and shown.shown_this_run(top):
            # Consent starts after the notice: nothing of the run that showed it is ever sent.
            return ConsentState(False, UNSET, NOTICE_THIS_RUN)
        if notice_shown is None:
            from . import notice

            notice_shown = notice.ensure_shown(top, version)
            if notice.shown_this_run(top):
                return ConsentState(False, UNSET, NOTICE_THIS_RUN)
        if not notice_shown:
            return ConsentState(False, UNSET, "policy:opt-out (notice not yet shown)")
        return ConsentState(True, UNSET, "policy:opt-out")
    return ConsentState(False, UNSET, "policy:opt-in")


def fingerprint(package: str) -> tuple:
    """Return a cheap value that changes whenever any consent source may have changed.

    Used by the background refresher so a running process notices
    ``usagetrace disable`` within seconds without re-reading files on every call.
    """
    _load()
    stats = []
    for path in [paths.consent_file(), *project_files()]:
        try:
            st = os.stat(path)
            stats.append((path, st.st_mtime_ns, st.st_size, st.st_ino))
        except OSError:
            stats.append((path, None, None, None))
    return (
        env.get("DO_NOT_TRACK"),
        env.get("OTEL_SDK_DISABLED"),
        env.get(env.package_var(package)),
        tuple(stats),
    )
