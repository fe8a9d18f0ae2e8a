#!/usr/bin/env bash
# The README's test command (make test). Two pytest sessions at once:
# - the parallel one: unit, contract, cluster, Gitea and e2e tests on pytest-xdist workers (three, or
#   RC_TEST_WORKERS; a file's tests stay together) on the local cluster ($RC_CLUSTER); each worker runs its
#   own operator on its own namespaces (t-<worker>-*) and its own Gitea;
# - beside it, the tests that need a cluster to themselves (marked `exclusive`: an apiserver outage, an
#   operator's first contact with a brand-new cluster, a cluster without the admission policies), one after
#   the other on one brand-new cluster ($RC_CLUSTER-alone, RC_OWN_CLUSTER=1: tests/support/cluster.py's
#   cluster_of_its_own), deleted at the end. The outage used to run alone after the parallel session (about
#   a minute spent mostly waiting), and the other two each started a cluster of their own inside it.
# RC_TEST_DURATIONS: how many of the slowest tests the parallel session lists (0: all of them; 15 by default).
# Exit status: the first session's that failed.
set -uo pipefail
cd "$(dirname "$0")/.."
cache=${RC_CACHE:-$HOME/.cache/reliability-center}
py=${PY:-$cache/venv/bin/python}
alone="${RC_CLUSTER:-reliability-center}-alone"
alone_log=$(mktemp "${TMPDIR:-/tmp}/rc-test-alone.XXXXXX")

cleanup() {
  [ -n "${alone_pid:-}" ] && kill "$alone_pid" 2>/dev/null  # interrupted: not left running on a deleted cluster
  RC_CLUSTER="$alone" bash hack/cluster.sh delete >/dev/null 2>&1 || true
  rm -f "$alone_log"
}
trap cleanup EXIT

# One cluster after the other: kwokctl picks a cluster's ports when it creates it, and two created at the
# same instant can pick the same ones. The alone cluster is brand-new each run (one a killed run left is
# deleted first).
bash hack/cluster.sh up >/dev/null || exit 1
RC_CLUSTER="$alone" bash hack/cluster.sh delete >/dev/null 2>&1 || true

RC_CLUSTER="$alone" RC_OWN_CLUSTER=1 "$py" -m pytest -q -p no:cacheprovider -m exclusive >"$alone_log" 2>&1 &
alone_pid=$!
"$py" -m pytest -q -p no:cacheprovider -n "${RC_TEST_WORKERS:-3}" --dist loadfile -m "not exclusive" --durations=${RC_TEST_DURATIONS:-15}
parallel=$?
wait "$alone_pid"
exclusive=$?
echo "== the tests that need a cluster to themselves (exclusive), on one of their own ($alone):"
cat "$alone_log"
[ "$parallel" -ne 0 ] && exit "$parallel"
exit "$exclusive"
