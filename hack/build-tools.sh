#!/usr/bin/env bash
# Builds the real components the demo, the tests and CI run — kube-apiserver,
# kube-controller-manager, kube-scheduler, kubectl, etcd, kwok, kwokctl, Gitea
# and Argo CD — from their Go modules, into a cache outside the repo. A binary is
# rebuilt only when its pinned version changes (a stamp file per binary).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
source "$here/versions.env"
cache=${RC_CACHE:-$HOME/.cache/reliability-center}
bin="$cache/bin"
mkdir -p "$bin"
export GOTOOLCHAIN=local GOFLAGS=-mod=mod CGO_ENABLED=${CGO_ENABLED:-1}

fresh() { # name version -> 0 when the cached binary matches the pinned version
  [ -x "$bin/$1" ] && [ "$(cat "$bin/.$1.version" 2>/dev/null)" = "$2" ]
}
stamp() { echo "$2" > "$bin/.$1.version"; }

build_in() { # module-dir version name package
  local dir=$1 version=$2 name=$3 pkg=$4
  if fresh "$name" "$version"; then return; fi
  echo "building $name $version" >&2
  (cd "$dir" && go build -trimpath -ldflags='-s -w' -o "$bin/$name" "$pkg")
  stamp "$name" "$version"
}

k8s_ldflags="-s -w -X k8s.io/component-base/version.gitVersion=$K8S_VERSION -X k8s.io/component-base/version.gitMajor=1 -X k8s.io/component-base/version.gitMinor=$(echo "$K8S_VERSION" | cut -d. -f2)"
for name in kube-apiserver kube-controller-manager kube-scheduler kubectl; do
  if ! fresh "$name" "$K8S_VERSION"; then
    echo "building $name $K8S_VERSION" >&2
    (cd "$here/go/k8s" && go build -trimpath -ldflags="$k8s_ldflags" -o "$bin/$name" "k8s.io/kubernetes/cmd/$name")
    stamp "$name" "$K8S_VERSION"
  fi
done
build_in "$here/go/etcd" "$ETCD_VERSION" etcd .
build_in "$here/go/kwok" "$KWOK_VERSION" kwok sigs.k8s.io/kwok/cmd/kwok
build_in "$here/go/kwok" "$KWOK_VERSION" kwokctl sigs.k8s.io/kwok/cmd/kwokctl
if ! fresh helm "$HELM_VERSION"; then
  echo "building helm $HELM_VERSION" >&2
  (cd "$here/go/helm" && go build -trimpath -ldflags="-s -w -X helm.sh/helm/v4/internal/version.version=$HELM_VERSION" \
     -o "$bin/helm" helm.sh/helm/v4/cmd/helm)
  stamp helm "$HELM_VERSION"
fi

if [ "${RC_SKIP_GITEA:-}" != 1 ] && ! fresh gitea "$GITEA_VERSION"; then
  echo "building gitea $GITEA_VERSION" >&2
  src=$(go mod download -json "code.gitea.io/gitea@$GITEA_VERSION" | python3 -c 'import json,sys; print(json.load(sys.stdin)["Dir"])')
  # Gitea's own go.mod carries replace directives, so it is built inside its
  # module directory; its API needs no frontend assets.
  (cd "$src" && go build -trimpath -tags 'sqlite sqlite_unlock_notify' \
     -ldflags="-s -w -X main.Version=${GITEA_VERSION#v}" -o "$bin/gitea" .)
  stamp gitea "$GITEA_VERSION"
fi

if [ "${RC_SKIP_ARGOCD:-}" != 1 ] && ! fresh argocd "$ARGOCD_VERSION"; then
  echo "building argocd $ARGOCD_VERSION" >&2
  src=$(go mod download -json "github.com/argoproj/argo-cd/v3@$ARGOCD_VERSION" | python3 -c 'import json,sys; print(json.load(sys.stdin)["Dir"])')
  # The module cache is read-only: built from a writable copy, one per run (two runs at once
  # never share it), renamed into place whole. One multi-call binary runs as whichever
  # component its name says (argocd-repo-server, argocd-application-controller).
  mkdir -p "$cache/build"
  work=$(mktemp -d "$cache/build/argo-cd-XXXXXX")
  cp -r "$src/." "$work" && chmod -R u+w "$work"
  (cd "$work" && CGO_ENABLED=0 go build -trimpath \
     -ldflags="-s -w -X github.com/argoproj/argo-cd/v3/common.version=${ARGOCD_VERSION#v}" -o "$work/argocd" ./cmd)
  mv "$work/argocd" "$bin/argocd"
  rm -rf "$work"
  stamp argocd "$ARGOCD_VERSION"
fi
if [ -x "$bin/argocd" ]; then
  for name in argocd-application-controller argocd-repo-server; do ln -sfn argocd "$bin/$name"; done
  # The test harness installs the Application and AppProject CRDs of the same version.
  crds="$cache/argocd/$ARGOCD_VERSION/crds"
  if [ ! -d "$crds" ]; then
    src=$(go mod download -json "github.com/argoproj/argo-cd/v3@$ARGOCD_VERSION" | python3 -c 'import json,sys; print(json.load(sys.stdin)["Dir"])')
    mkdir -p "$crds" && cp "$src"/manifests/crds/*.yaml "$crds/" && chmod u+w "$crds"/*
  fi
fi
echo "$bin"
