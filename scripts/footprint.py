"""Measure what `pip install usagetrace` brings: distributions and MB of site-packages.

Creates a fresh virtual environment in a temporary directory, installs this
checkout (``python scripts/footprint.py``) or any pip requirement
(``python scripts/footprint.py '.[grpc]'``) into it, and sums each installed
distribution's files from its RECORD (pip, setuptools and wheel, which every
venv has, are left out).

The README's figure comes from here: ``python scripts/footprint.py --write-readme``
measures a default install and rewrites the text between the README's
``<!-- footprint:start -->`` and ``<!-- footprint:end -->`` markers
(:func:`readme_figure`); a test checks that the README holds exactly that form.
"""

from __future__ import annotations

import os
import platform
import re
import subprocess
import sys
import tempfile
import venv

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
README = os.path.join(ROOT, "README.md")
START, END = "<!-- footprint:start -->", "<!-- footprint:end -->"

_MEASURE = """
import json, os, sys
from importlib import metadata
site = [p for p in sys.path if p.endswith("site-packages")][0]
rows = []
for dist in metadata.distributions(path=[site]):
    name = dist.metadata["Name"]
    if name.lower() in ("pip", "setuptools", "wheel"):
        continue
    size = 0
    for f in dist.files or ():
        try:
            size += os.path.getsize(f.locate())
        except OSError:
            pass
    rows.append([name, dist.version, size])
print(json.dumps(rows))
"""


def readme_figure(count: int, total_bytes: float, python: str, system: str) -> str:
    """The README's sentence-part for one measurement (what --write-readme puts between the markers)."""
    return (f"**{count} distributions, {total_bytes / 1e6:.1f} MB of site-packages** "
            f"(CPython {python} on {system}, measured with `python scripts/footprint.py --write-readme`)")


#: The form of :func:`readme_figure`, to read a figure back.
FIGURE = re.compile(r"\*\*(\d+) distributions, (\d+\.\d) MB of site-packages\*\* \(CPython (\d+\.\d+) on (\w+), "
                    r"measured with `python scripts/footprint\.py --write-readme`\)")


def write_readme(figure: str, path: str = README) -> None:
    with open(path, encoding="utf-8") as fh:
        text = fh.read()
    if text.count(START) != 1 or text.count(END) != 1:
        raise SystemExit(f"{path}: expected one {START} ... {END} pair")
    head, rest = text.split(START, 1)
    _, tail = rest.split(END, 1)
    with open(path, "w", encoding="utf-8") as fh:
        fh.write(head + START + figure + END + tail)


def measure(requirement: str) -> list:
    """Install ``requirement`` into a fresh venv; return [name, version, bytes] per distribution, largest first."""
    if requirement.startswith("."):
        requirement = ROOT + requirement[1:]
    with tempfile.TemporaryDirectory(prefix="usagetrace-footprint-") as tmp:
        venv.create(tmp, with_pip=True)
        python = os.path.join(tmp, "Scripts" if os.name == "nt" else "bin", "python")
        print(f"installing {requirement} into a fresh venv ...", file=sys.stderr, flush=True)
        subprocess.run([python, "-m", "pip", "install", "-q", requirement], check=True)
        out = subprocess.run([python, "-c", _MEASURE], check=True, capture_output=True, text=True).stdout
    import json

    return sorted(json.loads(out), key=lambda r: -r[2])


def main(argv: list[str]) -> int:
    write = "--write-readme" in argv
    args = [a for a in argv if a != "--write-readme"]
    if write and args and args[0] != ".":
        raise SystemExit("--write-readme measures the default install ('.') only")
    rows = measure(args[0] if args else ".")
    for name, version, size in rows:
        print(f"{size / 1e6:8.2f} MB  {name} {version}")
    total = sum(r[2] for r in rows)
    print(f"{len(rows)} distributions, {total / 1e6:.1f} MB of site-packages")
    if write:
        figure = readme_figure(len(rows), total, ".".join(platform.python_version_tuple()[:2]), platform.system())
        write_readme(figure)
        print(f"wrote the figure into {README}: {figure}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
