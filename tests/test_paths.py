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


# ------------------------------------------------------------------ file modes
# Mode bits are checked with os.stat, which holds as root too (root only ignores them when reading).


def _modes(root) -> dict[str, int]:
    out = {}
    for folder, dirs, files in os.walk(root):
        for name in dirs + files:
            path = os.path.join(folder, name)
            out[os.path.relpath(path, root)] = os.lstat(path).st_mode & 0o777
    return out


def test_every_file_usagetrace_writes_is_0600_in_0700_directories(tmp_path):
    """A development-mode run, a realtime run with receipts, a daily run, a report with its cache, and a
    disable: every file under the per-user home is 0600 and every directory 0700 (umask 022)."""
    import subprocess
    import sys

    from usagetrace.testing import OTLPReceiver

    from .conftest import EXAMPLES, child_env

    home = tmp_path / "home"
    home.mkdir(mode=0o700)
    base = {"USAGETRACE_HOME": str(home), "PYTHONPATH": EXAMPLES, "TINYSTATS_TELEMETRY": "1",
            "USAGETRACE_DETACHED_SEND": "0"}
    code = ("import tinystats; from usagetrace._internal import instrumentation; tinystats.mean([1, 2]); "
            "instrumentation.get('tinystats').flush(10)")

    def run(*argv, **extra):
        proc = subprocess.run(list(argv), env=child_env({**base, **extra}), capture_output=True, text=True,
                              timeout=120, preexec_fn=lambda: os.umask(0o022))
        assert proc.returncode == 0, proc.stderr
        return proc

    run(sys.executable, "-c", code)  # development mode: the dev file
    with OTLPReceiver() as rx:
        run(sys.executable, "-c", code, OTEL_EXPORTER_OTLP_ENDPOINT=rx.endpoint, USAGETRACE_UPLOAD="realtime")
        run(sys.executable, "-c", code, OTEL_EXPORTER_OTLP_ENDPOINT=rx.endpoint, USAGETRACE_UPLOAD="daily")
        assert rx.calls("tinystats.mean") == 1
    dev = home / "cache" / "dev" / "tinystats.jsonl"
    assert dev.exists()
    import importlib.util

    with_report = importlib.util.find_spec("duckdb") is not None  # the core suites run without the report extra
    if with_report:
        run(sys.executable, "-m", "usagetrace", "report", str(dev))  # the report cache
    modes = _modes(home)
    assert not with_report or any(p.startswith(os.path.join("cache", "report")) and p.endswith(".duckdb")
                                  for p in modes), modes
    assert any(p.startswith("aggregate") or "aggregate" in p for p in modes), modes
    assert any("receipts" in p for p in modes), modes
    wrong = {p: oct(m) for p, m in modes.items() if m != (0o700 if (home / p).is_dir() else 0o600)}
    assert wrong == {}


def test_our_directories_made_wider_before_are_tightened(tmp_path, monkeypatch):
    """A dev file and directory left 0644/0755 by an older version become 0600/0700 on the next write; a
    directory the person chose is never changed."""
    from usagetrace._internal import config, transport

    dev_dir = os.path.join(paths.user_dir("cache"), "dev")
    os.makedirs(dev_dir, mode=0o755)
    os.chmod(dev_dir, 0o755)
    os.chmod(paths.user_dir("cache"), 0o755)
    old = os.path.join(dev_dir, "mypkg.jsonl")
    with open(old, "w"):
        pass
    os.chmod(old, 0o644)
    target = config.resolve("traces", None, "mypkg")
    assert target.kind == "file" and target.url == old
    assert transport.for_target(target).send("traces", b"", 1) == transport.OK
    assert os.stat(old).st_mode & 0o777 == 0o600
    assert os.stat(dev_dir).st_mode & 0o777 == 0o700 and os.stat(paths.user_dir("cache")).st_mode & 0o777 == 0o700
    chosen = tmp_path / "shared"
    chosen.mkdir()
    os.chmod(chosen, 0o755)
    monkeypatch.setenv("USAGETRACE_DEV_FILE", str(chosen / "x.jsonl"))
    target = config.resolve("traces", None, "mypkg")
    assert transport.for_target(target).send("traces", b"", 1) == transport.OK
    assert os.stat(chosen / "x.jsonl").st_mode & 0o777 == 0o600 and os.stat(chosen).st_mode & 0o777 == 0o755

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
