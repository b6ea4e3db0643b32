"""Shared fixtures: an isolated per-user home for every test, and throwaway packages."""

from __future__ import annotations

import importlib
import os
import subprocess
import sys
import textwrap

import pytest


def _grpc_without_fork_handlers_in_this_process() -> None:
    """This process runs gRPC servers (``OTLPReceiver(grpc=True)``) while it starts hundreds of subprocesses.

    gRPC's fork handlers then run in each forked child before it execs, and now
    and then abort it there ("epoll_wait error: Bad file descriptor" on the
    child's stderr, the program under test never started: seen on 3.9). They are
    turned off for the test process alone: the variable is removed again once
    grpc has read it, so every program under test meets gRPC as a user's does.
    """
    if "grpc" in sys.modules or "GRPC_ENABLE_FORK_SUPPORT" in os.environ:
        return
    os.environ["GRPC_ENABLE_FORK_SUPPORT"] = "false"
    try:
        import grpc  # noqa: F401
    except ImportError:
        pass
    finally:
        os.environ.pop("GRPC_ENABLE_FORK_SUPPORT", None)


_grpc_without_fork_handlers_in_this_process()

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
EXAMPLES = os.path.join(ROOT, "examples", "tinystats")

_SWITCHES = (
    "DO_NOT_TRACK",
    "OTEL_SDK_DISABLED",
    "OTEL_RESOURCE_ATTRIBUTES",
    "OTEL_EXPORTER_OTLP_ENDPOINT",
    "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
    "OTEL_EXPORTER_OTLP_METRICS_ENDPOINT",
    "OTEL_EXPORTER_OTLP_PROTOCOL",
    "OTEL_EXPORTER_OTLP_HEADERS",
    "OTEL_EXPORTER_OTLP_TIMEOUT",
    "USAGETRACE_DEV_FILE",
    "USAGETRACE_CONSOLE",
    "USAGETRACE_PREVIEW_FILE",
    # Proxies are honoured (transport.py): a CI runner's proxy must not carry the tests' 127.0.0.1 traffic.
    "HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "NO_PROXY", "http_proxy", "https_proxy", "all_proxy", "no_proxy",
)


@pytest.fixture(autouse=True)
def _isolated_home(tmp_path_factory, monkeypatch):
    """Never read or write the real per-user files; never start a detached sender."""
    home = tmp_path_factory.mktemp("usagetrace-home")
    monkeypatch.setenv("USAGETRACE_HOME", str(home))
    monkeypatch.setenv("USAGETRACE_DETACHED_SEND", "0")
    for name in _SWITCHES:
        monkeypatch.delenv(name, raising=False)
    yield home


@pytest.fixture
def real_home(tmp_path, monkeypatch):
    """A person's home as usagetrace would find it with no USAGETRACE_HOME: HOME only, no XDG overrides."""
    home = tmp_path / "real-home"
    home.mkdir()
    monkeypatch.delenv("USAGETRACE_HOME", raising=False)
    monkeypatch.setenv("HOME", str(home))
    for var in ("XDG_CONFIG_HOME", "XDG_DATA_HOME", "XDG_STATE_HOME", "XDG_CACHE_HOME"):
        monkeypatch.delenv(var, raising=False)
    return home


@pytest.fixture
def no_ci(monkeypatch):
    """Remove CI markers so policy decisions can be tested as on a person's machine."""
    from usagetrace._internal import runenv

    for var, _ in runenv.CI_VARIABLES:
        monkeypatch.delenv(var, raising=False)


class PackageFactory:
    """Writes packages into a temporary directory and imports them."""

    def __init__(self, root, monkeypatch) -> None:
        self.root = root
        self.names: list[str] = []
        monkeypatch.syspath_prepend(str(root))

    def write(self, name: str, files: dict[str, str]) -> None:
        """Write ``{relative path: source}`` under the package directory."""
        for rel, source in files.items():
            path = self.root / name / rel
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(textwrap.dedent(source))
        self.names.append(name)
        importlib.invalidate_caches()

    def load(self, name: str, files: dict[str, str]):
        """Write and import a package; return the module."""
        self.write(name, files)
        return importlib.import_module(name)

    def cleanup(self) -> None:
        from usagetrace._internal import delivery, instrumentation

        for name in self.names:
            handle = instrumentation.get(name)
            if handle is not None:
                handle.uninstrument()
                delivery.get().unregister(handle)
            for mod in [m for m in sys.modules if m == name or m.startswith(name + ".")]:
                del sys.modules[mod]


@pytest.fixture
def packages(tmp_path, monkeypatch):
    """A factory for throwaway packages, removed (and uninstrumented) after the test."""
    factory = PackageFactory(tmp_path / "pkgs", monkeypatch)
    yield factory
    factory.cleanup()


def run_python(code: str, env: dict | None = None, timeout: float = 60, cwd=None) -> subprocess.CompletedProcess:
    """Run Python code in a fresh interpreter with the test environment plus ``env``."""
    full_env = dict(os.environ)
    # The child is not a test: consent must be decided by the sources under test, not by pytest.
    full_env.pop("PYTEST_CURRENT_TEST", None)
    full_env.update(env or {})
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        env=full_env,
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=cwd,
    )


def child_env(env: dict | None = None) -> dict:
    """The test environment for a child that stands for a person's process: no pytest, no CI markers."""
    from usagetrace._internal import runenv

    full_env = dict(os.environ)
    full_env.pop("PYTEST_CURRENT_TEST", None)
    for var, _ in runenv.CI_VARIABLES:
        full_env.pop(var, None)
    full_env.update(env or {})
    return full_env


def run_on_terminal(code: str, env: dict | None = None, timeout: float = 60, cwd=None):
    """Run Python code with stderr on a pseudo-terminal, as at a person's shell (not in CI).

    Returns ``(completed process, what the terminal showed)``; stdout is captured as usual.
    """
    import pty
    import select
    import time

    master, slave = pty.openpty()
    proc = subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(code)],
        stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=slave, env=child_env(env), cwd=cwd, text=True,
    )
    os.close(slave)
    shown = b""
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            ready, _, _ = select.select([master], [], [], 0.1)
            if ready:
                try:
                    data = os.read(master, 65536)
                except OSError:  # EIO: the child's side is closed
                    break
                if not data:
                    break
                shown += data
            elif proc.poll() is not None:
                break
        stdout, _ = proc.communicate(timeout=max(deadline - time.monotonic(), 1))
    finally:
        os.close(master)
    return subprocess.CompletedProcess(proc.args, proc.returncode, stdout, ""), shown.decode("utf-8", "replace")


#: Consent files broken in every way a file can be, each still holding a grant for mypkg (or brokpkg).
BROKEN_CONTENT = {
    "truncated-key": b'[consent]\n"mypkg" = true\n"oth',
    "truncated-value": b"[consent]\nmypkg = tr",
    "truncated-header": b"[consent\nmypkg = true\n",
    "bad-line": b"[consent]\nmypkg = true\nnumpy = maybe\n",
    "binary": b"\x00\xff\xfe[consent]\nmypkg = true\n",
    "not-utf8": b"[consent]\nmypkg = true\n# caf\xe9\n",
    "huge": b"[consent]\nmypkg = true\n" + b"# padding\n" * 8000,
    "int": b"[consent]\nmypkg = 1\n",
    "string": b'[consent]\nmypkg = "true"\n',
    "not-a-table": b"consent = 5\n",
    "array-of-tables": b"[[consent]]\nmypkg = true\n",
    "duplicate-key": b'[consent]\nmypkg = true\n"mypkg" = true\n',
    "duplicate-table": b"[consent]\nmypkg = true\n[consent]\nother = true\n",
    "unterminated-string": b'[consent]\nmypkg = true\n[notes]\nx = """\n',
    "bad-version": b"[consent]\nmypkg = true\n[consent_version]\nmypkg = 2.5\n",
    "nul": b"[consent]\nmypkg = true\x00\n",
    "lone-cr": b"[consent]\rmypkg = true\n",
    "bom": b"\xef\xbb\xbf[consent]\nmypkg = true\n",
    "dotted-in-table": b"[consent]\nmypkg.sub = true\n",
}


def place_broken(path, content: bytes | None = None, special: str | None = None) -> None:
    """Put a broken consent source at ``path``: bytes, or a special file (one of SPECIAL)."""
    os.makedirs(os.path.dirname(path), exist_ok=True)
    if special == "directory":
        os.makedirs(path)
    elif special == "dangling-symlink":
        os.symlink(str(path) + ".missing", path)
    elif special == "symlink-loop":
        os.symlink(path, path)
    elif special == "fifo":
        os.mkfifo(path)
    else:
        with open(path, "wb") as fh:
            fh.write(content)


SPECIAL = ["directory", "dangling-symlink", "symlink-loop", "fifo"]


def self_signed_cert(tmp_path) -> tuple:
    """A certificate and key for 127.0.0.1 made with openssl (the test is skipped where there is none)."""
    import shutil

    if not shutil.which("openssl"):
        pytest.skip("openssl not installed")
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(key), "-out", str(cert),
         "-days", "1", "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1"],
        check=True, capture_output=True, timeout=60,
    )
    return cert, key
