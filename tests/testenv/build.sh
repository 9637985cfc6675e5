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

build() { # <binary name> <package>
  if [ ! -x "$cache/$1" ]; then
    echo "building $1 from $2 (cold builds take several minutes)" >&2
    (cd "$here" && CGO_ENABLED=0 go build -trimpath -ldflags='-s -w' -o "$cache/$1.tmp" "$2")
    mv "$cache/$1.tmp" "$cache/$1"
  fi
  ln -sf "$cache/$1" "$root/.testenv/bin/$1"
}

build etcd go.etcd.io/etcd/server/v3
build kube-apiserver k8s.io/kubernetes/cmd/kube-apiserver
build kube-controller-manager k8s.io/kubernetes/cmd/kube-controller-manager
build kubectl k8s.io/kubernetes/cmd/kubectl
