#!/usr/bin/env bash
# `make demo`: the local control plane and ECS endpoint are up (make testenv); apply the
# samples and show what Kubernetes and ECS see.
set -euo pipefail
root="$(cd "$(dirname "$0")/../.." && pwd)"
cd "$root"
source .testenv/env
ns=ecs-demo

kubectl create namespace "$ns" --dry-run=client -o yaml | kubectl apply -f - >/dev/null
echo "== applying config/samples (an EcsCluster, an EcsTaskDefinition and an EcsService) into namespace $ns"
kubectl apply -n "$ns" --server-side -k config/samples

cat <<MSG

== The operator is not implemented yet (issue 3 brings the controllers), so the objects
   are admitted and stored but nothing reconciles them. What Kubernetes holds now:
MSG
kubectl get ecs -n "$ns" -o wide
cat <<MSG

Try a bad object: it is rejected at admission, naming the field:
  source .testenv/env
  kubectl apply -n $ns -f tests/fixtures/admission/svc-cluster-and-cluster-ref.yaml

Stop everything with: make testenv-down
MSG
