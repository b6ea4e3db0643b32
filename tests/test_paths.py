"""Per-user paths: the import-time shortcut gives platformdirs' own answers."""

from __future__ import annotations

import json
import os

import platformdirs
import pytest

from usagetrace._internal import paths


@pytest.mark.parametrize("kind", ["config", "data", "cache", "state"])
@pytest.mark.parametrize("xdg", [None, "/custom/xdg"])
def test_shortcut_matches_platformdirs(kind, xdg, monkeypatch):
    """Without USAGETRACE_HOME the shortcut equals platformdirs for every kind, with and without XDG variables."""
    monkeypatch.delenv("USAGETRACE_HOME", raising=False)
    var = {"config": "XDG_CONFIG_HOME", "data": "XDG_DATA_HOME", "cache": "XDG_CACHE_HOME", "state": "XDG_STATE_HOME"}[kind]
    if xdg is None:
        monkeypatch.delenv(var, raising=False)
    else:
        monkeypatch.setenv(var, xdg)
    expected = getattr(platformdirs, f"user_{kind}_dir")("usagetrace", appauthor=False)
    assert paths.user_dir(kind) == expected


@pytest.mark.parametrize("kind", ["config", "data", "cache", "state"])
def test_relative_xdg_variable_is_ignored(kind, monkeypatch):
    """A relative XDG variable is ignored, as the XDG spec says (platformdirs 4.14 agrees; 4.4, the last for Python 3.9, used it)."""
    monkeypatch.delenv("USAGETRACE_HOME", raising=False)
    var = {"config": "XDG_CONFIG_HOME", "data": "XDG_DATA_HOME", "cache": "XDG_CACHE_HOME", "state": "XDG_STATE_HOME"}[kind]
    monkeypatch.delenv(var, raising=False)
    default = paths.user_dir(kind)
    monkeypatch.setenv(var, "relative/ignored")
    assert paths.user_dir(kind) == default and os.path.isabs(default)


def test_usagetrace_home_overrides_everything(tmp_path, monkeypatch):
    """USAGETRACE_HOME puts every per-user file under one directory."""
    monkeypatch.setenv("USAGETRACE_HOME", str(tmp_path))
    assert paths.consent_file() == str(tmp_path / "config" / "consent.toml")
    assert paths.spool_dir() == str(tmp_path / "cache" / "spool")


def test_relative_usagetrace_home_is_ignored(tmp_path, monkeypatch):
    """A relative USAGETRACE_HOME is ignored, so no file is ever written into the current directory."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("USAGETRACE_HOME", "relative/dir")
    assert paths.user_dir("config") == platformdirs.user_config_dir("usagetrace", appauthor=False)


NO_HOME_HOST = """
import json, os, pwd, sys
def _no_entry(uid):
    raise KeyError(uid)
pwd.getpwuid = _no_entry  # no passwd entry for this user
os.environ.pop("HOME", None)
if sys.argv[1] == "status":
    from usagetrace.cli import main
    sys.exit(main(["status", "tinystats"]))
import tinystats
from usagetrace._internal import consent, delivery
for _ in range(3):
    tinystats.mean([1])
ch = delivery.get().channels.get("tinystats")
if ch is not None and ch.handle.consent.enabled:
    delivery.get().flush(20.0)
print(json.dumps({"enabled": bool(ch and ch.handle.consent.enabled),
                  "decision": list(consent.resolve("tinystats", under_pytest=False)),
                  "id": ch.resource_attributes()["usagetrace.install.id"] if ch and ch.handle.consent.enabled else None}))
"""


def _no_home_run(tmp_path, arg, **extra):
    import subprocess
    import sys

    root = os.path.abspath(os.path.join(os.path.dirname(__file__), ".."))
    script = tmp_path / "host.py"
    script.write_text(NO_HOME_HOST)
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "USAGETRACE_UPLOAD": "realtime",
           "PYTHONPATH": os.pathsep.join([os.path.join(root, "src"), os.path.join(root, "examples", "tinystats")]),
           "USAGETRACE_DETACHED_SEND": "0", **extra}
    return subprocess.run([sys.executable, str(script), arg], cwd=str(tmp_path / "repo"), env=env,
                          capture_output=True, text=True, timeout=90)


@pytest.mark.skipif(os.name == "nt", reason="HOME and passwd are POSIX")
def test_no_home_never_writes_or_reads_under_the_current_directory(tmp_path):
    """HOME unset, no passwd entry: a ./~/.config/usagetrace/consent.toml is not the person's choice; nothing is
    written under the current directory; an env grant sends under a per-run id marked run-; status says so."""
    from usagetrace.testing import OTLPReceiver

    repo = tmp_path / "repo"
    planted = repo / "~" / ".config" / "usagetrace"
    planted.mkdir(parents=True)
    (planted / "consent.toml").write_text("[consent]\ntinystats = true\n")
    before = sorted(str(p) for p in repo.rglob("*"))
    off = _no_home_run(tmp_path, "run")
    assert off.returncode == 0 and off.stderr == "", off.stderr
    out = json.loads(off.stdout)
    assert out["enabled"] is False and out["decision"][0] is False
    with OTLPReceiver() as rx:
        on = _no_home_run(tmp_path, "run", TINYSTATS_TELEMETRY="1", OTEL_EXPORTER_OTLP_ENDPOINT=rx.endpoint)
        assert on.returncode == 0 and on.stderr == "", on.stderr
        out = json.loads(on.stdout)
        assert out["enabled"] is True and out["id"].startswith("run-")
        assert rx.calls("tinystats.mean") == 3
        assert {p["resource"]["usagetrace.install.id"] for p in rx.points()} == {out["id"]}
    status = _no_home_run(tmp_path, "status", TINYSTATS_TELEMETRY="1")
    assert status.returncode == 0 and "no home directory" in status.stdout and "run-" in status.stdout
    assert sorted(str(p) for p in repo.rglob("*")) == before  # nothing written under the current directory
