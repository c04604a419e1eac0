"""Sharing work between ranks: run with torchrun; exits non-zero if any check fails.

Prompts shared out to engines and gathered back come back whole and in order (also when the
ranks' shares differ in size, or one is empty); rows shared out for forward passes likewise.
"""

import sys
from pathlib import Path

import torch
import torch.distributed as dist

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
from common.distributed import engine_share, gather_rows, gather_shares, init_distributed, rank_rows  # noqa: E402

if __name__ == "__main__":
    init_distributed()
    rank, world_size = dist.get_rank(), dist.get_world_size()
    assert world_size == 2
    for n in (0, 1, 2, 7):
        items = [f"prompt {i}" for i in range(n)]
        share = engine_share(items, tensor_parallel_size=1)
        assert len(share) == (n + 1 - rank) // 2, (n, rank, share)
        assert gather_shares([s.upper() for s in share], tensor_parallel_size=1) == [s.upper() for s in items], n
    rows = rank_rows(torch.arange(8))
    assert rows.tolist() == list(range(rank, 8, 2))
    values = torch.stack([rows.float() * 10, rows.float()], 1)  # computed on this rank only
    assert gather_rows(values, rows, 8).tolist() == [[i * 10.0, float(i)] for i in range(8)]
    print(f"rank {rank}: ok")
