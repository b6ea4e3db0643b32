"""Consent: every source, their precedence, bad files, notices and withdrawal."""

from __future__ import annotations

import itertools
import os
import sys

import pytest

from usagetrace._internal import consent, notice, paths, state
from usagetrace._internal.consent import OPT_IN, OPT_OUT


@pytest.fixture
def project(tmp_path, monkeypatch):
    """A git project directory with a nested working directory."""
    root = tmp_path / "project"
    (root / ".git").mkdir(parents=True)
    work = root / "src" / "deep"
    work.mkdir(parents=True)
    monkeypatch.chdir(work)
    return root


def decide(policy=OPT_IN, **kw):
    kw.setdefault("under_pytest", False)
    kw.setdefault("notice_shown", True)
    return consent.resolve("mypkg", policy, **kw)


# The matrix: each source's setting, and the documented outcome.
ENV_DNT = [None, "1"]
ENV_PKG = [None, "0", "1"]
PROJECT = [None, "marker", "deny", "grant"]
USER = [None, False, True]
POLICY = [OPT_IN, OPT_OUT]


def expected(dnt, pkg, project, user, policy):
    """The documented precedence, written independently of the implementation."""
    if dnt:
        return False, "env:DO_NOT_TRACK"
    if pkg is not None:
        return pkg == "1", "env:MYPKG_TELEMETRY"
    if project in ("marker", "deny"):
        return False, "project"
    if user is False:
        return False, "user"
    if project == "grant":
        return True, "project"
    if user is True:
        return True, "user"
    return policy == OPT_OUT, "policy"


@pytest.mark.parametrize("dnt,pkg,proj,user,policy", list(itertools.product(ENV_DNT, ENV_PKG, PROJECT, USER, POLICY)))
def test_consent_matrix(dnt, pkg, proj, user, policy, project, monkeypatch, no_ci):
    """Every combination of sources ends in the documented state."""
    if dnt:
        monkeypatch.setenv("DO_NOT_TRACK", dnt)
    if pkg is not None:
        monkeypatch.setenv("MYPKG_TELEMETRY", pkg)
    if proj == "marker":
        (project / ".usagetrace_do_not_track").write_text("")
    elif proj in ("deny", "grant"):
        (project / ".usagetrace").write_text(f"[consent]\nmypkg = {'true' if proj == 'grant' else 'false'}\n")
    if user is not None:
        consent.write_choice("mypkg", user)
    result = decide(policy)
    want_enabled, want_source = expected(dnt, pkg, proj, user, policy)
    assert result.enabled is want_enabled
    assert result.source.split(":")[0] == want_source.split(":")[0]
    if want_source.startswith("env:"):
        assert result.source == want_source


def test_otel_sdk_disabled_turns_everything_off(monkeypatch):
    """OTEL_SDK_DISABLED=true wins over an explicit per-package grant."""
    monkeypatch.setenv("OTEL_SDK_DISABLED", "TRUE")
    monkeypatch.setenv("MYPKG_TELEMETRY", "1")
    assert decide() == (False, "denied", "env:OTEL_SDK_DISABLED")


@pytest.mark.parametrize("value,off", [("1", True), ("true", True), ("yes", True), ("0", False), ("false", False), ("", False)])
def test_do_not_track_values(value, off, monkeypatch):
    """DO_NOT_TRACK counts when set to anything but empty, 0 or false."""
    monkeypatch.setenv("DO_NOT_TRACK", value)
    monkeypatch.setenv("MYPKG_TELEMETRY", "1")
    assert decide().enabled is not off


def test_package_variable_name():
    """The per-package switch upper-cases the top-level name and replaces other characters with _."""
    from usagetrace._internal.env import package_var

    assert package_var("my-pkg.sub") == "MY_PKG_TELEMETRY"
    assert package_var("tinystats") == "TINYSTATS_TELEMETRY"


def test_invalid_package_variable_is_ignored(monkeypatch, no_ci):
    """A value that is not a boolean is ignored (falls through to the next source)."""
    monkeypatch.setenv("MYPKG_TELEMETRY", "maybe")
    assert decide().source == "policy:opt-in"


def test_pytest_turns_it_off_unless_granted_by_env(monkeypatch):
    """Under pytest telemetry is off unless the environment explicitly grants it."""
    assert consent.resolve("mypkg", OPT_OUT, notice_shown=True).source == "pytest"
    consent.write_choice("mypkg", True)
    assert consent.resolve("mypkg", OPT_IN, notice_shown=True).source == "pytest"
    monkeypatch.setenv("MYPKG_TELEMETRY", "1")
    assert consent.resolve("mypkg", OPT_IN).enabled


def test_ci_is_off_for_opt_out_unless_configured(monkeypatch, no_ci):
    """In CI an opt-out package sends nothing by default; ci="policy" restores the policy; a grant still counts."""
    monkeypatch.setenv("GITHUB_ACTIONS", "true")
    assert decide(OPT_OUT) == (False, "unset", "ci")
    assert decide(OPT_OUT, ci="policy").enabled
    monkeypatch.setenv("MYPKG_TELEMETRY", "1")
    assert decide(OPT_OUT).enabled


def test_opt_out_waits_for_the_notice(monkeypatch, no_ci):
    """An opt-out package sends nothing until its one-time notice has been shown."""
    result = consent.resolve("mypkg", OPT_OUT, under_pytest=False, notice_shown=False)
    assert not result.enabled and "notice" in result.source


class _TTY:
    def __init__(self):
        self.text = ""
        self.closed = False

    def isatty(self):
        return True

    def write(self, s):
        self.text += s

    def flush(self):
        pass


def test_notice_is_shown_once_on_a_terminal_only(monkeypatch, no_ci):
    """The notice goes to stderr only when it is a terminal, once per package per user."""
    monkeypatch.setattr(sys, "stderr", _NonTTY := type("N", (), {"isatty": lambda s: False, "closed": False})())
    assert notice.ensure_shown("mypkg") is False
    tty = _TTY()
    monkeypatch.setattr(sys, "stderr", tty)
    assert notice.ensure_shown("mypkg") is True
    assert "usagetrace preview mypkg" in tty.text and "usagetrace disable mypkg" in tty.text
    tty.text = ""
    assert notice.ensure_shown("mypkg") is True
    assert tty.text == ""  # never again
    assert state.notice_shown("mypkg")


def test_notice_never_in_ci(monkeypatch, no_ci):
    """In CI the notice is never printed, even on a terminal."""
    monkeypatch.setenv("CI", "true")
    tty = _TTY()
    monkeypatch.setattr(sys, "stderr", tty)
    assert notice.ensure_shown("mypkg") is False and tty.text == ""


@pytest.mark.parametrize(
    "content",
    [b"\xff\xfe garbage", b"[consent\nmypkg = true", b"[consent]\nmypkg = 'yes'", b"[consent]\nmypkg = tru", b"x" * 70000],
)
def test_corrupt_consent_file_is_unset(content, no_ci):
    """A corrupt, oversized or invalid consent file never raises and counts as unset (so opt-in stays off)."""
    path = paths.consent_file()
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "wb") as fh:
        fh.write(content)
    result = decide(OPT_IN)
    assert result == (False, "unset", "policy:opt-in")


def test_unreadable_consent_file_is_unset(no_ci):
    """A consent file that is a directory (unreadable) counts as unset."""
    os.makedirs(paths.consent_file(), exist_ok=True)
    assert decide(OPT_IN).source == "policy:opt-in"


def test_parse_choices_subset_and_full_toml():
    """The hand parser reads usagetrace's own format; richer TOML falls back to tomllib."""
    assert consent.parse_choices('[consent]\n"*" = false\nmypkg = true # ok\n') == {"*": False, "mypkg": True}
    assert consent.parse_choices('[consent]\nmypkg = true\n[other]\nx = "y"\n') == {"mypkg": True}
    assert consent.parse_choices("consent.mypkg = true\n") == {"mypkg": True}
    with pytest.raises(ValueError):
        consent.parse_choices("[consent]\nmypkg = 1\n")


def test_write_choice_round_trip_and_all():
    """enable/disable --all clears contradicting per-package choices; a specific choice beats *."""
    consent.write_choice("a", True)
    consent.write_choice("*", False)
    assert consent.read_choices(paths.consent_file()) == {"*": False}
    consent.write_choice("b", True)
    assert consent.read_choices(paths.consent_file()) == {"*": False, "b": True}
    assert consent.resolve("b", under_pytest=False).enabled
    assert not consent.resolve("a", under_pytest=False).enabled
    consent.write_choice("b", None)
    assert consent.read_choices(paths.consent_file()) == {"*": False}


def test_project_search_stops_at_repository_root(tmp_path, monkeypatch, no_ci):
    """Project files above the repository root are not consulted."""
    (tmp_path / ".usagetrace_do_not_track").write_text("")
    repo = tmp_path / "repo"
    (repo / ".git").mkdir(parents=True)
    monkeypatch.chdir(repo)
    assert consent.project_files() == []
    (repo / ".usagetrace_do_not_track").write_text("")
    assert consent.project_files() == [str(repo / ".usagetrace_do_not_track")]


def test_fingerprint_changes_when_a_source_changes(project, monkeypatch):
    """The cheap change detector notices consent-file edits, new project files and env changes."""
    first = consent.fingerprint("mypkg")
    consent.write_choice("mypkg", False)
    second = consent.fingerprint("mypkg")
    assert second != first
    (project / ".usagetrace_do_not_track").write_text("")
    third = consent.fingerprint("mypkg")
    assert third != second
    monkeypatch.setenv("DO_NOT_TRACK", "1")
    assert consent.fingerprint("mypkg") != third


def test_withdrawal_reaches_a_running_process(packages, monkeypatch, no_ci):
    """After `usagetrace disable` a running, instrumented process stops recording at its next consent check."""
    from usagetrace._internal import delivery
    from usagetrace.testing import capture

    consent.write_choice("runpkg", True)
    monkeypatch.setattr("usagetrace._internal.runenv.under_pytest", lambda: False)
    mod = packages.load("runpkg", {"__init__.py": "def f(): return 1\nimport usagetrace\nH = usagetrace.instrument(__name__)\n"})
    assert mod.H.enabled and mod.H.consent.source.startswith("user:")
    with capture("runpkg", flush=False) as cap:
        mod.H.consent = consent.resolve("runpkg", under_pytest=False)  # undo capture's forcing
        mod.f()
        consent.write_choice("runpkg", False)  # what `usagetrace disable runpkg` does
        delivery.get()._refresh_consent()  # what the delivery thread does every 2 s
        assert not mod.H.enabled
        mod.f()
        cap.flush()
    assert cap.calls("runpkg.f") == 0  # pending data is discarded on withdrawal, not sent
    assert not mod.H.recorder.enabled
