"""Training on several processes (torchrun): the process group, each process's device, and the averaging that
makes N processes one update (the reference's -gpus: the gradients summed and divided by N, the learning rate
multiplied by N by the caller). One process: every function here is a no-op."""
from __future__ import annotations

import os

import torch


def init_distributed() -> tuple[int, int]:
    """(rank, world size): the process group is started when torchrun set WORLD_SIZE > 1 (NCCL with CUDA, else
    gloo; $DARKCFG_BACKEND=gloo forces gloo)."""
    if int(os.environ.get("WORLD_SIZE", "1")) > 1:
        import torch.distributed as dist

        if not dist.is_initialized():
            dist.init_process_group("nccl" if torch.cuda.is_available() and os.environ.get(
                "DARKCFG_BACKEND", "") != "gloo" else "gloo")
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def process_device(device: str, rank: int, world: int) -> torch.device:
    """This process's device: `device`, or with several processes on CUDA the GPU of its local rank."""
    if device != "cuda" or world == 1:
        return torch.device(device)
    return torch.device(f"cuda:{int(os.environ.get('LOCAL_RANK', rank))}")


def broadcast_model(model: torch.nn.Module, world: int) -> None:
    """Every process starts from rank 0's parameters and buffers."""
    if world > 1:
        import torch.distributed as dist

        for t in list(model.parameters()) + list(model.buffers()):
            dist.broadcast(t.data, 0)


def average_gradients(params: list[torch.Tensor], world: int) -> None:
    """Each gradient replaced by its mean over the processes (a missing one counts as zeros)."""
    if world > 1:
        import torch.distributed as dist

        for p in params:
            if p.grad is None:
                p.grad = torch.zeros_like(p)
            dist.all_reduce(p.grad)
            p.grad /= world


def average_value(value: float, device: torch.device, world: int) -> float:
    """The mean of a number over the processes (the iteration's loss)."""
    if world == 1:
        return value
    import torch.distributed as dist

    t = torch.tensor([value], device=device)
    dist.all_reduce(t)
    return float(t) / world


def barrier(world: int) -> None:
    """Every process waits here for the others (rank 0 wrote a file the others read)."""
    if world > 1:
        import torch.distributed as dist

        dist.barrier()
