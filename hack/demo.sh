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

step() { printf '\n\033[1m== %s\033[0m\n' "$*"; }

step "CRDs and the four seed runbooks"
kubectl apply --server-side --force-conflicts -f "$root/crds" >/dev/null
kubectl wait --for=condition=Established --timeout=60s -f "$root/crds" >/dev/null
kubectl apply --server-side --force-conflicts -f "$root/runbooks" >/dev/null  # the repo's version wins
kubectl delete runbooks -l 'reliability.center/test' --ignore-not-found >/dev/null  # left by test runs

step "operator (log: $cache/operator-demo.log)"
# Only the demo's namespaces: other operators (tests) may share the cluster. In Kopf's pattern
# "a,b" a later name only re-admits what an earlier "!" excluded (so it means "a" alone): hence
# "!*,a,b". PatchPlans are polled every second so the Level 3 walk does not wait on the default 3 s.
# RC_ARGOCD_NAMESPACE: where the Level 3 walk's Argo CD keeps its Application (when built).
RC_NAMESPACES="!*,$ns,$DEMO_L3_NAMESPACE" RC_PATCHPLAN_POLL=1 RC_ARGOCD_NAMESPACE=argocd-demo \
  "$py" -m reliability_center.operator >"$cache/operator-demo.log" 2>&1 &
operator=$!
trap 'kill $operator 2>/dev/null || true' EXIT
kubectl wait -f "$root/runbooks" --for=condition=Ready --timeout=60s >/dev/null
kubectl get -f "$root/runbooks"

step "sample protected app in namespace $ns (3 tenants, flags, schedulers, ingestion, ledger)"
kubectl delete namespace "$ns" --ignore-not-found --wait=true >/dev/null
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
echo "(no GitOps repository is configured in this demo namespace: the postmortem pull request cannot be"
echo " opened, so the incident stays Verifying; with gitopsRepoURL set, merging that pull request closes it;"
echo " the Level 3 walk below sets one, in namespace $DEMO_L3_NAMESPACE)"

step "dunning-failing: the postmortem draft (relctl postmortem)"
relctl postmortem dunning-failing -n "$ns"

"$py" "$here/demo_level3.py"

printf '\nThe cluster keeps running (KUBECONFIG=%s); stop it with: make cluster-down\n' "$KUBECONFIG"
