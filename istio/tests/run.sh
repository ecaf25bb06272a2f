#!/usr/bin/env bash
# Offline tests of istio/: bash istio/tests/run.sh
# Creates (or reuses) the venv target/istio-venv with PyYAML and jsonschema, then runs the
# unittest suite. MESHTRIAGE_PYTHON=/path/to/python skips the venv (it must have both modules);
# MESHTRIAGE_CHECK_CONFIG overrides the plugin's configuration checker command.
set -euo pipefail
repo=$(cd "$(dirname "$0")/../.." && pwd)
py=${MESHTRIAGE_PYTHON:-}
if [ -z "$py" ]; then
  venv="$repo/target/istio-venv"
  if ! "$venv/bin/python" -c 'import yaml, jsonschema' 2>/dev/null; then
    python3 -m venv "$venv"
    "$venv/bin/python" -m pip install -q --disable-pip-version-check 'pyyaml>=6' 'jsonschema>=4.18'
  fi
  py="$venv/bin/python"
fi
cd "$repo"
exec "$py" -m unittest discover -s istio/tests -p 'test_*.py' "$@"
