#!/usr/bin/env bash
# Sets up .venv (or $SAG_VENV) with everything the demo, the tests and the benchmark need, on CPU.
# The extension itself needs nothing: inside the webui it uses the webui's own torch and gradio.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV="${SAG_VENV:-.venv}"
[ -x "$VENV/bin/python" ] || python3 -m venv "$VENV"
"$VENV/bin/python" -m pip install -q --upgrade pip
"$VENV/bin/python" -m pip install -q -r requirements-test.txt
"$VENV/bin/python" -m pip install -q --no-deps -r requirements-nodeps.txt
