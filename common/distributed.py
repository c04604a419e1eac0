"""Running a trainer on many GPUs with `torchrun`: the process group, FSDP2, and data sharing.

Under `torchrun --nproc_per_node N script.py` every process (rank) runs the whole script:
- each rank owns a vLLM engine (a group of `tensor_parallel_size` ranks shares one, through
  vLLM's `external_launcher` backend) and generates for its share of the prompts; the
  results are gathered so that every rank holds the whole batch, in order. Everything that
  follows (grading, sampling, advantages) is then computed identically on every rank, from
  the same seeds, so the ranks never disagree about which questions to train on;
- the trainable models are sharded with FSDP2 (`fully_shard`, one unit per decoder layer);
  forward passes over the batch are split by rows across ranks, and gradients are summed
  across ranks (each loss is already normalised over the whole minibatch, not this rank's share);
- rank 0 alone writes logs and checkpoints; checkpoints hold full (unsharded) tensors, so
  they load with any number of ranks.
Run as a plain `python script.py`, every function here is the identity (or a no-op).
"""

import atexit
import os
import time
from datetime import timedelta

import torch
import torch.distributed as dist
from torch.distributed.checkpoint.state_dict import (
    StateDictOptions,
    get_model_state_dict,
    get_optimizer_state_dict,
    set_optimizer_state_dict,
)
from torch.distributed.fsdp import fully_shard
from torch.distributed.tensor import DTensor


def init_distributed() -> torch.device:
    """Join torchrun's process group when launched by torchrun; returns this rank's device."""
    cuda = torch.cuda.is_available()
    if "RANK" not in os.environ:  # a plain `python script.py`
        return torch.device("cuda" if cuda else "cpu")
    local_rank = int(os.environ["LOCAL_RANK"])
    device = torch.device("cuda", local_rank) if cuda else torch.device("cpu")
    if cuda:
        torch.cuda.set_device(device)
    dist.init_process_group("nccl" if cuda else "gloo", timeout=timedelta(minutes=30))
    atexit.register(leave_process_group)  # at exit, after everything else
    return device


def torchrun() -> bool:
    """Whether this process is one of torchrun's ranks, in its process group (vLLM may start a group of its own in a
    plain run: torchrun's RANK tells them apart)."""
    return "RANK" in os.environ and dist.is_initialized()


def leave_process_group() -> None:
    """Tear the process group down while the interpreter still runs, then let go of the GIL for a moment. A gloo
    worker thread frees each collective's tensors after the collective has returned, and must take the GIL to do so;
    if the interpreter is finalising by then, the thread exits mid-destructor and the process aborts ("terminate
    called without an active exception", exit -6). Without the pause: 3 runs in 12 of tests/distributed/one_update.py
    aborted so; with it, none in 40."""
    if dist.is_initialized():
        dist.destroy_process_group()
    time.sleep(0.1)  # releases the GIL: a worker waiting for it finishes freeing before the interpreter finalises


def rank() -> int:
    """This process's rank: 0 without torchrun."""
    return dist.get_rank() if torchrun() else 0


def engine_seed(seed: int, tensor_parallel_size: int) -> int:
    """vLLM's sampling seed: different per engine (else all engines draw the same samples),
    the same within a tensor-parallel group (whose ranks must generate identically)."""
    return seed + (dist.get_rank() // tensor_parallel_size if torchrun() else 0)


def engine_share(items: list, tensor_parallel_size: int) -> list:
    """The items this rank's vLLM engine generates for: every engine takes every k-th item."""
    if not torchrun():
        return items
    engines = dist.get_world_size() // tensor_parallel_size
    return items[dist.get_rank() // tensor_parallel_size :: engines]


def gather_shares(share: list, tensor_parallel_size: int) -> list:
    """The inverse of `engine_share`: every rank gets all engines' results, in the original order."""
    if not torchrun():
        return share
    shares = [None] * dist.get_world_size()
    dist.all_gather_object(shares, share)
    shares = shares[::tensor_parallel_size]  # the ranks of a tensor-parallel group hold the same results
    merged = [None] * sum(map(len, shares))
    for i, s in enumerate(shares):
        merged[i :: len(shares)] = s
    return merged


def rank_rows(rows: torch.Tensor) -> torch.Tensor:
    """This rank's share of a batch's (or a minibatch's) row indices, for forward passes."""
    return rows[dist.get_rank() :: dist.get_world_size()] if torchrun() else rows


def gather_rows(values: torch.Tensor, rows: torch.Tensor, n: int) -> torch.Tensor:
    """Put this rank's `values` (for `rows`) into an n-row tensor that every rank receives whole."""
    if not torchrun():
        return values
    full = values.new_zeros((n, *values.shape[1:]))
    full[rows.to(values.device)] = values
    dist.all_reduce(full)  # every row is non-zero on exactly one rank
    return full


def shard_model(model: torch.nn.Module, device: torch.device) -> torch.nn.Module:
    """FSDP2 under torchrun (each decoder layer a unit, then the rest), else just `.to(device)`."""
    if not torchrun():
        return model.to(device)
    layer_classes = set(getattr(model, "_no_split_modules", None) or [])  # transformers names its decoder layers here
    for module in model.modules():
        if type(module).__name__ in layer_classes:
            fully_shard(module)
    fully_shard(model)
    for module in model.modules():
        # sum, not average: each loss is already normalised over the whole minibatch
        if hasattr(module, "set_gradient_divide_factor"):
            module.set_gradient_divide_factor(1.0)
            module.set_force_sum_reduction_for_comms(True)  # a plain SUM (gloo has no pre-multiplied sum)
    return model


def full_tensors(model: torch.nn.Module):
    """(name, full tensor) for each entry of the state dict, gathered one at a time from the
    shards under FSDP. Every rank must iterate it to the end, in step (each gather is collective)."""
    for name, tensor in model.state_dict().items():
        yield name, tensor.full_tensor() if isinstance(tensor, DTensor) else tensor


def model_state(model: torch.nn.Module) -> dict:
    """The full state dict on the CPU (collective under FSDP; the result is complete on rank 0)."""
    return get_model_state_dict(model, options=StateDictOptions(full_state_dict=True, cpu_offload=True))


def optimizer_state(model: torch.nn.Module, optimizer: torch.optim.Optimizer) -> dict:
    """The optimiser's full state keyed by parameter names, so that it loads with any world size."""
    return get_optimizer_state_dict(model, optimizer, options=StateDictOptions(full_state_dict=True, cpu_offload=True))


def load_optimizer_state(model: torch.nn.Module, optimizer: torch.optim.Optimizer, state: dict) -> None:
    """Load `optimizer_state`'s result (saved with any world size) into this rank's optimiser. The learning rate
    stays the one the optimiser was built with (this run's flag: a resumed run may lower it after a divergence)."""
    learning_rates = [group["lr"] for group in optimizer.param_groups]
    set_optimizer_state_dict(model, optimizer, state, options=StateDictOptions(full_state_dict=torchrun()))
    for group, learning_rate in zip(optimizer.param_groups, learning_rates):
        group["lr"] = learning_rate


def every_rank(value) -> list:
    """[rank 0's value, rank 1's, ...] on every rank (a collective under torchrun); [value] without torchrun."""
    if not torchrun():
        return [value]
    values = [None] * dist.get_world_size()
    dist.all_gather_object(values, value)
    return values


def any_rank(flag: bool) -> bool:
    """Whether `flag` holds on any rank: every rank gets the same answer (a collective under torchrun)."""
    if not torchrun():
        return flag
    device = torch.device("cuda", torch.cuda.current_device()) if torch.cuda.is_available() else torch.device("cpu")
    flag_tensor = torch.tensor(float(flag), device=device)
    dist.all_reduce(flag_tensor, op=dist.ReduceOp.MAX)
    return bool(flag_tensor.item())
