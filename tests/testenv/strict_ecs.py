"""The strict ECS endpoint: moto's ECS server made to behave like ECS where an operator's
correctness depends on it. On for every test and the demo.

moto accepts requests ECS rejects, echoes inputs ECS rewrites, and finishes at once what
ECS takes minutes for (../../../shared/ECS-NOTES.md lists the gaps). Code that passes
against moto alone gets stuck, loops, or writes at every pass against a real account. The
rules below close those gaps. Each is one function whose doc string cites the ECS API
reference or botocore's doc string (botocore/data/ecs/*/service-2.json, the model every
AWS SDK is generated from) for the behaviour it restores. There are three kinds:

- REJECTS: requests ECS refuses, answered with ECS's own error code and message.
- REWRITES: how ECS stores and reports what it was given (aliases, upper case, omitted
  members, list order, defaults).
- TAKES TIME: deployments, scaling and draining move on with time, computed from
  timestamps whenever a service is read or written (no background thread).

moto's handlers for the service operations are replaced (see `apply`); everything else is
moto's own. Tests steer the endpoint over HTTP (see ecs_endpoint.py):

- timing per cluster (`POST /_ecs_operator/timing`), defaults from STRICT_ECS_* variables;
- errors injected for the next calls of an operation, by cluster or family
  (`/_ecs_operator/inject`);
- values declared broken (`/_ecs_operator/broken`): a deployment whose task definition
  images, subnets, security groups or target groups mention one cannot start its tasks,
  as an image whose tag moved to a crashing build, or a network tasks cannot leave. An
  image tagged `:crashloop` is always broken.
"""
import collections
import copy
import datetime
import hashlib
import os
import threading
import time

from moto.core.responses import ActionResult
from moto.core.utils import camelcase_to_underscores, utcnow
from moto.ecs import models, responses
from moto.ecs.exceptions import ECSException, InvalidParameterException, ServiceNotFoundException
from moto.moto_api._internal import mock_random

LOCK = threading.RLock()

# Services CreateService really created (not idempotent repeats), by "cluster/service":
# tests check that faults never make the operator create a service twice.
CREATED = collections.Counter()


# ------------------------------------------------------------------ test controls
class Timing:
    """How long ECS takes, in seconds. Real ECS takes minutes; the defaults are short so
    that tests stay quick, but never zero, so that nothing is finished on the call that
    started it."""

    def __init__(self, rollout=None, draining=None, recreate_blocked=None, stage=None):
        env = os.environ.get
        # One lifecycle stage of a service deployment (bake times included: a minute of
        # ECS's is this long here).
        self.stage = stage if stage is not None else float(env("STRICT_ECS_STAGE_SECONDS", "0.5"))
        # A deployment's tasks start and pass their health checks.
        self.rollout = rollout if rollout is not None else float(env("STRICT_ECS_ROLLOUT_SECONDS", "2"))
        # A deleted service stays DRAINING (the load balancer's deregistration delay).
        self.draining = draining if draining is not None else float(env("STRICT_ECS_DRAINING_SECONDS", "2"))
        # After INACTIVE, a same-name CreateService is still "not idempotent" for a while.
        self.recreate_blocked = (recreate_blocked if recreate_blocked is not None
                                 else float(env("STRICT_ECS_RECREATE_BLOCKED_SECONDS", "2")))


TIMING_PER_CLUSTER: dict = {}
INJECTED: list = []
BROKEN: set = {":crashloop"}


def set_timing(body):
    """`{"cluster": name, "rolloutSeconds": s, "drainingSeconds": s, "recreateBlockedSeconds": s,
    "stageSeconds": s}`"""
    with LOCK:
        TIMING_PER_CLUSTER[body["cluster"]] = Timing(
            body.get("rolloutSeconds"), body.get("drainingSeconds"), body.get("recreateBlockedSeconds"),
            body.get("stageSeconds"))


def inject(body):
    """`{"operation": "CreateService", "cluster": name, "code": ..., "message": ..., "times": n}`:
    the next n calls of the operation whose request has those other members (cluster,
    family, ...; an ARN matches by its last part) fail so."""
    with LOCK:
        INJECTED.append(dict(body, times=int(body.get("times", 1))))


def declare_broken(body):
    """`{"value": "..."}`: deployments mentioning it from now on cannot start their tasks."""
    with LOCK:
        BROKEN.add(body["value"])


LAMBDA_VERDICTS: dict = {}


def set_lambda_verdict(body):
    """`{"arn": lambda ARN, "verdict": "SUCCEEDED" | "FAILED"}`: what an AWS_LAMBDA lifecycle
    hook of that function answers (SUCCEEDED when not set)."""
    with LOCK:
        LAMBDA_VERDICTS[body["arn"]] = body["verdict"]


def injected_error(operation, request):
    """The (code, message) an injected fault answers this call with, if any."""
    def member(key):
        default = "default" if key == "cluster" else ""
        return str(request.get(key, default)).split("/")[-1]

    with LOCK:
        for fault in INJECTED:
            wanted = {k: v for k, v in fault.items() if k not in ("operation", "code", "message", "times")}
            if fault["operation"] == operation and fault["times"] > 0 and all(
                    member(k) == v for k, v in wanted.items()):
                fault["times"] -= 1
                return fault["code"], fault["message"]
    return None


def timing_of(cluster_name):
    return TIMING_PER_CLUSTER.get(cluster_name) or Timing()


# ------------------------------------------------------------------ REJECTS
class ServiceNotActiveException(ECSException):
    def __init__(self):
        super().__init__("ServiceNotActiveException", "Service was not ACTIVE.")


class ClusterContainsServicesException(ECSException):
    def __init__(self):
        super().__init__("ClusterContainsServicesException",
                         "The Cluster cannot be deleted while Services are active.")


def reject_creation_over_a_live_name(existing, now):
    """DeleteService: "If you attempt to create a new service with the same name as an
    existing service in either ACTIVE or DRAINING status, you receive an error", and for a
    while after INACTIVE ECS still answers it (terraform-provider-aws#2283)."""
    if existing is None:
        return
    inactive_for = now - existing.strict.get("inactive_at", now) if existing.status == "INACTIVE" else None
    if existing.status in ("ACTIVE", "DRAINING") or (
            inactive_for is not None and inactive_for < timing_of(existing.cluster_name).recreate_blocked):
        raise InvalidParameterException("Creation of service was not idempotent.")


def reject_replica_without_desired_count(request):
    """CreateService.desiredCount: "This is required if schedulingStrategy is REPLICA or
    isn't specified." (botocore)"""
    if request.get("schedulingStrategy", "REPLICA") == "REPLICA" and request.get("desiredCount") is None:
        raise InvalidParameterException("The desired count must be specified for a service with the REPLICA scheduling strategy.")


def reject_external_with_task_definition(request):
    """CreateService under the EXTERNAL deployment controller: task definitions belong to
    its task sets (CreateTaskSet); ECS answers "TaskDefinition must be blank."
    (aws/aws-cdk#6245, terraform-aws-modules/terraform-aws-ecs#278)."""
    if controller_of(request) == "EXTERNAL" and request.get("taskDefinition"):
        raise InvalidParameterException("TaskDefinition must be blank.")


def reject_update_of_inactive(service):
    """UpdateService on a service that is DRAINING or INACTIVE: ServiceNotActiveException
    ("The specified service isn't active", API reference, UpdateService errors)."""
    if service.status != "ACTIVE":
        raise ServiceNotActiveException()


# UpdateService doc: "For services using the blue/green (CODE_DEPLOY) deployment controller,
# only the desired count, deployment configuration, health check grace period, task
# placement constraints and strategies, enable ECS managed tags option, and propagate tags
# can be updated using this API." and "For services using an external deployment
# controller, you can update only the desired count, task placement constraints and
# strategies, health check grace period, enable ECS managed tags option, and propagate
# tags option".
_ALWAYS_ALLOWED = {"cluster", "service", "desiredCount", "placementConstraints", "placementStrategy",
                   "healthCheckGracePeriodSeconds", "enableECSManagedTags", "propagateTags"}
UPDATABLE_BY_CONTROLLER = {
    "CODE_DEPLOY": _ALWAYS_ALLOWED | {"deploymentConfiguration"},
    "EXTERNAL": _ALWAYS_ALLOWED,
}


def reject_update_a_deployment_controller_owns(service, request):
    """Under CODE_DEPLOY or EXTERNAL, UpdateService takes only the members above; for the
    rest ECS answers e.g. "Unable to update task definition on services with a CODE_DEPLOY
    deployment controller. Use AWS CodeDeploy to trigger a new deployment." """
    kind = service.deployment_controller.get("type", "ECS")
    allowed = UPDATABLE_BY_CONTROLLER.get(kind)
    if allowed is None:
        return
    refused = sorted(k for k, v in request.items() if v is not None and k not in allowed and k != "forceNewDeployment")
    if request.get("forceNewDeployment"):
        refused.append("forceNewDeployment")
    if refused:
        what = {"taskDefinition": "task definition", "networkConfiguration": "network parameters",
                "loadBalancers": "load balancers", "platformVersion": "platform version"}.get(refused[0], refused[0])
        remedy = ("Use AWS CodeDeploy to trigger a new deployment." if kind == "CODE_DEPLOY"
                  else "Use a task set (CreateTaskSet) instead.")
        raise InvalidParameterException(
            f"Unable to update {what} on services with a {kind} deployment controller. {remedy}")


FORCE_FOR_CAPACITY_PROVIDERS = (
    "When switching from launch type to capacity provider strategy on an existing service, or making a change "
    "to a capacity provider strategy on a service that is already using one, you must force a new deployment.")


def reject_capacity_provider_change_without_force(service, request):
    """UpdateService: a change of capacityProviderStrategy on a service that uses one, or a
    switch from launchType to a strategy, needs forceNewDeployment in the same call
    (pipe-cd/pipecd#6385, aws/aws-cdk#36563: ECS's own message below)."""
    if "capacityProviderStrategy" not in request or request.get("forceNewDeployment"):
        return
    if strategy_key(request["capacityProviderStrategy"]) != strategy_key(service.capacity_provider_strategy):
        raise InvalidParameterException(FORCE_FOR_CAPACITY_PROVIDERS)


def refuse_delete_cluster_with_services(backend, cluster_str):
    """DeleteCluster: "You must delete all services that are running in the cluster before
    you can delete the cluster": ClusterContainsServicesException while any service is ACTIVE
    or still DRAINING its tasks."""
    cluster = backend._get_cluster(cluster_str)
    for service in backend.services.values():
        if service.cluster_name == cluster.name:
            advance(service)
            if service.status in ("ACTIVE", "DRAINING"):
                raise ClusterContainsServicesException()


# ------------------------------------------------------------------ REWRITES
# Lists ECS treats as sets (it promises no order when it reports them); the endpoint
# reports them reversed so that code depending on their order fails every time, not once
# in a while.
UNORDERED = ("loadBalancers", "serviceRegistries", "placementConstraints", "capacityProviderStrategy")


def stored_as_ecs_reports_it(member, value):
    """What DescribeServices reports for a CreateService/UpdateService member:
    - placement strategy `field`: `host` is reported as `instanceId`, `memory`/`cpu` as
      `MEMORY`/`CPU` (Terraform's flattenPlacementStrategy compensates for the same);
    - capacity provider strategy items carry `base` and `weight`, 0 when not given (the
      API reference's defaults for CapacityProviderStrategyItem);
    - awsvpcConfiguration.assignPublicIp is DISABLED when not given (its documented
      default);
    - set-like lists (subnets, security groups, load balancers, registries, placement
      constraints, capacity provider strategy) in no promised order (here: reversed)."""
    value = copy.deepcopy(value)
    if member == "placementStrategy":
        aliases = {"host": "instanceId", "instanceid": "instanceId", "memory": "MEMORY", "cpu": "CPU"}
        for item in value or []:
            if "field" in item:
                item["field"] = aliases.get(item["field"].lower(), item["field"])
    if member == "capacityProviderStrategy":
        value = [{"capacityProvider": i["capacityProvider"], "weight": i.get("weight", 0), "base": i.get("base", 0)}
                 for i in value or []]
    if member == "networkConfiguration" and value and "awsvpcConfiguration" in value:
        vpc = value["awsvpcConfiguration"]
        vpc.setdefault("assignPublicIp", "DISABLED")
        for key in ("subnets", "securityGroups"):
            if key in vpc:
                vpc[key] = list(reversed(vpc[key]))
    if member in UNORDERED and isinstance(value, list):
        value = list(reversed(value))
    return value


def keep_launch_type_or_strategy(service, request, cluster):
    """A service runs on a launch type or on a capacity provider strategy, never both:
    DescribeServices omits launchType for a service created with a strategy and the
    strategy for one created with a launch type. With neither, ECS uses the cluster's
    default capacity provider strategy if it has one, else the EC2 launch type (CreateService
    doc, capacityProviderStrategy and launchType)."""
    strategy = request.get("capacityProviderStrategy")
    if strategy:
        service.launch_type = None
        service.capacity_provider_strategy = stored_as_ecs_reports_it("capacityProviderStrategy", strategy)
    elif not request.get("launchType") and getattr(cluster, "default_capacity_provider_strategy", None):
        service.launch_type = None
        service.capacity_provider_strategy = stored_as_ecs_reports_it(
            "capacityProviderStrategy", cluster.default_capacity_provider_strategy)
    else:
        service.capacity_provider_strategy = None


def back_to_a_launch_type(service):
    """UpdateService.capacityProviderStrategy: "Update the Auto Scaling group or Fargate
    capacity provider back to the launch type. Pass an empty list" (botocore): FARGATE for
    Fargate providers, EC2 for Auto Scaling group ones."""
    providers = {i["capacityProvider"] for i in service.capacity_provider_strategy or []}
    service.launch_type = "FARGATE" if providers and providers <= {"FARGATE", "FARGATE_SPOT"} else "EC2"
    service.capacity_provider_strategy = None


def strategy_key(strategy):
    return sorted((i["capacityProvider"], i.get("weight", 0), i.get("base", 0)) for i in strategy or [])


def controller_of(request):
    return (request.get("deploymentController") or {}).get("type", "ECS")


# ------------------------------------------------------------------ TAKES TIME
# What a deployment runs: the service revision a circuit-breaker rollback returns to ("the
# last service revision that completed successfully": task definition, network, load
# balancers, Service Connect, volumes; API reference, DeploymentCircuitBreaker).
REVISION = ("taskDefinition", "launchType", "capacityProviderStrategy", "platformVersion",
            "networkConfiguration", "loadBalancers", "serviceRegistries",
            "serviceConnectConfiguration", "volumeConfigurations", "vpcLatticeConfigurations")
# Reported on the deployment rather than on the service (the Service shape has no member).
DEPLOYMENT_ONLY = ("serviceConnectConfiguration", "volumeConfigurations", "vpcLatticeConfigurations")
# UpdateService members that "trigger a new service deployment" (botocore, per member).
STARTS_A_DEPLOYMENT = ("taskDefinition", "networkConfiguration", "platformVersion", "loadBalancers",
                       "serviceRegistries", "serviceConnectConfiguration", "volumeConfigurations",
                       "vpcLatticeConfigurations")


def attribute(member):
    return "role_arn" if member == "role" else camelcase_to_underscores(member)


def revision_of(service):
    return {m: copy.deepcopy(getattr(service, attribute(m), None)) for m in REVISION}


def restore_revision(service, revision):
    for member, value in revision.items():
        setattr(service, attribute(member), copy.deepcopy(value))


def cannot_start(backend, revision):
    """True when the deployment's tasks fail: an image, subnet, security group or target
    group that the test declared broken."""
    mentioned = []
    if revision.get("taskDefinition"):
        definition = backend.describe_task_definition(revision["taskDefinition"])
        mentioned += [c.get("image", "") for c in definition.container_definitions]
    vpc = (revision.get("networkConfiguration") or {}).get("awsvpcConfiguration") or {}
    mentioned += vpc.get("subnets", []) + vpc.get("securityGroups", [])
    mentioned += [lb.get("targetGroupArn", "") for lb in revision.get("loadBalancers") or []]
    return any(broken in value for value in mentioned for broken in BROKEN)


def start_deployment(backend, service, reason=None):
    """A new PRIMARY deployment of the service's current revision, IN_PROGRESS; earlier
    deployments stay ACTIVE, running their tasks, until it completes."""
    now, clock = utcnow(), time.monotonic()
    revision = revision_of(service)
    deployment_id = f"ecs-svc/{mock_random.randint(0, 32**12)}"
    deployment = {
        "id": deployment_id, "status": "PRIMARY", "taskDefinition": service.task_definition,
        "desiredCount": service.desired_count, "pendingCount": service.desired_count, "runningCount": 0,
        "failedTasks": 0, "createdAt": now, "updatedAt": now,
        "launchType": service.launch_type, "capacityProviderStrategy": service.capacity_provider_strategy,
        "platformVersion": service.platform_version,
        "networkConfiguration": service.network_configuration or None,
        "rolloutState": "IN_PROGRESS",
        "rolloutStateReason": reason or f"ECS deployment {deployment_id} in progress.",
        "_revision": revision, "_started": clock, "_fails": cannot_start(backend, revision),
        "_revision_arn": next_service_revision(service),
    }
    for member in DEPLOYMENT_ONLY:
        deployment[member] = revision[member]
    for old in service.deployments:
        old["status"] = "ACTIVE"
    service.deployments = [deployment] + service.deployments
    refresh_counts(service)
    return deployment


def next_service_revision(service):
    """ECS numbers a service's revisions; each deployment deploys one."""
    service.strict["revisions"] = service.strict.get("revisions", 0) + 1
    return (f"arn:aws:ecs:{service.region_name}:{service._account_id}:service-revision/"
            f"{service.cluster_name}/{service.name}/{service.strict['revisions']}")


def circuit_breaker(service):
    config = ((getattr(service, "deployment_configuration", None) or {})
              .get("deploymentCircuitBreaker") or {})
    return bool(config.get("enable")), bool(config.get("rollback"))


def advance(service):
    """Moves the service on to where ECS would have it by now."""
    clock = time.monotonic()
    timing = timing_of(service.cluster_name)
    strict = service.strict
    if service.status == "DRAINING" and clock - strict["draining_at"] >= timing.draining:
        service.status = "INACTIVE"
        strict["inactive_at"] = strict["draining_at"] + timing.draining
    if service.status != "ACTIVE":
        return
    if service.deployment_controller.get("type", "ECS") == "ECS":
        advance_deployments(service, clock, timing)
        advance_service_deployment(service, clock, timing)
        advance_deployments(service, clock, timing)
    else:
        advance_task_sets(service, clock, timing)
    if strict.get("scaled_at") is not None and clock - strict["scaled_at"] >= timing.rollout:
        strict["scaled_at"] = None
    refresh_counts(service)


def advance_deployments(service, clock, timing):
    """A deployment completes once its tasks have run for the rollout time; then older
    deployments are drained away. A deployment whose tasks cannot start fails through the
    deployment circuit breaker when it is on ("ECS deployment circuit breaker: tasks failed
    to start."), and with rollback ECS starts a deployment of the last revision that
    completed; with the breaker off ECS keeps trying (IN_PROGRESS, failedTasks growing).
    Under the BLUE_GREEN, CANARY and LINEAR strategies the service deployment's lifecycle
    stages decide instead (see advance_service_deployment)."""
    while service.deployments:
        primary = service.deployments[0]
        if primary["rolloutState"] != "IN_PROGRESS" or clock - primary["_started"] < timing.rollout:
            return
        if primary.get("_staged"):
            return
        if not primary["_fails"]:
            complete(service, primary)
            return
        enabled, rollback = circuit_breaker(service)
        primary["failedTasks"] = max(primary["failedTasks"], 1) + primary["desiredCount"]
        if not enabled:
            return
        reason = "ECS deployment circuit breaker: tasks failed to start."
        if not rollback or "last_good" not in service.strict:
            primary.update(rolloutState="FAILED", updatedAt=utcnow(), rolloutStateReason=reason)
            return
        roll_back(service, primary, reason, primary["_started"] + timing.rollout)


def complete(service, deployment):
    """The deployment runs all its tasks: older deployments are drained away, and it is what
    a later rollback returns to."""
    deployment.update(rolloutState="COMPLETED", updatedAt=utcnow(),
                      rolloutStateReason=f"ECS deployment {deployment['id']} completed.")
    service.deployments = [deployment]
    service.strict["last_good"] = (deployment["id"], deployment["_revision"], deployment["_revision_arn"])


def roll_back(service, failed, reason, at):
    """Fails `failed` and starts a deployment of the last revision that completed: "the last
    service revision that completed successfully" (DeploymentCircuitBreaker)."""
    failed.update(rolloutState="FAILED", updatedAt=utcnow(), rolloutStateReason=reason)
    good_id, good_revision, _ = service.strict["last_good"]
    restore_revision(service, good_revision)
    rolled = start_deployment(service._backend, service,
                              reason=f"ECS deployment circuit breaker: rolling back to deploymentId {good_id}.")
    rolled["_started"] = at
    # ECS resolves image tags to digests per deployment ("software version consistency"):
    # the rollback runs the digests that worked, even if a tag has moved since.
    rolled["_fails"] = False
    service.deployments = [rolled, failed]
    return rolled


def advance_task_sets(service, clock, timing):
    """Under CODE_DEPLOY, CreateService makes the first task set (PRIMARY), STABILIZING
    until its tasks run, then STEADY_STATE (TaskSet.stabilityStatus)."""
    for task_set in service.task_sets:
        if task_set.stabilityStatus == "STABILIZING" and clock - task_set.strict_started >= timing.rollout:
            task_set.stabilityStatus = "STEADY_STATE"
            task_set.stabilityStatusAt = utcnow()
            task_set.running_count = task_set.computed_desired_count
            task_set.pending_count = 0


def refresh_counts(service):
    """Task counts follow the deployments: a deployment runs its tasks once it has
    completed (until it is drained away), none while its tasks start or after it failed;
    a resize of the PRIMARY deployment takes the rollout time too."""
    scaling = service.strict.get("scaled_at") is not None
    for deployment in service.deployments:
        if deployment["status"] == "PRIMARY":
            deployment["desiredCount"] = service.desired_count
        if deployment["rolloutState"] != "COMPLETED":
            running = 0
        elif deployment["status"] == "PRIMARY" and scaling:
            running = service.strict["running_before"]
        else:
            running = deployment["desiredCount"]
        deployment["runningCount"] = running
        failed = deployment["rolloutState"] == "FAILED"
        deployment["pendingCount"] = 0 if failed else max(deployment["desiredCount"] - running, 0)
    if service.deployment_controller.get("type", "ECS") == "ECS":
        service.running_count = sum(d["runningCount"] for d in service.deployments)
        service.pending_count = sum(d["pendingCount"] for d in service.deployments)
    else:
        service.running_count = sum(getattr(t, "running_count", 0) for t in service.task_sets)
        service.pending_count = sum(getattr(t, "pending_count", 0) for t in service.task_sets)


def first_task_set(backend, service, request):
    """CODE_DEPLOY: ECS creates the service's first task set itself, PRIMARY, from the
    service's task definition, network and load balancers."""
    task_set = models.TaskSet(
        service.arn, service.cluster_arn, service.task_definition, backend.account_id, backend.region_name,
        network_configuration=service.network_configuration or None, load_balancers=service.load_balancers,
        launch_type=service.launch_type, capacity_provider_strategy=service.capacity_provider_strategy,
        platform_version=service.platform_version)
    task_set.status = "PRIMARY"
    task_set.stabilityStatus = "STABILIZING"
    task_set.computed_desired_count = service.desired_count
    task_set.running_count = 0
    task_set.pending_count = service.desired_count
    task_set.service_arn = service.arn
    task_set.cluster_arn = service.cluster_arn
    task_set.strict_started = time.monotonic()
    service.task_sets = [task_set]


# ------------------------------------------------------------------ service deployments
# Every deployment of a service is a service deployment (ListServiceDeployments,
# DescribeServiceDeployments), steered by StopServiceDeployment and
# ContinueServiceDeployment; DescribeServices names the current one
# (Service.currentServiceDeployment). Under the ROLLING strategy it follows its deployment;
# under BLUE_GREEN, CANARY and LINEAR it moves through the lifecycle stages
# (ServiceDeploymentLifecycleStage), running the lifecycle hooks configured for each:
# AWS_LAMBDA hooks answer what the test set (SUCCEEDED by default), PAUSE hooks wait for
# ContinueServiceDeployment or their timeout (DeploymentLifecycleHook,
# DeploymentLifecycleHookTimeoutConfiguration: 1440 minutes and ROLLBACK by default).
# "PAUSE hooks cannot be configured at TEST_TRAFFIC_SHIFT or PRODUCTION_TRAFFIC_SHIFT
# stages" (DeploymentLifecycleHook.lifecycleStages).
BEFORE_TRAFFIC = ["RECONCILE_SERVICE", "PRE_SCALE_UP", "SCALE_UP", "POST_SCALE_UP", "TEST_TRAFFIC_SHIFT",
                  "POST_TEST_TRAFFIC_SHIFT"]
AFTER_TRAFFIC = ["POST_PRODUCTION_TRAFFIC_SHIFT", "BAKE_TIME", "CLEAN_UP"]
TERMINAL = ("SUCCESSFUL", "STOPPED", "ROLLBACK_SUCCESSFUL", "ROLLBACK_FAILED")


class ServiceDeploymentNotFoundException(ECSException):
    def __init__(self):
        super().__init__("ServiceDeploymentNotFoundException", "The service deployment does not exist.")


class ConflictException(ECSException):
    def __init__(self, message):
        super().__init__("ConflictException", message)


def strategy_of(service):
    return (getattr(service, "deployment_configuration", None) or {}).get("strategy", "ROLLING")


def stages_for(service):
    """The lifecycle stages a deployment of this strategy passes; production traffic shifts
    in one step (BLUE_GREEN), a canary step then the rest (CANARY), or equal steps (LINEAR)."""
    config = getattr(service, "deployment_configuration", None) or {}
    strategy = strategy_of(service)
    if strategy == "CANARY":
        shifts = 2
    elif strategy == "LINEAR":
        step = (config.get("linearConfiguration") or {}).get("stepPercent") or 10.0
        shifts = max(1, int(-(-100 // step)))
    else:
        shifts = 1
    return BEFORE_TRAFFIC + ["PRODUCTION_TRAFFIC_SHIFT"] * shifts + AFTER_TRAFFIC


def start_service_deployment(service, deployment, source_arns):
    """The service deployment that `deployment` belongs to; the one before, if still in
    progress, is replaced (STOPPED)."""
    now, clock = utcnow(), time.monotonic()
    for older in service.strict.setdefault("service_deployments", []):
        if older["status"] not in TERMINAL:
            older.update(status="STOPPED", statusReason="A newer service deployment replaced it.", finishedAt=now)
    config = copy.deepcopy(getattr(service, "deployment_configuration", None) or {})
    staged = strategy_of(service) != "ROLLING" and bool(source_arns)
    enabled, _ = circuit_breaker(service)
    sd = {
        "serviceDeploymentArn": (f"arn:aws:ecs:{service.region_name}:{service._account_id}:service-deployment/"
                                 f"{service.cluster_name}/{service.name}/{mock_random.get_random_hex(20)}"),
        "serviceArn": service.arn, "clusterArn": service.cluster_arn,
        "createdAt": now, "startedAt": now, "updatedAt": now,
        "sourceServiceRevisions": [{"arn": arn} for arn in source_arns],
        "targetServiceRevision": {"arn": deployment["_revision_arn"]},
        "status": "IN_PROGRESS", "deploymentConfiguration": config,
        "lifecycleHookDetails": [],
        "deploymentCircuitBreaker": {"status": "MONITORING" if enabled else "DISABLED", "failureCount": 0,
                                     "threshold": 10},
        "alarms": {"status": "DISABLED"},
        "_deployment": deployment["id"], "_staged": staged, "_stages": stages_for(service) if staged else [],
        "_stage": -1, "_at": clock, "_hooks": [], "_hook": None,
    }
    deployment["_staged"] = staged
    service.strict["service_deployments"].append(sd)
    service.current_service_deployment = sd["serviceDeploymentArn"]
    if staged:
        enter_stage(service, sd, 0, clock)
    return sd


def enter_stage(service, sd, index, at):
    """Starts stage `index` at `at`, queuing the hooks configured for it (and, before a
    production traffic shift, those for PRE_PRODUCTION_TRAFFIC_SHIFT)."""
    stage = sd["_stages"][index]
    sd.update(_stage=index, _at=at, lifecycleStage=stage, updatedAt=utcnow())
    names = (["PRE_PRODUCTION_TRAFFIC_SHIFT"] if stage == "PRODUCTION_TRAFFIC_SHIFT" else []) + [stage]
    for hook in sd["deploymentConfiguration"].get("lifecycleHooks") or []:
        if any(name in (hook.get("lifecycleStages") or []) for name in names):
            sd["_hooks"].append(hook)


def advance_service_deployment(service, clock, timing):
    """Moves the current service deployment on to where ECS would have it by now."""
    deployments = service.strict.get("service_deployments") or []
    if not deployments:
        return
    sd = deployments[-1]
    if sd["status"] in TERMINAL:
        return
    deployment = next((d for d in service.deployments if d["id"] == sd["_deployment"]), None)
    if sd["status"] in ("ROLLBACK_IN_PROGRESS", "STOP_REQUESTED"):
        if clock - sd["_at"] >= timing.stage:
            done = "ROLLBACK_SUCCESSFUL" if sd["status"] == "ROLLBACK_IN_PROGRESS" else "STOPPED"
            sd.update(status=done, finishedAt=utcnow(), updatedAt=utcnow())
        return
    if not sd["_staged"]:
        follow_deployment(service, sd, deployment)
        return
    while sd["status"] == "IN_PROGRESS":
        if sd["_hook"] is not None and not run_hook(service, sd, clock, timing):
            return
        if sd["_hook"] is None and sd["_hooks"]:
            start_hook(sd, sd["_hooks"].pop(0), sd["_at"])
            continue
        if clock - sd["_at"] < timing.stage:
            return
        ended = sd["_at"] + timing.stage
        if sd["lifecycleStage"] == "SCALE_UP" and deployment is not None and deployment["_fails"]:
            sd["deploymentCircuitBreaker"].update(status="TRIGGERED", failureCount=10)
            start_rollback(service, sd, "ECS deployment circuit breaker: tasks failed to start.", ended)
            return
        if sd["_stage"] + 1 == len(sd["_stages"]):
            sd.update(status="SUCCESSFUL", finishedAt=utcnow(), updatedAt=utcnow(), lifecycleStage="CLEAN_UP")
            if sd["deploymentCircuitBreaker"]["status"] == "MONITORING":
                sd["deploymentCircuitBreaker"]["status"] = "MONITORING_COMPLETE"
            if deployment is not None:
                complete(service, deployment)
            return
        enter_stage(service, sd, sd["_stage"] + 1, ended)


def follow_deployment(service, sd, deployment):
    """ROLLING: the service deployment is its deployment's rollout."""
    if deployment is None or deployment["rolloutState"] == "COMPLETED":
        sd.update(status="SUCCESSFUL", finishedAt=utcnow(), updatedAt=utcnow())
        if sd["deploymentCircuitBreaker"]["status"] == "MONITORING":
            sd["deploymentCircuitBreaker"]["status"] = "MONITORING_COMPLETE"
    elif deployment["rolloutState"] == "FAILED":
        reason = deployment.get("rolloutStateReason")
        sd["deploymentCircuitBreaker"].update(status="TRIGGERED", failureCount=deployment["failedTasks"])
        rolled_back = len(service.deployments) > 1 and service.deployments[0] is not deployment
        sd.update(status="ROLLBACK_SUCCESSFUL" if rolled_back else "STOPPED", statusReason=reason,
                  finishedAt=utcnow(), updatedAt=utcnow())
        if rolled_back:
            sd["rollback"] = {"reason": reason, "startedAt": utcnow(),
                              "serviceRevisionArn": (sd["sourceServiceRevisions"] or [{}])[0].get("arn")}


def start_hook(sd, hook, at):
    target = hook.get("targetType", "AWS_LAMBDA")
    timeout = hook.get("timeoutConfiguration") or {}
    detail = {
        "hookId": f"hook-{mock_random.get_random_hex(12)}", "targetType": target,
        "status": "AWAITING_ACTION" if target == "PAUSE" else "IN_PROGRESS",
        "expiresAt": utcnow() + datetime.timedelta(minutes=timeout.get("timeoutInMinutes", 1440)),
        "timeoutAction": timeout.get("action", "ROLLBACK"),
        "_arn": hook.get("hookTargetArn"), "_at": at,
    }
    if target != "PAUSE":
        detail["targetArn"] = hook.get("hookTargetArn")
    sd["lifecycleHookDetails"].append(detail)
    sd["_hook"] = detail


def run_hook(service, sd, clock, timing):
    """Moves the running hook on; True once it let the deployment go on."""
    hook = sd["_hook"]
    if hook["targetType"] == "PAUSE":
        if hook["status"] == "AWAITING_ACTION" and utcnow() >= hook["expiresAt"]:
            hook["status"] = "TIMED_OUT"
            if hook["timeoutAction"] == "ROLLBACK":
                start_rollback(service, sd, "The lifecycle hook timed out.", clock)
                return False
        if hook["status"] == "AWAITING_ACTION":
            return False
    else:
        if clock - hook["_at"] < timing.stage:
            return False
        hook["status"] = LAMBDA_VERDICTS.get(hook["_arn"], "SUCCEEDED")
        if hook["status"] == "FAILED":
            start_rollback(service, sd, f"The lifecycle hook {hook['_arn']} failed.", clock)
            return False
    sd["_hook"] = None
    sd["_at"] = max(sd["_at"], hook["_at"] if hook["targetType"] != "PAUSE" else clock)
    return True


def start_rollback(service, sd, reason, at):
    """Rolls the service back to the source revision of the service deployment."""
    deployment = next((d for d in service.deployments if d["id"] == sd["_deployment"]), None)
    sd.update(status="ROLLBACK_IN_PROGRESS", statusReason=reason, updatedAt=utcnow(), _at=at)
    sd["rollback"] = {"reason": reason, "startedAt": utcnow(),
                      "serviceRevisionArn": (sd["sourceServiceRevisions"] or [{}])[0].get("arn")}
    if deployment is not None and "last_good" in service.strict:
        roll_back(service, deployment, reason, at)


def find_service_deployment(backend, arn):
    for service in backend.services.values():
        for sd in service.strict.get("service_deployments") or []:
            if sd["serviceDeploymentArn"] == arn:
                return service, sd
    raise ServiceDeploymentNotFoundException()


def list_service_deployments(self):
    """Newest first; INACTIVE services and other clusters' are not listed."""
    backend = self.ecs_backend
    with LOCK:
        cluster = backend._get_cluster(self._get_param("cluster", "default"))
        service = find_service(backend, cluster, self._get_param("service"))
        if service is None:
            raise ServiceNotFoundException()
        advance(service)
        wanted = self._get_param("status") or []
        briefs = [
            {key: sd.get(key) for key in ("serviceDeploymentArn", "serviceArn", "clusterArn", "startedAt",
                                          "createdAt", "finishedAt", "status", "statusReason")}
            | {"targetServiceRevisionArn": sd["targetServiceRevision"]["arn"]}
            for sd in reversed(service.strict.get("service_deployments") or [])
            if not wanted or sd["status"] in wanted
        ]
        return ActionResult({"serviceDeployments": briefs[: self._get_param("maxResults") or 20]})


def describe_service_deployments(self):
    backend = self.ecs_backend
    found, failures = [], []
    with LOCK:
        for arn in self._get_param("serviceDeploymentArns") or []:
            try:
                service, sd = find_service_deployment(backend, arn)
            except ServiceDeploymentNotFoundException:
                failures.append({"arn": arn, "reason": "MISSING"})
                continue
            advance(service)
            found.append(sd)
        return ActionResult({"serviceDeployments": found, "failures": failures})


def stop_service_deployment(self):
    """ROLLBACK "rolls back the service deployment to the previous service revision"; ABORT
    stops it where it is. A deployment that has ended is a ConflictException."""
    backend = self.ecs_backend
    with LOCK:
        service, sd = find_service_deployment(backend, self._get_param("serviceDeploymentArn"))
        advance(service)
        if sd["status"] != "IN_PROGRESS":
            raise ConflictException(f"The service deployment is {sd['status']}, not IN_PROGRESS.")
        if (self._get_param("stopType") or "ROLLBACK") == "ROLLBACK":
            start_rollback(service, sd, "Stopped by StopServiceDeployment (ROLLBACK).", time.monotonic())
        else:
            sd.update(status="STOP_REQUESTED", statusReason="Stopped by StopServiceDeployment (ABORT).",
                      _at=time.monotonic())
        return ActionResult({"serviceDeploymentArn": sd["serviceDeploymentArn"]})


def continue_service_deployment(self):
    """Continues or rolls back a deployment paused at a PAUSE hook, named by its hookId."""
    backend = self.ecs_backend
    with LOCK:
        service, sd = find_service_deployment(backend, self._get_param("serviceDeploymentArn"))
        advance(service)
        hook = sd["_hook"]
        if sd["status"] != "IN_PROGRESS" or hook is None or hook["hookId"] != self._get_param("hookId") \
                or hook["status"] != "AWAITING_ACTION":
            raise InvalidParameterException("The specified lifecycle hook is not awaiting an action.")
        if (self._get_param("action") or "CONTINUE") == "CONTINUE":
            hook["status"] = "SUCCEEDED"
            advance(service)
        else:
            hook["status"] = "FAILED"
            start_rollback(service, sd, "Rolled back by ContinueServiceDeployment (ROLLBACK).", time.monotonic())
        return ActionResult({"serviceDeploymentArn": sd["serviceDeploymentArn"]})


# ------------------------------------------------------------------ clusters
class ResourceInUseException(ECSException):
    def __init__(self, message):
        super().__init__("ResourceInUseException", message)


class UpdateInProgressException(ECSException):
    def __init__(self, message):
        super().__init__("UpdateInProgressException", message)


def namespace_as_ecs_reports_it(backend, defaults):
    """ClusterServiceConnectDefaultsRequest.namespace (botocore): "If you enter a new name, a
    Cloud Map namespace will be created"; ECS reports the namespace by its ARN. "If you update
    the cluster with an empty string "" for the namespace name, the cluster configuration for
    Service Connect is removed. Note that the namespace will remain in Cloud Map"."""
    if defaults is None:
        return None
    name = defaults.get("namespace", "")
    if name == "":
        return None
    if name.startswith("arn:"):
        return {"namespace": name}
    digest = hashlib.sha256(f"{backend.account_id}/{backend.region_name}/{name}".encode()).hexdigest()[:16]
    return {"namespace": f"arn:aws:servicediscovery:{backend.region_name}:{backend.account_id}:namespace/ns-{digest}"}


def reject_removing_a_provider_in_use(backend, cluster, providers):
    """PutClusterCapacityProviders: "You can only disassociate an existing capacity provider
    from a cluster if it's not being used by any existing tasks" (ResourceInUseException,
    "The specified resource is in-use and can't be removed.")."""
    if providers is None:
        return
    removed = set(cluster.capacity_providers or []) - set(providers)
    for service in backend.services.values():
        if service.cluster_name == cluster.name and service.status in ("ACTIVE", "DRAINING"):
            used = {i["capacityProvider"] for i in service.capacity_provider_strategy or []}
            if used & removed:
                raise ResourceInUseException(
                    f"The specified capacity provider {sorted(used & removed)[0]} is in use and can't be removed.")


def reject_while_attaching(cluster):
    """A PutClusterCapacityProviders while the last one is still being attached
    (attachmentsStatus UPDATE_IN_PROGRESS) is refused with UpdateInProgressException, one of
    the operation's documented errors."""
    advance_attachments(cluster)
    if getattr(cluster, "attachments_status", None) == "UPDATE_IN_PROGRESS":
        raise UpdateInProgressException(
            "The capacity providers of the cluster are being updated. Try again when the update is complete.")


def start_attaching(cluster):
    """Cluster.attachmentsStatus: UPDATE_IN_PROGRESS "The available capacity providers for the
    cluster are updating", then UPDATE_COMPLETE, or UPDATE_FAILED; the attachments name each
    provider. A provider the test declared broken fails to attach."""
    providers = cluster.capacity_providers or []
    cluster.attachments_status = "UPDATE_IN_PROGRESS"
    cluster.attachments = [
        {"id": f"att-{mock_random.randint(0, 32**8)}", "type": "as_policy", "status": "PRECREATED",
         "details": [{"name": "capacityProviderName", "value": provider}]}
        for provider in providers if provider not in ("FARGATE", "FARGATE_SPOT")]
    cluster.strict_attaching_since = time.monotonic()


def advance_attachments(cluster):
    since = getattr(cluster, "strict_attaching_since", None)
    if since is None or time.monotonic() - since < timing_of(cluster.name).rollout:
        return
    cluster.strict_attaching_since = None
    failed = [p for p in cluster.capacity_providers or [] if p in BROKEN]
    for attachment in cluster.attachments:
        provider = attachment["details"][0]["value"]
        attachment["status"] = "FAILED" if provider in failed else "CREATED"
        if provider in failed:
            attachment["details"].append({"name": "reason", "value": "the Auto Scaling group could not be found"})
    cluster.attachments_status = "UPDATE_FAILED" if failed else "UPDATE_COMPLETE"


def patch_clusters():
    backend_class = models.EC2ContainerServiceBackend
    original_create = backend_class.create_cluster
    original_update = backend_class.update_cluster
    original_put = backend_class.put_cluster_capacity_providers
    original_describe = backend_class.describe_clusters

    def create_cluster(backend, cluster_name, tags=None, cluster_settings=None, configuration=None,
                       capacity_providers=None, default_capacity_provider_strategy=None,
                       service_connect_defaults=None):
        with LOCK:
            cluster = original_create(backend, cluster_name, tags, cluster_settings, configuration,
                                      capacity_providers, default_capacity_provider_strategy,
                                      namespace_as_ecs_reports_it(backend, service_connect_defaults))
            cluster.attachments = []
            cluster.attachments_status = None
            if capacity_providers:
                start_attaching(cluster)
            return cluster

    def update_cluster(backend, cluster_name, cluster_settings, configuration, service_connect_defaults):
        with LOCK:
            cluster = original_update(backend, cluster_name, cluster_settings, configuration, None)
            if service_connect_defaults is not None:
                cluster.service_connect_defaults = namespace_as_ecs_reports_it(backend, service_connect_defaults)
            return cluster

    def put_cluster_capacity_providers(backend, cluster_name, capacity_providers, default_capacity_provider_strategy):
        with LOCK:
            cluster = backend._get_cluster(cluster_name)
            reject_while_attaching(cluster)
            reject_removing_a_provider_in_use(backend, cluster, capacity_providers)
            cluster = original_put(backend, cluster_name, capacity_providers, default_capacity_provider_strategy)
            start_attaching(cluster)
            return cluster

    def describe_clusters(backend, *args, **kwargs):
        with LOCK:
            clusters, failures = original_describe(backend, *args, **kwargs)
            for cluster in clusters:
                advance_attachments(cluster)
            return clusters, failures

    backend_class.create_cluster = create_cluster
    backend_class.update_cluster = update_cluster
    backend_class.put_cluster_capacity_providers = put_cluster_capacity_providers
    backend_class.describe_clusters = describe_clusters


# ------------------------------------------------------------------ handlers
# CreateService members moto's backend takes as arguments; the rest are kept as attributes.
_MODELLED_BY_MOTO = {
    "cluster", "serviceName", "taskDefinition", "desiredCount", "loadBalancers", "schedulingStrategy",
    "serviceRegistries", "tags", "deploymentController", "launchType", "platformVersion", "propagateTags",
    "networkConfiguration", "role", "clientToken",
}


def for_moto_validation(network):
    """moto checks that awsvpc subnets and security groups exist, but fails when there are no
    security groups; ECS takes the VPC's default group then (awsvpcConfiguration doc)."""
    if not network or "awsvpcConfiguration" not in network:
        return network
    network = copy.deepcopy(network)
    network["awsvpcConfiguration"].setdefault("securityGroups", [])
    return network


def find_service(backend, cluster, name):
    return backend.services.get(f"{cluster.name}:{name.split('/')[-1]}")


def create_service(self):
    request = self._get_params()
    backend = self.ecs_backend
    with LOCK:
        cluster = backend._get_cluster(request.get("cluster", "default"))
        name = request["serviceName"]
        existing = find_service(backend, cluster, name)
        if existing is not None:
            advance(existing)
            token = request.get("clientToken")
            # CreateService.clientToken: "An identifier that you provide to ensure the
            # idempotency of the request": a repeat answers with the service it created.
            if token and existing.strict.get("client_token") == token and existing.status == "ACTIVE":
                return ActionResult({"service": existing})
        reject_creation_over_a_live_name(existing, time.monotonic())
        reject_external_with_task_definition(request)
        reject_replica_without_desired_count(request)
        service = backend.create_service(
            cluster.name, name, request.get("desiredCount"), request.get("taskDefinition"),
            stored_as_ecs_reports_it("loadBalancers", request.get("loadBalancers")),
            request.get("schedulingStrategy"), request.get("tags"), request.get("deploymentController"),
            request.get("launchType"),
            service_registries=stored_as_ecs_reports_it("serviceRegistries", request.get("serviceRegistries")),
            platform_version=request.get("platformVersion"),
            propagate_tags=request.get("propagateTags") or "NONE",
            network_configuration=for_moto_validation(request.get("networkConfiguration")),
            role_arn=request.get("role"))
        service.strict = {"client_token": request.get("clientToken")}
        service.network_configuration = stored_as_ecs_reports_it(
            "networkConfiguration", request.get("networkConfiguration")) or None
        for member, value in request.items():
            if member not in _MODELLED_BY_MOTO and value is not None:
                setattr(service, attribute(member), stored_as_ecs_reports_it(member, value))
        keep_launch_type_or_strategy(service, request, cluster)
        service.deployments = []
        service.current_service_deployment = None
        if controller_of(request) == "ECS":
            start_service_deployment(service, start_deployment(backend, service), [])
        elif controller_of(request) == "CODE_DEPLOY":
            first_task_set(backend, service, request)
        refresh_counts(service)
        CREATED[f"{cluster.name}/{name}"] += 1
        return ActionResult({"service": service})


def update_service(self):
    request = self._get_params()
    backend = self.ecs_backend
    with LOCK:
        cluster = backend._get_cluster(request.get("cluster", "default"))
        service = find_service(backend, cluster, request["service"])
        if service is None:
            raise ServiceNotFoundException()
        advance(service)
        reject_update_of_inactive(service)
        reject_update_a_deployment_controller_owns(service, request)
        reject_capacity_provider_change_without_force(service, request)
        before = revision_of(service)
        if request.get("taskDefinition"):
            request["taskDefinition"] = backend.describe_task_definition(request["taskDefinition"]).arn
        for member, value in request.items():
            if member in ("cluster", "service", "forceNewDeployment", "desiredCount", "capacityProviderStrategy") or value is None:
                continue
            setattr(service, attribute(member), stored_as_ecs_reports_it(member, value))
        if "capacityProviderStrategy" in request:
            if request["capacityProviderStrategy"]:
                service.launch_type = None
                service.capacity_provider_strategy = stored_as_ecs_reports_it(
                    "capacityProviderStrategy", request["capacityProviderStrategy"])
            elif service.capacity_provider_strategy:
                back_to_a_launch_type(service)
        if request.get("desiredCount") is not None and request["desiredCount"] != service.desired_count:
            service.strict["running_before"] = service.running_count
            service.desired_count = request["desiredCount"]
            service.strict["scaled_at"] = time.monotonic()
            # A task set being resized is STABILIZING until it runs its new count.
            for task_set in service.task_sets:
                task_set.computed_desired_count = service.desired_count
                task_set.stabilityStatus = "STABILIZING"
                task_set.strict_started = time.monotonic()
        after = revision_of(service)
        redeploys = any(before[m] != after[m] for m in STARTS_A_DEPLOYMENT)
        if service.deployment_controller.get("type", "ECS") == "ECS" and (redeploys or request.get("forceNewDeployment")):
            source = [d["_revision_arn"] for d in service.deployments[:1]]
            start_service_deployment(service, start_deployment(backend, service), source)
        refresh_counts(service)
        return ActionResult({"service": service})


def delete_service(self):
    request = self._get_params()
    backend = self.ecs_backend
    with LOCK:
        cluster = backend._get_cluster(request.get("cluster", "default"))
        service = find_service(backend, cluster, request["service"])
        if service is None:
            raise ServiceNotFoundException()
        advance(service)
        if service.status != "ACTIVE":
            raise ServiceNotActiveException()
        # DeleteService: a REPLICA service must be scaled to 0 first unless force is set.
        if service.desired_count > 0 and not request.get("force") and service.scheduling_strategy == "REPLICA":
            raise InvalidParameterException("The service cannot be stopped while it is scaled above 0.")
        # "the service status moves from ACTIVE to DRAINING ... After all tasks have
        # transitioned to either STOPPING or STOPPED status, the service status moves from
        # DRAINING to INACTIVE" (DeleteService).
        service.status = "DRAINING"
        service.desired_count = 0
        service.strict["draining_at"] = time.monotonic()
        return ActionResult({"service": service})


def describe_services(self):
    backend = self.ecs_backend
    with LOCK:
        cluster = backend._get_cluster(self._get_param("cluster", "default"))
        for name in self._get_param("services", []):
            service = find_service(backend, cluster, name)
            if service is not None:
                advance(service)
        return ORIGINAL["describe_services"](self)


def list_services(self):
    """ListServices: a DRAINING service "is no longer visible ... in the ListServices API
    operation" (DeleteService), and neither is an INACTIVE one."""
    backend = self.ecs_backend
    with LOCK:
        cluster = backend._get_cluster(self._get_param("cluster", "default"))
        arns = []
        for service in backend.services.values():
            if service.cluster_name == cluster.name:
                advance(service)
                if service.status == "ACTIVE":
                    arns.append(service.arn)
        return ActionResult(list_page("serviceArns", sorted(arns), self._get_param("maxResults"),
                                      self._get_param("nextToken"), default=10))


def list_task_definitions(self):
    """ListTaskDefinitions in pages, as ECS answers it (moto returns every ARN at once):
    maxResults "can be between 1 and 100. If this parameter isn't used, then
    ListTaskDefinitions returns up to 100 results and a nextToken value if applicable";
    by default (sort ASC) "task definitions are listed lexicographically by family name and
    in ascending numerical order by revision" (botocore's doc strings)."""
    backend = self.ecs_backend
    with LOCK:
        arns = backend.list_task_definitions(self._get_param("familyPrefix"), self._get_param("status", "ACTIVE"))

    def family_and_revision(arn):
        family, _, revision = arn.rsplit("/", 1)[-1].rpartition(":")
        return family, int(revision)

    ordered = sorted(arns, key=family_and_revision, reverse=self._get_param("sort") == "DESC")
    return ActionResult(list_page("taskDefinitionArns", ordered, self._get_param("maxResults"),
                                  self._get_param("nextToken"), default=100))


def list_page(key, items, max_results, token, default, most=100):
    """One page of a List* (or Describe* without names) answer: maxResults between 1 and
    `most` (`default` without it), and a nextToken while more remain (moto answers every
    item at once)."""
    size = default if max_results is None else max_results
    if not 1 <= size <= most:
        raise InvalidParameterException(f"maxResults must be between 1 and {most}.")
    try:
        start = int(token) if token else 0
    except ValueError:
        raise InvalidParameterException("The nextToken is not valid.")
    answer = {key: items[start:start + size]}
    if start + size < len(items):
        answer["nextToken"] = str(start + size)
    return answer


ORIGINAL = {}


def apply():
    """Replaces moto's service handlers with the strict ones; called once at start."""
    handlers = responses.EC2ContainerServiceResponse
    ORIGINAL["describe_services"] = handlers.describe_services
    handlers.create_service = create_service
    handlers.update_service = update_service
    handlers.delete_service = delete_service
    handlers.describe_services = describe_services
    handlers.list_services = list_services
    handlers.list_task_definitions = list_task_definitions
    handlers.list_service_deployments = list_service_deployments
    handlers.describe_service_deployments = describe_service_deployments
    handlers.stop_service_deployment = stop_service_deployment
    handlers.continue_service_deployment = continue_service_deployment
    # NB: moto's own Service objects made elsewhere (CloudFormation) get the same state.
    models.Service.strict = property(lambda self: self.__dict__.setdefault("_strict", {}),
                                     lambda self, value: self.__dict__.__setitem__("_strict", value))

    original_delete_cluster = models.EC2ContainerServiceBackend.delete_cluster

    def delete_cluster(backend, cluster_str):
        with LOCK:
            refuse_delete_cluster_with_services(backend, cluster_str)
            return original_delete_cluster(backend, cluster_str)

    models.EC2ContainerServiceBackend.delete_cluster = delete_cluster
    patch_clusters()
