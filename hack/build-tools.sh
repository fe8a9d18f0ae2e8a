#!/usr/bin/env bash
# Builds the real components the demo, the tests and CI run — kube-apiserver,
# kube-controller-manager, kube-scheduler, kubectl, etcd, kwok, kwokctl, Gitea,
# Helm and Argo CD — from their Go modules, into a cache outside the repo. A binary
# is rebuilt only when its pinned version changes (a stamp file per binary).
#
#   hack/build-tools.sh                      # all of them (tests, CI)
#   hack/build-tools.sh kwok kwokctl gitea   # only these (make demo names what it uses)
#
# Progress goes to stderr; stdout is the bin directory alone.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
source "$here/versions.env"
cache=${RC_CACHE:-$HOME/.cache/reliability-center}
bin="$cache/bin"
mkdir -p "$bin"
export GOTOOLCHAIN=local GOFLAGS=-mod=mod CGO_ENABLED=${CGO_ENABLED:-1}

all=(kube-apiserver kube-controller-manager kube-scheduler kubectl etcd kwok kwokctl helm gitea argocd)
# Cold build of each on a fresh 2-CPU machine (empty Go module and build caches, downloads included),
# from this script's own progress lines, in the order `make demo` then `make test` build them
# (2026-12-06, the pinned versions of hack/versions.env): seconds.
declare -A cold=([kube-apiserver]=268 [kube-controller-manager]=115 [kube-scheduler]=8 [kubectl]=19 [etcd]=22
                 [kwok]=80 [kwokctl]=18 [gitea]=209 [helm]=123 [argocd]=242)
# The first of a family pays for the module download and the shared packages.
first_of_family() { case $1 in kube-*|kubectl) echo 268 ;; kwok*) echo 80 ;; *) echo "${cold[$1]}" ;; esac; }
family() { case $1 in kube-*|kubectl) echo k8s ;; kwok*) echo kwok ;; *) echo "$1" ;; esac; }

version_of() {
  case $1 in
    kube-*|kubectl) echo "$K8S_VERSION" ;; etcd) echo "$ETCD_VERSION" ;; kwok|kwokctl) echo "$KWOK_VERSION" ;;
    helm) echo "$HELM_VERSION" ;; gitea) echo "$GITEA_VERSION" ;; argocd) echo "$ARGOCD_VERSION" ;;
  esac
}

fresh() { # name version -> 0 when the cached binary matches the pinned version
  [ -x "$bin/$1" ] && [ "$(cat "$bin/.$1.version" 2>/dev/null)" = "$2" ]
}
stamp() { echo "$2" > "$bin/.$1.version"; }
mmss() { printf '%dm%02ds' $(($1 / 60)) $(($1 % 60)); }
module_dir() { go mod download -json "$1" | python3 -c 'import json,sys; print(json.load(sys.stdin)["Dir"])'; }

build() { # name version
  local name=$1 version=$2 src work
  case $name in
    kube-*|kubectl)
      local ldflags="-s -w -X k8s.io/component-base/version.gitVersion=$version -X k8s.io/component-base/version.gitMajor=1"
      ldflags+=" -X k8s.io/component-base/version.gitMinor=$(echo "$version" | cut -d. -f2)"
      (cd "$here/go/k8s" && go build -trimpath -ldflags="$ldflags" -o "$bin/$name" "k8s.io/kubernetes/cmd/$name") ;;
    etcd) (cd "$here/go/etcd" && go build -trimpath -ldflags='-s -w' -o "$bin/etcd" .) ;;
    kwok|kwokctl) (cd "$here/go/kwok" && go build -trimpath -ldflags='-s -w' -o "$bin/$name" "sigs.k8s.io/kwok/cmd/$name") ;;
    helm)
      (cd "$here/go/helm" && go build -trimpath -ldflags="-s -w -X helm.sh/helm/v4/internal/version.version=$version" \
         -o "$bin/helm" helm.sh/helm/v4/cmd/helm) ;;
    gitea)
      src=$(module_dir "code.gitea.io/gitea@$version")
      # Gitea's own go.mod carries replace directives, so it is built inside its
      # module directory; its API needs no frontend assets.
      (cd "$src" && go build -trimpath -tags 'sqlite sqlite_unlock_notify' \
         -ldflags="-s -w -X main.Version=${version#v}" -o "$bin/gitea" .) ;;
    argocd)
      src=$(module_dir "github.com/argoproj/argo-cd/v3@$version")
      # The module cache is read-only: built from a writable copy, one per run (two runs at once
      # never share it), renamed into place whole. One multi-call binary runs as whichever
      # component its name says (argocd-repo-server, argocd-application-controller).
      mkdir -p "$cache/build"
      work=$(mktemp -d "$cache/build/argo-cd-XXXXXX")
      cp -r "$src/." "$work" && chmod -R u+w "$work"
      (cd "$work" && CGO_ENABLED=0 go build -trimpath \
         -ldflags="-s -w -X github.com/argoproj/argo-cd/v3/common.version=${version#v}" -o "$work/argocd" ./cmd)
      mv "$work/argocd" "$bin/argocd"
      rm -rf "$work" ;;
  esac
  stamp "$name" "$version"
}

wanted=("$@")
if [ ${#wanted[@]} -eq 0 ]; then
  wanted=()
  for name in "${all[@]}"; do
    [ "$name" = gitea ] && [ "${RC_SKIP_GITEA:-}" = 1 ] && continue
    [ "$name" = argocd ] && [ "${RC_SKIP_ARGOCD:-}" = 1 ] && continue
    wanted+=("$name")
  done
fi

for name in "${wanted[@]}"; do
  [ -n "${cold[$name]:-}" ] || { echo "build-tools.sh: unknown component '$name' (known: ${all[*]})" >&2; exit 2; }
done

# What must be built, and how long that took here the first time: said before Go prints anything.
todo=() estimate=0 families=" "
for name in "${wanted[@]}"; do
  fresh "$name" "$(version_of "$name")" && continue
  todo+=("$name")
  if [[ $families == *" $(family "$name") "* ]]; then estimate=$((estimate + ${cold[$name]}))
  else estimate=$((estimate + $(first_of_family "$name"))); families+="$(family "$name") "; fi
done
if [ ${#todo[@]} -gt 0 ]; then
  echo "build-tools: ${#todo[@]} of ${#wanted[@]} to build (${todo[*]}); a first build of these took" \
       "about $(mmss "$estimate") on a 2-CPU machine with empty Go caches, less when the caches are warm" >&2
fi
start=$SECONDS i=0
for name in "${todo[@]}"; do
  i=$((i + 1))
  echo "[$i/${#todo[@]}] building $name $(version_of "$name") (elapsed $(mmss $((SECONDS - start))))" >&2
  # A heartbeat: one component may compile for minutes without a line of its own.
  (while sleep "${RC_BUILD_HEARTBEAT:-30}"; do echo "      still building $name (elapsed $(mmss $((SECONDS - start))))" >&2; done) &
  ticker=$!
  trap 'kill $ticker 2>/dev/null || true' EXIT
  build "$name" "$(version_of "$name")"
  kill $ticker 2>/dev/null || true
done
[ ${#todo[@]} -eq 0 ] || echo "build-tools: done in $(mmss $((SECONDS - start)))" >&2

if [ -x "$bin/argocd" ]; then
  for name in argocd-application-controller argocd-repo-server; do ln -sfn argocd "$bin/$name"; done
  # The test harness installs the Application and AppProject CRDs of the same version.
  crds="$cache/argocd/$ARGOCD_VERSION/crds"
  if [ ! -d "$crds" ]; then
    src=$(module_dir "github.com/argoproj/argo-cd/v3@$ARGOCD_VERSION")
    mkdir -p "$crds" && cp "$src"/manifests/crds/*.yaml "$crds/" && chmod u+w "$crds"/*
  fi
fi
echo "$bin"
