"""`modal.experimental`: clustered functions (`@clustered`, `get_cluster_info`)."""

from modal_ray.clustered import ClusterInfo, get_cluster_info
from modal_ray.partial_function import clustered

__all__ = ["ClusterInfo", "clustered", "get_cluster_info"]
