#!/usr/bin/env bash
# Offline tests of istio/: bash istio/tests/run.sh
# Creates (or reuses) the venv target/istio-venv with PyYAML, jsonschema, cel-python and
# promql-parser, then runs the unittest suite. MESHTRIAGE_PYTHON=/path/to/python skips the venv
# (it must have those modules); the Debian tools come from `make istio-tools`.
# `run.sh --lint` runs ruff on istio/ instead (make lint).
# MESHTRIAGE_CHECK_CONFIG overrides the plugin's configuration checker command.
set -euo pipefail
repo=$(cd "$(dirname "$0")/../.." && pwd)
py=${MESHTRIAGE_PYTHON:-}
if [ -z "$py" ]; then
  venv="$repo/target/istio-venv"
  if ! "$venv/bin/python" -c 'import yaml, jsonschema, celpy, promql_parser' 2>/dev/null || [ ! -x "$venv/bin/ruff" ]; then
    python3 -m venv "$venv"
    "$venv/bin/python" -m pip install -q --disable-pip-version-check -r "$repo/istio/tests/requirements.txt"
  fi
  py="$venv/bin/python"
fi
cd "$repo"
if [ "${1:-}" = --lint ]; then  # make lint: ruff on the Python Istio tooling (istio/ruff.toml)
  ruff="$(dirname "$py")/ruff"
  [ -x "$ruff" ] || ruff=ruff
  exec "$ruff" check --config istio/ruff.toml istio
fi
exec "$py" -m unittest discover -s istio/tests -t istio/tests -p 'test_*.py' "$@"
