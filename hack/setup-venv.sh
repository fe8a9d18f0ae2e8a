#!/usr/bin/env bash
# The Python venv, in the cache: (re)install the package, editable, whenever
# pyproject.toml or the checkout's path changed — a venv shared by several
# clones must always point at the one being tested.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
venv=${1:?usage: setup-venv.sh VENV}
key="$(sha256sum "$root/pyproject.toml" | cut -c1-16) $root"
[ -x "$venv/bin/python" ] || python3 -m venv "$venv"
if [ "$(cat "$venv/.installed" 2>/dev/null)" != "$key" ]; then
  "$venv/bin/pip" install -q --upgrade pip
  "$venv/bin/pip" install -q -e "$root[test]"
  echo "$key" > "$venv/.installed"
fi
