"""examples/demo.py prints its commands so that they can be pasted: with the environment it used."""

from __future__ import annotations

import json
import os
import runpy
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_printed_commands_carry_the_environment_the_demo_used(monkeypatch, tmp_path):
    demo = runpy.run_path(str(ROOT / "examples" / "demo.py"))
    monkeypatch.setenv("DO_NOT_TRACK", "1")  # the person's shell has it; the demo removed it
    monkeypatch.setenv("USAGETRACE_UPLOAD", "weekly")  # and this one the demo changed
    env = {k: v for k, v in os.environ.items() if k != "DO_NOT_TRACK"}
    env.update(USAGETRACE_HOME=str(ROOT / ".demo" / "home"), USAGETRACE_UPLOAD="daily", SPACED="a b 'c'")
    probe = ("import json, os; print(json.dumps({k: os.environ.get(k) for k in "
             "('DO_NOT_TRACK', 'USAGETRACE_HOME', 'USAGETRACE_UPLOAD', 'SPACED')}))")
    line = demo["shown"]([sys.executable, "-c", probe], env)
    assert "env -u DO_NOT_TRACK" in line and "USAGETRACE_HOME=" in line and "USAGETRACE_UPLOAD=daily" in line
    pasted = subprocess.run(["bash", "-c", line], cwd=ROOT, capture_output=True, text=True, timeout=60,
                            env=dict(os.environ))
    assert pasted.returncode == 0, pasted.stderr
    assert json.loads(pasted.stdout) == {"DO_NOT_TRACK": None, "USAGETRACE_HOME": str(ROOT / ".demo" / "home"),
                                         "USAGETRACE_UPLOAD": "daily", "SPACED": "a b 'c'"}


def test_the_demo_ends_with_the_report_and_the_next_steps():
    text = (ROOT / "examples" / "demo.py").read_text(encoding="utf-8")
    demo = runpy.run_path(str(ROOT / "examples" / "demo.py"))
    assert '"--format", "html", "--output", report' in text and "Open it: {report}" in text
    steps = demo["NEXT_STEPS"]
    for words in ("dependencies", "usagetrace.instrument(__name__", "usagetrace collect --dir usagetrace-data",
                  "OTEL_EXPORTER_OTLP_ENDPOINT=http://127.0.0.1:4318", "usagetrace report usagetrace-data"):
        assert words in steps, words
