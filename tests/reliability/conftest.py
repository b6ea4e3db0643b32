"""Helpers for the reliability tests: run a host program in a fresh interpreter, bounded."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import textwrap

import pytest

REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
SRC = os.path.join(REPO, "src")
TINYSTATS = os.path.join(REPO, "examples", "tinystats")
GENEROUS = 90  # seconds: a hang, not slowness, is what this bound catches


def clean_env(home, **extra) -> dict:
    """Return an environment with no inherited telemetry settings, consent for tinystats granted."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("OTEL_", "USAGETRACE_", "PYTEST_", "TINYSTATS_")) and k != "DO_NOT_TRACK"
    }
    env.update(
        PYTHONPATH=os.pathsep.join([SRC, TINYSTATS]),
        USAGETRACE_HOME=str(home),
        USAGETRACE_DETACHED_SEND="0",
        TINYSTATS_TELEMETRY="1",
        PYTHONDONTWRITEBYTECODE="1",
    )
    env.update({k: str(v) for k, v in extra.items()})
    return env


def run_py(code: str, env: dict, timeout: float = GENEROUS, cwd=None, input=None) -> subprocess.CompletedProcess:
    """Run ``code`` in a new interpreter; fail the test (not hang) past ``timeout``."""
    try:
        return subprocess.run(
            [sys.executable, "-c", textwrap.dedent(code)],
            env=env, capture_output=True, text=True, timeout=timeout, cwd=cwd, input=input,
        )
    except subprocess.TimeoutExpired as exc:
        pytest.fail(f"host process did not exit within {timeout}s: {exc.stdout!r} {exc.stderr!r}")


def last_json(stdout: str):
    """Return the JSON document printed on the last line of stdout."""
    return json.loads(stdout.strip().splitlines()[-1])


def free_port() -> int:
    """Return a port on 127.0.0.1 nothing listens on (connections are refused)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


#: A host workload on tinystats, printing its results as one JSON line and nothing else.
WORKLOAD = """
import json, tinystats
out = []
for i in range({n}):
    t = tinystats.Table().add("a", [1, 2, i])
    out.append([tinystats.mean([1, 2, i]), tinystats.median([i, 5, 7]), t.describe("a"),
                tinystats.Table.width([i, 3]), list(t.iter_rows())[:1]])
    try:
        tinystats.zscore([1, 1], 1)
    except ValueError as exc:
        out.append(str(exc))
"""


@pytest.fixture
def home(tmp_path):
    d = tmp_path / "home"
    d.mkdir()
    return d


@pytest.fixture(scope="session")
def baseline_output(tmp_path_factory):
    """What the workload prints with telemetry off: the reference every faulty run must match."""
    home = tmp_path_factory.mktemp("baseline")
    code = WORKLOAD.format(n=200) + "\nprint(json.dumps(out))\n"
    proc = run_py(code, clean_env(home, TINYSTATS_TELEMETRY="0"))
    assert proc.returncode == 0, proc.stderr
    return proc.stdout
