#!/usr/bin/env bash
# Starts (up) or stops (down) the local cluster: the real kube-apiserver,
# kube-controller-manager, kube-scheduler and etcd built by build-tools.sh,
# with kwok faking the nodes, launched by kwokctl's binary runtime. No Docker.
# Writes the kubeconfig to $RC_CACHE/kubeconfig (kubeconfig-$RC_CLUSTER for a cluster named by
# RC_CLUSTER: CI makes one per run) and prints its path. The apiserver logs the writes that
# hack/audit-policy.yaml names to $KWOK_WORKDIR/clusters/<name>/logs/audit.log (tests/support/audit.py).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
source "$here/versions.env"
cache=${RC_CACHE:-$HOME/.cache/reliability-center}
bin="$cache/bin"
name=${RC_CLUSTER:-reliability-center}
export KWOK_WORKDIR="$cache/kwok"
if [ "$name" = reliability-center ]; then kubeconfig="$cache/kubeconfig"; else kubeconfig="$cache/kubeconfig-$name"; fi
# fd 9 (the lock below) is closed for kwokctl: the servers it starts would inherit it and hold
# the lock for as long as the cluster runs, and every later `up` would wait forever.
kwokctl() { "$bin/kwokctl" --name "$name" --config "$here/kwokctl.yaml" "$@" 9>&-; }

healthy() {
  [ -f "$kubeconfig" ] && "$bin/kubectl" --kubeconfig "$kubeconfig" --request-timeout=3s get --raw /readyz >/dev/null 2>&1
}

# What the cluster was made from: a change to it means making the cluster anew
# (kwokctl applies its configuration only when it creates a cluster).
recipe() { cat "$here/kwokctl.yaml" "$here/audit-policy.yaml" "$here/versions.env" | sha256sum | cut -c1-16; }
stamp="$KWOK_WORKDIR/clusters/$name/.recipe"

up() {
  # One at a time: parallel test workers all ask for the cluster when they start.
  mkdir -p "$cache"
  exec 9>"$cache/cluster.lock"
  flock 9
  # The cluster's own binaries only (Gitea, Helm and Argo CD are built by whoever runs them).
  [ -n "${RC_NO_BUILD:-}" ] || "$here/build-tools.sh" kube-apiserver kube-controller-manager kube-scheduler kubectl \
    etcd kwok kwokctl >/dev/null 9>&-
  if [ -d "$KWOK_WORKDIR/clusters/$name" ] && [ "$(cat "$stamp" 2>/dev/null)" != "$(recipe)" ]; then
    echo "cluster recipe changed: making the cluster anew" >&2
    kwokctl delete cluster >&2 || true
    rm -f "$kubeconfig"
  fi
  if healthy; then nodes; echo "$kubeconfig"; return; fi
  if [ -d "$KWOK_WORKDIR/clusters/$name" ]; then
    # A cluster that was built before but is not running: start it again (fast path).
    kwokctl start cluster --timeout 120s >&2 || { kwokctl delete cluster >&2 || true; }
  fi
  if ! healthy && [ ! -d "$KWOK_WORKDIR/clusters/$name" ]; then
    kwokctl create cluster --runtime binary \
      --kube-apiserver-binary "$bin/kube-apiserver" \
      --kube-controller-manager-binary "$bin/kube-controller-manager" \
      --kube-scheduler-binary "$bin/kube-scheduler" \
      --kwok-controller-binary "$bin/kwok" \
      --etcd-binary "$bin/etcd" \
      --kubeconfig "$kubeconfig" \
      --kube-authorization \
      --kube-audit-policy "$here/audit-policy.yaml" \
      --disable-qps-limits \
      --wait 120s >&2
    recipe > "$stamp"
  fi
  kwokctl get kubeconfig > "$kubeconfig.tmp" && mv "$kubeconfig.tmp" "$kubeconfig"
  for _ in $(seq 600); do healthy && break; sleep 0.1; done  # poll /readyz, at most 60 s
  healthy || { echo "the apiserver did not become ready" >&2; exit 1; }
  nodes
  echo "$kubeconfig"
}

# Fake nodes: kwok makes their pods Running and Ready, so Deployments become Available.
# 110 pods each: ten leave room for the 200-incident test's 400 schedulers beside the rest.
nodes() {
  local want=${RC_NODES:-10}
  local have
  have=$("$bin/kubectl" --kubeconfig "$kubeconfig" get nodes --no-headers 2>/dev/null | wc -l)
  if [ "$have" -lt "$want" ]; then kwokctl scale node --replicas "$want" >&2; fi
}

down() {
  if [ -d "$KWOK_WORKDIR/clusters/$name" ]; then kwokctl stop cluster >&2 || true; fi
}

delete() {
  if [ -d "$KWOK_WORKDIR/clusters/$name" ]; then kwokctl delete cluster >&2 || true; fi
  rm -f "$kubeconfig"
}

case "${1:-up}" in
  up) up ;;
  down) down ;;
  delete) delete ;;
  *) echo "usage: $0 up|down|delete" >&2; exit 2 ;;
esac
