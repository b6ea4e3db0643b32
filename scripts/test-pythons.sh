#!/usr/bin/env bash
# The core and behaviour suites on every other CPython this machine kind has (pyenv's 3.9, 3.10,
# 3.12, 3.13; `make test` runs the whole suite on the default Python, 3.11). Each version gets its
# own venv (.venv-3.X) with the `test` extra only. PYTHON_VERSIONS="3.9 3.13" narrows the list.
# `wrapt>=1.16` allows both wrapt majors and the host's other dependencies pick one: 3.10 runs on
# wrapt 1.17, the others on the newest wrapt 2.x.
set -euo pipefail
cd "$(dirname "$0")/.."
root="${PYENV_ROOT:-$HOME/.pyenv}"
status=0
for v in ${PYTHON_VERSIONS:-3.9 3.10 3.12 3.13}; do
  py=$(ls -d "$root"/versions/"$v".*/bin/python 2>/dev/null | sort -V | tail -1 || true)
  if [ -z "$py" ]; then
    echo "CPython $v not found under $root/versions (pyenv install $v)" >&2
    exit 1
  fi
  venv=".venv-$v"
  if [ ! -f "$venv/.installed" ] || [ pyproject.toml -nt "$venv/.installed" ]; then
    echo "== setting up $venv ($("$py" -V)): pip install -e '.[test]' (about a minute)"
    "$py" -m venv "$venv"
    "$venv/bin/python" -m pip install -q --disable-pip-version-check --upgrade pip
    "$venv/bin/python" -m pip install -q --disable-pip-version-check -e '.[test]'
    if [ "$v" = "3.10" ]; then
      "$venv/bin/python" -m pip install -q --disable-pip-version-check 'wrapt==1.17.2'
    fi
    touch "$venv/.installed"
  fi
  echo "== core and behaviour suites on $("$venv/bin/python" -V), wrapt $("$venv/bin/python" -c 'import wrapt; print(wrapt.__version__)')"
  # The collector, compose, report and integration suites need the dev extra: they run on the default Python.
  "$venv/bin/python" -m pytest -q -p no:cacheprovider -m "not slow" tests \
    --ignore=tests/analytics --ignore=tests/integrations --ignore-glob='tests/test_collector_*.py' \
    --ignore=tests/test_compose.py || status=1
done
exit $status
