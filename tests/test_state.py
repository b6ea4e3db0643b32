"""The state file: remember_package writes once a day per package, and later runs read no state at all."""

import os

import pytest

from usagetrace._internal import paths, state

SETTINGS = {"policy": "opt-in", "ci": "off", "endpoint": "https://t.example.org/otlp", "consent_version": None}


@pytest.fixture
def loads(monkeypatch):
    """Counts reads of the state file (state.load_checked), still reading it."""
    calls = []
    real = state.load_checked

    def counting():
        calls.append(1)
        return real()

    monkeypatch.setattr(state, "load_checked", counting)
    return calls


def _known(package):
    return state.load()["packages"][package]


def test_the_days_later_runs_read_no_state(loads):
    state.remember_package("stamped", SETTINGS)
    assert _known("stamped")["last_on"] and _known("stamped")["endpoint"] == "https://t.example.org:443/otlp"
    loads.clear()
    for _ in range(3):
        state.remember_package("stamped", SETTINGS)
    assert loads == [], "a run after the day's first one reads only the stamp"


def test_a_changed_setting_is_recorded(loads):
    state.remember_package("changing", SETTINGS)
    state.remember_package("changing", {**SETTINGS, "policy": "opt-out"})
    assert _known("changing")["policy"] == "opt-out"


def test_a_deleted_state_file_is_written_again():
    state.remember_package("again", SETTINGS)
    os.unlink(paths.state_file())
    state.remember_package("again", SETTINGS)
    assert _known("again")["last_on"]


def test_another_writer_makes_the_next_run_check(loads):
    """Any write of the state file (a notice, another package) changes its identity: the stamp no longer holds."""
    state.remember_package("first", SETTINGS)
    state.remember_package("second", SETTINGS)  # rewrites the file
    loads.clear()
    state.remember_package("first", SETTINGS)
    assert loads, "the stamp of 'first' named the file before 'second' was written"
    assert _known("first")["last_on"] and _known("second")["last_on"]
    loads.clear()
    state.remember_package("first", SETTINGS)
    assert loads == [], "checked again, then stamped again"


def test_a_new_day_is_recorded(monkeypatch):
    state.remember_package("daily", SETTINGS)
    first = _known("daily")["last_on"]
    monkeypatch.setattr(state.clock, "utc", lambda fmt=None, seconds=None: "2999-01-01")
    state.remember_package("daily", SETTINGS)
    assert _known("daily")["last_on"] == "2999-01-01" and _known("daily")["first_on"] == first


def test_the_stamp_is_private():
    state.remember_package("private", SETTINGS)
    stamp = paths.state_path("recorded", "private")
    assert os.stat(stamp).st_mode & 0o777 == 0o600
    assert os.stat(os.path.dirname(stamp)).st_mode & 0o777 == 0o700
