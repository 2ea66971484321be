#!/usr/bin/env bash
# Create .venv and install Vireo's Python and npm dependencies; reinstalls only when the lists change.
# `scripts/setup-python.sh test` adds the test tools.
set -euo pipefail
cd "$(dirname "$0")/.."
extras="${1:-}"
[[ -x .venv/bin/python ]] || python3 -m venv .venv
spec="."; [[ "$extras" == "test" ]] && spec=".[test]"
stamp=".venv/.installed-$(sha256sum pyproject.toml | cut -c1-16)-${extras:-run}"
if [[ ! -f "$stamp" ]]; then
  .venv/bin/pip install -q --upgrade pip
  .venv/bin/pip install -q -e "$spec"
  touch "$stamp"
fi
nstamp="node_modules/.installed-$(cat package.json package-lock.json | sha256sum | cut -c1-16)"
if [[ ! -f "$nstamp" ]]; then
  npm ci --no-audit --no-fund --loglevel=error
  touch "$nstamp"
fi
