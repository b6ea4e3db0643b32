"""Data goes only where it was recorded for, and only a "no" deletes it (issue 18)."""

from __future__ import annotations

import json
import os
import pathlib
import subprocess
import sys

from usagetrace._internal import aggregate
from usagetrace.testing import OTLPReceiver

from .conftest import child_env

DESTPKG = '''
import os
import pathlib
import usagetrace


def f():
    return 1


H = usagetrace.instrument(__name__, endpoint=os.environ["MAINTAINER"], consent="opt-in")
'''


class Setup:
    def __init__(self, tmp_path, maintainer, **extra) -> None:
        pkgs = tmp_path / "pkgs"
        (pkgs / "destpkg").mkdir(parents=True)
        (pkgs / "destpkg" / "__init__.py").write_text(DESTPKG)
        self.env = {"PYTHONPATH": str(pkgs), "MAINTAINER": maintainer.endpoint, "USAGETRACE_DETACHED_SEND": "0",
                    "USAGETRACE_EXPORT_INTERVAL": "3600", **extra}

    def run(self, code="import destpkg\nfor _ in range(6): destpkg.f()\n", cwd=None, **extra):
        proc = subprocess.run([sys.executable, "-c", code], env=child_env({**self.env, **extra}), cwd=cwd,
                              capture_output=True, text=True, timeout=90)
        assert proc.returncode == 0 and proc.stderr == "", proc.stderr
        return proc

    def flush(self, cwd=None, **extra) -> dict:
        proc = subprocess.run([sys.executable, "-m", "usagetrace", "flush", "--json"], cwd=cwd,
                              env=child_env({**self.env, **extra}), capture_output=True, text=True, timeout=120)
        return json.loads(proc.stdout)


def _spooled(home) -> list:
    return list((home / "cache" / "spool").glob("*.json"))


def test_spooled_data_keeps_the_destination_it_was_recorded_for(tmp_path):
    """Recorded while OTEL_EXPORTER_OTLP_ENDPOINT pointed at the person's own collector: a flush without the
    variable keeps it (never to the maintainer's endpoint); one configured like the run delivers it there."""
    home = pathlib.Path(os.environ["USAGETRACE_HOME"])
    with OTLPReceiver() as maintainer, OTLPReceiver() as own:
        s = Setup(tmp_path, maintainer, USAGETRACE_UPLOAD="realtime", DESTPKG_TELEMETRY="1")
        s.run(OTEL_EXPORTER_OTLP_ENDPOINT=own.endpoint)
        assert len(_spooled(home)) == 1
        out = s.flush()
        assert out["elsewhere"] == 1 and out["delivered"] == 0
        assert maintainer.connections == 0 and len(_spooled(home)) == 1
        out = s.flush(OTEL_EXPORTER_OTLP_ENDPOINT=own.endpoint)
        assert out["delivered"] == 1
        assert own.calls("destpkg.f") == 6 and maintainer.connections == 0
        assert _spooled(home) == []


def test_an_invalid_endpoint_sends_nothing_and_never_falls_back(tmp_path):
    """A run whose OTEL_EXPORTER_OTLP_ENDPOINT is not a URL: nothing goes to the maintainer's endpoint, ever."""
    with OTLPReceiver() as maintainer:
        s = Setup(tmp_path, maintainer, USAGETRACE_UPLOAD="realtime", DESTPKG_TELEMETRY="1")
        s.run(OTEL_EXPORTER_OTLP_ENDPOINT="not a url")
        s.flush(OTEL_EXPORTER_OTLP_ENDPOINT="not a url")
        s.flush()
        assert maintainer.connections == 0


def test_the_uploader_keeps_what_a_grant_it_cannot_see_allowed(tmp_path):
    """Daily data granted by an environment variable the uploader was not given: kept, not deleted; sent by
    an uploader that sees the grant. A no deletes it."""
    with OTLPReceiver() as maintainer:
        s = Setup(tmp_path, maintainer, USAGETRACE_UPLOAD="daily")
        s.run(DESTPKG_TELEMETRY="1")
        out = s.flush()["aggregate"]
        assert out["undecided"] == 1 and out["withdrawn"] == 0 and out["reports"] == 0
        doc, _ = aggregate.load("destpkg")
        assert aggregate.summary(doc)["runs"] == 1 and maintainer.connections == 0
        out = s.flush(DESTPKG_TELEMETRY="1")["aggregate"]
        assert out["reports"] == 1 and maintainer.calls("destpkg.f") == 6
        s.run(DESTPKG_TELEMETRY="1")
        out = s.flush(DESTPKG_TELEMETRY="0")["aggregate"]  # a no: deleted unsent
        assert out["withdrawn"] == 1 and aggregate.load("destpkg")[0] is None
        assert maintainer.calls("destpkg.f") == 6


def test_the_uploader_reads_no_project_files_and_no_directory_is_written_down(tmp_path):
    """Project files can only say no, and the run that recorded read those of its own directory: an uploader
    started in another project (which opts out) neither reads that project's files nor needs the run's
    directory, which is never written to disk (the current directory is the person's)."""
    home = pathlib.Path(os.environ["USAGETRACE_HOME"])
    project = tmp_path / "zq-project-dir"
    project.mkdir()
    (project / ".git").mkdir()
    elsewhere = tmp_path / "elsewhere"
    (elsewhere / ".git").mkdir(parents=True)
    (elsewhere / ".usagetrace_do_not_track").write_text("")
    with OTLPReceiver() as maintainer:
        s = Setup(tmp_path, maintainer, USAGETRACE_UPLOAD="daily")
        enabled = subprocess.run([sys.executable, "-m", "usagetrace", "enable", "--force", "destpkg"],
                                 env=child_env(s.env), capture_output=True, text=True, timeout=60)
        assert enabled.returncode == 0, enabled.stderr
        s.run(cwd=str(project))
        written = [p for p in home.rglob("*") if p.is_file()]
        assert written and not any(b"zq-project-dir" in p.read_bytes() for p in written)
        out = s.flush(cwd=str(elsewhere))["aggregate"]
        assert out["reports"] == 1 and maintainer.calls("destpkg.f") == 6
