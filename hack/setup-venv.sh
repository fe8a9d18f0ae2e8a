#!/usr/bin/env bash
# The Python venv, in the cache, installed exactly from uv.lock (every package, transitive ones included,
# at the version and hash the lock records; the project itself editable, with its test extra).
# `uv sync --locked` refuses when uv.lock and pyproject.toml disagree: run `make lock` and commit uv.lock.
# Synced again whenever uv.lock, pyproject.toml or the checkout's path changed: a venv shared by several
# clones must always point at the one being tested. uv itself is pinned here and installed in its own venv.
set -euo pipefail
UV_VERSION=0.13.9
root=$(cd "$(dirname "$0")/.." && pwd)
venv=${1:?usage: setup-venv.sh VENV}
cache=${RC_CACHE:-$HOME/.cache/reliability-center}
uv="$cache/uv/bin/uv"
if [ "$("$uv" --version 2>/dev/null | cut -d' ' -f2)" != "$UV_VERSION" ]; then
  python3 -m venv "$cache/uv"
  "$cache/uv/bin/pip" install -q "uv==$UV_VERSION"
fi
[ "${2:-}" = --uv-only ] && { echo "$uv"; exit 0; }
key="$(cat "$root/uv.lock" "$root/pyproject.toml" | sha256sum | cut -c1-16) $root"
if [ "$(cat "$venv/.installed" 2>/dev/null)" != "$key" ]; then
  # --exact (uv's default for sync) removes what the lock does not name: the venv holds the lock, no more.
  UV_PROJECT_ENVIRONMENT="$venv" UV_PYTHON_DOWNLOADS=never "$uv" sync --project "$root" --locked --extra test \
    --python python3 --quiet
  echo "$key" > "$venv/.installed"
fi
