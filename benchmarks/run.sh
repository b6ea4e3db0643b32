#!/usr/bin/env bash
# One command for the whole benchmark suite: builds benchmarks/.venv (usagetrace
# editable + the peers, which are installed ONLY here), then runs benchmarks/run.py,
# which writes BENCHMARKS.md and benchmarks/results.json. Pass --quick for a smoke run.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=benchmarks/.venv
PEERS="logfire sentry-sdk d6tcollect opentelemetry-sdk"
CLI_FRAMEWORKS="click typer"  # for bench_cli.py (a CLI's whole run)
if [ ! -x "$VENV/bin/python" ]; then
  python3 -m venv "$VENV"
  "$VENV/bin/pip" install -q -U pip
fi
# (re)install when anything is missing; checked by metadata, never by importing
# (importing d6tcollect creates ~/.d6tcollect).
if ! "$VENV/bin/python" - <<'PY' 2>/dev/null
from importlib import metadata
for d in ("usagetrace", "duckdb", "logfire", "sentry-sdk", "d6tcollect", "opentelemetry-sdk", "wrapt", "click", "typer"):
    metadata.version(d)
PY
then
  "$VENV/bin/pip" install -q -e '.[report]' $PEERS $CLI_FRAMEWORKS
fi
# A second environment that differs only in wrapt (1.x), for the consented-import section.
WRAPT1=benchmarks/.venv-wrapt1
# (The OpenTelemetry SDK too: a consented run's exit reads its version, as with any real install.)
if [ ! -x "$WRAPT1/bin/python" ] || ! "$WRAPT1/bin/python" -c 'import wrapt, platformdirs, opentelemetry.sdk.version' 2>/dev/null; then
  [ -x "$WRAPT1/bin/python" ] || python3 -m venv "$WRAPT1"
  "$WRAPT1/bin/pip" install -q 'wrapt==1.17.2' platformdirs opentelemetry-sdk
fi
exec "$VENV/bin/python" benchmarks/run.py "$@"
