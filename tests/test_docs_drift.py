"""Figures and lists in the docs that are generated: each one is what its generator gives."""

from __future__ import annotations

import runpy
from pathlib import Path

from usagetrace._internal import allowlist

ROOT = Path(__file__).resolve().parents[1]


def _between(text: str, start: str, end: str) -> str:
    assert text.count(start) == 1 and text.count(end) == 1, (start, end)
    return text.split(start, 1)[1].split(end, 1)[0]


def test_deployment_docs_list_every_allowlisted_metric():
    """docs/deployment.md names exactly the metrics the allowlist (and so the collector's filter) keeps."""
    doc = (ROOT / "docs" / "deployment.md").read_text(encoding="utf-8")
    listed = _between(doc, "<!-- metrics:start -->", "<!-- metrics:end -->")
    assert listed == ", ".join(f"`{m.name}`" for m in allowlist.METRICS)
    assert len(allowlist.METRICS) == listed.count("`usagetrace.")


def test_readme_footprint_figure_is_the_scripts_output():
    """The README's install footprint is what scripts/footprint.py --write-readme writes (its form, read back).

    The measurement itself (a fresh venv and a pip install) is not repeated here: it needs the network and
    takes about a minute; re-run the script when the dependencies change."""
    footprint = runpy.run_path(str(ROOT / "scripts" / "footprint.py"))
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    figure = _between(readme, footprint["START"], footprint["END"])
    match = footprint["FIGURE"].fullmatch(figure)
    assert match, figure
    count, mb, python, system = match.groups()
    assert footprint["readme_figure"](int(count), float(mb) * 1e6, python, system) == figure


def test_footprint_script_writes_between_the_markers(tmp_path):
    footprint = runpy.run_path(str(ROOT / "scripts" / "footprint.py"))
    page = tmp_path / "README.md"
    page.write_text(f"before {footprint['START']}old{footprint['END']} after\n", encoding="utf-8")
    figure = footprint["readme_figure"](11, 10_040_000, "3.12", "Linux")
    footprint["write_readme"](figure, str(page))
    assert page.read_text(encoding="utf-8") == f"before {footprint['START']}{figure}{footprint['END']} after\n"
    assert "**11 distributions, 10.0 MB of site-packages**" in figure
