#!/usr/bin/env bash
# `make demo`: with the local control plane and ECS endpoint up (make testenv), run the
# operator in the background, apply config/samples, wait for them, and show what Kubernetes
# and ECS see. The operator keeps running until `make testenv-down`. It never hangs: on any
# failure it says why within seconds, with the operator's last log lines and the objects'
# conditions.
set -euo pipefail
root="$(cd "$(dirname "$0")/../.." && pwd)"
cd "$root"
source .testenv/env
ns=ecs-demo
pidfile=.testenv/operator.pid
log=.testenv/logs/operator.log
python=.testenv/venv/bin/python

# On any failure: say why, show the operator's last words and the objects' conditions, stop.
fail() {
  echo
  echo "== make demo failed: $1"
  echo "== last 30 lines of the operator's log ($log)"
  tail -n 30 "$log" 2>/dev/null || true
  echo "== the objects' conditions"
  kubectl get ecs -n "$ns" -o jsonpath='{range .items[*]}{.kind}/{.metadata.name}:{range .status.conditions[*]} {.type}={.status} ({.reason}: {.message}){end}{"\n"}{end}' 2>/dev/null || true
  exit 1
}
operator_alive() { kill -0 "$(cat "$pidfile")" 2>/dev/null; }
readyz() { "$python" -c "import urllib.request; urllib.request.urlopen('http://127.0.0.1:$health_port/readyz', timeout=1)" 2>/dev/null; }

cargo build --quiet --locked --bin ecs-operator
if [ -f "$pidfile" ] && kill -0 "$(cat "$pidfile")" 2>/dev/null; then
  kill "$(cat "$pidfile")" && sleep 1
fi
# NB: loopback ports that are free now, not 8080/8081, which other programs often hold.
read -r metrics_port health_port < <("$python" -c '
import socket
held = [socket.socket() for _ in range(2)]
for s in held:
    s.bind(("127.0.0.1", 0))
print(*[s.getsockname()[1] for s in held])')
nohup target/debug/ecs-operator run --namespace "$ns" --resync-seconds 30 \
  --metrics-address "127.0.0.1:$metrics_port" --health-address "127.0.0.1:$health_port" > "$log" 2>&1 &
echo $! > "$pidfile"
echo "== operator running (pid $(cat "$pidfile"), log $log, metrics on http://127.0.0.1:$metrics_port/metrics), watching namespace $ns"
for _ in $(seq 1 60); do
  operator_alive || fail "the operator exited at start"
  readyz && break
  sleep 0.5
done
readyz || fail "the operator was not ready within 30 s"

kubectl create namespace "$ns" --dry-run=client -o yaml | kubectl apply -f - >/dev/null

# The sample service runs in a VPC: make one in the local endpoint (moto serves EC2 too)
# and put its subnet and security group where the sample has placeholders.
read -r subnet sg < <(.testenv/venv/bin/python - <<'PY'
import os, boto3
ec2 = boto3.client("ec2", endpoint_url=os.environ["AWS_ENDPOINT_URL"], region_name=os.environ["AWS_REGION"])
vpc = ec2.create_vpc(CidrBlock="10.42.0.0/16")["Vpc"]["VpcId"]
subnet = ec2.create_subnet(VpcId=vpc, CidrBlock="10.42.1.0/24")["Subnet"]["SubnetId"]
sg = ec2.create_security_group(GroupName="ecs-demo", Description="ecs-operator demo", VpcId=vpc)["GroupId"]
print(subnet, sg)
PY
)
echo "== applying config/samples: an EcsCluster with an EcsCapacityProvider, an EcsTaskDefinition, an EcsService, an EcsTask and an EcsTaskSchedule (subnet $subnet, security group $sg)"
kubectl kustomize config/samples \
  | sed -e "s/subnet-0123456789abcdef0/$subnet/" -e "/subnet-0fedcba9876543210/d" -e "s/sg-0123456789abcdef0/$sg/" \
  | kubectl apply -n "$ns" --server-side -f -

echo "== waiting for all six to be Ready (the EcsTask once its migration completed)"
ready=""
for _ in $(seq 1 120); do
  operator_alive || fail "the operator exited"
  stalled=$(kubectl get ecs -n "$ns" -o jsonpath='{range .items[*]}{range .status.conditions[?(@.type=="Stalled")]}{.status}{"\n"}{end}{end}' | grep -c True || true)
  [ "$stalled" = "0" ] || fail "an object is Stalled"
  if kubectl wait -n "$ns" --for=condition=Ready --timeout=1s ecscluster/demo ecstaskdefinition/web ecsservice/web ecstask/migrate ecstaskschedule/nightly-report ecscapacityprovider/managed >/dev/null 2>&1; then
    ready=yes
    break
  fi
done
[ -n "$ready" ] || fail "not all six were Ready within two minutes"

echo; echo "== kubectl get ecs -o wide"
kubectl get ecs -n "$ns" -o wide
echo; echo "== Events"
kubectl get events -n "$ns" --sort-by=.metadata.creationTimestamp
echo; echo "== ECS's own view"
.testenv/venv/bin/python - <<'PY'
import os, boto3
ecs = boto3.client("ecs", endpoint_url=os.environ["AWS_ENDPOINT_URL"], region_name=os.environ["AWS_REGION"])
c = ecs.describe_clusters(clusters=["demo"], include=["TAGS", "SETTINGS"])["clusters"][0]
print(f"cluster {c['clusterName']}: {c['status']}, settings {c.get('settings')}, capacity providers {c.get('capacityProviders')}")
for p in ecs.describe_capacity_providers(capacityProviders=["demo-managed"], cluster="demo")["capacityProviders"]:
    print(f"capacity provider {p['name']}: {p['type']} in cluster {p.get('cluster')}, {p['status']} {p.get('updateStatus')}")
td = ecs.describe_task_definition(taskDefinition="web", include=["TAGS"])
t = td["taskDefinition"]
print(f"task definition {t['family']}:{t['revision']}: {t['status']}, image {t['containerDefinitions'][0]['image']}")
print("  tags: " + ", ".join(f"{x['key']}={x['value']}" for x in td.get("tags", [])))
s = ecs.describe_services(cluster="demo", services=["web"])["services"][0]
print(f"service {s['serviceName']}: {s['status']}, {s['runningCount']}/{s['desiredCount']} running, task definition {s['taskDefinition']}")
for d in s["deployments"]:
    print(f"  deployment {d['id']}: {d['status']} {d.get('rolloutState')} {d['taskDefinition']}")
sched = boto3.client("scheduler", endpoint_url=os.environ["AWS_ENDPOINT_URL"], region_name=os.environ["AWS_REGION"])
sc = sched.get_schedule(Name="nightly-report")
print(f"schedule {sc['Name']}: {sc['State']}, {sc['ScheduleExpression']} {sc['ScheduleExpressionTimezone']}, "
      f"runs {sc['Target']['EcsParameters']['TaskDefinitionArn']}")
for arn in ecs.list_tasks(cluster="demo", desiredStatus="STOPPED")["taskArns"]:
    t = ecs.describe_tasks(cluster="demo", tasks=[arn])["tasks"][0]
    exits = ", ".join(f"{c['name']} exit {c.get('exitCode')}" for c in t["containers"])
    print(f"task {arn.rsplit('/', 1)[-1]}: {t['lastStatus']} ({t.get('stopCode')}), {exits}")
PY
cat <<MSG

Change the image and watch the rollout: the task definition registers revision 2 and the
service moves to it with one UpdateService.

  source .testenv/env
  kubectl patch -n $ns ecstaskdefinition/web --type json \\
    -p '[{"op":"replace","path":"/spec/containerDefinitions/0/image","value":"public.ecr.aws/nginx/nginx:1.28"}]'
  kubectl get -n $ns ecs -o wide             # REVISION 2; the service's TASK DEFINITION ends in web:2
  kubectl get events -n $ns                  # RevisionRegistered (changed: ...image), Updated taskDefinition
  kubectl scale -n $ns ecsservice/web --replicas=3

Stop everything (operator, control plane, ECS endpoint) with: make testenv-down
MSG
