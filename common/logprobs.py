"""The trainer's side of every completion: its tokens in a padded batch, their log-probabilities under a model, and
how far those are from the log-probabilities of the engine that sampled them.

- `pad_batch`: prompts left-padded, responses right-padded, so that every response starts in the same column.
- `response_logprobs`: each response token's log-prob at the sampling temperature (what PPO's ratio divides by),
  its entropy, and its log-prob under the engine's sampling rule (temperature, then top-p), for the gap.
- `batched`: any such pass over the whole batch in micro-batches without gradients (under torchrun each rank takes
  its share of the rows and every rank gets them all).
- `engine_gap`: truncated importance-sampling weights and the gap's scalars, from the engine's own log-probs.
"""

import torch

from common.distributed import gather_rows, rank_rows


def masked_mean(x, mask):
    return (x * mask).sum() / mask.sum().clamp(min=1)


def pad_batch(prompts: list[list[int]], responses: list[list[int]], pad_id: int, device="cpu") -> dict:
    """Left-pad prompts and right-pad responses so that every response starts in the same column `width`: then a
    response's logits are one slice of the batch, `[:, width - 1 : -1]`. `mask` marks the response tokens."""
    width, length = max(map(len, prompts)), max(map(len, responses))
    input_ids = torch.full((len(prompts), width + length), pad_id, dtype=torch.long)
    attention_mask = torch.zeros_like(input_ids)
    for i, (p, r) in enumerate(zip(prompts, responses)):
        input_ids[i, width - len(p) : width + len(r)] = torch.tensor(p + r)
        attention_mask[i, width - len(p) : width + len(r)] = 1
    mask = attention_mask[:, width:].float()
    return {"input_ids": input_ids.to(device), "attention_mask": attention_mask.to(device), "mask": mask.to(device),
            "width": width}  # fmt: skip


def model_inputs(batch: dict, rows: torch.Tensor) -> dict:
    """The `rows` of the batch as a model's keyword arguments; positions ignore the left padding."""
    input_ids, attention_mask = batch["input_ids"][rows], batch["attention_mask"][rows]
    position_ids = (attention_mask.cumsum(-1) - 1).clamp(min=0)
    return {"input_ids": input_ids, "attention_mask": attention_mask, "position_ids": position_ids}


def response_logprobs(model, batch: dict, rows: torch.Tensor, temperature: float, top_p: float = 1.0):
    """Log-probability and entropy of each response token of the batch's `rows` under `model`, sampling at
    `temperature`; and its log-probability under the engine's sampling rule: at `temperature`, then renormalised over
    the top-p nucleus."""
    inputs, width = model_inputs(batch, rows), batch["width"]
    length = inputs["input_ids"].shape[1] - width
    # logits only where they predict response tokens: the prompt's would cost a vocabulary-wide matmul each
    logits = model(**inputs, logits_to_keep=length + 1).logits
    logp_all = torch.log_softmax(logits[:, :-1].float() / temperature, dim=-1)
    logp = logp_all.gather(-1, inputs["input_ids"][:, width:, None]).squeeze(-1)
    with torch.no_grad():  # diagnostics only: no graph through the whole vocabulary
        entropy = -(logp_all.exp() * logp_all).sum(-1)
        sampling_logp = logp - nucleus_log_mass(logp_all, top_p) if top_p < 1 else logp.detach()
    return logp, entropy, sampling_logp


def nucleus_log_mass(logp_all, top_p):
    """Log of the probability mass that top-p sampling keeps at each position, as vLLM cuts the nucleus: the least
    likely tokens are dropped while their cumulated mass stays <= 1 - top_p (the likeliest token always stays)."""
    cumulated = logp_all.exp().sort(-1).values.cumsum(-1)
    dropped = torch.where(cumulated <= 1 - top_p, cumulated, 0).amax(-1)
    return torch.log1p(-dropped.clamp(max=1 - 1e-6))


@torch.no_grad()
def batched(fn, model, batch: dict, micro_batch_size: int, *args):
    """`fn(model, batch, rows, *args)` over micro-batches of the batch's rows without gradients, the results
    concatenated along the rows (under torchrun each rank computes its share of the rows and every rank gets them
    all)."""
    n = len(batch["input_ids"])
    rows = rank_rows(torch.arange(n))
    outs = [fn(model, batch, micro_batch, *args) for micro_batch in rows.split(micro_batch_size)]
    if isinstance(outs[0], tuple):  # several outputs: each concatenated
        return tuple(gather_rows(torch.cat(out), rows, n) for out in zip(*outs))
    return gather_rows(torch.cat(outs), rows, n)


def engine_gap(completions, sampling_logp, mask, cap: float):
    """The engine samples with its own kernels, so from a policy slightly off the trainer's old one (in bf16 the gap
    is measurable). From the log-probs vLLM returned while sampling and the trainer's `sampling_logp` of the same
    tokens: truncated importance sampling weights min(pi_old / pi_engine, cap) for each token's policy loss (Yao
    et al. 2025, "Your Efficient RL Framework Secretly Brings You Off-Policy RL Training"; verl's and TRL's
    correction; cap 0: no correction), and the gap's scalars."""
    engine_logp = torch.zeros_like(mask)
    for row, c in enumerate(c for cs in completions for c in cs):
        engine_logp[row, : len(c.logprobs)] = torch.tensor(c.logprobs)
    log_ratio = (sampling_logp - engine_logp) * mask  # log pi_old - log pi_engine of each sampled token
    weights = tis_weights(log_ratio, cap)
    metrics = {
        "charts/engine_logprob_gap": masked_mean(log_ratio.abs(), mask).item(),
        "charts/engine_kl": masked_mean(log_ratio.exp() - log_ratio - 1, mask).item(),
        "charts/tis_clipped_share": masked_mean((log_ratio.exp() > cap).float(), mask).item() if cap else 0.0,
    }
    return weights, metrics


def tis_weights(log_ratio, cap):
    """min(exp(log_ratio), cap) for each token; cap 0: all 1."""
    return log_ratio.exp().clamp(max=cap) if cap > 0 else torch.ones_like(log_ratio)
