"""`modal.cluster`: the group of containers of a clustered function."""

from modal_ray.clustered import Cluster

__all__ = ["Cluster"]
