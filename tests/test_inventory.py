"""`usagetrace inventory PACKAGE`: what that package can send, found from its source without importing it."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys

from usagetrace._internal import allowlist, cli, inventory

from .conftest import EXAMPLES, ROOT

CLI_APP = {
    "__init__.py": """
        import usagetrace
        from usagetrace import command as ut_command
        from usagetrace.integrations import click as ut_click

        def build(n):
            with ut_command("generate", package="toolpkg",
                            measures={"flowgroups": int, "dry_run": bool, "env": ("dev", "prod"), "ratio": float}):
                return n

        usagetrace.instrument(__name__, version="2.0.1", consent="opt-out", measures={"seats": int})
        """,
    "web/app.py": """
        import usagetrace.integrations.dash

        def make(app):
            usagetrace.integrations.dash.track(app, package="toolpkg")
            usagetrace.event("started", package="toolpkg", seats=3)
        """,
    "dyn.py": """
        import usagetrace as ut
        SPECS = {"n": int}

        def run():
            with ut.command("dyn", package="toolpkg", measures=SPECS):
                pass
        """,
}


def _keys(profile) -> set[str]:
    return {row["key"] for row in inventory.rows(profile)}


def _integration_keys(feature_set) -> set[str]:
    return {a.key for a in allowlist.ATTRIBUTES if set(a.features) & set(feature_set)}


def test_tinystats_gets_its_own_name_version_and_only_core_attributes(capsys):
    """A package using no integration: its name, version and a real function in the examples; no page/e-mail keys."""
    sys.path.insert(0, EXAMPLES)
    try:
        assert cli.main(["inventory", "tinystats"]) == 0
    finally:
        sys.path.remove(EXAMPLES)
    out = capsys.readouterr().out
    assert out.startswith("What usagetrace can send for `tinystats` 1.2.0")
    assert "| `service.name` | resource | string | The instrumented package's import name. | `tinystats` |" in out
    assert "| `service.version` | resource | string | The installed version of that package. | `1.2.0` |" in out
    assert "`tinystats.zscore`" in out and "mypkg" not in out and "1.4.2" not in out
    assert "without importing them" in out and "tinystats/__init__.py:21" in out
    for key in _integration_keys(set(allowlist.FEATURES) - {"core"}):
        assert f"`{key}`" not in out, key
    for key in ("usagetrace.install.id", "code.function.name", "exception.stacktrace", "usagetrace.calls"):
        assert f"`{key}`" in out


def test_integrations_and_declared_measures_are_found(packages):
    """click, dash, command() and event() are found with file:line; literal measures become rows with their types."""
    packages.write("toolpkg", CLI_APP)
    profile = inventory.scan("toolpkg")
    assert profile.files == 3 and profile.version == "2.0.1" and profile.consent == "opt-out"
    assert set(inventory.features(profile)) == {"core", "cli", "command", "event", "pages", "callbacks"}
    assert profile.features["cli"] == ["toolpkg/__init__.py:4: imports usagetrace.integrations.click"]
    assert profile.features["pages"] == ["toolpkg/web/app.py:2: imports usagetrace.integrations.dash"]
    assert any(w.startswith("toolpkg/web/app.py:6: calls usagetrace.event()") for w in profile.features["event"])
    keys = _keys(profile)
    assert _integration_keys({"cli", "command", "event", "pages", "callbacks"}) <= keys
    assert not _integration_keys({"email", "crash"}) & keys
    measures = {r["key"]: r for r in inventory.rows(profile) if r["key"].startswith(allowlist.MEASURE_PREFIX)}
    assert {k: r["type"] for k, r in measures.items()} == {
        "usagetrace.measure.flowgroups": "int",
        "usagetrace.measure.dry_run": "bool",
        "usagetrace.measure.env": "string, one of: dev, prod",
        "usagetrace.measure.ratio": "double",
        "usagetrace.measure.seats": "int",
    }
    assert "command generate (toolpkg/__init__.py:7)" in measures["usagetrace.measure.flowgroups"]["meaning"]
    assert "events" in measures["usagetrace.measure.seats"]["meaning"]
    assert profile.opaque_measures == ["toolpkg/dyn.py:6"]
    text = inventory.markdown(profile)
    assert "Measurements not written literally (not listed; see the code): toolpkg/dyn.py:6" in text
    assert "`2.0.1`" in text and "`opt-out`" in text
    assert "e-mail opens and clicks" in text.split("Left out", 1)[1].split("\n", 1)[0]


def test_scan_never_imports_the_package(packages):
    """The source is read, never executed: a package that raises on import is still inventoried."""
    packages.write("boompkg", {"__init__.py": "raise SystemExit('imported!')\nimport usagetrace.integrations.email\n"})
    profile = inventory.scan("boompkg")
    assert "boompkg" not in sys.modules
    assert set(profile.features) == {"email"}
    proc = subprocess.run(
        [sys.executable, "-m", "usagetrace", "inventory", "tinystats", "--json"],
        env=dict(os.environ, PYTHONPATH=EXAMPLES, PYTHONVERBOSE="1"), capture_output=True, text=True, timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    assert not re.search(r"^import 'tinystats", proc.stderr, re.M)  # -v logs every module imported
    data = json.loads(proc.stdout)
    assert data["package"] == "tinystats" and data["version"] == "1.2.0" and data["features"] == ["core"]


def test_version_from_the_installed_distribution():
    """Without a literal version in the source, the installed distribution's version is used, and said so."""
    from importlib import metadata

    profile = inventory.scan("pytest")
    assert profile.version == metadata.version("pytest")
    assert "pytest" in profile.version_from


def test_unknown_package_gets_the_full_table_and_says_why():
    """A package that cannot be found: every key, with its name in the examples and an explicit note."""
    profile = inventory.scan("no_such_pkg_usagetrace")
    text = inventory.markdown(profile)
    assert "was not found in this environment" in text and "`no_such_pkg_usagetrace`" in text
    assert _keys(profile) == _keys(None)
    assert "| `service.version` | resource | string | The installed version of that package. | `unknown` |" in text


def test_inventory_needs_a_package_or_all():
    """`usagetrace inventory` alone is a usage error; --all prints the generic full table (the README's)."""
    bare = subprocess.run([sys.executable, "-m", "usagetrace", "inventory"], capture_output=True, text=True, timeout=60)
    assert bare.returncode == 2 and "--all" in bare.stderr
    full = subprocess.run([sys.executable, "-m", "usagetrace", "inventory", "--all"], capture_output=True, text=True,
                          timeout=60)
    assert full.returncode == 0 and full.stdout == inventory.markdown()


# Which integration modules send which features; each module's allowlisted keys must be covered,
# so that `inventory PACKAGE` never leaves out a key that package's integrations really send.
_SOURCES = {
    ("cli",): ["integrations/click.py", "integrations/argparse.py", "integrations/_cli.py"],
    ("crash",): ["integrations/crash.py"],
    ("pages",): ["integrations/flask.py"],
    ("pages", "callbacks"): ["integrations/dash.py", "integrations/_web.py"],
    ("email",): ["integrations/email.py"],
    ("command", "event"): ["_internal/events.py"],
}


def test_feature_map_covers_every_key_each_integration_sends():
    """Every allowlisted key named in an integration's source belongs to core or to that integration's features."""
    by_key = {a.key: set(a.features) for a in allowlist.ATTRIBUTES}
    checked = 0
    for feats, files in _SOURCES.items():
        for rel in files:
            with open(os.path.join(ROOT, "src", "usagetrace", rel), encoding="utf-8") as fh:
                source = fh.read()
            for key in re.findall(r'"([a-z_.]+)"', source):
                if key in by_key:
                    assert by_key[key] & ({"core"} | set(feats)), (rel, key)
                    checked += 1
    assert checked >= 15
    integrations = {m for m in os.listdir(os.path.join(ROOT, "src", "usagetrace", "integrations"))
                    if m.endswith(".py") and not m.startswith("_")}
    assert integrations == {f"{name}.py" for name in inventory.INTEGRATIONS}


def test_a_packages_examples_name_only_what_it_has(tmp_path, monkeypatch):
    """inventory PACKAGE: the examples use its own function and name, never mypkg.io.read_table or mycli run."""
    from usagetrace._internal import inventory

    pkg = tmp_path / "mylib"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("import usagetrace\nusagetrace.instrument(__name__)\n\ndef greet(name):\n"
                                     "    return name\n")
    (pkg / "cli.py").write_text("from usagetrace.integrations import argparse as ut\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    text = inventory.markdown(inventory.scan("mylib"))
    assert "mycli" not in text and "read_table" not in text and "mypkg" not in text
    assert "`mylib:greet:12`" in text and "`mylib --option *****`" in text


def test_inventory_states_where_strings_come_from_and_how_times_are_sent():
    """The inventory (text and JSON) says what every string value is, the +subclass form, and periods not moments."""
    text = inventory.markdown()
    assert "Every string value sent is one of:" in text and "Times:" in text
    assert "usagetrace.params.set" in text and "usagetrace.kwargs.names" not in text
    assert "+subclass" in text and "periods, not moments" in text
    data = inventory.to_json()
    assert data["strings"] == list(allowlist.STRING_SOURCES) and data["times"] == list(allowlist.TIMES)
