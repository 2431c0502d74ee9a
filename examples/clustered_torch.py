"""A clustered function with `torch.distributed` over gloo (CPU), as Modal's multi-node guide shows.

Each call runs on `N_RANKS` gang-scheduled ranks, one per Ray node. Every rank joins one process
group through the rendezvous information modal-ray gives it (`MASTER_ADDR`, `MASTER_PORT`, `RANK`,
`WORLD_SIZE` are set in the rank's environment, and `modal.experimental.get_cluster_info()` has
the same), all-reduces its rank number, and rank 0's value comes back to the caller.

    modal run examples/clustered_torch.py        # on a Ray cluster with at least 2 nodes

On one machine, let the ranks share it: `MODAL_RAY_CLUSTER_SHARE_NODES=1 modal run ...`. The image
installs torch on the workers; where the cluster's image already has it, run with
`MODAL_RAY_PACKAGES=check`. For `torchrun` (several processes per rank), pass
`--nnodes=N_RANKS --node_rank=info.rank --master_addr=info.master_addr
--master_port=info.master_port` to `torch.distributed.run`, as in the guide.
"""

import modal
import modal.experimental

N_RANKS = 2

image = modal.Image.debian_slim().pip_install("torch")
app = modal.App("example-clustered-torch", image=image)


@app.function(timeout=600)
@modal.experimental.clustered(size=N_RANKS)
def all_reduce_ranks() -> dict[str, object]:
    import torch
    import torch.distributed as dist

    info = modal.experimental.get_cluster_info()
    dist.init_process_group("gloo", init_method="env://")  # MASTER_ADDR/PORT, RANK, WORLD_SIZE
    try:
        value = torch.tensor([float(info.rank)])
        dist.all_reduce(value, op=dist.ReduceOp.SUM)
        return {
            "rank": info.rank,
            "world_size": dist.get_world_size(),
            "sum_of_ranks": value.item(),
            "addresses": info.container_ips,
        }
    finally:
        dist.destroy_process_group()


@app.local_entrypoint()
def main() -> None:
    result = all_reduce_ranks.remote()
    print(f"rank 0 of {result['world_size']}: sum of ranks = {result['sum_of_ranks']:g}")
    print(f"addresses: {result['addresses']}")
