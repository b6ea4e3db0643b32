"""Regenerate the README's "What is collected" table from the allowlist (`usagetrace inventory --all`)."""

from __future__ import annotations

import pathlib
import re
import sys

from usagetrace._internal import inventory

README = pathlib.Path(__file__).resolve().parent.parent / "README.md"


def main() -> int:
    text = README.read_text(encoding="utf-8")
    block = "<!-- inventory:start -->\n" + inventory.markdown() + "<!-- inventory:end -->"
    new, n = re.subn(r"<!-- inventory:start -->\n.*?<!-- inventory:end -->", lambda _: block, text, flags=re.S)
    if n != 1:
        print("README.md has no inventory block", file=sys.stderr)
        return 1
    README.write_text(new, encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
