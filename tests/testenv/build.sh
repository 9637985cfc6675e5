#!/usr/bin/env bash
# Builds kube-apiserver, kube-controller-manager, kubectl and etcd from their Go modules
# (pinned in go.mod) into a cache outside the clone, keyed by version, and links them into
# .testenv/bin. A fresh clone on the same machine reuses the cached binaries.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/../.." && pwd)"
k8s_version="$(awk '$1=="k8s.io/kubernetes"{print $2; exit}' "$here/go.mod")"
etcd_version="$(awk '$1=="go.etcd.io/etcd/server/v3"{print $2; exit}' "$here/go.mod")"
cache="${ECS_OPERATOR_TESTENV_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/ecs-operator-testenv}/k8s-${k8s_version}-etcd-${etcd_version}"
mkdir -p "$cache" "$root/.testenv/bin"

# Go's module and build caches are needed only while building, and for these modules they
# come to 4.6 GB beside 0.3 GB of binaries. They go to a scratch directory that is removed
# when this script ends, so that the Rust build after it has the disk: a CI run once failed
# with the linker's "Bus error" (SIGBUS, the disk full) while linking the test binaries.
# The user's own Go caches are left alone.
go_scratch="$(dirname "$cache")/go-scratch.$$"
export GOCACHE="$go_scratch/build" GOMODCACHE="$go_scratch/mod" GOFLAGS="${GOFLAGS:+$GOFLAGS }-modcacherw"
trap 'rm -rf "$go_scratch"' EXIT

build() { # <binary name> <package>
  if [ ! -x "$cache/$1" ]; then
    echo "building $1 from $2 (cold builds take several minutes)" >&2
    (cd "$here" && CGO_ENABLED=0 go build -trimpath -ldflags='-s -w' -o "$cache/$1.tmp" "$2")
    mv "$cache/$1.tmp" "$cache/$1"
  fi
  ln -sf "$cache/$1" "$root/.testenv/bin/$1"
}

# Flux's status library (kstatus), wrapped by tests/testenv/kstatus/main.go; its own module
# so that its Kubernetes dependencies do not meet the control plane's.
kstatus_dir="$here/kstatus"
kstatus_key="$(cat "$kstatus_dir/go.mod" "$kstatus_dir/go.sum" "$kstatus_dir/main.go" | sha256sum | cut -c1-12)"
kstatus_cache="$(dirname "$cache")/kstatus-$kstatus_key"
if [ ! -x "$kstatus_cache/kstatus" ]; then
  echo "building kstatus (sigs.k8s.io/cli-utils)" >&2
  mkdir -p "$kstatus_cache"
  (cd "$kstatus_dir" && CGO_ENABLED=0 go build -trimpath -ldflags='-s -w' -o "$kstatus_cache/kstatus.tmp" .)
  mv "$kstatus_cache/kstatus.tmp" "$kstatus_cache/kstatus"
fi
ln -sf "$kstatus_cache/kstatus" "$root/.testenv/bin/kstatus"

# helm, pinned in helm/go.mod, for the chart tests.
helm_version="$(grep -oE 'helm.sh/helm/v3 v[0-9.]+' "$here/helm/go.mod" | head -1 | cut -d' ' -f2)"
helm_cache="$(dirname "$cache")/helm-$helm_version"
if [ ! -x "$helm_cache/helm" ]; then
  echo "building helm $helm_version (a few minutes cold)" >&2
  mkdir -p "$helm_cache"
  (cd "$here/helm" && CGO_ENABLED=0 go build -trimpath -ldflags='-s -w' -o "$helm_cache/helm.tmp" helm.sh/helm/v3/cmd/helm)
  mv "$helm_cache/helm.tmp" "$helm_cache/helm"
fi
ln -sf "$helm_cache/helm" "$root/.testenv/bin/helm"

build etcd go.etcd.io/etcd/server/v3
build kube-apiserver k8s.io/kubernetes/cmd/kube-apiserver
build kube-controller-manager k8s.io/kubernetes/cmd/kube-controller-manager
build kubectl k8s.io/kubernetes/cmd/kubectl
