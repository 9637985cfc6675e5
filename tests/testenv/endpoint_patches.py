"""Small patches that restore real ECS behaviour in moto where tests depend on it.

Each patch names the ECS API behaviour it restores (../shared/ECS-NOTES.md lists where moto
diverges). They change moto's in-process backend before the server starts.
"""
import collections
import threading

from moto.core.responses import ActionResult
from moto.core.utils import camelcase_to_underscores, utcnow
from moto.ecs import models, responses
from moto.ecs.exceptions import ECSException, InvalidParameterException
from moto.moto_api._internal import mock_random

# Services CreateService really created (not idempotent repeats), by "cluster/service":
# tests check that faults never make the operator create a service twice.
CREATED = collections.Counter()
CREATED_LOCK = threading.Lock()


class ClusterContainsServicesException(ECSException):
    def __init__(self) -> None:
        super().__init__(
            "ClusterContainsServicesException",
            "The Cluster cannot be deleted while Services are active.",
        )


def _delete_cluster_refuses_active_services():
    """ECS DeleteCluster: "You must delete all services that are running in the cluster
    before you can delete the cluster"; the API answers ClusterContainsServicesException.
    moto marks the cluster INACTIVE regardless."""
    original = models.EC2ContainerServiceBackend.delete_cluster

    def delete_cluster(self, cluster_str):
        cluster = self._get_cluster(cluster_str)
        active = [s for s in self.services.values()
                  if s.cluster_name == cluster.name and s.status == "ACTIVE"]
        if active:
            raise ClusterContainsServicesException()
        return original(self, cluster_str)

    models.EC2ContainerServiceBackend.delete_cluster = delete_cluster


def _steady(service):
    """Marks the PRIMARY deployment as finished: desiredCount tasks running."""
    service.running_count = service.desired_count
    service.pending_count = 0
    if service.deployments:
        primary = service.deployments[0]
        primary.update({
            "desiredCount": service.desired_count,
            "runningCount": service.desired_count,
            "pendingCount": 0,
            "rolloutState": "COMPLETED",
            "rolloutStateReason": f"ECS deployment {primary['id']} completed.",
            "taskDefinition": service.task_definition,
        })


def _services_reach_steady_state():
    """ECS's service scheduler starts desiredCount tasks and the deployment completes once
    they run. The endpoint has no containers to wait for, so it reports them running at
    once; moto instead takes the running count from MOTO_ECS_SERVICE_RUNNING, unrelated to
    desiredCount, so no service would ever be steady."""
    original = models.Service.__init__

    def __init__(self, *args, **kwargs):
        original(self, *args, **kwargs)
        _steady(self)

    models.Service.__init__ = __init__


def _update_service_starts_a_deployment():
    """ECS UpdateService with a new taskDefinition, or with forceNewDeployment, starts a new
    PRIMARY deployment running the task definition's full ARN (a family or family:revision
    is resolved); a desiredCount change resizes the PRIMARY deployment. moto stores the
    string verbatim and keeps the old deployment."""
    original = models.EC2ContainerServiceBackend.update_service

    def update_service(self, service_properties):
        requested = service_properties.get("task_definition")
        force = service_properties.get("force_new_deployment", False)
        service = original(self, service_properties)
        new_definition = None
        if requested:
            new_definition = self.describe_task_definition(requested).arn
            service.task_definition = new_definition
        if service.deployments and (force or (new_definition and new_definition != service.deployments[0]["taskDefinition"])):
            now = utcnow()
            service.deployments = [{
                **service.deployments[0],
                "id": f"ecs-svc/{mock_random.randint(0, 32**12)}",
                "createdAt": now,
                "updatedAt": now,
            }]
        _steady(service)
        return service

    models.EC2ContainerServiceBackend.update_service = update_service


# CreateService members moto's handler passes on to its backend; the rest it drops.
_MODELLED_BY_MOTO = {
    "cluster", "serviceName", "taskDefinition", "desiredCount", "loadBalancers",
    "schedulingStrategy", "serviceRegistries", "tags", "deploymentController", "launchType",
    "platformVersion", "propagateTags", "networkConfiguration", "role", "clientToken",
}


def _create_service_keeps_its_input():
    """ECS CreateService stores every member of its input (deploymentConfiguration,
    placementStrategy, healthCheckGracePeriodSeconds, ...) and DescribeServices returns
    them. moto drops those it does not model; this keeps them the way moto's own
    UpdateService does, as attributes of the service."""
    original = responses.EC2ContainerServiceResponse.create_service

    def create_service(self):
        result = original(self)
        service = self.ecs_backend._get_service(self._get_param("cluster", "default"), self._get_param("serviceName"))
        for key, value in self._get_params().items():
            if key not in _MODELLED_BY_MOTO and value is not None:
                setattr(service, camelcase_to_underscores(key), value)
        return result

    responses.EC2ContainerServiceResponse.create_service = create_service


def _create_service_is_idempotent_by_client_token():
    """ECS CreateService with the clientToken of an earlier call that created the service
    returns that service ("an identifier that you provide to ensure the idempotency of the
    request"); with another token, an ACTIVE service of that name is an error ("Creation of
    service was not idempotent"). moto ignores the token and replaces the service."""
    original = responses.EC2ContainerServiceResponse.create_service
    # NB: moto's server is threaded; ECS answers concurrent calls with one token as one.
    creating = threading.Lock()

    def create_service(self):
        with creating:
            return _create_once(self)

    def _create_once(self):
        cluster = self._get_param("cluster", "default")
        name = self._get_param("serviceName")
        token = self._get_param("clientToken")
        try:
            existing = self.ecs_backend._get_service(cluster, name)
        except Exception:  # noqa: BLE001 - moto raises its own not-found errors
            existing = None
        if existing is not None and existing.status == "ACTIVE":
            if token and getattr(existing, "creation_token", None) == token:
                return ActionResult({"service": existing})
            raise InvalidParameterException("Creation of service was not idempotent.")
        result = original(self)
        service = self.ecs_backend._get_service(cluster, name)
        service.creation_token = token
        with CREATED_LOCK:
            CREATED[f"{service.cluster_name}/{name}"] += 1
        return result

    responses.EC2ContainerServiceResponse.create_service = create_service


def apply():
    """Apply every patch; called once before moto's server starts."""
    _delete_cluster_refuses_active_services()
    _services_reach_steady_state()
    _update_service_starts_a_deployment()
    _create_service_keeps_its_input()
    _create_service_is_idempotent_by_client_token()
