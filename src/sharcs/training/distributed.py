"""Multi-process helpers (torch.distributed): rank, world size, gradient and confidence exchange.

Launched with `torchrun` or `accelerate launch`, the environment holds RANK, WORLD_SIZE, LOCAL_RANK
and MASTER_ADDR/PORT; `init_distributed` starts the process group from it (nccl on GPU, gloo on CPU).
Without a launcher everything here is a no-op and training is single-process.
"""

from __future__ import annotations

import os

import torch
import torch.distributed as dist


def is_distributed() -> bool:
    """True when a process group with more than one process is running."""
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def rank() -> int:
    """This process's global rank (0 without a process group)."""
    return dist.get_rank() if is_distributed() else 0


def world_size() -> int:
    """Number of processes (1 without a process group)."""
    return dist.get_world_size() if is_distributed() else 1


def is_main() -> bool:
    """True on the process that writes files and logs (rank 0)."""
    return rank() == 0


def local_rank() -> int:
    """This process's rank on its node (the GPU it should use)."""
    return int(os.environ.get("LOCAL_RANK", "0"))


def init_distributed(device_type: str = "cpu") -> bool:
    """Start the process group when a launcher set WORLD_SIZE > 1; returns whether one is running."""
    if is_distributed():
        return True
    if int(os.environ.get("WORLD_SIZE", "1")) <= 1 or not dist.is_available():
        return False
    if not dist.is_initialized():
        backend = "nccl" if device_type == "cuda" and dist.is_nccl_available() else "gloo"
        dist.init_process_group(backend=backend)
    return is_distributed()


def barrier() -> None:
    """Wait for every process (no-op when single-process)."""
    if is_distributed():
        dist.barrier()


def shard(indices: list[int]) -> tuple[list[int], float]:
    """This rank's contiguous slice of a global batch and its share of the batch's samples."""
    n, world, r = len(indices), world_size(), rank()
    local = indices[r * n // world : (r + 1) * n // world]
    return local, len(local) / n


def sum_gradients(params: list[torch.nn.Parameter]) -> None:
    """Sum gradients over processes in place; a parameter with a gradient on any rank gets one on all."""
    if not is_distributed() or not params:
        return
    device = params[0].device
    present = torch.tensor([p.grad is not None for p in params], dtype=torch.float32, device=device)
    dist.all_reduce(present, op=dist.ReduceOp.MAX)
    used = [p for p, flag in zip(params, present.tolist(), strict=True) if flag > 0]
    for p in used:
        if p.grad is None:
            p.grad = torch.zeros_like(p)
    if not used:
        return
    flat = torch.cat([p.grad.reshape(-1) for p in used])
    dist.all_reduce(flat, op=dist.ReduceOp.SUM)
    offset = 0
    for p in used:
        count = p.grad.numel()
        p.grad.copy_(flat[offset : offset + count].view_as(p.grad))
        offset += count


def from_main(tensor: torch.Tensor) -> torch.Tensor:
    """Rank 0's value of `tensor` on every rank (the tensor itself when single-process): scores that
    decide a permutation of the weights, so that every process permutes alike."""
    if not is_distributed():
        return tensor
    on = torch.device("cuda", local_rank()) if dist.get_backend() == "nccl" else torch.device("cpu")
    shared = tensor.detach().to(on, copy=True)
    dist.broadcast(shared, src=0)
    return shared.to(tensor.device)


def sum_scalar(value: float, device: torch.device) -> float:
    """Sum of a float over processes."""
    if not is_distributed():
        return value
    tensor = torch.tensor([value], dtype=torch.float64, device=device)
    dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
    return float(tensor.item())


def gather_records(
    records: list[tuple[torch.Tensor, torch.Tensor]],
) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """Every rank's (indices, confidences) pairs, in rank order, on every rank (CPU tensors)."""
    records = [(i.cpu(), c.cpu()) for i, c in records]
    if not is_distributed():
        return records
    gathered: list[list[tuple[torch.Tensor, torch.Tensor]] | None] = [None] * world_size()
    dist.all_gather_object(gathered, records)
    return [pair for part in gathered for pair in (part or [])]
