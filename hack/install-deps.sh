#!/usr/bin/env bash
# Debian packages the build and tests need (a fresh machine has most of them).
set -euo pipefail
need=()
for cmd in git gcc make; do command -v "$cmd" >/dev/null || need+=("$cmd"); done
python3 -c 'import venv, ensurepip' 2>/dev/null || need+=(python3-venv)
command -v go >/dev/null || need+=(golang-go)
# The alerting tests run these as local processes; their recommends (node exporter, ...) are not needed.
# Argo CD's harness runs its Redis cache as redis-server.
bare=()
# The console's tests drive Debian's chromium through Playwright (no browser download).
for cmd in prometheus prometheus-alertmanager redis-server chromium; do command -v "$cmd" >/dev/null || bare+=("$cmd"); done
if [ ${#need[@]} -gt 0 ] || [ ${#bare[@]} -gt 0 ]; then
  apt-get update -qq
fi
if [ ${#need[@]} -gt 0 ]; then
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}"
fi
if [ ${#bare[@]} -gt 0 ]; then
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${bare[@]}"
fi
