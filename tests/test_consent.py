"""Consent: every source, their precedence, bad files, notices and withdrawal."""

from __future__ import annotations

import itertools
import json
import os
import subprocess
import sys

import pytest

from usagetrace._internal import consent, notice, paths, state
from usagetrace._internal.consent import OPT_IN, OPT_OUT

from .conftest import BROKEN_CONTENT, SPECIAL, place_broken


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
    if user is True:  # a grant in a project file never counts: only the person grants
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


def test_invalid_package_variable_turns_that_package_off(monkeypatch, no_ci):
    """A per-package variable with an unusable value is a choice that cannot be read: that package is off."""
    consent.write_choice("mypkg", True)
    consent.write_choice("otherpkg", True)
    for value in ("maybe", "2", "yes please", "x" * 10_000):
        monkeypatch.setenv("MYPKG_TELEMETRY", value)
        assert decide(OPT_OUT) == (False, "invalid", "env:MYPKG_TELEMETRY"), value
        assert consent.resolve("otherpkg", OPT_IN, under_pytest=False).enabled  # only that package
        [problem] = consent.problems("mypkg")
        assert problem.kind == "env" and "MYPKG_TELEMETRY=1" in problem.fix
    monkeypatch.setenv("MYPKG_TELEMETRY", " ")
    assert decide().source.startswith("user:")  # blank means unset


def test_do_not_track_with_an_unusable_value_still_turns_everything_off(monkeypatch):
    """DO_NOT_TRACK set to something unreadable (too long) is still set: off, even over a grant."""
    monkeypatch.setenv("DO_NOT_TRACK", "x" * 100_000)
    monkeypatch.setenv("MYPKG_TELEMETRY", "1")
    assert decide() == (False, "denied", "env:DO_NOT_TRACK")


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


@pytest.fixture(autouse=True)
def _a_fresh_run(monkeypatch):
    """Each test is a run of its own: no notice shown by this process yet."""
    monkeypatch.setattr(notice, "_SHOWN_NOW", set())


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
    assert notice.ensure_shown("mypkg") is False  # shown now: this run sends nothing
    assert "usagetrace preview mypkg" in tty.text and "usagetrace disable mypkg" in tty.text
    tty.text = ""
    assert notice.ensure_shown("mypkg") is False and tty.text == ""
    notice._SHOWN_NOW.clear()  # the next run
    assert notice.ensure_shown("mypkg") is True
    assert tty.text == ""  # never again
    assert state.notice_shown("mypkg")


def test_the_notice_names_the_install_id_its_reset_and_where_data_goes(monkeypatch, packages, no_ci):
    """The notice says which random install id is used, how to replace it, and the endpoint's host only."""
    monkeypatch.setattr("usagetrace._internal.runenv.under_pytest", lambda: False)
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", "https://collector.example.org:4318/otlp?api_key=sk-live-1")
    tty = _TTY()
    monkeypatch.setattr(sys, "stderr", tty)
    mod = packages.load("noticepkg", {"__init__.py": "def f(): return 1\nimport usagetrace\n"
                                                     "H = usagetrace.instrument(__name__, consent='opt-out')\n"})
    from usagetrace._internal import resource

    install_id = resource.stored_install_id("noticepkg")
    assert install_id and install_id in tty.text
    assert "usagetrace reset-id noticepkg" in tty.text
    assert "https://collector.example.org:4318" in tty.text and "sk-live" not in tty.text
    assert "sending starts with the next one" in tty.text and "random install id" in tty.text
    # The notice-first rule: this run is off, and stays off whatever re-reads consent during the run.
    assert not mod.H.enabled and mod.H.consent.source == consent.NOTICE_THIS_RUN
    assert mod.H.recorder is None  # nothing recorded: nothing for a realtime send nor a daily store
    consent.write_choice("otherpkg", False)  # any consent file change makes the refresher re-resolve
    assert mod.H.refresh_consent() is False
    assert not consent.resolve("noticepkg", OPT_OUT, under_pytest=False, notice_shown=True).enabled
    notice._SHOWN_NOW.clear()  # the next run
    assert consent.resolve("noticepkg", OPT_OUT, under_pytest=False).enabled


def test_notice_never_in_ci(monkeypatch, no_ci):
    """In CI the notice is never printed, even on a terminal."""
    monkeypatch.setenv("CI", "true")
    tty = _TTY()
    monkeypatch.setattr(sys, "stderr", tty)
    assert notice.ensure_shown("mypkg") is False and tty.text == ""


@pytest.mark.parametrize("policy", POLICY)
@pytest.mark.parametrize("where", ["user", "project"])
@pytest.mark.parametrize("case", list(BROKEN_CONTENT) + SPECIAL)
def test_broken_consent_file_turns_everything_off(case, where, policy, project, no_ci):
    """A consent file that cannot be read in full is off for every package, whatever it grants, under either policy."""
    target = paths.consent_file() if where == "user" else str(project / ".usagetrace")
    if where == "project":
        consent.write_choice("mypkg", True)  # a valid grant elsewhere must not win over the broken file
    place_broken(target, BROKEN_CONTENT.get(case), None if case in BROKEN_CONTENT else case)
    result = decide(policy)
    assert result == (False, "invalid", f"{where}:{target}")
    assert not consent.resolve("otherpkg", policy, under_pytest=False, notice_shown=True).enabled
    [problem] = [p for p in consent.problems() if p.path == target]
    assert problem.kind == where and problem.problem and problem.fix


def test_explicit_variable_still_grants_and_do_not_track_still_wins_over_a_broken_file(monkeypatch, no_ci):
    """With the consent file broken, MYPKG_TELEMETRY=1 still turns mypkg on; DO_NOT_TRACK still wins over that."""
    place_broken(paths.consent_file(), BROKEN_CONTENT["bad-line"])
    monkeypatch.setenv("MYPKG_TELEMETRY", "1")
    assert decide() == (True, "granted", "env:MYPKG_TELEMETRY")
    monkeypatch.setenv("DO_NOT_TRACK", "1")
    assert decide() == (False, "denied", "env:DO_NOT_TRACK")


@pytest.mark.skipif(os.geteuid() == 0, reason="root ignores permission bits")
def test_unreadable_consent_file_is_off(no_ci):
    """A consent file without read permission is off, and the fix says how to make it readable."""
    consent.write_choice("mypkg", True)
    os.chmod(paths.consent_file(), 0)
    assert decide(OPT_OUT).state == "invalid"
    [problem] = consent.problems()
    assert "permission denied" in problem.problem and "chmod" in problem.fix


@pytest.mark.parametrize(
    "text,line,words",
    [
        ("[consent]\nmypkg = true\nnumpy = maybe\n", 3, "must be true or false, not `maybe`"),
        ("# notes\n\n[consent]\na = true\n\"a\" = false\n", 5, "set twice (also on line 4)"),
        ("[consent]\n[consent]\n", 2, "[consent] appears twice"),
        ("[consent\n", 1, "not valid TOML"),
        ("[consent]\nmypkg = true\n[x]\ny = [1,\n", 4, "not valid TOML"),
        ("[other]\nk = 1\n[consent]\nmypkg = 1\n", 4, "must be true or false"),
        ("[consent]\ntiny", 2, "is not `name = value`"),
    ],
)
def test_parse_errors_name_the_line(text, line, words):
    """Every parse error names the line to fix and what is wrong with it."""
    with pytest.raises(consent._Bad) as info:
        consent._parse(text)
    assert info.value.line == line and words in info.value.problem


def test_not_utf8_names_the_line(no_ci):
    """A byte that is not UTF-8 is reported at its line."""
    place_broken(paths.consent_file(), b"[consent]\nmypkg = true\n# caf\xe9\n")
    [problem] = consent.problems()
    assert problem.line == 3 and "UTF-8" in problem.problem


def test_a_marker_of_any_kind_denies(project, no_ci):
    """.usagetrace_do_not_track denies whatever it is: a file, a directory, a dangling link."""
    consent.write_choice("mypkg", True)
    for special in ("directory", "dangling-symlink"):
        marker = project / ".usagetrace_do_not_track"
        place_broken(str(marker), special=special)
        assert decide() == (False, "denied", f"project:{marker}")
        os.rmdir(marker) if special == "directory" else os.unlink(marker)


def test_a_denial_in_any_project_file_wins_over_a_nearer_grant(project, monkeypatch, no_ci):
    """A marker or denial at the repository root wins over a grant in a nearer .usagetrace (denials win everywhere)."""
    (project / "src" / ".usagetrace").write_text("[consent]\nmypkg = true\n")
    (project / ".usagetrace").write_text("[consent]\nmypkg = false\n")
    assert decide() == (False, "denied", f"project:{project / '.usagetrace'}")
    (project / ".usagetrace").unlink()
    (project / ".usagetrace_do_not_track").write_text("")
    assert not decide().enabled
    (project / ".usagetrace_do_not_track").unlink()
    assert decide() == (False, "unset", "policy:opt-in")  # the grant alone counts for nothing
    assert consent.ignored_grants("mypkg") == [str(project / "src" / ".usagetrace")]


@pytest.mark.parametrize("policy", POLICY)
def test_a_granting_project_file_sends_nothing(tmp_path, monkeypatch, policy, no_ci):
    """A /tmp-like directory with `.usagetrace` granting (another user's, or a cloned repository's) grants nothing."""
    shared = tmp_path / "tmp"
    work = shared / "work"
    work.mkdir(parents=True)
    (shared / ".usagetrace").write_text('[consent]\nmypkg = true\n"*" = true\n')
    monkeypatch.chdir(work)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert consent.project_files() == [str(shared / ".usagetrace")]
    result = decide(policy, notice_shown=False)
    assert not result.enabled and result.source.startswith("policy:")
    assert consent.ignored_grants("mypkg") == [str(shared / ".usagetrace")]
    consent.write_choice("mypkg", True)  # the person's own yes still counts
    assert decide(policy) == (True, "granted", f"user:{paths.consent_file()}")


def test_project_search_stops_at_home(tmp_path, monkeypatch, no_ci):
    """Files above $HOME are never read; $HOME's own are."""
    (tmp_path / ".usagetrace_do_not_track").write_text("")
    home = tmp_path / "home"
    (home / "work").mkdir(parents=True)
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.chdir(home / "work")
    assert consent.project_files() == []
    (home / ".usagetrace").write_text("[consent]\nmypkg = false\n")
    assert consent.project_files() == [str(home / ".usagetrace")]
    assert decide() == (False, "denied", f"project:{home / '.usagetrace'}")


def test_parse_choices_subset_and_full_toml():
    """The hand parser reads usagetrace's own format; richer TOML falls back to tomllib."""
    assert consent.parse_choices('[consent]\n"*" = false\nmypkg = true # ok\n') == {"*": False, "mypkg": True}
    assert consent.parse_choices('[consent]\nmypkg = true\n[other]\nx = "y"\n') == {"mypkg": True}
    assert consent.parse_choices("consent.mypkg = true\n") == {"mypkg": True}
    with pytest.raises(ValueError):
        consent.parse_choices("[consent]\nmypkg = 1\n")


def test_write_choice_round_trip_and_all():
    """disable --all removes per-package grants; enable --all keeps per-package denials; a specific choice beats *."""
    consent.write_choice("a", True)
    report = consent.write_choice("*", False)
    assert report["removed_grants"] == ["a"]
    assert consent.read_choices(paths.consent_file()) == {"*": False}
    consent.write_choice("b", True)
    assert consent.read_choices(paths.consent_file()) == {"*": False, "b": True}
    assert consent.resolve("b", under_pytest=False).enabled
    assert not consent.resolve("a", under_pytest=False).enabled
    consent.write_choice("b", None)
    assert consent.read_choices(paths.consent_file()) == {"*": False}
    consent.write_choice("c", False)
    report = consent.write_choice("*", True)
    assert report["kept_denials"] == ["c"]
    assert consent.read_choices(paths.consent_file()) == {"*": True, "c": False}


HAND_EDITED = """\
# My choices, written by hand. Please keep this comment.
[consent]
numpy = false   # never, see ticket 12
"tinystats" = true

# a table another tool reads
[other]
x = 1
"""


def test_edits_keep_every_other_line_and_comment():
    """enable/disable/reset change one line in place; comments, other entries and other tables stay byte for byte."""
    path = paths.consent_file()
    os.makedirs(os.path.dirname(path))
    with open(path, "w") as fh:
        fh.write(HAND_EDITED)
    consent.write_choice("otherpkg", True)
    consent.write_choice("numpy", True)
    text = open(path).read()
    assert text.startswith("# My choices, written by hand. Please keep this comment.\n[consent]\n")
    assert "numpy = true   # never, see ticket 12\n" in text
    assert "# a table another tool reads\n[other]\nx = 1\n" in text
    assert consent.read_choices(path) == {"numpy": True, "tinystats": True, "otherpkg": True}
    consent.write_choice("otherpkg", None)
    consent.write_choice("numpy", False)
    assert open(path).read() == HAND_EDITED  # back to the person's own file, byte for byte


def test_crlf_file_stays_crlf():
    """A file with Windows line endings is edited with Windows line endings."""
    path = paths.consent_file()
    os.makedirs(os.path.dirname(path))
    with open(path, "wb") as fh:
        fh.write(b"[consent]\r\nnumpy = false\r\n")
    consent.write_choice("mypkg", True, version="2")
    raw = open(path, "rb").read()
    assert b"\n" not in raw.replace(b"\r\n", b"")
    assert consent.read_file(path).choices == {"numpy": False, "mypkg": True}
    assert consent.read_file(path).versions == {"mypkg": "2"}


@pytest.mark.parametrize("case", ["bad-line", "duplicate-key", "not-utf8", "truncated-value", "directory"])
def test_a_broken_file_is_never_rewritten(case):
    """Writing to a broken consent file refuses (BrokenSource) and leaves it exactly as it was."""
    path = paths.consent_file()
    place_broken(path, BROKEN_CONTENT.get(case), None if case in BROKEN_CONTENT else case)
    before = open(path, "rb").read() if case != "directory" else None
    with pytest.raises(consent.BrokenSource) as info:
        consent.write_choice("otherpkg", True)
    assert info.value.path == path and info.value.fix
    if before is not None:
        assert open(path, "rb").read() == before


def test_rich_toml_that_cannot_be_edited_safely_is_refused_not_rewritten():
    """Valid TOML outside the subset that an in-place edit could break is read correctly and never rewritten."""
    path = paths.consent_file()
    os.makedirs(os.path.dirname(path))
    text = '["consent"]\nnumpy = false\n'
    with open(path, "w") as fh:
        fh.write(text)
    assert consent.read_choices(path) == {"numpy": False}
    assert not consent.resolve("numpy", under_pytest=False).enabled
    with pytest.raises(consent.BrokenSource, match="not changed"):
        consent.write_choice("otherpkg", True)
    assert open(path).read() == text


def test_a_symlinked_consent_file_is_edited_through_the_link(tmp_path):
    """A consent.toml that is a symlink (dotfile managers) stays a symlink; the target is edited."""
    real = tmp_path / "dotfiles" / "consent.toml"
    real.parent.mkdir()
    real.write_text("[consent]\nnumpy = false\n")
    path = paths.consent_file()
    os.makedirs(os.path.dirname(path))
    os.symlink(real, path)
    consent.write_choice("mypkg", True)
    assert os.path.islink(path)
    assert consent.read_choices(str(real)) == {"numpy": False, "mypkg": True}


def test_writes_are_atomic_and_leave_no_temporary_files():
    """Each write replaces the file in one rename; nothing but the file and its lock remains."""
    for i in range(20):
        consent.write_choice(f"p{i}", bool(i % 2))
    directory = os.path.dirname(paths.consent_file())
    assert sorted(os.listdir(directory)) == ["consent.toml", "consent.toml.lock"]
    assert len(consent.read_choices(paths.consent_file())) == 20


# ----------------------------------------------------------------- consent versions


def test_a_grant_counts_only_for_its_consent_version(no_ci):
    """A grant for version 1, an unversioned grant or a * grant count as not given once version 2 is declared."""
    consent.write_choice("mypkg", True, version="1")
    assert decide(consent_version="1") == (True, "granted", f"user:{paths.consent_file()}")
    assert decide(consent_version="2") == (False, "unset", "policy:opt-in")
    assert consent.stale_grants("mypkg", "2") == [f"user:{paths.consent_file()}"]
    consent.write_choice("mypkg", True)  # unversioned
    assert not decide(consent_version="2").enabled
    assert decide().enabled  # no version declared: any grant counts
    consent.write_choice("mypkg", None)
    consent.write_choice("*", True)
    assert not decide(consent_version="2").enabled
    consent.write_choice("mypkg", True, version="2")
    assert decide(consent_version="2").enabled and consent.stale_grants("mypkg", "2") == []


def test_a_denial_never_expires_with_a_new_version(no_ci):
    """A no stays a no whatever consent version the package declares."""
    consent.write_choice("mypkg", False)
    for version in (None, "1", "2"):
        assert decide(OPT_OUT, consent_version=version).state == "denied"


def test_opt_out_notice_is_shown_again_for_a_new_consent_version(monkeypatch, no_ci):
    """A version bump re-shows the notice (saying what changed); until then an opt-out package sends nothing."""
    tty = _TTY()
    monkeypatch.setattr(sys, "stderr", tty)
    assert notice.ensure_shown("mypkg", "1") is False and "collects anonymous usage" in tty.text
    notice._SHOWN_NOW.clear()  # the next run
    tty.text = ""
    assert notice.ensure_shown("mypkg", "1") is True and tty.text == ""
    assert consent.resolve("mypkg", OPT_OUT, under_pytest=False, consent_version="1").enabled
    monkeypatch.setattr(sys, "stderr", type("N", (), {"isatty": lambda s: False, "closed": False})())
    assert consent.resolve("mypkg", OPT_OUT, under_pytest=False, consent_version="2") == (
        False, "unset", "policy:opt-out (notice not yet shown)")
    monkeypatch.setattr(sys, "stderr", tty)
    assert consent.resolve("mypkg", OPT_OUT, under_pytest=False, consent_version="2") == (
        False, "unset", consent.NOTICE_THIS_RUN)
    assert "has changed since you last saw this notice" in tty.text and "consent version 2" in tty.text
    notice._SHOWN_NOW.clear()
    assert consent.resolve("mypkg", OPT_OUT, under_pytest=False, consent_version="2").enabled
    assert state.notice_shown("mypkg", "2") and not state.notice_shown("mypkg", "1")


def test_a_notice_recorded_before_versions_existed_counts_only_without_a_version(no_ci):
    """state.json from before consent versions (a bare timestamp) counts for an unversioned package only."""
    state.save({"notices": {"mypkg": "2024-01-01T00:00:00Z"}})
    assert state.notice_shown("mypkg") and not state.notice_shown("mypkg", "1")


def test_instrument_records_the_declared_version(packages, monkeypatch, no_ci):
    """instrument(consent_version=...) records it (cheaply) so `usagetrace enable` can grant that version."""
    monkeypatch.setattr("usagetrace._internal.runenv.under_pytest", lambda: False)
    packages.load("verpkg", {"__init__.py": "import usagetrace\nH = usagetrace.instrument(__name__, consent_version=3)\n"})
    assert consent.declared_version("verpkg") == "3"
    import verpkg

    assert verpkg.H.consent_version == "3" and not verpkg.H.enabled


def test_instrument_rejects_a_bad_consent_version(packages):
    """A consent_version that is not an int or short string warns and keeps telemetry off."""
    with pytest.warns(RuntimeWarning, match="consent_version"):
        mod = packages.load("badverpkg", {"__init__.py": "import usagetrace\nH = usagetrace.instrument(__name__, consent='opt-out', consent_version=[1])\n"})
    assert mod.H.policy == OPT_IN and not mod.H.enabled


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


VERPKG = """
def f():
    return 1

import usagetrace
H = usagetrace.instrument(__name__, consent="opt-out", consent_version={version!r})
"""


def test_a_consent_version_bump_reshows_the_notice_and_sends_nothing_until_then(tmp_path):
    """Opt-out, version 1 noticed and sending; version 2 sends nothing off a terminal, then notices again and sends."""
    from usagetrace.testing import OTLPReceiver

    from .conftest import child_env, run_on_terminal

    pkgs = tmp_path / "pkgs"
    (pkgs / "verpkg").mkdir(parents=True)
    init = pkgs / "verpkg" / "__init__.py"
    code = ("import verpkg\nverpkg.f()\nassert verpkg.H.flush(10) or not verpkg.H.enabled\n"
            "print('wrapped' if __import__('usagetrace.testing', fromlist=['x']).is_wrapped(verpkg.f) else 'function')\n")
    with OTLPReceiver() as rx:
        # The package is rewritten with the same size within a second: a cached .pyc would be
        # taken for it, so the children write none.
        env = {"USAGETRACE_HOME": str(tmp_path / "home"), "PYTHONPATH": str(pkgs),
               "OTEL_EXPORTER_OTLP_ENDPOINT": rx.endpoint, "USAGETRACE_DETACHED_SEND": "0",
               "PYTHONDONTWRITEBYTECODE": "1"}
        init.write_text(VERPKG.format(version=1))
        proc, terminal = run_on_terminal(code, env)
        # Consent starts after the notice: the run that shows it records and sends nothing.
        assert proc.stdout.strip() == "function" and "collects anonymous usage" in terminal
        assert rx.connections == 0
        proc, terminal = run_on_terminal(code, env)
        assert proc.stdout.strip() == "wrapped" and "collects anonymous usage" not in terminal  # once
        assert rx.calls("verpkg.f") == 1

        init.write_text(VERPKG.format(version=2))
        sent = rx.connections
        proc = subprocess.run([sys.executable, "-c", code], env=child_env(env), capture_output=True, text=True,
                              timeout=60)  # no terminal: the new notice cannot be shown
        assert proc.returncode == 0 and proc.stdout.strip() == "function"
        assert rx.connections == sent
        proc, terminal = run_on_terminal(code, env)
        assert "What verpkg collects has changed" in terminal and "consent version 2" in terminal
        assert proc.stdout.strip() == "function" and rx.calls("verpkg.f") == 1
        proc, terminal = run_on_terminal(code, env)
        assert proc.stdout.strip() == "wrapped" and rx.calls("verpkg.f") == 2


def test_ask_consent_asks_again_when_the_grant_is_for_another_version(packages, monkeypatch, no_ci):
    """A yes given for consent version 1 counts as not given under version 2: ask_consent asks and stores version 2."""
    import io

    import usagetrace
    from usagetrace._internal import prompt

    class TTY(io.StringIO):
        def isatty(self):
            return True

    monkeypatch.setattr("usagetrace._internal.runenv.under_pytest", lambda: False)
    consent.write_choice("askvpkg", True, version="1")
    mod = packages.load("askvpkg", {"__init__.py": "def f(): return 1\nimport usagetrace\nH = usagetrace.instrument(__name__, consent_version=2)\n"})
    assert not mod.H.enabled and mod.H.consent.state == "unset"
    err = TTY()
    monkeypatch.setattr(sys, "stdin", TTY("y\n"))
    monkeypatch.setattr(sys, "stderr", err)
    monkeypatch.setattr(prompt, "_read_answer", lambda timeout: sys.stdin.readline())
    state_ = usagetrace.ask_consent("askvpkg")
    assert "Share anonymous usage statistics of askvpkg?" in err.getvalue()
    assert state_.enabled and mod.H.enabled
    assert consent.read_file(paths.consent_file()).versions == {"askvpkg": "2"}


@pytest.mark.parametrize("special", ["dangling-symlink", "symlink-loop"])
def test_a_broken_link_is_refused_not_replaced(special):
    """A consent.toml that is a dangling link or a loop is refused: the link is left exactly as it was."""
    path = paths.consent_file()
    place_broken(path, special=special)
    before = os.readlink(path)
    with pytest.raises(consent.BrokenSource, match="symbolic link"):
        consent.write_choice("mypkg", False)
    assert os.path.islink(path) and os.readlink(path) == before


def test_the_notice_run_leaves_nothing_for_the_daily_upload(tmp_path, monkeypatch):
    """Daily mode: the run that shows the notice adds nothing to the local store; the next run adds its counts."""
    from usagetrace._internal import aggregate

    from .conftest import run_on_terminal

    pkgs = tmp_path / "pkgs"
    (pkgs / "daypkg").mkdir(parents=True)
    (pkgs / "daypkg" / "__init__.py").write_text(VERPKG.format(version=None))
    home = tmp_path / "home"
    env = {"USAGETRACE_HOME": str(home), "PYTHONPATH": str(pkgs), "USAGETRACE_DETACHED_SEND": "0",
           "OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:9", "USAGETRACE_UPLOAD": "daily"}
    monkeypatch.setenv("USAGETRACE_HOME", str(home))
    proc, terminal = run_on_terminal("import daypkg\nfor _ in range(3): daypkg.f()\n", env)
    assert proc.returncode == 0 and "collects anonymous usage" in terminal
    assert aggregate.load("daypkg") == (None, None) and not (home / "cache" / "spool").exists()
    proc, terminal = run_on_terminal("import daypkg\nfor _ in range(3): daypkg.f()\n", env)
    assert proc.returncode == 0 and "collects anonymous usage" not in terminal
    doc, problem = aggregate.load("daypkg")  # the store with the runs' journal folded in
    assert problem is None and aggregate.summary(doc)["runs"] == 1


def test_project_search_stops_at_a_home_reached_through_a_link(tmp_path, monkeypatch, no_ci):
    """$HOME given as a symbolic link still bounds the walk (getcwd gives the resolved path)."""
    (tmp_path / ".usagetrace_do_not_track").write_text("")
    real = tmp_path / "real-home"
    (real / "work").mkdir(parents=True)
    os.symlink(real, tmp_path / "home-link")
    monkeypatch.setenv("HOME", str(tmp_path / "home-link"))
    monkeypatch.chdir(real / "work")
    assert consent.project_files() == []
