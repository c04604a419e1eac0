"""One PPO update of a tiny policy on a fixed batch, as ppo.py does it, with any number of ranks.

    python tests/distributed/one_update.py MODEL OUT_FILE                        (one process)
    torchrun --nproc_per_node 2 tests/distributed/one_update.py MODEL OUT_FILE   (FSDP2, 2 ranks)

The batch is built from a fixed seed, so it is the same in both runs; rank 0 saves the updated
weights. With the loss divided by the whole minibatch's token count and gradients summed across
ranks, the two runs must end with the same weights. SGD, not AdamW: Adam's step barely depends
on the gradient's scale, so it would hide a gradient that is off by the number of ranks.
"""

import sys
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))
from transformers import AutoModelForCausalLM  # noqa: E402

from common.distributed import init_distributed, model_state, rank, rank_rows, shard_model  # noqa: E402
from common.logprobs import pad_batch, response_logprobs  # noqa: E402
from ppo import Args, ppo_losses  # noqa: E402

if __name__ == "__main__":
    model_path, out_file = sys.argv[1], sys.argv[2]
    device = init_distributed()
    generator = torch.Generator().manual_seed(0)
    # 8 sequences: prompt and response lengths differ
    lengths = torch.randint(3, 12, (8, 2), generator=generator).tolist()
    prompts = [torch.randint(0, 1000, (p,), generator=generator).tolist() for p, _ in lengths]
    responses = [torch.randint(0, 1000, (r,), generator=generator).tolist() for _, r in lengths]
    batch = pad_batch(prompts, responses, pad_id=0)
    mask = batch["mask"]
    advantages = torch.randn(mask.shape, generator=generator) * mask
    policy = shard_model(AutoModelForCausalLM.from_pretrained(model_path, dtype=torch.float32), device)
    optimizer = torch.optim.SGD(policy.parameters(), lr=1.0)
    with torch.no_grad():
        old_logp = response_logprobs(policy, batch, torch.arange(len(responses)), 1.0)[0] * mask
    # the minibatch loop of ppo.py: the whole batch is one minibatch, micro-batches of 2 per rank
    minibatch = torch.randperm(len(responses), generator=generator)
    n_tokens = mask[minibatch].sum()
    for mb in rank_rows(minibatch).split(2):
        logp, _, _ = response_logprobs(policy, batch, mb, 1.0)
        pg_loss, _, _ = ppo_losses(
            logp, old_logp[mb] - 0.1, old_logp[mb], advantages[mb], mask[mb], mask[mb], len(minibatch), n_tokens, Args()
        )
        pg_loss.backward()
    optimizer.step()
    weights = model_state(policy)
    if rank() == 0:
        torch.save(weights, out_file)
