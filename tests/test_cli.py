"""The usagetrace command: status, choices, ids, preview, inventory, exit codes."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from usagetrace._internal import cli, consent, paths

from .conftest import EXAMPLES


@pytest.fixture(autouse=True)
def _examples_importable(monkeypatch):
    """tinystats (examples/) is importable, as with run_cli's PYTHONPATH: the CLI knows it by its source."""
    monkeypatch.syspath_prepend(EXAMPLES)


def run_cli(*args, env=None):
    full = dict(os.environ, PYTHONPATH=EXAMPLES)
    full.update(env or {})
    return subprocess.run([sys.executable, "-m", "usagetrace", *args], capture_output=True, text=True, env=full, timeout=120)


def _subcommands(parser) -> dict:
    """The parser's subcommands, {name: subparser}, read from the parser itself."""
    import argparse

    [action] = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    return dict(action.choices)


def test_help_everywhere():
    """--help works for the command and for every subcommand the parser has (new ones included)."""
    top = run_cli("--help")
    assert top.returncode == 0
    subcommands = _subcommands(cli.build_parser())
    assert {"status", "preview", "inventory", "report", "history"} <= set(subcommands)
    for sub in subcommands:
        assert sub in top.stdout
        result = run_cli(sub, "--help")
        assert result.returncode == 0 and result.stdout.startswith(f"usage: usagetrace {sub}"), (sub, result.stderr)
        assert result.stderr == "", sub


def test_enable_disable_status_json(capsys):
    """enable/disable store the choice and status reports it with the deciding source."""
    assert cli.main(["disable", "tinystats"]) == 0
    assert cli.main(["status", "tinystats", "--json"]) == 0
    out = capsys.readouterr().out
    data = json.loads(out[out.index("{"):])
    [row] = data["packages"]
    assert row["enabled"] is False and row["state"] == "denied"
    assert row["decided_by"] == f"user:{paths.consent_file()}"
    assert cli.main(["enable", "--all", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["granted"] is True and out["kept_denials"] == ["tinystats"]
    assert consent.read_choices(paths.consent_file()) == {"*": True, "tinystats": False}


def test_status_explains_global_switch(monkeypatch, capsys):
    """status says when DO_NOT_TRACK turns everything off."""
    monkeypatch.setenv("DO_NOT_TRACK", "1")
    cli.main(["enable", "tinystats"])
    capsys.readouterr()
    cli.main(["status", "tinystats"])
    out = capsys.readouterr().out
    assert "DO_NOT_TRACK is set: telemetry is off for every package" in out
    assert "why:            DO_NOT_TRACK is set in this environment" in out and "env:DO_NOT_TRACK" not in out
    cli.main(["status", "tinystats", "--verbose"])
    assert "decided by env:DO_NOT_TRACK" in capsys.readouterr().out  # the technical detail behind --verbose


def test_bad_usage_exits_2():
    """A missing or invalid package name is a usage error (exit 2) with a clear message."""
    result = run_cli("enable")
    assert result.returncode == 2 and "required" in result.stderr
    result = run_cli("reset-id", "not a package!")
    assert result.returncode == 2 and "not a Python package name" in result.stderr


def test_unwritable_consent_file_exits_1(tmp_path):
    """When the consent file cannot be written (its directory is a file), the command says so and exits 1."""
    home = tmp_path / "home"
    home.mkdir()
    (home / "config").write_text("a file where the config directory should be")
    result = run_cli("disable", "tinystats", env={"USAGETRACE_HOME": str(home)})
    assert result.returncode == 1 and "cannot write" in result.stderr


def test_a_directory_instead_of_the_consent_file_is_refused(tmp_path):
    """A directory where consent.toml should be: refused with what to do, exit 1, nothing changed."""
    home = tmp_path / "home"
    (home / "config" / "consent.toml").mkdir(parents=True)
    result = run_cli("disable", "tinystats", env={"USAGETRACE_HOME": str(home)})
    assert result.returncode == 1
    assert "nothing was changed" in result.stderr and "is a directory" in result.stderr
    assert "Remove that directory" in result.stderr


def test_reset_id_changes_the_install_id(capsys):
    """reset-id stores a new random id that later runs use."""
    from usagetrace._internal import resource

    first, _ = resource.install_id("tinystats")
    assert cli.main(["reset-id", "tinystats", "--json"]) == 0
    new = json.loads(capsys.readouterr().out)["install_id"]
    assert new != first and resource.install_id("tinystats") == (new, "stored")


def test_preview_prints_the_payload_and_sends_nothing(tmp_path):
    """preview runs the command with telemetry captured locally and prints exactly what would be sent."""
    from usagetrace.testing import OTLPReceiver

    with OTLPReceiver() as rx:
        result = run_cli(
            "preview", "tinystats", "--json", "--", sys.executable, "-c",
            "import tinystats; tinystats.mean([1, 2]); print('host output')",
            env={"OTEL_EXPORTER_OTLP_ENDPOINT": rx.endpoint},
        )
        assert rx.connections == 0
    assert result.returncode == 0, result.stderr
    assert "host output" in result.stdout
    data = json.loads(result.stdout[result.stdout.index("{"):])
    names = [s["name"] for r in data["requests"] for rs in r.get("resourceSpans", [])
             for ss in rs["scopeSpans"] for s in ss["spans"]]
    assert names == ["tinystats.mean"]
    assert not os.path.exists(os.path.join(paths.ids_dir(), "tinystats.id"))  # no id left behind
    # Not `env` (the child's forced switch): what a real send would carry, here the yes `enable` would store.
    sources = {kv["value"]["stringValue"] for r in data["requests"] for rs in r.get("resourceSpans", [])
               for kv in rs["resource"]["attributes"] if kv["key"] == "usagetrace.consent.source"}
    assert sources == {"user"} and data["would_send"] is False


def test_preview_carries_the_real_consent_source_and_says_nothing_after_disable():
    """An env grant is carried as `env`; after `disable` (or with DO_NOT_TRACK) preview says nothing would be sent."""
    code = "import tinystats; tinystats.mean([1, 2]); print('host output')"
    granted = run_cli("preview", "tinystats", "--json", "--", sys.executable, "-c", code,
                      env={"TINYSTATS_TELEMETRY": "1"})
    data = json.loads(granted.stdout[granted.stdout.index("{"):])
    assert data["would_send"] is True and data["decided_by"] == "env:TINYSTATS_TELEMETRY"
    assert {kv["value"]["stringValue"] for r in data["requests"] for rs in r.get("resourceSpans", [])
            for kv in rs["resource"]["attributes"] if kv["key"] == "usagetrace.consent.source"} == {"env"}
    for env in ({"DO_NOT_TRACK": "1"}, {}):
        if not env:
            assert run_cli("disable", "tinystats").returncode == 0
        result = run_cli("preview", "tinystats", "--", sys.executable, "-c", code, env=env)
        assert result.returncode == 0 and "host output" in result.stdout
        assert "tinystats would send nothing: telemetry is off here" in result.stdout
        assert "Resource" not in result.stdout and "usagetrace.install.id" not in result.stdout


def test_preview_human_output():
    """preview's default output shows the resource, the spans and the counters."""
    result = run_cli("preview", "tinystats", "--", sys.executable, "-c", "import tinystats; tinystats.median([1])")
    assert result.returncode == 0, result.stderr
    assert "Resource (sent with everything):" in result.stdout
    assert "tinystats.median" in result.stdout and "usagetrace.calls" in result.stdout


@pytest.mark.parametrize("json_flag", [[], ["--json"]])
def test_preview_exits_with_the_commands_status(json_flag):
    """preview passes the command's exit status through, in text and JSON mode."""
    result = run_cli("preview", "tinystats", *json_flag, "--", sys.executable, "-c",
                     "import tinystats, sys; tinystats.mean([1]); sys.exit(3)")
    assert result.returncode == 3, result.stderr
    assert "tinystats.mean" in result.stdout
    assert run_cli("preview", "tinystats", "--", sys.executable, "-c", "pass").returncode == 0
    missing = run_cli("preview", "tinystats", "--", "no-such-command-usagetrace")
    assert missing.returncode == 127 and "command not found" in missing.stderr


@pytest.mark.skipif(os.name != "posix", reason="POSIX signals")
def test_preview_reports_a_signal_like_a_shell():
    """A command killed by signal N gives 128 + N, as shells report it."""
    import signal

    result = run_cli("preview", "tinystats", "--", sys.executable, "-c",
                     "import os, signal, tinystats; tinystats.mean([1]); os.kill(os.getpid(), signal.SIGTERM)")
    assert result.returncode == 128 + signal.SIGTERM, result.stderr


def test_preview_output_order_with_stdout_and_stderr_in_one_file(tmp_path):
    """Piped to one file: the command's output, then the header, then what would have been sent."""
    path = tmp_path / "both.txt"
    code = ("import sys, tinystats; tinystats.mean([1]); print('host stdout', flush=True); "
            "print('host stderr', file=sys.stderr)")
    with open(path, "w") as fh:
        result = subprocess.run(
            [sys.executable, "-m", "usagetrace", "preview", "tinystats", "--", sys.executable, "-c", code],
            stdout=fh, stderr=subprocess.STDOUT, env=dict(os.environ, PYTHONPATH=EXAMPLES), timeout=120,
        )
    assert result.returncode == 0
    text = path.read_text()
    marks = [text.index(m) for m in ("host stdout", "host stderr", "--- what tinystats would send",
                                     "Resource (sent with everything):", "tinystats.mean", "OTLP request(s)")]
    assert marks == sorted(marks), text


def test_inventory_json_and_markdown(capsys):
    """inventory prints the allowlist as Markdown or JSON."""
    assert cli.main(["inventory", "tinystats"]) == 0
    assert "| `usagetrace.install.id` | resource |" in capsys.readouterr().out
    assert cli.main(["inventory", "tinystats", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert {row["key"] for row in data["attributes"]} >= {"service.name", "usagetrace.calls"}


def test_status_finds_packages_seen_and_installed(capsys):
    """status lists packages from the consent file and from installed distributions depending on usagetrace."""
    consent.write_choice("somepkg", True)
    assert "somepkg" in cli.known_packages()


def test_report_without_arguments_is_a_usage_error():
    """`usagetrace report` with no source fails with a usage message instead of a traceback."""
    result = run_cli("report")
    assert result.returncode == 2 and "Traceback" not in result.stderr


@pytest.mark.parametrize("answer,expected", [("y\n", True), ("n\n", False)])
def test_ask_consent_stores_the_answer(monkeypatch, answer, expected, no_ci):
    """ask_consent asks on a terminal, stores the answer and never asks again."""
    import io

    from usagetrace._internal import prompt

    class TTY(io.StringIO):
        def isatty(self):
            return True

    err = TTY()
    monkeypatch.setattr(sys, "stdin", TTY(answer))
    monkeypatch.setattr(sys, "stderr", err)
    monkeypatch.setattr(prompt, "_read_answer", lambda timeout: sys.stdin.readline())
    monkeypatch.setattr("usagetrace._internal.runenv.under_pytest", lambda: False)
    state = prompt.ask("askpkg")
    assert state.enabled is expected and "Share anonymous usage statistics of askpkg?" in err.getvalue()
    # What a yes means: where it goes and the install id (named, not created before the answer), and its reset.
    assert "a local file" in err.getvalue() and "random install id for askpkg" in err.getvalue()
    assert "usagetrace reset-id askpkg" in err.getvalue()
    assert consent.read_choices(paths.consent_file()) == {"askpkg": expected}
    err.seek(0)
    err.truncate(0)
    again = prompt.ask("askpkg")
    assert again.enabled is expected and err.getvalue().strip("\x00") == ""


def test_ask_consent_never_prompts_without_a_terminal(monkeypatch, no_ci):
    """Without a terminal (CI jobs, notebooks, pipes) nothing is asked and consent stays unset."""
    import usagetrace

    monkeypatch.setattr("usagetrace._internal.runenv.under_pytest", lambda: False)
    state = usagetrace.ask_consent("askpkg2", timeout=0.1)
    assert state.state == "unset" and consent.read_choices(paths.consent_file()) is None


def test_inventory_callables_lists_counted_and_skipped_with_reasons(packages, tmp_path, monkeypatch):
    """`inventory PKG --callables` imports the package in a child process and gives the account, with reasons."""
    import json
    import os
    import subprocess
    import sys

    packages.write("inv_callables_pkg", {"__init__.py": '''
        import warnings

        def default_key(x):
            return x

        def cached(f, key=default_key):
            return f

        def old():
            warnings.warn("old", DeprecationWarning, stacklevel=2)

        def fine(x):
            return x
    '''})
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(tmp_path / "pkgs"), os.environ.get("PYTHONPATH", "")]))
    env.pop("PYTEST_CURRENT_TEST", None)
    proc = subprocess.run([sys.executable, "-m", "usagetrace", "inventory", "inv_callables_pkg", "--callables",
                           "--json"], env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    account = json.loads(proc.stdout)["callables"]
    assert account["wrapped"] == ["inv_callables_pkg.cached", "inv_callables_pkg.fine"]
    uncounted_by_wrapper = account["monitored"] if sys.version_info >= (3, 12) else account["skipped"]
    assert "reference" in uncounted_by_wrapper["inv_callables_pkg.default_key"]
    assert "stack" in uncounted_by_wrapper["inv_callables_pkg.old"]
    home = os.environ["USAGETRACE_HOME"]
    assert not os.path.exists(os.path.join(home, "data", "ids"))  # nothing of the person's was written


# ------------------------------------------------------------ issue 12: what was observed

OPTPKG = """
def f():
    return 1

import usagetrace
H = usagetrace.instrument(__name__, consent="opt-out")
"""


def _wait_for_empty_spool(home, timeout=60.0) -> bool:
    """True once the spool holds no file and no sender holds its lock (bounded)."""
    import time

    spool = home / "cache" / "spool"
    deadline = time.monotonic() + timeout
    while True:
        if not spool.exists() or not [p for p in spool.iterdir() if p.suffix == ".json"]:
            from usagetrace._internal import paths

            try:  # the spool lock is an flock (its file stays): free once no sender holds it
                with paths.locked(str(spool / ".lock"), timeout=0.0):
                    return True
            except paths.LockTimeout:
                pass
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.05)


def test_what_was_observed_sends_nothing_after_the_denial(tmp_path):
    """Issue 12's scenario: notice on a terminal, disable, a hand-edited bad line: 0 bytes; `enable otherpkg`
    refuses and keeps the denial; status names the file and the line."""
    from usagetrace.testing import OTLPReceiver

    from .conftest import child_env, run_on_terminal

    pkgs = tmp_path / "pkgs"
    (pkgs / "optpkg").mkdir(parents=True)
    (pkgs / "optpkg" / "__init__.py").write_text(OPTPKG)
    home = tmp_path / "home"
    consent_file = home / "config" / "consent.toml"
    with OTLPReceiver() as rx:
        env = {"USAGETRACE_HOME": str(home), "PYTHONPATH": str(pkgs), "OTEL_EXPORTER_OTLP_ENDPOINT": rx.endpoint,
               "USAGETRACE_DETACHED_SEND": "1", "USAGETRACE_EXPORT_INTERVAL": "0.2"}

        def cli_run(*args):
            return subprocess.run([sys.executable, "-m", "usagetrace", *args], capture_output=True, text=True,
                                  env=child_env(env), timeout=120)

        # 1. First run on a terminal: the notice is shown and nothing is recorded (consent starts after it);
        #    the next run of the opt-out package sends (a detached sender).
        probe = ("import optpkg\noptpkg.f()\nprint('wrapped' if __import__('usagetrace.testing', "
                 "fromlist=['x']).is_wrapped(optpkg.f) else 'function')\n")
        proc, terminal = run_on_terminal(probe, env)
        assert proc.returncode == 0 and proc.stdout.strip() == "function"
        assert "optpkg collects anonymous usage statistics" in terminal
        assert "usagetrace reset-id optpkg" in terminal and f"Where it goes:             {rx.endpoint}" in terminal
        proc, terminal = run_on_terminal(probe, env)
        assert proc.returncode == 0 and proc.stdout.strip() == "wrapped" and "collects" not in terminal
        assert rx.wait_for(lambda r: r.calls("optpkg.f") == 1, timeout=60)
        assert _wait_for_empty_spool(home)

        # 2. The person says no.
        disabled = cli_run("disable", "optpkg")
        assert disabled.returncode == 0, disabled.stderr
        sent = rx.connections

        # 3. Later they hand-edit the file and leave one bad line.
        with open(consent_file, "a") as fh:
            fh.write("numpy = maybe\n")
        bad_line = consent_file.read_text().splitlines().index("numpy = maybe") + 1
        before = consent_file.read_bytes()

        # 4. The next run: not wrapped, nothing spooled, nothing sent, now or by a flush.
        proc, terminal = run_on_terminal(
            "import time, optpkg\nfor _ in range(5): optpkg.f()\ntime.sleep(0.5)\nprint('wrapped' if __import__('usagetrace.testing', fromlist=['x']).is_wrapped(optpkg.f) else 'function')\n", env)
        assert proc.returncode == 0 and proc.stdout.strip() == "function"
        assert "collects anonymous usage" not in terminal
        assert _wait_for_empty_spool(home, timeout=0.0)
        flushed = cli_run("flush")
        assert flushed.returncode == 0 and "Nothing was waiting" in flushed.stdout

        # 5. `enable otherpkg` refuses, exit 1, the file (and the denial in it) unchanged.
        enabled = cli_run("enable", "otherpkg", "--force")
        assert enabled.returncode == 1
        assert f"{consent_file}, line {bad_line}" in enabled.stderr and "nothing was changed" in enabled.stderr
        assert consent_file.read_bytes() == before and "optpkg = false" in before.decode()

        # 6. status names the broken file and line and says what to do; optpkg is off.
        status = cli_run("status", "optpkg")
        assert status.returncode == 0
        assert f"PROBLEM: {consent_file}, line {bad_line}:" in status.stdout
        assert "To fix it:" in status.stdout and "optpkg: off" in status.stdout
        assert rx.connections == sent  # 0 bytes at every step after the denial


def test_status_is_true_after_a_one_second_run(tmp_path):
    """After a short opt-out run that sent data, status knows the policy, the endpoint and the delivery."""
    from usagetrace.testing import OTLPReceiver

    from .conftest import child_env, run_on_terminal

    pkgs = tmp_path / "pkgs"
    (pkgs / "optpkg").mkdir(parents=True)
    (pkgs / "optpkg" / "__init__.py").write_text(OPTPKG)
    home = tmp_path / "home"
    with OTLPReceiver() as rx:
        env = {"USAGETRACE_HOME": str(home), "PYTHONPATH": str(pkgs), "OTEL_EXPORTER_OTLP_ENDPOINT": rx.endpoint,
               "USAGETRACE_DETACHED_SEND": "1"}  # the default 5 s interval: this run is over long before it
        for _ in range(2):  # the first run shows the notice and sends nothing
            proc, _ = run_on_terminal("import optpkg\noptpkg.f()\n", env)
            assert proc.returncode == 0
        assert rx.wait_for(lambda r: r.calls("optpkg.f") == 1, timeout=60)
        assert _wait_for_empty_spool(home)
        status = subprocess.run([sys.executable, "-m", "usagetrace", "status", "optpkg", "--json"],
                                capture_output=True, text=True, env=child_env(env), timeout=60)
    [row] = json.loads(status.stdout)["packages"]
    assert row["policy"] == "opt-out" and row["enabled"] is True
    assert row["endpoint"] == row["last_run_target"] == f"http/protobuf {rx.endpoint}/v1/traces"
    assert row["ran_with_telemetry_on"] is True and row["last_on"]
    assert row["last_delivered"]["endpoint"] == rx.endpoint and row["receipts"] == len(rx.requests)


def test_status_tells_never_ran_from_off(capsys):
    """A package that never ran with telemetry on says so; one that did and is now off says when it last did."""
    from usagetrace._internal import state

    consent.write_choice("neverpkg", False)
    state.remember_package("wasonpkg", {"policy": "opt-in", "ci": "off", "endpoint": None, "consent_version": None})
    consent.write_choice("wasonpkg", False)
    assert cli.main(["status"]) == 0
    out = capsys.readouterr().out
    never = out[out.index("neverpkg: off"):].split("\n\n")[0]
    assert "ran with telemetry on: never" in never
    assert "sends to:       unknown until neverpkg runs with telemetry on" in never
    assert "development mode" not in never
    was = out[out.index("wasonpkg: off"):].split("\n\n")[0]
    assert "ran with telemetry on: last " in was and "never" not in was
    assert "sends to:       a local file" in was  # it ran with no endpoint: development mode is known


def test_status_says_unknown_instead_of_inventing_and_names_a_broken_state_file(monkeypatch, capsys, no_ci):
    """An opt-out package that ran only without a terminal: no invented policy or endpoint; a truncated
    state.json is named; jargon only behind --verbose. On a person's machine (no_ci): under CI the CI rule
    already decides an unknown package's state."""
    from usagetrace._internal import state

    state.remember_package("optpkg", {"policy": "opt-out", "ci": "off", "endpoint": "https://t.example.org",
                                      "consent_version": None})
    consent.write_choice("optpkg", True)
    with open(paths.state_file(), "r+") as fh:  # truncated mid-write by a crash
        fh.truncate(20)
    assert cli.main(["status", "optpkg"]) == 0
    out = capsys.readouterr().out
    assert f"{paths.state_file()} is not valid JSON" in out
    assert "optpkg: ON" in out and "your choice, in" in out
    assert "sends to:       unknown until optpkg runs with telemetry on" in out
    assert "development mode" not in out and "opt-in assumed" not in out
    for jargon in ("spool", "policy:", "http/protobuf", "/v1/traces", "[default]"):
        assert jargon not in out, jargon
    consent.write_choice("optpkg", None)  # now nothing here knows optpkg: --force asks anyway
    assert cli.main(["status", "optpkg", "--json"]) == 2
    assert cli.main(["status", "optpkg", "--json", "--force"]) == 0
    [row] = json.loads(capsys.readouterr().out)["packages"]
    assert row["enabled"] is None and row["policy"] is None and row["sends_to"] is None
    assert row["state_file_problem"].endswith("is not valid JSON (truncated?)")


def test_status_never_contradicts_itself_on_upload_mode(monkeypatch, capsys):
    """No endpoint: realtime to the local file, said once, with why; no "[default]" beside "not daily"."""
    from usagetrace._internal import state

    state.remember_package("devpkg", {"policy": "opt-in", "ci": "off", "endpoint": None, "consent_version": None})
    assert cli.main(["status", "devpkg"]) == 0
    out = capsys.readouterr().out
    [line] = [line for line in out.splitlines() if line.strip().startswith("upload:")]
    assert "realtime: sent as it happens" in line and "daily is the default, but there is no endpoint" in line
    assert "[default]" not in out and "not daily" not in out
    assert "last send:      none recorded (it writes to a local file; nothing goes over the network)" in out


# -------------------------------------------------------------- choices: concurrent writers

WRITER = """
import os, sys, time
from usagetrace._internal import cli

worker, go = int(sys.argv[1]), sys.argv[2]
while not os.path.exists(go):
    time.sleep(0.001)
for j in range(12):
    name = f"w{worker}p{j}"
    steps = (["enable", name], ["disable", name]) if j % 2 else (["disable", name], ["enable", name])
    for step in steps:
        assert cli.main([*step, "--json", "--force"]) == 0
"""


def test_concurrent_enable_disable_from_8_processes_lose_no_entry(tmp_path):
    """8 processes enabling and disabling at once: every entry and the hand-written comment survive."""
    from .conftest import child_env

    home = tmp_path / "home"
    (home / "config").mkdir(parents=True)
    (home / "config" / "consent.toml").write_text("# written by hand: keep me\n[consent]\nkeep = false\n")
    go = tmp_path / "go"
    env = child_env({"USAGETRACE_HOME": str(home)})
    procs = [subprocess.Popen([sys.executable, "-c", WRITER, str(i), str(go)], env=env, stdout=subprocess.DEVNULL,
                              stderr=subprocess.PIPE, text=True) for i in range(8)]
    go.write_text("")
    errors = [p.communicate(timeout=240)[1] for p in procs]
    assert [p.returncode for p in procs] == [0] * 8, errors
    text = (home / "config" / "consent.toml").read_text()
    assert text.startswith("# written by hand: keep me\n")
    expected = {"keep": False, **{f"w{i}p{j}": j % 2 == 0 for i in range(8) for j in range(12)}}
    assert consent.read_choices(str(home / "config" / "consent.toml")) == expected


# -------------------------------------------------------------------------- flush counts


def test_flush_says_what_happened_to_each_batch(tmp_path):
    """flush counts delivered, withdrawn, expired, rejected and kept batches; none is called delivered unless it was."""
    import time

    from usagetrace.testing import OTLPReceiver

    from .conftest import child_env

    home = tmp_path / "home"
    spool = home / "cache" / "spool"
    with OTLPReceiver(status=503) as rx:
        env = child_env({"USAGETRACE_HOME": str(home), "PYTHONPATH": EXAMPLES, "TINYSTATS_TELEMETRY": "1",
                         "OTEL_EXPORTER_OTLP_ENDPOINT": rx.endpoint, "USAGETRACE_DETACHED_SEND": "0",
                         "USAGETRACE_EXPORT_INTERVAL": "3600"})

        def spool_one():
            proc = subprocess.run([sys.executable, "-c", "import tinystats; tinystats.mean([1])"], env=env,
                                  capture_output=True, text=True, timeout=60)
            assert proc.returncode == 0, proc.stderr

        def flush(**extra):
            return subprocess.run([sys.executable, "-m", "usagetrace", "flush"], env={**env, **extra},
                                  capture_output=True, text=True, timeout=120)

        for _ in range(3):
            spool_one()
        oldest = sorted(spool.glob("*.json"))[0]
        eight_days_ago = time.time() - 8 * 86400
        os.utime(oldest, (eight_days_ago, eight_days_ago))
        result = flush()
        assert result.returncode == 1
        assert "Delivered 0 spooled batch(es)" in result.stdout
        assert "1 deleted unsent: older than 7 days" in result.stdout
        assert "2 kept for a later attempt" in result.stdout
        rx.status = 200
        result = flush()
        assert result.returncode == 0 and "Delivered 2 spooled batch(es) (4 request(s) accepted)" in result.stdout
        assert rx.calls("tinystats.mean") == 2

        spool_one()
        result = flush(TINYSTATS_TELEMETRY="0")  # withdrawn before the sender ran
        assert "Delivered 0 spooled batch(es)" in result.stdout
        assert "1 deleted unsent: consent was withdrawn" in result.stdout
        assert rx.calls("tinystats.mean") == 2

        rx.status = 400
        spool_one()
        result = flush()
        assert "1 deleted: the collector rejected them" in result.stdout
        assert list(spool.glob("*.json")) == []
        assert flush().stdout.strip() == "Nothing was waiting in the spool."


# -------------------------------------------------------------- secrets in endpoints

SECRET_URL = "http://user:S3cret@127.0.0.1:{port}/otlp?api_key=sk-live-CANARY"


def test_an_endpoint_with_userinfo_is_refused_and_never_shown(monkeypatch, capsys):
    """user:password@ in the endpoint: nothing is sent, status points to OTEL_EXPORTER_OTLP_HEADERS, no secret shown."""
    from usagetrace._internal import config, state

    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", SECRET_URL.format(port=18001))
    target = config.resolve("traces", None, "tinystats")
    assert target.kind == "none" and "OTEL_EXPORTER_OTLP_HEADERS" in target.url
    assert "S3cret" not in target.describe() and "sk-live" not in target.describe()
    assert cli.main(["status", "tinystats", "--force"]) == 0
    out = capsys.readouterr().out
    assert "OTEL_EXPORTER_OTLP_ENDPOINT" in out and "OTEL_EXPORTER_OTLP_HEADERS" in out
    assert "S3cret" not in out and "sk-live" not in out and "user:" not in out
    assert cli.main(["status", "tinystats", "--force", "--json", "--verbose"]) == 0
    out = capsys.readouterr().out
    assert "S3cret" not in out and "sk-live" not in out
    assert "S3cret" not in json.dumps(state.load())


def test_a_base_url_path_gets_the_signal_path_and_keeps_its_query_unshown(monkeypatch):
    """The OTLP spec: http://h/otlp?q sends to /otlp/v1/traces?q (the query kept in the request); shown without it."""
    import threading
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    from usagetrace._internal import config, transport

    seen = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self):
            self.rfile.read(int(self.headers.get("Content-Length") or 0))
            seen.append(self.path)
            self.send_response(200)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
    try:
        port = server.server_address[1]
        monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", f"http://127.0.0.1:{port}/otlp/?api_key=sk-live-CANARY")
        for signal in config.SIGNALS:
            target = config.resolve(signal, None, "tinystats")
            assert target.kind == "http"
            assert target.describe() == f"http/protobuf http://127.0.0.1:{port}/otlp/v1/{signal}"
            assert config.where(target) == f"http://127.0.0.1:{port}"
            transport.for_target(target).send(signal, b"", 5)
        assert seen == ["/otlp/v1/traces?api_key=sk-live-CANARY", "/otlp/v1/metrics?api_key=sk-live-CANARY"]
    finally:
        server.shutdown()
        server.server_close()


def test_bad_environment_values_are_named_in_status(monkeypatch, capsys):
    """Every unusable variable is named with what happens instead (OTEL_EXPORTER_OTLP_TIMEOUT=abc included)."""
    bad = {"OTEL_EXPORTER_OTLP_TIMEOUT": "abc", "OTEL_EXPORTER_OTLP_PROTOCOL": "carrier-pigeon",
           "OTEL_EXPORTER_OTLP_COMPRESSION": "zip", "USAGETRACE_UPLOAD": "hourly", "USAGETRACE_CONSOLE": "maybe",
           "OTEL_EXPORTER_OTLP_HEADERS": "no equals sign", "USAGETRACE_EXPORT_INTERVAL": "soon",
           "OTEL_SDK_DISABLED": "1"}
    for name, value in bad.items():
        monkeypatch.setenv(name, value)
    assert cli.main(["status"]) == 0
    out = capsys.readouterr().out
    for name in bad:
        assert name in out, name
    assert cli.main(["status", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert {p["variable"] for p in data["environment_problems"]} == set(bad)


# -------------------------------------------------------------- checked names


def _fake_distribution(site, name: str, top_level: str | None, record: list[str], requires=("usagetrace",)):
    """A minimal installed distribution (dist-info with METADATA, and top_level.txt or a RECORD)."""
    info = site / f"{name.replace('-', '_')}-1.0.dist-info"
    info.mkdir(parents=True)
    reqs = "".join(f"Requires-Dist: {r}\n" for r in requires)
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: 1.0\n{reqs}")
    if top_level is not None:
        (info / "top_level.txt").write_text(top_level + "\n")
    (info / "RECORD").write_text("".join(f"{r},,\n" for r in record) + f"{info.name}/METADATA,,\n")


def test_a_mistyped_name_is_refused_with_the_closest_names(capsys):
    """`disable MyLib` for mylib really disables mylib; `disable mylbi` refuses (exit 2), names mylib, changes nothing."""
    consent.write_choice("mylib", True)
    assert cli.main(["disable", "MyLib"]) == 0
    assert consent.read_choices(paths.consent_file()) == {"mylib": False}
    assert "Telemetry disabled for mylib" in capsys.readouterr().out
    before = open(paths.consent_file()).read()
    for command in (["enable", "mylbi"], ["disable", "mylbi"], ["reset", "mylbi"], ["reset-id", "mylbi"],
                    ["status", "mylbi"], ["preview", "mylbi"]):
        assert cli.main(command) == 2, command
        err = capsys.readouterr().err
        assert "knows no package named 'mylbi'" in err and "Did you mean: mylib" in err and "--force" in err
    assert open(paths.consent_file()).read() == before
    assert not os.path.exists(os.path.join(paths.ids_dir(), "mylbi.id"))
    assert cli.main(["enable", "futurepkg", "--force"]) == 0  # a choice for a package not installed yet
    assert consent.read_choices(paths.consent_file())["futurepkg"] is True


def test_a_distribution_name_resolves_to_its_import_name(tmp_path, monkeypatch, capsys):
    """scikit-learn -> sklearn (top_level.txt), my-tool -> mytool (RECORD only); -/_ and case do not matter."""
    site = tmp_path / "site"
    _fake_distribution(site, "scikit-learn", "sklearn", ["sklearn/__init__.py"])
    _fake_distribution(site, "My-Tool", None, ["mytool/__init__.py", "mytool/core.py", "../../bin/mytool"])
    monkeypatch.syspath_prepend(str(site))
    assert set(cli.known_packages()) >= {"sklearn", "mytool"}
    assert cli.resolve_name("scikit-learn") == ("sklearn", "")
    assert cli.resolve_name("Scikit_Learn") == ("sklearn", "")
    assert cli.resolve_name("my-tool") == ("mytool", "")
    assert cli.resolve_name("MYTOOL") == ("mytool", "")
    assert cli.main(["disable", "scikit-learn"]) == 0
    assert consent.read_choices(paths.consent_file()) == {"sklearn": False}
    assert consent.resolve("sklearn", under_pytest=False).state == "denied"
    name, why = cli.resolve_name("scikit-lern")
    assert name is None and "scikit-learn" in why


def test_reset_says_which_default_applies(capsys):
    """reset names the default it restores: on for an opt-out package, off for opt-in, both when unknown."""
    from usagetrace._internal import state

    state.remember_package("outpkg", {"policy": "opt-out", "ci": "off", "endpoint": None, "consent_version": None})
    state.remember_package("inpkg", {"policy": "opt-in", "ci": "off", "endpoint": None, "consent_version": None})
    assert cli.main(["reset", "outpkg"]) == 0
    assert "The default for outpkg now applies: on (its maintainers chose opt-out)" in capsys.readouterr().out
    assert cli.main(["reset", "inpkg"]) == 0
    assert "The default for inpkg now applies: off (opt-in)" in capsys.readouterr().out
    assert cli.main(["reset", "newpkg", "--force"]) == 0
    assert "unknown until newpkg runs with telemetry on" in capsys.readouterr().out


def test_reset_id_argument_has_help():
    result = run_cli("reset-id", "--help")
    assert result.returncode == 0 and "the package whose install id to replace" in result.stdout


def test_history_summarises_by_default(capsys):
    """20 requests: a few summary lines by default; --last N and --full decode requests."""
    from usagetrace._internal import receipts, transport
    from usagetrace._internal.config import Target

    target = Target("http", "http://127.0.0.1:4318/v1/traces", "http/protobuf")
    for _ in range(20):
        receipts.record("histpkg", target, "traces", b"", transport.OK, (True, "accepted (HTTP 200)", 10))
    assert cli.main(["history", "histpkg"]) == 0
    out = capsys.readouterr().out
    assert "histpkg: 20 request(s) left this machine" in out and "200 bytes in all" in out
    assert "20 x traces to http://127.0.0.1:4318: accepted (HTTP 200)" in out
    assert len(out.splitlines()) <= 5 and "===" not in out
    assert cli.main(["history", "histpkg", "--last", "3"]) == 0
    assert capsys.readouterr().out.count("===") == 3
    assert cli.main(["history", "histpkg", "--full"]) == 0
    assert capsys.readouterr().out.count("===") == 20


def test_state_json_never_stores_an_endpoints_secrets(capsys):
    """A maintainer endpoint with userinfo and a query is stored as scheme://host:port/path (still refused)."""
    from usagetrace._internal import state

    state.remember_package("tinystats", {"policy": "opt-in", "ci": "off", "consent_version": None,
                                         "endpoint": "https://user:S3cret@t.example.org/otlp?api_key=sk-live-1"})
    stored = open(paths.state_file()).read()
    assert "S3cret" not in stored and "sk-live" not in stored and "t.example.org:443/otlp" in stored
    assert cli.main(["status", "tinystats"]) == 0
    out = capsys.readouterr().out
    assert "sends to:       nothing is sent (the endpoint holds a user name or password" in out
    assert "S3cret" not in out and "sk-live" not in out
