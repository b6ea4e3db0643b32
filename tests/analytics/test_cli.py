"""``usagetrace report`` entry point: formats, output file, and clear errors."""

from __future__ import annotations

import argparse
import builtins
import json
import re

import fixtures
import pytest

from usagetrace._internal import cli as usagetrace_cli
from usagetrace._internal.analytics import cli

pytest.importorskip("duckdb")


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    d = tmp_path_factory.mktemp("cli")
    fixtures.write(fixtures.generate(), d)
    return d


def test_json_to_stdout(data, capsys):
    """The JSON format prints the report with the chosen package and k."""
    assert cli.main([str(data), "--package", "mypkg", "--format", "json", "--k", "6"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["meta"]["k"] == 6 and doc["meta"]["package"] == "mypkg"
    assert all(r["installs"] >= 6 for r in doc["sections"]["feature_usage"]["rows"])


def test_html_to_file(data, tmp_path, capsys):
    """--output writes the file and says so on stderr."""
    out = tmp_path / "r.html"
    assert cli.main([str(data), "--package", "mypkg", "--format", "html", "--output", str(out)]) == 0
    assert out.read_text().startswith("<!DOCTYPE html>")
    assert str(out) in capsys.readouterr().err


def test_unknown_format(data, capsys):
    """An unknown format exits 2 naming the choices."""
    assert cli.main([str(data), "--format", "xml"]) == 2
    assert "unknown format 'xml'" in capsys.readouterr().err


def test_missing_path(tmp_path, capsys):
    """A missing path exits non-zero with the path in the message."""
    assert cli.main([str(tmp_path / "missing")]) == 1
    assert "no such file or directory" in capsys.readouterr().err


def test_several_packages_need_package(data, capsys):
    """Data with two packages and no --package exits 2 listing both."""
    assert cli.main([str(data)]) == 2
    assert "mypkg, otherpkg" in capsys.readouterr().err


def test_package_with_no_data_exits_1_listing_what_is_there(data, tmp_path, capsys):
    """--package naming a package the data has nothing for: exit 1, and the packages it does hold."""
    assert cli.main([str(data), "--package", "nosuch", "--no-cache"]) == 1
    captured = capsys.readouterr()
    assert "no data for package 'nosuch'" in captured.err and "mypkg, otherpkg" in captured.err
    assert captured.out == ""  # no empty sections printed as if it were a report
    assert usagetrace_cli.main(["report", str(data), "--package", "nosuch", "--no-cache"]) == 1
    assert cli.main([str(data), "--package", "mypkg", "--no-cache", "--format", "json"]) == 0


def test_bad_since_and_bad_k(data, capsys):
    """A malformed --since or a k below 1 is a usage error with a readable message."""
    assert cli.main([str(data), "--package", "mypkg", "--since", "last tuesday"]) == 2
    assert "--since must look like 30d" in capsys.readouterr().err
    assert cli.main([str(data), "--k", "0"]) == 2


def test_corrupt_line_warning_on_stderr(tmp_path, capsys):
    """Skipped lines are announced on stderr with file:line and the report still runs."""
    t = fixtures.generate()
    p = tmp_path / "u.jsonl"
    p.write_text("\n".join(t.lines[:40] + ["{broken"]) + "\n")
    assert cli.main([str(p), "--package", "mypkg", "--format", "json", "--k", "1"]) == 0
    err = capsys.readouterr().err
    assert f"{p}:41: invalid JSON" in err


def test_missing_duckdb_names_the_extra(data, monkeypatch, capsys):
    """Without duckdb installed the error names pip install 'usagetrace[report]'."""
    real_import = builtins.__import__

    def fake_import(name, *a, **kw):
        if name == "duckdb":
            raise ImportError("No module named 'duckdb'")
        return real_import(name, *a, **kw)

    monkeypatch.setattr(builtins, "__import__", fake_import)
    assert cli.main([str(data), "--package", "mypkg"]) == 1
    assert "pip install 'usagetrace[report]'" in capsys.readouterr().err


def test_clickhouse_url_is_validated(capsys):
    """A malformed ClickHouse URL is rejected before connecting."""
    pytest.importorskip("clickhouse_connect")
    assert cli.main(["clickhouse://"]) == 2
    assert "not a ClickHouse URL" in capsys.readouterr().err


#: A value for every option of `usagetrace report` that differs from its default.
OPTION_VALUES = {
    "--package": ["mypkg"],
    "--since": ["2020-01-01"],  # a fixed bound: "30d" would move between the two runs
    "--format": ["csv"],
    "--output": ["{out}"],
    "-o": ["{out}"],
    "--k": ["6"],
    "--interval": ["week"],
    "--cache": ["{cache}"],
    "--no-cache": [],
}


def _report_options() -> list[str]:
    [sub] = [a for a in usagetrace_cli.build_parser()._actions if isinstance(a, argparse._SubParsersAction)]
    parser = sub.choices["report"]
    return [s for a in parser._actions if a.option_strings and a.dest != "help" for s in a.option_strings]


def test_every_report_option_is_exercised_below():
    """Every option `usagetrace report` has (new ones too) has a sample value in OPTION_VALUES."""
    assert sorted(_report_options()) == sorted(OPTION_VALUES)


@pytest.mark.parametrize("option", sorted(OPTION_VALUES))
def test_report_option_before_and_after_the_path(option, data, tmp_path, capsys):
    """`usagetrace report OPTION PATH` and `usagetrace report PATH OPTION` parse and run the same way."""
    value = [v.format(out=tmp_path / "out.txt", cache=tmp_path / "c.duckdb") for v in OPTION_VALUES[option]]
    rest = [] if option == "--package" else ["--package", "mypkg"]
    parser = usagetrace_cli.build_parser()
    default = parser.parse_args(["report", str(data), *rest])
    before = ["report", option, *value, str(data), *rest]
    after = ["report", str(data), option, *value, *rest]
    assert parser.parse_args(before) == parser.parse_args(after) != default
    outputs = []
    for argv in (before, after):
        assert usagetrace_cli.main(argv) == 0, capsys.readouterr().err
        text = capsys.readouterr().out
        if option in ("--output", "-o"):
            text = (tmp_path / "out.txt").read_text()
        outputs.append(re.sub(r'"generated_at": "[^"]*"', "", text))
    assert outputs[0] == outputs[1] and outputs[0]
