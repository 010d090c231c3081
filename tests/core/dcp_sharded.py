"""Write a torch.distributed.checkpoint folder the way a 2-rank job does (gloo on loopback, CPU):
DTensors sharded along dim 0 (even and uneven), along dim 1, replicated, plus a bytes entry.
Also writes ``OUT.full.pt``: the whole tensors, for comparison.

Run: python dcp_sharded.py OUT PORT   (used by tests/core/test_dcp.py)
"""

from __future__ import annotations

import os
import sys
import warnings


def _rank(rank: int, world: int, out: str, port: int) -> None:
    import torch
    import torch.distributed as dist
    import torch.distributed.checkpoint as dcp
    from torch.distributed.device_mesh import init_device_mesh
    from torch.distributed.tensor import Replicate, Shard, distribute_tensor

    warnings.simplefilter("ignore")
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=world)
    try:
        mesh = init_device_mesh("cpu", (world,))
        g = torch.Generator().manual_seed(0)
        full = {"w0": torch.randn(5, 3, generator=g), "w1": torch.randn(4, 6, generator=g),
                "bias": torch.randn(7, generator=g).to(torch.bfloat16), "rep": torch.arange(4.0),
                "cube": torch.randn(2, 4, 3, generator=g)}
        sd = {"w0": distribute_tensor(full["w0"], mesh, [Shard(0)]),
              "w1": distribute_tensor(full["w1"], mesh, [Shard(1)]),
              "bias": distribute_tensor(full["bias"], mesh, [Shard(0)]),
              "rep": distribute_tensor(full["rep"], mesh, [Replicate()]),
              "cube": distribute_tensor(full["cube"], mesh, [Shard(1)]), "step": 11}
        dcp.save(sd, checkpoint_id=out)
        if rank == 0:
            torch.save(full, out + ".full.pt")
    finally:
        dist.destroy_process_group()


if __name__ == "__main__":
    import torch.multiprocessing as mp

    mp.spawn(_rank, args=(2, sys.argv[1], int(sys.argv[2])), nprocs=2)
