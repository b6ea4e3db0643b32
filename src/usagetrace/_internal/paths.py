"""Per-user directories for usagetrace's own files.

The answers are platformdirs' (``appname="usagetrace"``, no author). On Linux and
macOS they are computed here without importing platformdirs, because that
import costs 8-20 ms and this runs on the import path of every instrumented
package, including when telemetry is off; ``tests/test_paths.py`` pins the
shortcut to platformdirs' own answer. Elsewhere platformdirs is imported.

``USAGETRACE_HOME`` (an absolute path) puts every file under one directory instead
(tests, sandboxes); a relative one is ignored.

No home (``HOME`` unset and no passwd entry, or a relative ``HOME``): every
function here raises :class:`NoHome` rather than answer a path relative to
the current directory (``./~/.config/...``), so nothing is written there and
no ``consent.toml`` in a repository is read as the person's choice. Callers
treat it as any unwritable directory: nothing is stored, the install id is a
per-run one (``resource.install_id``), and ``usagetrace status`` says so.
"""

import os
import sys

from . import env, log

#: The real clocks (clock.REAL), bound by the first lock taken: an undecided run reads its consent file
#: without importing clock; held afterwards, so no import statement runs here again (delivery._Deps).
_clock = None


def _real_clock():
    global _clock
    if _clock is None:
        from .clock import REAL as _clock  # the real clocks, even while the host fakes its own (clock.py)
    return _clock

APP = "usagetrace"


class NoHome(OSError):
    """There is no home directory to keep per-user files in (never the current directory instead)."""


def _xdg(var: str, default: str) -> str:
    # Same rule as platformdirs: an XDG variable counts only when absolute.
    value = env.get(var)
    if value and os.path.isabs(value):
        return value
    expanded = os.path.expanduser(default)
    if not os.path.isabs(expanded):
        raise NoHome(f"no home directory (HOME unset or relative): not using {expanded!r} in the current directory")
    return expanded


def _platformdirs(kind: str) -> str:
    import platformdirs

    return getattr(platformdirs, f"user_{kind}_dir")(APP, appauthor=False)


def user_dir(kind: str) -> str:
    """Return the per-user directory of one kind: config, data, cache or state. Raises :class:`NoHome`."""
    home = env.get("USAGETRACE_HOME")
    if home and os.path.isabs(home):
        return os.path.join(home, kind)
    if home:
        # A relative path would scatter files into whatever directory the host runs in.
        log.debug("ignoring USAGETRACE_HOME=%r: not an absolute path", home[:80])
    if sys.platform.startswith("linux") or sys.platform.startswith("freebsd"):
        base = {
            "config": _xdg("XDG_CONFIG_HOME", "~/.config"),
            "data": _xdg("XDG_DATA_HOME", "~/.local/share"),
            "cache": _xdg("XDG_CACHE_HOME", "~/.cache"),
            "state": _xdg("XDG_STATE_HOME", "~/.local/state"),
        }[kind]
        return os.path.join(base, APP)
    if sys.platform == "darwin":
        base = {
            "config": _xdg("XDG_CONFIG_HOME", "~/Library/Application Support"),
            "data": _xdg("XDG_DATA_HOME", "~/Library/Application Support"),
            "cache": _xdg("XDG_CACHE_HOME", "~/Library/Caches"),
            "state": _xdg("XDG_STATE_HOME", "~/Library/Application Support"),
        }[kind]
        return os.path.join(base, APP)
    found = _platformdirs(kind)
    if not os.path.isabs(found):
        raise NoHome(f"no home directory: not using {found!r} in the current directory")
    return found


def home_state() -> str:
    """``"ok"``, ``"none"`` (no home directory at all) or ``"unwritable"`` (for ``usagetrace status``)."""
    try:
        directory = user_dir("data")
    except NoHome:
        return "none"
    probe = directory
    while not os.path.exists(probe):
        parent = os.path.dirname(probe)
        if parent == probe:
            break
        probe = parent
    return "ok" if os.path.isdir(probe) and os.access(probe, os.W_OK | os.X_OK) else "unwritable"


def consent_file() -> str:
    """Return the path of the per-user consent file."""
    return os.path.join(user_dir("config"), "consent.toml")


def state_file() -> str:
    """Return the path of the per-user state file (notices shown, known packages)."""
    return os.path.join(user_dir("state"), "state.json")


def ids_dir() -> str:
    """Return the directory holding one install-id file per package."""
    return os.path.join(user_dir("data"), "ids")


def spool_dir() -> str:
    """Return the directory where unsent telemetry waits for a later run."""
    return os.path.join(user_dir("cache"), "spool")


def state_path(*parts: str) -> str:
    """Return a path under the per-user state directory (receipts, consent versions)."""
    return os.path.join(user_dir("state"), *parts)


def _ours(path: str) -> bool:
    """True when ``path`` is inside one of usagetrace's per-user directories (never a directory the person chose)."""
    roots = [user_dir(kind) for kind in ("config", "data", "cache", "state")]
    path = os.path.abspath(path)
    return any(path == root or path.startswith(root.rstrip(os.sep) + os.sep) for root in roots)


def private_dir(path: str) -> None:
    """Create ``path`` (and parents) as 0700; tighten one of usagetrace's own directories made wider before.

    A directory the person chose (``USAGETRACE_DEV_FILE=/tmp/x.jsonl``) is created 0700 when missing
    but never changed. Raises OSError when it cannot be created.
    """
    os.makedirs(path, mode=0o700, exist_ok=True)
    if os.name != "posix" or not _ours(path):
        return
    for kind in ("config", "data", "cache", "state"):
        root = user_dir(kind)
        if os.path.abspath(path).startswith(root):
            break
    else:  # pragma: no cover - _ours said yes
        return
    current = os.path.abspath(path)
    while True:  # the directory and its parents up to our root
        _tighten(current, 0o700)
        if current == root or len(current) <= len(root):
            break
        current = os.path.dirname(current)


def _tighten(path: str, mode: int) -> None:
    try:
        st = os.stat(path)
        if st.st_mode & 0o777 & ~mode and st.st_uid == os.geteuid():
            os.chmod(path, st.st_mode & mode)
    except OSError:
        pass


def open_private(path: str, flags: int = os.O_WRONLY | os.O_APPEND | os.O_CREAT) -> int:
    """Open (creating 0600, in a 0700 directory) a file usagetrace writes; return the descriptor.

    A file of ours found wider than 0600 (written by an older version) is made 0600.
    """
    private_dir(os.path.dirname(os.path.abspath(path)))
    fd = os.open(path, flags, 0o600)
    if os.name == "posix":
        try:
            st = os.fstat(fd)
            if st.st_mode & 0o077 and st.st_uid == os.geteuid():
                os.fchmod(fd, st.st_mode & 0o600)
        except OSError:
            pass
    return fd


def make_private(path: str) -> None:
    """Make an existing file usagetrace wrote (e.g. by a library: a DuckDB cache) 0600. Never raises."""
    if os.name == "posix":
        _tighten(path, 0o600)


_counter = [0]


def atomic_write(path: str, data: str, *, durable: bool = False) -> None:
    """Write a text file atomically (temp file + rename), creating parent directories.

    The temporary name is unique per call, so two threads or processes writing
    the same file never interleave; readers see the old or the new content,
    never a mix. ``durable=True`` also fsyncs before the rename (for files a
    crash must not empty, like the consent file) and keeps an existing file's
    permission bits. New files are private to the user (0600).
    """
    import _thread

    directory = os.path.dirname(path)
    if not os.path.isdir(directory):
        private_dir(directory)
    # Unique without ``tempfile`` (whose import costs milliseconds, paid at exit by the spool).
    _counter[0] += 1
    tmp = f"{path}.{os.getpid()}-{_thread.get_ident()}-{_counter[0]}.tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(data)
            if durable:
                fh.flush()
                os.fsync(fh.fileno())
        if durable:
            try:
                os.chmod(tmp, os.stat(path).st_mode & 0o777)
            except OSError:
                pass  # no previous file: 0600 it is
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise


class LockTimeout(OSError):
    """Another process held a lock for longer than the caller was willing to wait."""


class locked:
    """Hold an exclusive lock on ``path`` (a separate ``.lock`` file) for a ``with`` block.

    Serialises read-modify-write cycles between processes (two ``usagetrace``
    commands at once, a send recording a receipt while another trims the log).
    The lock is the operating system's (``flock``/``msvcrt.locking``), so a
    crashed holder never leaves it stuck. Entering raises :class:`LockTimeout`
    after ``timeout`` seconds, OSError when the lock file cannot be created.
    (A class, not ``contextlib``: this module is on the import path.)
    """

    def __init__(self, path: str, timeout: float = 10.0) -> None:
        self.path = path
        self.timeout = timeout
        self.fd = -1

    def __enter__(self) -> "locked":
        os.makedirs(os.path.dirname(self.path), mode=0o700, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        clock = _real_clock()
        deadline = clock.monotonic() + self.timeout
        while not _try_lock(fd):
            if clock.monotonic() >= deadline:
                os.close(fd)
                raise LockTimeout(f"{self.path} is held by another process")
            clock.sleep(0.005)
        self.fd = fd
        return self

    def __exit__(self, *exc) -> None:
        try:
            _unlock(self.fd)
        finally:
            os.close(self.fd)
            self.fd = -1


def _try_lock(fd: int) -> bool:
    try:
        import fcntl
    except ImportError:  # Windows
        import msvcrt

        try:
            msvcrt.locking(fd, msvcrt.LK_NBLCK, 1)
            return True
        except OSError:
            return False
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        return True
    except BlockingIOError:
        return False


def _unlock(fd: int) -> None:
    try:
        import fcntl
    except ImportError:
        import msvcrt

        os.lseek(fd, 0, 0)
        msvcrt.locking(fd, msvcrt.LK_UNLCK, 1)
        return
    fcntl.flock(fd, fcntl.LOCK_UN)
