"""Measure what `pip install usagetrace` brings: distributions and MB of site-packages.

Creates a fresh virtual environment in a temporary directory, installs this
checkout (``python scripts/footprint.py``) or any pip requirement
(``python scripts/footprint.py '.[grpc]'``) into it, and sums each installed
distribution's files from its RECORD (pip, setuptools and wheel, which every
venv has, are left out). The README's figure comes from here.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import venv

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

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


def main(argv: list[str]) -> int:
    requirement = argv[0] if argv else "."
    if requirement.startswith("."):
        requirement = ROOT + requirement[1:]
    with tempfile.TemporaryDirectory(prefix="usagetrace-footprint-") as tmp:
        venv.create(tmp, with_pip=True)
        python = os.path.join(tmp, "Scripts" if os.name == "nt" else "bin", "python")
        print(f"installing {requirement} into a fresh venv ...", file=sys.stderr, flush=True)
        subprocess.run([python, "-m", "pip", "install", "-q", requirement], check=True)
        out = subprocess.run([python, "-c", _MEASURE], check=True, capture_output=True, text=True).stdout
    import json

    rows = sorted(json.loads(out), key=lambda r: -r[2])
    for name, version, size in rows:
        print(f"{size / 1e6:8.2f} MB  {name} {version}")
    total = sum(r[2] for r in rows)
    print(f"{len(rows)} distributions, {total / 1e6:.1f} MB of site-packages")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
