"""Capacity providers as ECS keeps them, on top of moto.

moto knows only Auto Scaling group providers, stores any name, silently replaces a provider
created twice, deletes at once (also one that clusters and services still use), answers a
DescribeCapacityProviders without names, a delete of an unknown name or a Managed
Instances provider with HTTP 500, and knows nothing of clusters. The rules below restore
what ECS does; each cites the API reference or botocore's doc string
(botocore/data/ecs/*/service-2.json) or another tool's tracker for the behaviour:

- REJECTS: invalid names, a name in use, both or neither provider kind, a Managed Instances
  provider without its cluster or outside it, PutClusterCapacityProviders naming unknown,
  not yet ACTIVE or Managed Instances providers, strategies naming providers the cluster
  does not have, deleting a provider a cluster or service still uses, DeleteCluster while
  its Managed Instances providers live.
- REWRITES: providers reported as ECS reports them (type, cluster, defaults, tags only when
  asked for, failures for unknown names, FARGATE and FARGATE_SPOT when listing).
- TAKES TIME: a Managed Instances provider is PROVISIONING (CREATE_IN_PROGRESS) for a
  while; every update is UPDATE_IN_PROGRESS and every delete DEPROVISIONING
  (DELETE_IN_PROGRESS) for a while; then INACTIVE providers stay visible by name. States
  move on lazily whenever providers or clusters are read or written.

Test control: `POST /_ecs_operator/provider-timing {"seconds": s}` sets how long each of
those transitions takes (default 1 second, or STRICT_ECS_PROVIDER_SECONDS).
"""
import copy
import os
import re
import time

import botocore.session
from moto.core.responses import ActionResult
from moto.ecs import models, responses
from moto.ecs.exceptions import ClusterNotFoundException, ECSException, EcsClientException, InvalidParameterException

import strict_ecs
from strict_ecs import LOCK, UpdateInProgressException

FARGATE = ("FARGATE", "FARGATE_SPOT")
ASG = "EC2_AUTOSCALING"
MANAGED_INSTANCES = "MANAGED_INSTANCES"
IN_PROGRESS = ("CREATE_IN_PROGRESS", "UPDATE_IN_PROGRESS", "DELETE_IN_PROGRESS")

# The request shapes, from the model every SDK is generated from.
MODEL = botocore.session.get_session().get_service_model("ecs")


def members_of(shape):
    return list(MODEL.shape_for(shape).members)


def required_of(shape):
    return list(MODEL.shape_for(shape).required_members)


# ------------------------------------------------------------------ test control
TIMING = {"seconds": float(os.environ.get("STRICT_ECS_PROVIDER_SECONDS", "1"))}


def set_provider_timing(body):
    """`{"seconds": s}`: how long a provider stays PROVISIONING, UPDATE_IN_PROGRESS or
    DEPROVISIONING from now on."""
    with LOCK:
        TIMING["seconds"] = float(body["seconds"])


# ------------------------------------------------------------------ errors
NAME_INVALID = (
    'The specified capacity provider name is invalid. Up to 255 characters are allowed, including letters '
    '(upper and lowercase), numbers, underscores, and hyphens. The name cannot be prefixed with "aws", "ecs", '
    'or "fargate". Specify a valid name and try again.')
ALREADY_EXISTS = ("The specified capacity provider already exists. To change the configuration of an existing "
                  "capacity provider, update the capacity provider.")
DOES_NOT_EXIST = "The specified capacity provider does not exist. Specify a valid name or ARN and try again."
NOT_FOUND = "The specified capacity provider was not found. Specify a valid capacity provider and try again."
NOT_ACTIVE = ("The specified capacity provider '{}' is not in an ACTIVE state. Specify a valid capacity provider "
              "and try again.")
MANAGED_INSTANCES_VIA_PUT = (
    "Cannot associate Managed Instances capacity provider to clusters using this API. Managed Instances capacity "
    "providers are already associated with the cluster they were created in.")
NOT_ASSOCIATED = (
    "The specified capacity provider strategy cannot contain a capacity provider that is not associated with the "
    "cluster. Associate the capacity provider with the cluster or specify a valid capacity provider and try again.")
IN_USE_BY_A_CLUSTER = (
    "The specified capacity provider is in use and cannot be removed. Only capacity providers that aren't "
    "associated with a cluster can be deleted; the capacity provider cannot be deleted because it is associated "
    "with cluster {}.")
IN_USE_BY_A_SERVICE = (
    "The specified capacity provider is in use and cannot be removed. It must first be removed from the capacity "
    "provider strategy of all services (UpdateService); services using it: {}.")
RESERVED = "The FARGATE and FARGATE_SPOT capacity providers are reserved and can't be {}."
BEING_UPDATED = "The capacity provider is being updated ({}). Try again when the update is complete."


class ClusterContainsCapacityProviderException(ECSException):
    def __init__(self, names):
        super().__init__(
            "ClusterContainsCapacityProviderException",
            "The cluster contains one or more capacity providers that prevent the requested operation. You must "
            f"first delete all capacity providers from the cluster before you can delete the cluster itself: "
            f"{', '.join(names)}.")


# ------------------------------------------------------------------ the provider
class Provider:
    """A capacity provider as ECS keeps it. Stored in moto's `capacity_providers` by name,
    so that moto's Tag/Untag/ListTagsForResource find it (by `name`,
    `capacity_provider_arn` and `tags`)."""

    def __init__(self, backend, name, kind, cluster=None, asg=None, managed=None, tags=None):
        self.name = name
        # CapacityProvider.capacityProviderArn: capacity-provider/NAME for both kinds
        # (terraform-provider-aws's acceptance tests check this for Managed Instances).
        self.capacity_provider_arn = arn_of(backend, name)
        self.kind = kind
        self.cluster = cluster
        self.asg = asg
        self.managed = managed
        self.tags = tags or []
        self.status = "ACTIVE"
        self.update_status = None
        self.update_status_reason = None
        self.phase = None
        self.phase_since = None


def arn_of(backend, name):
    return f"arn:aws:ecs:{backend.region_name}:{backend.account_id}:capacity-provider/{name}"


def short_name(name_or_arn):
    return (name_or_arn or "").split("/")[-1]


def find_provider(backend, name_or_arn):
    """The provider by name or ARN, INACTIVE ones included; None when ECS never had it."""
    provider = backend.capacity_providers.get(short_name(name_or_arn))
    if provider is not None and name_or_arn in (provider.name, provider.capacity_provider_arn):
        return provider
    return None


def live_cluster(backend, name_or_arn):
    """The cluster, or ClusterNotFoundException ("Cluster not found.") when it is unknown or
    INACTIVE (deleted)."""
    cluster = backend.clusters.get(short_name(name_or_arn))
    if cluster is None or cluster.status == "INACTIVE":
        raise ClusterNotFoundException()
    return cluster


def associated(cluster):
    return list(cluster.capacity_providers or [])


# ------------------------------------------------------------------ TAKES TIME
def start(provider, phase, status, update_status):
    """A transition that takes the provider-timing (see set_provider_timing)."""
    provider.phase = phase
    provider.phase_since = time.monotonic()
    provider.status = status
    provider.update_status = update_status
    provider.update_status_reason = None


def advance(backend, provider):
    """Moves a provider on to where ECS would have it by now:
    - created (Managed Instances): PROVISIONING/CREATE_IN_PROGRESS -> ACTIVE/CREATE_COMPLETE
      (terraform-provider-aws#45693: right after creation it "is not in an ACTIVE state");
    - updated: UPDATE_IN_PROGRESS -> UPDATE_COMPLETE, status stays ACTIVE;
    - deleted: DEPROVISIONING/DELETE_IN_PROGRESS -> INACTIVE/DELETE_COMPLETE ("When a
      capacity provider is successfully deleted, it has an INACTIVE status",
      CapacityProvider.status); a Managed Instances provider then leaves its cluster."""
    if provider.phase is None or time.monotonic() - provider.phase_since < TIMING["seconds"]:
        return
    phase, provider.phase = provider.phase, None
    if phase == "create":
        provider.status, provider.update_status = "ACTIVE", "CREATE_COMPLETE"
    elif phase == "update":
        provider.update_status = "UPDATE_COMPLETE"
    elif phase == "delete":
        provider.status, provider.update_status = "INACTIVE", "DELETE_COMPLETE"
        leave_its_cluster(backend, provider)


def advance_all(backend):
    for provider in list(backend.capacity_providers.values()):
        if isinstance(provider, Provider):
            advance(backend, provider)


def leave_its_cluster(backend, provider):
    """An INACTIVE Managed Instances provider is no longer associated with its cluster, nor
    in its default strategy."""
    cluster = backend.clusters.get(provider.cluster or "")
    if cluster is None:
        return
    cluster.capacity_providers = [p for p in associated(cluster) if p != provider.name]
    if cluster.default_capacity_provider_strategy:
        cluster.default_capacity_provider_strategy = [
            item for item in cluster.default_capacity_provider_strategy
            if short_name(item.get("capacityProvider")) != provider.name]


# ------------------------------------------------------------------ REWRITES
def with_asg_defaults(asg):
    """AutoScalingGroupProvider as ECS reports it: managed scaling DISABLED, target 100,
    steps 1..10000, warm-up 300 s (ManagedScaling doc's defaults), termination protection
    DISABLED ("The default is off"), managed draining ENABLED; terraform-provider-aws's
    acceptance test TestAccECSCapacityProvider_basic reads exactly these from ECS."""
    asg = copy.deepcopy(asg)
    scaling = asg.get("managedScaling") or {}
    for key, default in (("status", "DISABLED"), ("targetCapacity", 100), ("minimumScalingStepSize", 1),
                         ("maximumScalingStepSize", 10000), ("instanceWarmupPeriod", 300)):
        if scaling.get(key) is None:
            scaling[key] = default
    asg["managedScaling"] = scaling
    asg.setdefault("managedTerminationProtection", "DISABLED")
    asg.setdefault("managedDraining", "ENABLED")
    return asg


def managed_as_ecs_reports_it(config):
    """ManagedInstancesProvider as ECS reports it: the capacity option type is ON_DEMAND when
    not given ("The default is On-Demand"; terraform reads it back as computed), and the
    subnets and security groups come in no promised order (here: reversed, as strict_ecs
    does for services)."""
    config = copy.deepcopy(config)
    template = config.get("instanceLaunchTemplate") or {}
    template.setdefault("capacityOptionType", "ON_DEMAND")
    network = template.get("networkConfiguration") or {}
    for key in ("subnets", "securityGroups"):
        if key in network:
            network[key] = list(reversed(network[key]))
    return config


def render(provider, with_tags=False):
    """CapacityProvider as ECS answers it: `type` EC2_AUTOSCALING or MANAGED_INSTANCES,
    `cluster` only for Managed Instances ("This is required for Managed instances"),
    updateStatus/updateStatusReason when there are some, tags only when asked for
    (DescribeCapacityProviders.include: "If this field is omitted, tags aren't included")."""
    answer = {"capacityProviderArn": provider.capacity_provider_arn, "name": provider.name,
              "status": provider.status, "type": provider.kind}
    if provider.cluster:
        answer["cluster"] = provider.cluster
    if provider.asg is not None:
        answer["autoScalingGroupProvider"] = copy.deepcopy(provider.asg)
    if provider.managed is not None:
        answer["managedInstancesProvider"] = copy.deepcopy(provider.managed)
    if provider.update_status:
        answer["updateStatus"] = provider.update_status
    if provider.update_status_reason:
        answer["updateStatusReason"] = provider.update_status_reason
    if with_tags:
        answer["tags"] = copy.deepcopy(provider.tags)
    return answer


def render_fargate(backend, name, with_tags=False):
    """"Fargate has the predefined FARGATE and FARGATE_SPOT capacity providers"
    (CreateCapacityProvider): always there, ACTIVE, typed FARGATE / FARGATE_SPOT."""
    answer = {"capacityProviderArn": arn_of(backend, name), "name": name, "status": "ACTIVE", "type": name}
    if with_tags:
        answer["tags"] = []
    return answer


# ------------------------------------------------------------------ REJECTS: CreateCapacityProvider
NAME = re.compile(r"^[A-Za-z0-9_-]{1,255}$")


def reject_invalid_name(name):
    """CreateCapacityProvider.name: "Up to 255 characters are allowed. They include letters
    (both upper and lowercase letters), numbers, underscores (_), and hyphens (-). The name
    can't be prefixed with "aws", "ecs", or "fargate"." (botocore; ECS's own wording,
    quoted in aws-samples/aws-cdk-examples#626)."""
    if not NAME.match(name or "") or name.lower().startswith(("aws", "ecs", "fargate")):
        raise InvalidParameterException(NAME_INVALID)


def reject_not_exactly_one_kind(request, operation="create"):
    """A provider is either an Auto Scaling group provider or a Managed Instances one
    (CreateCapacityProvider: "You can create capacity providers for Amazon ECS Managed
    Instances and EC2 instances"; terraform's CustomizeDiff: "exactly one of
    auto_scaling_group_provider or managed_instances_provider must be specified")."""
    given = [k for k in ("autoScalingGroupProvider", "managedInstancesProvider") if request.get(k) is not None]
    if len(given) != 1:
        raise InvalidParameterException(
            f"Exactly one of autoScalingGroupProvider or managedInstancesProvider must be specified to {operation} "
            f"a capacity provider; got {' and '.join(given) or 'neither'}.")


def reject_missing_members(config, shape, template_shape):
    """The members the model marks required (CreateManagedInstancesProviderConfiguration and
    UpdateManagedInstancesProviderConfiguration: infrastructureRoleArn, instanceLaunchTemplate;
    InstanceLaunchTemplate: ec2InstanceProfileArn, networkConfiguration)."""
    missing = [m for m in required_of(shape) if config.get(m) is None]
    template = config.get("instanceLaunchTemplate") or {}
    if template_shape:
        missing += [f"instanceLaunchTemplate.{m}" for m in required_of(template_shape) if template.get(m) is None]
    if missing:
        raise InvalidParameterException(f"managedInstancesProvider.{missing[0]} is required.")


def reject_target_capacity_out_of_range(asg):
    """ManagedScaling.targetCapacity: "The specified value must be greater than 0 and less than
    or equal to 100" (botocore; ManagedScalingTargetCapacity min 1, max 100)."""
    target = ((asg or {}).get("managedScaling") or {}).get("targetCapacity")
    if target is not None and not 1 <= target <= 100:
        raise InvalidParameterException(
            f"The target capacity {target} is not valid: it must be greater than 0 and less than or equal to 100.")


def cluster_of_managed_instances(backend, request):
    """CreateCapacityProvider.cluster: "When you create a capacity provider with Amazon ECS
    Managed Instances, it becomes available only within the specified cluster": required for
    one (CapacityProvider.cluster: "This is required for Managed instances"), and it must be a
    cluster that exists (ClusterNotFoundException, one of the operation's errors)."""
    if not request.get("cluster"):
        raise InvalidParameterException(
            "The cluster must be specified when creating a capacity provider with Amazon ECS Managed Instances.")
    return live_cluster(backend, request["cluster"])


def reject_name_in_use(backend, name):
    """A name is taken while its provider is not INACTIVE: ClientException "The specified
    capacity provider already exists. To change the configuration of an existing capacity
    provider, update the capacity provider." (aws/containers-roadmap#688,
    terraform-provider-aws#11358); moto replaced the provider instead. A deleted (INACTIVE)
    provider does not hold its name."""
    if name in FARGATE:
        raise EcsClientException(ALREADY_EXISTS)
    existing = backend.capacity_providers.get(name)
    if existing is not None and getattr(existing, "status", "ACTIVE") != "INACTIVE":
        raise EcsClientException(ALREADY_EXISTS)


# ------------------------------------------------------------------ REJECTS: update and delete
def existing_provider(backend, name_or_arn, verb):
    """Update/DeleteCapacityProvider of a provider that does not exist (or was deleted):
    ClientException "The specified capacity provider does not exist. Specify a valid name or
    ARN and try again." (quoted in terraform-provider-aws's resourceCapacityProviderDelete).
    "The FARGATE and FARGATE_SPOT capacity providers are reserved and can't be deleted"
    (DeleteCapacityProvider)."""
    if short_name(name_or_arn) in FARGATE:
        raise EcsClientException(RESERVED.format(verb))
    provider = find_provider(backend, name_or_arn)
    if provider is None or provider.status == "INACTIVE":
        raise EcsClientException(DOES_NOT_EXIST)
    return provider


def reject_outside_its_cluster(backend, provider, cluster_str, verb):
    """Update/DeleteCapacityProvider.cluster: "Managed instances capacity providers are
    cluster-scoped and can only be updated [deleted] within their associated cluster": a
    Managed Instances provider is named together with its cluster."""
    if provider.kind != MANAGED_INSTANCES:
        return
    if not cluster_str:
        raise InvalidParameterException(
            f"The capacity provider {provider.name} is an Amazon ECS Managed Instances capacity provider of cluster "
            f"{provider.cluster}: specify its cluster. Managed instances capacity providers are cluster-scoped and "
            f"can only be {verb} within their associated cluster.")
    cluster = live_cluster(backend, cluster_str)
    if cluster.name != provider.cluster:
        raise InvalidParameterException(
            f"The capacity provider {provider.name} is associated with cluster {provider.cluster}, not "
            f"{cluster.name}. Managed instances capacity providers are cluster-scoped and can only be {verb} within "
            "their associated cluster.")


def reject_while_in_progress(provider):
    """A provider that is still being created, updated or deleted takes no other change:
    UpdateInProgressException (one of DeleteCapacityProvider's errors; terraform-provider-aws
    retries UpdateCapacityProvider on it)."""
    if provider.update_status in IN_PROGRESS:
        raise UpdateInProgressException(BEING_UPDATED.format(provider.update_status))


def reject_wrong_kind_of_update(provider, request):
    """UpdateCapacityProvider takes autoScalingGroupProvider (AutoScalingGroupProviderUpdate)
    for an Auto Scaling group provider and managedInstancesProvider
    (UpdateManagedInstancesProviderConfiguration) for a Managed Instances one, not the other."""
    wanted = "autoScalingGroupProvider" if provider.kind == ASG else "managedInstancesProvider"
    other = "managedInstancesProvider" if provider.kind == ASG else "autoScalingGroupProvider"
    if request.get(other) is not None:
        raise InvalidParameterException(
            f"The capacity provider {provider.name} is of type {provider.kind}: {other} cannot be specified, "
            f"use {wanted}.")
    if request.get(wanted) is None:
        raise InvalidParameterException(f"{wanted} must be specified to update capacity provider {provider.name}.")


def reject_delete_used_by_services(backend, provider):
    """DeleteCapacityProvider: "Prior to a capacity provider being deleted, the capacity
    provider must be removed from the capacity provider strategy from all services": refused
    while an ACTIVE or DRAINING service's strategy names it."""
    users = []
    for service in backend.services.values():
        strict_ecs.advance(service)
        strategy = service.capacity_provider_strategy or []
        if service.status in ("ACTIVE", "DRAINING") and any(
                short_name(i.get("capacityProvider")) == provider.name for i in strategy):
            users.append(f"{service.cluster_name}/{service.name}")
    if users:
        raise EcsClientException(IN_USE_BY_A_SERVICE.format(", ".join(sorted(users))))


def reject_delete_while_associated(backend, provider):
    """DeleteCapacityProvider: "Only capacity providers that aren't associated with a cluster
    can be deleted. To remove a capacity provider from a cluster, you can either use
    PutClusterCapacityProviders or delete the cluster." (terraform-provider-aws's
    deleteFailsWhenAssociated test expects "capacity provider cannot be deleted because it is
    associated with cluster"). A Managed Instances provider is deleted from within its
    cluster instead."""
    if provider.kind == MANAGED_INSTANCES:
        return
    for cluster in backend.clusters.values():
        if cluster.status != "INACTIVE" and provider.name in associated(cluster):
            raise EcsClientException(IN_USE_BY_A_CLUSTER.format(cluster.arn))


# ------------------------------------------------------------------ REJECTS: clusters and strategies
def reject_providers_a_cluster_cannot_take(backend, providers):
    """PutClusterCapacityProviders.capacityProviders (and CreateCluster's): an Auto Scaling
    group provider "must already be created" (else "The specified capacity provider was not
    found. Specify a valid capacity provider and try again.", terraform-aws-modules/
    terraform-aws-ecs#53); "Only capacity providers in an ACTIVE state can be used in a
    cluster" (CapacityProvider.status; terraform-provider-aws#45693 quotes ECS); and
    "Amazon ECS Managed Instances doesn't support this, because when you create a capacity
    provider with Amazon ECS Managed Instances, it becomes available only within the specified
    cluster" (terraform-provider-aws#44783 quotes ECS). FARGATE and FARGATE_SPOT "only need to
    be associated with a cluster to be used"."""
    for name in providers or []:
        if name in FARGATE:
            continue
        provider = find_provider(backend, name)
        if provider is None:
            raise InvalidParameterException(NOT_FOUND)
        if provider.status != "ACTIVE":
            raise InvalidParameterException(NOT_ACTIVE.format(provider.name))
        if provider.kind == MANAGED_INSTANCES:
            raise InvalidParameterException(MANAGED_INSTANCES_VIA_PUT)


def reject_strategy_outside_the_cluster(backend, providers, strategy):
    """A capacity provider strategy (a cluster's default, a service's, a task's) names only
    providers associated with the cluster: "A capacity provider must be associated with the
    cluster to be used in a capacity provider strategy" (PutClusterCapacityProviders), ECS
    answering "The specified capacity provider strategy cannot contain a capacity provider
    that is not associated with the cluster. ..." (dask/dask-cloudprovider#328); "Only
    capacity providers with an ACTIVE or UPDATING status can be used"."""
    names = [short_name(p) for p in providers or []]
    for item in strategy or []:
        name = short_name(item.get("capacityProvider"))
        if name not in names:
            raise InvalidParameterException(NOT_ASSOCIATED)
        provider = None if name in FARGATE else find_provider(backend, name)
        if provider is not None and provider.status != "ACTIVE":
            raise InvalidParameterException(NOT_ACTIVE.format(name))


def with_its_managed_instances(backend, cluster, providers):
    """PutClusterCapacityProviders replaces the cluster's list, but Managed Instances providers
    are cluster-scoped: they stay associated until deleted, whether the call names them or
    not."""
    kept = list(providers)
    for provider in backend.capacity_providers.values():
        if (isinstance(provider, Provider) and provider.kind == MANAGED_INSTANCES and provider.cluster == cluster.name
                and provider.status != "INACTIVE" and provider.name not in kept):
            kept.append(provider.name)
    return kept


def refuse_delete_cluster_with_managed_instances(backend, cluster):
    """DeleteCluster: ClusterContainsCapacityProviderException, "This exception occurs when you
    try to delete a cluster that still has active capacity providers, including Amazon ECS
    Managed Instances capacity providers" (botocore), while one of its Managed Instances
    providers is not INACTIVE. Auto Scaling group providers are simply disassociated
    (DeleteCapacityProvider: "you can either use PutClusterCapacityProviders or delete the
    cluster")."""
    live = [p.name for p in backend.capacity_providers.values()
            if isinstance(p, Provider) and p.kind == MANAGED_INSTANCES and p.cluster == cluster.name
            and p.status != "INACTIVE"]
    if live:
        raise ClusterContainsCapacityProviderException(sorted(live))


# ------------------------------------------------------------------ handlers
def create_capacity_provider(self):
    request = self._get_params()
    backend = self.ecs_backend
    with LOCK:
        advance_all(backend)
        name = request.get("name")
        reject_invalid_name(name)
        reject_not_exactly_one_kind(request)
        if request.get("autoScalingGroupProvider") is not None:
            asg = request["autoScalingGroupProvider"]
            reject_target_capacity_out_of_range(asg)
            reject_name_in_use(backend, name)
            provider = Provider(backend, name, ASG, asg=with_asg_defaults(asg), tags=request.get("tags"))
            backend.capacity_providers[name] = provider
        else:
            config = request["managedInstancesProvider"]
            reject_missing_members(config, "CreateManagedInstancesProviderConfiguration", "InstanceLaunchTemplate")
            cluster = cluster_of_managed_instances(backend, request)
            reject_name_in_use(backend, name)
            provider = Provider(backend, name, MANAGED_INSTANCES, cluster=cluster.name,
                                managed=managed_as_ecs_reports_it(config), tags=request.get("tags"))
            start(provider, "create", "PROVISIONING", "CREATE_IN_PROGRESS")
            backend.capacity_providers[name] = provider
            # "it becomes available only within the specified cluster": associated at once.
            cluster.capacity_providers = with_its_managed_instances(backend, cluster, associated(cluster))
        return ActionResult({"capacityProvider": render(provider, with_tags=bool(request.get("tags")))})


def update_capacity_provider(self):
    request = self._get_params()
    backend = self.ecs_backend
    with LOCK:
        advance_all(backend)
        provider = existing_provider(backend, request.get("name"), "updated")
        reject_outside_its_cluster(backend, provider, request.get("cluster"), "updated")
        reject_wrong_kind_of_update(provider, request)
        if provider.kind == ASG:
            update = request["autoScalingGroupProvider"]
            reject_target_capacity_out_of_range(update)
            reject_while_in_progress(provider)
            merge_asg_update(provider, update)
        else:
            update = request["managedInstancesProvider"]
            reject_missing_members(update, "UpdateManagedInstancesProviderConfiguration", None)
            reject_while_in_progress(provider)
            merge_managed_instances_update(provider, update)
        start(provider, "update", provider.status, "UPDATE_IN_PROGRESS")
        return ActionResult({"capacityProvider": render(provider)})


def merge_asg_update(provider, update):
    """AutoScalingGroupProviderUpdate: managed scaling, termination protection and draining
    change in place; the Auto Scaling group itself cannot (the shape has no ARN)."""
    for key in members_of("AutoScalingGroupProviderUpdate"):
        if key == "managedScaling" and update.get(key):
            provider.asg["managedScaling"].update({k: v for k, v in update[key].items() if v is not None})
        elif key != "managedScaling" and update.get(key) is not None:
            provider.asg[key] = update[key]


def merge_managed_instances_update(provider, update):
    """UpdateManagedInstancesProviderConfiguration: the role, tag propagation, optimization and
    auto repair, and the launch template's members that InstanceLaunchTemplateUpdate has
    (not capacityOptionType, fipsEnabled, ...: "These changes only apply to new Amazon ECS
    Managed Instances"; the rest is fixed at creation). Members given replace the stored ones,
    members not given are kept."""
    update = managed_as_ecs_reports_it(update)
    update["instanceLaunchTemplate"].pop("capacityOptionType", None)
    for key in members_of("UpdateManagedInstancesProviderConfiguration"):
        if key != "instanceLaunchTemplate" and update.get(key) is not None:
            provider.managed[key] = update[key]
    template = provider.managed.setdefault("instanceLaunchTemplate", {})
    for key in members_of("InstanceLaunchTemplateUpdate"):
        if update["instanceLaunchTemplate"].get(key) is not None:
            template[key] = update["instanceLaunchTemplate"][key]


def delete_capacity_provider(self):
    request = self._get_params()
    backend = self.ecs_backend
    with LOCK:
        advance_all(backend)
        provider = existing_provider(backend, request.get("capacityProvider"), "deleted")
        reject_outside_its_cluster(backend, provider, request.get("cluster"), "deleted")
        reject_while_in_progress(provider)
        reject_delete_used_by_services(backend, provider)
        reject_delete_while_associated(backend, provider)
        start(provider, "delete", "DEPROVISIONING", "DELETE_IN_PROGRESS")
        return ActionResult({"capacityProvider": render(provider)})


def describe_capacity_providers(self):
    """DescribeCapacityProviders: named providers (up to 100), unknown ones in failures[] with
    reason MISSING (moto built their ARN with `capacity_provider/`); INACTIVE ones by name for
    the rest of the run. Without names, every provider that is not INACTIVE, FARGATE and
    FARGATE_SPOT included, in pages of maxResults (1..10, default 10) with nextToken. With
    `cluster`: "only capacity providers associated with this cluster are returned, including
    Amazon ECS Managed Instances capacity providers"."""
    backend = self.ecs_backend
    names = self._get_param("capacityProviders") or []
    with_tags = "TAGS" in (self._get_param("include") or [])
    with LOCK:
        advance_all(backend)
        cluster = live_cluster(backend, self._get_param("cluster")) if self._get_param("cluster") else None
        scope = associated(cluster) if cluster is not None else None
        if len(names) > 100:
            raise InvalidParameterException("capacityProviders can have at most 100 items.")
        if names:
            found, failures = [], []
            for name in names:
                answer = describe_one(backend, name, with_tags)
                if answer is None or (scope is not None and answer["name"] not in scope):
                    failures.append({"arn": name if name.startswith("arn:") else arn_of(backend, name),
                                     "reason": "MISSING"})
                else:
                    found.append(answer)
            return ActionResult({"capacityProviders": found, "failures": failures})
        listed = [render_fargate(backend, name, with_tags) for name in FARGATE]
        listed += [render(p, with_tags) for p in backend.capacity_providers.values()
                   if isinstance(p, Provider) and p.status != "INACTIVE"]
        if scope is not None:
            listed = [answer for answer in listed if answer["name"] in scope]
        return ActionResult(page(listed, self._get_param("maxResults"), self._get_param("nextToken")))


def describe_one(backend, name, with_tags):
    for fargate in FARGATE:
        if name in (fargate, arn_of(backend, fargate)):
            return render_fargate(backend, fargate, with_tags)
    provider = find_provider(backend, name)
    return render(provider, with_tags) if provider is not None else None


def page(listed, max_results, token):
    answer = strict_ecs.list_page("capacityProviders", listed, max_results, token, default=10, most=10)
    return {**answer, "failures": []}


# ------------------------------------------------------------------ clusters, services, tasks
def patch_clusters():
    """Wraps strict_ecs's cluster patches (apply runs after strict_ecs.apply)."""
    backend_class = models.EC2ContainerServiceBackend
    inner_create = backend_class.create_cluster
    inner_put = backend_class.put_cluster_capacity_providers
    inner_describe = backend_class.describe_clusters
    inner_delete = backend_class.delete_cluster
    inner_get_resource = backend_class._get_resource

    def create_cluster(backend, cluster_name, tags=None, cluster_settings=None, configuration=None,
                       capacity_providers=None, default_capacity_provider_strategy=None,
                       service_connect_defaults=None):
        with LOCK:
            advance_all(backend)
            reject_providers_a_cluster_cannot_take(backend, capacity_providers)
            reject_strategy_outside_the_cluster(backend, capacity_providers, default_capacity_provider_strategy)
            cluster = inner_create(backend, cluster_name, tags, cluster_settings, configuration, capacity_providers,
                                   default_capacity_provider_strategy, service_connect_defaults)
            # moto replaces a cluster created twice: its Managed Instances providers stay.
            cluster.capacity_providers = with_its_managed_instances(backend, cluster, associated(cluster))
            return cluster

    def put_cluster_capacity_providers(backend, cluster_name, capacity_providers, default_capacity_provider_strategy):
        with LOCK:
            advance_all(backend)
            cluster = backend._get_cluster(cluster_name)
            reject_providers_a_cluster_cannot_take(backend, capacity_providers)
            if capacity_providers is not None:
                capacity_providers = with_its_managed_instances(backend, cluster, capacity_providers)
            reject_strategy_outside_the_cluster(
                backend, capacity_providers if capacity_providers is not None else associated(cluster),
                default_capacity_provider_strategy)
            return inner_put(backend, cluster_name, capacity_providers, default_capacity_provider_strategy)

    def describe_clusters(backend, *args, **kwargs):
        with LOCK:
            advance_all(backend)
            return inner_describe(backend, *args, **kwargs)

    def delete_cluster(backend, cluster_str):
        with LOCK:
            advance_all(backend)
            cluster = backend._get_cluster(cluster_str)
            # strict_ecs's refusal comes first (and runs again inside, harmlessly).
            strict_ecs.refuse_delete_cluster_with_services(backend, cluster_str)
            refuse_delete_cluster_with_managed_instances(backend, cluster)
            cluster = inner_delete(backend, cluster_str)
            cluster.capacity_providers = []
            cluster.default_capacity_provider_strategy = []
            return cluster

    def get_resource(backend, resource_arn, parsed_arn):
        """Tag/Untag/ListTagsForResource of a capacity provider ECS does not have (moto: 500)."""
        if parsed_arn["service"] == "capacity-provider":
            with LOCK:
                advance_all(backend)
                provider = find_provider(backend, resource_arn)
                if provider is None or provider.status == "INACTIVE":
                    raise EcsClientException(DOES_NOT_EXIST)
                return provider
        return inner_get_resource(backend, resource_arn, parsed_arn)

    backend_class.create_cluster = create_cluster
    backend_class.put_cluster_capacity_providers = put_cluster_capacity_providers
    backend_class.describe_clusters = describe_clusters
    backend_class.delete_cluster = delete_cluster
    backend_class._get_resource = get_resource


def checking_the_strategy(handler):
    """CreateService, UpdateService and RunTask with a capacityProviderStrategy naming a
    provider the cluster does not have: InvalidParameterException (dask/dask-cloudprovider#328
    quotes RunTask's). Without a strategy ECS uses the cluster's default, checked when it was
    set."""
    def checked(self):
        request = self._get_params()
        backend = self.ecs_backend
        if request.get("capacityProviderStrategy"):
            with LOCK:
                advance_all(backend)
                cluster = backend._get_cluster(request.get("cluster") or "default")
                reject_strategy_outside_the_cluster(backend, associated(cluster), request["capacityProviderStrategy"])
        return handler(self)
    return checked


def apply():
    """Replaces moto's capacity provider handlers and wraps the cluster, service and task ones
    (strict_ecs.apply and strict_tasks.apply must have run); called once at start."""
    handlers = responses.EC2ContainerServiceResponse
    handlers.create_capacity_provider = create_capacity_provider
    handlers.update_capacity_provider = update_capacity_provider
    handlers.delete_capacity_provider = delete_capacity_provider
    handlers.describe_capacity_providers = describe_capacity_providers
    handlers.create_service = checking_the_strategy(handlers.create_service)
    handlers.update_service = checking_the_strategy(handlers.update_service)
    handlers.run_task = checking_the_strategy(handlers.run_task)
    patch_clusters()
