"""Detached processes (spool sender, daily uploader): isolated from the host's directory, never its children."""

from __future__ import annotations

import json
import os
import sys
import textwrap
import time

import pytest

from usagetrace.testing import OTLPReceiver

from .conftest import GENEROUS, clean_env

pytestmark = pytest.mark.skipif(os.name == "nt", reason="POSIX process model (Windows: DETACHED_PROCESS, documented)")

PLANTED = {
    "json.py": "open({marker!r}, 'a').write('json\\n')\nraise SystemExit(3)\n",
    "usagetrace/__init__.py": "open({marker!r}, 'a').write('usagetrace\\n')\nraise SystemExit(3)\n",
    "sitecustomize.py": "open({marker!r}, 'a').write('sitecustomize\\n')\n",
    "usercustomize.py": "open({marker!r}, 'a').write('usercustomize\\n')\n",
    "base64.py": "open({marker!r}, 'a').write('base64\\n')\nraise SystemExit(3)\n",
}


def _plant(directory, marker) -> None:
    for name, text in PLANTED.items():
        path = directory / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text.format(marker=str(marker)))


def _host(tmp_path, code: str, env: dict, cwd):
    """Run ``code`` as a script living outside ``cwd`` (so only the detached process could pick up ``cwd``)."""
    import subprocess

    script = tmp_path / "host_script" / "host.py"
    script.parent.mkdir(exist_ok=True)
    script.write_text(textwrap.dedent(code))
    return subprocess.run([sys.executable, str(script)], env=env, cwd=str(cwd), capture_output=True, text=True,
                          timeout=GENEROUS)


def test_planted_modules_in_the_hosts_directory_never_run_and_the_sender_delivers(tmp_path, home):
    """json.py, usagetrace/, sitecustomize in the host's cwd (and PYTHON* variables) never reach the sender."""
    cwd = tmp_path / "downloads"
    cwd.mkdir()
    marker = tmp_path / "ran.txt"
    _plant(cwd, marker)
    with OTLPReceiver() as rx:
        env = clean_env(home, OTEL_EXPORTER_OTLP_ENDPOINT=rx.endpoint, USAGETRACE_DETACHED_SEND="1",
                        PYTHONSTARTUP=str(cwd / "json.py"), PYTHONINSPECT="")
        proc = _host(tmp_path, "import tinystats\nfor _ in range(5): tinystats.mean([1, 2])\n", env, cwd)
        assert proc.returncode == 0, proc.stderr
        assert rx.wait_for(lambda r: r.calls("tinystats.mean") == 5, timeout=30), "the sender did not deliver"
    assert not marker.exists(), marker.read_text()
    assert not list((home / "cache" / "spool").glob("*.json"))


def test_planted_modules_never_run_in_the_daily_uploader(tmp_path, home):
    """The daily uploader, started from a run in that directory, is isolated the same way and uploads."""
    cwd = tmp_path / "repo"
    cwd.mkdir()
    marker = tmp_path / "ran.txt"
    _plant(cwd, marker)
    with OTLPReceiver() as rx:
        env = clean_env(home, OTEL_EXPORTER_OTLP_ENDPOINT=rx.endpoint, USAGETRACE_DETACHED_SEND="1",
                        USAGETRACE_UPLOAD="daily")
        code = """
            import tinystats
            from usagetrace._internal import aggregate
            for _ in range(4): tinystats.mean([1, 2])
            # yesterday's bucket, so this exit finds a period ended and starts the uploader
            t = aggregate.Tally(); t.period = aggregate.period_of("daily", aggregate._clock.time_ns() - aggregate.DAY_NS)
            t.add_counts({("calls", "tinystats.median", "ok"): 3}, t.period[1] + 1, t.period[1] + 2)
            import usagetrace._internal.delivery as d
            ch = d.get().channels["tinystats"]
            aggregate.record("tinystats", "daily", {**ch.resource_attributes()}, ch.store_settings(), t,
                             lambda: True, True, can_upload=False)
        """
        proc = _host(tmp_path, code, env, cwd)
        assert proc.returncode == 0, proc.stderr
        assert rx.wait_for(lambda r: r.calls("tinystats.median") == 3, timeout=30), "the uploader did not upload"
    assert not marker.exists(), marker.read_text()


HOST_WAITS = """
import json, os, sys, time
import tinystats
worker = os.fork()
if worker == 0:
    time.sleep(0.5)
    os._exit(7)
for _ in range(3): tinystats.mean([1, 2])
from usagetrace._internal import spool
# what exit does (and what daily mode does mid-run): start the detached process, now, while the worker runs
spool.spawn_sender()
time.sleep(0.1)
children = set()
for task in os.listdir(f"/proc/{os.getpid()}/task"):
    try:
        children |= set(open(f"/proc/{os.getpid()}/task/{task}/children").read().split())
    except OSError:
        pass
pid, status = os.wait()
try:
    more = os.waitpid(-1, os.WNOHANG)
except ChildProcessError:
    more = None
print(json.dumps({"worker": worker, "pid": pid, "code": os.waitstatus_to_exitcode(status),
                  "children": sorted(children), "more": more}))
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
def test_the_host_never_gets_a_child_of_ours(tmp_path, home):
    """A host that forks a worker and calls os.wait() gets its worker; its only child is the worker."""
    with OTLPReceiver() as rx:
        env = clean_env(home, OTEL_EXPORTER_OTLP_ENDPOINT=rx.endpoint)
        proc = _host(tmp_path, HOST_WAITS, env, tmp_path)
        assert proc.returncode == 0, proc.stderr
        out = json.loads(proc.stdout.strip().splitlines()[-1])
        assert out["pid"] == out["worker"] and out["code"] == 7
        assert out["children"] == [str(out["worker"])]
        assert out["more"] is None  # no other child left to reap: no zombie of ours
        assert rx.wait_for(lambda r: r.calls("tinystats.mean") == 3, timeout=30)


def test_the_detached_process_runs_outside_the_hosts_directory(tmp_path, home):
    """Its working directory is /, its sys.path has neither '' nor the host's directory, -I is set."""
    from usagetrace._internal import spool

    own, extra = spool._import_path()
    assert os.getcwd() not in extra and "" not in extra and all(os.path.isabs(p) for p in own + extra)
    assert spool.safe_directory() == "/"
    probe = tmp_path / "probe.json"
    mod = tmp_path / "mods" / "ut_probe_mod.py"
    mod.parent.mkdir()
    mod.write_text(textwrap.dedent(f"""
        import json, os, sys
        def main(argv):
            json.dump({{"cwd": os.getcwd(), "path": sys.path, "isolated": sys.flags.isolated, "argv": argv}},
                      open({str(probe)!r}, "w"))
            return 0
    """))
    sys.path.append(str(mod.parent))
    try:
        assert spool.spawn_sender("ut_probe_mod", "--x", "1")
    finally:
        sys.path.remove(str(mod.parent))
    deadline = time.monotonic() + 30
    while not probe.exists() and time.monotonic() < deadline:
        time.sleep(0.02)
    seen = json.loads(probe.read_text())
    assert seen["cwd"] == "/" and seen["isolated"] == 1
    assert "" not in seen["path"] and os.getcwd() not in seen["path"]
    assert seen["argv"][-2:] == ["--x", "1"] and seen["argv"][0] == "--after"
