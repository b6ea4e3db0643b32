"""Per-user paths: the import-time shortcut gives platformdirs' own answers."""

from __future__ import annotations

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
