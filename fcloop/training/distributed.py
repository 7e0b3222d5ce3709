"""Data parallelism over PyTorch's own process groups (`torchrun --nproc_per_node=N -m fcloop.train CONFIG`).

Every rank builds the same data plan from run.seed and takes its own share of each step's rows; each rank
knows the whole step's supervised token count from the plan, so the loss normalization is global without
communication. Gradients of the trainable parameters (LoRA and new-token rows: a few MB) are summed across
ranks with one all-reduce per step. The DistributedDataParallel wrapper is not used because the memory-lean
loss calls the decoder and lm_head directly, past the wrapper's forward hooks. Rank 0 alone logs and writes
checkpoints. The sharded mode (FSDP2) is in fcloop.model.sharding.
"""

from __future__ import annotations

import gc
import math
import os
from dataclasses import dataclass, field

import torch
import torch.distributed as dist


@dataclass(frozen=True)
class World:
    rank: int = 0
    size: int = 1
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))
    sharded: bool = False
    """FSDP2 mode: FSDP reduces the gradients, and every rank must run the same passes."""

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def is_distributed(self) -> bool:
        return self.size > 1


def init_world(data_parallel: str = "ddp") -> World:
    """One process per device as torchrun starts them (RANK, WORLD_SIZE, LOCAL_RANK); a plain run is rank 0 of 1
    (where there is nothing to shard)."""
    size = int(os.environ.get("WORLD_SIZE", "1"))
    cuda = torch.cuda.is_available()
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    device = torch.device("cuda", local_rank) if cuda else torch.device("cpu")
    if size == 1:
        return World(device=torch.device("cuda") if cuda else device)
    if cuda:
        torch.cuda.set_device(device)
    if not dist.is_initialized():
        dist.init_process_group(backend="nccl" if cuda else "gloo")
    return World(rank=dist.get_rank(), size=size, device=device, sharded=data_parallel == "fsdp")


def shard(items: list, world: World) -> list:
    """This rank's share: items rank, rank + size, ... (every rank gets a share as even as possible)."""
    return items[world.rank :: world.size]


def padding_passes(mine: int, total: int, per_pass: int, world: World) -> int:
    """How many extra passes this rank runs, having `mine` of `total` items, so that it runs as many passes of
    `per_pass` items as the busiest rank (FSDP's collectives hang if one rank runs fewer)."""
    if not world.sharded:
        return 0
    busiest = math.ceil(math.ceil(total / world.size) / per_pass)
    return busiest - math.ceil(mine / per_pass)


def sum_gradients(parameters: list[torch.nn.Parameter], world: World) -> None:
    """Sum the gradients across ranks in one flat all-reduce (each rank's loss is already divided by the
    global supervised count, so the sum is the full step's gradient). FSDP has already reduce-scattered them."""
    if not world.is_distributed or world.sharded:
        return
    grads = [p.grad if p.grad is not None else torch.zeros_like(p) for p in parameters]
    flat = torch.cat([g.reshape(-1) for g in grads])
    dist.all_reduce(flat, op=dist.ReduceOp.SUM)
    offset = 0
    for parameter, grad in zip(parameters, grads, strict=True):
        parameter.grad = flat[offset : offset + grad.numel()].view_as(grad).clone()
        offset += grad.numel()


def sum_scalars(values: list[float], world: World) -> list[float]:
    if not world.is_distributed:
        return values
    tensor = torch.tensor(values, dtype=torch.float64, device=world.device)
    dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
    return tensor.tolist()


def barrier(world: World) -> None:
    if world.is_distributed:
        dist.barrier()


def shutdown(world: World) -> None:
    """End a distributed run: every rank waits for the others, then leaves its process group.

    The garbage collection first is not tidiness. Sharded modules hold reference cycles, so the run's model and
    optimizer outlive the function that made them until a collection runs; left to the interpreter's exit, that
    collection races gloo's worker threads, and a worker that still needs the interpreter then aborts its process
    ("terminate called without an active exception", SIGABRT) after a run that finished: a gloo worker freeing
    work captured during a backward pass asks for the GIL while Python is finalizing. It happened once in CI
    (FSDP, 2 processes); a small FSDP2 script with one rank held back 0.5 s before leaving aborted in 5 and 4 of
    36 runs when the model was left to the exit, in 0 of 36 (twice) when it was collected before the barrier."""
    if not world.is_distributed:
        return
    gc.collect()
    barrier(world)
    if dist.is_initialized():
        dist.destroy_process_group()


def gather_objects(value: object, world: World) -> list[object]:
    """Every rank's `value`, in rank order, on every rank."""
    if not world.is_distributed:
        return [value]
    gathered: list[object] = [None] * world.size
    dist.all_gather_object(gathered, value)
    return gathered


def any_rank(flag: bool, world: World) -> bool:
    """True if the flag is set on any rank: keeps decisions such as stopping the same on all ranks."""
    return sum_scalars([float(flag)], world)[0] > 0 if world.is_distributed else flag
