#!/usr/bin/env bash
# The demo: local cluster, CRDs and seed runbooks, the operator, the sample
# protected app, then one Incident per category and what each one changed, then
# Level 3 against a local Gitea (hack/demo_level3.py), synced by a real Argo CD
# when one is built (hack/build-tools.sh argocd; not built here), else by the demo itself.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(dirname "$here")
cache=${RC_CACHE:-$HOME/.cache/reliability-center}
py="$cache/venv/bin/python"
export PATH="$cache/bin:$cache/venv/bin:$PATH"
ns=${DEMO_NAMESPACE:-shop}
export DEMO_L3_NAMESPACE=${DEMO_L3_NAMESPACE:-shop-gitops}

# Only what the demo runs: the cluster's binaries, kwok and Gitea (not Helm, not Argo CD).
"$here/build-tools.sh" kube-apiserver kube-controller-manager kube-scheduler kubectl etcd kwok kwokctl gitea >/dev/null
export KUBECONFIG=$(RC_NO_BUILD=1 "$here/cluster.sh" up)

health() {  # what the operator says of itself, namespaces included
  echo "operator /healthz: $("$py" -c 'import sys, urllib.request; print(urllib.request.urlopen(sys.argv[1], timeout=5).read().decode())' \
    "http://127.0.0.1:$health_port/healthz" 2>/dev/null || echo unreachable)"
}
step() { printf '\n\033[1m== %s\033[0m\n' "$*"; }

step "CRDs, admission policies (who created, who approved), the approver role, the four seed runbooks"
kubectl apply --server-side --force-conflicts -f "$root/crds" >/dev/null
# kubectl wait fails at once (not waits) on a CRD whose status has no conditions yet, as on a new cluster.
for _ in $(seq 120); do kubectl wait --for=condition=Established --timeout=60s -f "$root/crds" >/dev/null 2>&1 && break; sleep 0.5; done
kubectl wait --for=condition=Established --timeout=60s -f "$root/crds" >/dev/null
kubectl apply --server-side --force-conflicts -f "$root/manifests/admission/policies.yaml" \
  -f "$root/manifests/rbac/approval_approver_role.yaml" >/dev/null
# The Level 2 approver of the walk to Closed (hack/demo_level3.py): a group bound to the approver role.
kubectl create clusterrolebinding reliability-center-demo-approvers --clusterrole=reliability-center-approver \
  --group=reliability-center-demo-approvers --dry-run=client -o yaml | kubectl apply --server-side -f - >/dev/null
kubectl apply --server-side --force-conflicts -f "$root/runbooks" >/dev/null  # the repo's version wins
kubectl delete runbooks -l 'reliability.center/test' --ignore-not-found >/dev/null  # left by test runs

step "operator (log: $cache/operator-demo.log), started before its namespaces exist"
# Only the demo's namespaces: other operators (tests) may share the cluster. Neither exists yet on a
# fresh cluster: the cluster-scoped Runbooks are served all the same (operator/scope.py), and each
# namespace from the moment it appears. PatchPlans are polled every second so the Level 3 walk does not
# wait on the defaults (30 s for a pull request, 3 s for a sync). RC_ARGOCD_NAMESPACE: where the Level 3 walk's Argo CD keeps its Application.
kubectl delete namespace "$ns" "$DEMO_L3_NAMESPACE" --ignore-not-found --wait=true >/dev/null
health_port=$("$py" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
RC_NAMESPACES="$ns,$DEMO_L3_NAMESPACE" RC_PATCHPLAN_POLL=1 RC_PATCHPLAN_SYNC_POLL=1 RC_ARGOCD_NAMESPACE=argocd-demo \
  RC_HEALTH_URL="http://127.0.0.1:$health_port/healthz" \
  "$py" -m reliability_center.operator >"$cache/operator-demo.log" 2>&1 &
operator=$!
trap 'kill $operator 2>/dev/null || true' EXIT
kubectl wait -f "$root/runbooks" --for=condition=Ready --timeout=60s >/dev/null
kubectl get -f "$root/runbooks"
health

step "sample protected app in namespace $ns (3 tenants, flags, schedulers, ingestion, ledger)"
kubectl create namespace "$ns" >/dev/null
kubectl apply --server-side -n "$ns" -f "$root/examples/protected-app/app.yaml" >/dev/null
for d in $(kubectl get deployments -n "$ns" -o name); do
  kubectl rollout status -n "$ns" "$d" --timeout=60s >/dev/null
done
kubectl get -n "$ns" deployments,configmaps -L reliability.center/role,reliability.center/tenant,reliability.center/data-class | head -40

before=$(mktemp)
kubectl get -n "$ns" configmaps,deployments,networkpolicies -o json | "$py" "$here/demo_digest.py" >"$before"

step "one Incident per category"
for category in perf cross-tenant ocr billing; do
  kubectl apply -n "$ns" -f "$root/examples/incidents/$category.yaml"
done
for name in search-latency export-without-tenant-id ocr-failure-rate dunning-failing; do
  # Ready: Mitigated, or Escalated (cross-tenant's mandatory PatchPlan goes to a human at once).
  kubectl wait -n "$ns" "incident/$name" --timeout=90s --for=condition=Ready >/dev/null 2>&1 || true
done
kubectl get incidents -n "$ns" -o wide

for name in search-latency export-without-tenant-id ocr-failure-rate dunning-failing; do
  step "incident $name: steps"
  relctl steps "$name" -n "$ns"
done

step "what changed in the app (and nothing else: ledger and invoices untouched)"
kubectl get -n "$ns" configmaps,deployments,networkpolicies -o json | "$py" "$here/demo_digest.py" --diff "$before"

step "audit trail of search-latency"
relctl timeline search-latency -n "$ns"

step "resolve billing: level 1 changes are restored from their snapshots"
relctl resolve dunning-failing -n "$ns"
kubectl wait -n "$ns" incident/dunning-failing --timeout=60s --for=jsonpath='{.status.phase}'=Verifying >/dev/null
relctl steps dunning-failing -n "$ns"
kubectl get configmap flags-billing -n "$ns" -o jsonpath='{.data}'; echo

step "dunning-failing: the post-repair gates (Closed only when all five pass)"
kubectl wait -n "$ns" incident/dunning-failing --timeout=30s \
  --for=jsonpath='{.status.gates[4].name}'=postmortem-shared >/dev/null 2>&1 || true
relctl gates dunning-failing -n "$ns"
echo "(no GitOps repository is configured in this demo namespace: no postmortem pull request, so the incident"
echo " stays Verifying until someone other than its creator says where the postmortem was shared:"
echo " relctl postmortem-shared dunning-failing -n $ns --where <URL>; with gitopsRepoURL set, merging the"
echo " postmortem pull request closes it: the walk below sets one in namespace $DEMO_L3_NAMESPACE and takes a"
echo " billing incident there to Closed)"

step "dunning-failing: the postmortem draft (relctl postmortem)"
relctl postmortem dunning-failing -n "$ns"

"$py" "$here/demo_level3.py"
health

printf '\nThe cluster keeps running (KUBECONFIG=%s); stop it with: make cluster-down\n' "$KUBECONFIG"
