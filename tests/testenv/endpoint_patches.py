"""Small patches that restore real ECS behaviour in moto where tests depend on it.

Each patch names the ECS API behaviour it restores (../shared/ECS-NOTES.md lists where moto
diverges). They change moto's in-process backend before the server starts.
"""
from moto.ecs import models
from moto.ecs.exceptions import ECSException


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


def apply():
    """Apply every patch; called once before moto's server starts."""
    _delete_cluster_refuses_active_services()
