"""The trainer's side of every completion: its tokens in a padded batch, their log-probabilities under a model, and
how far those are from the log-probabilities of the engine that sampled them.

- `pad_batch`: prompts left-padded, responses right-padded, so that every response starts in the same column.
- `response_outputs`: a model's outputs at the positions that predict each response token: a language model's final
  hidden states (its output head is applied a chunk at a time, below), or a value network's head. With shared
  prompts (the default) each distinct prompt of a micro-batch goes through the model once and its keys and values
  serve all of its completions (as Prefix Grouper, "Efficient GRPO Training through Shared-Prefix
  Forward", 2025, does), in the no-grad passes and in the update's forward and backward alike; without, every row is
  the whole prompt and response (the plain path, the same numbers to within float rounding; a picture, and why they
  are the same: docs/running.md, "Shared prompts").
- `response_logprobs`: each response token's log-prob at the sampling temperature (what PPO's ratio divides by),
  its entropy, and its log-prob under the engine's sampling rule (temperature, then top-p), for the gap. The logits,
  [tokens, vocabulary] in fp32 (594 MiB for one row of 1024 tokens at Qwen2.5's 151,936), are never held whole:
  `ChunkedLogprobs` computes them a chunk of tokens at a time from the hidden states, in the forward and again in the
  backward, and keeps only what each token needs (docs/gpu.md, "Memory").
- `batched_no_grad`: any such pass over the whole batch in micro-batches without gradients (under torchrun each
  rank takes its share of the rows and every rank gets them all).
- `tis_weights`: truncated importance-sampling weights for the gap between the engine that sampled and the
  trainer, with the gap's scalars, from the engine's own log-probs.
"""

from contextlib import contextmanager, nullcontext

import torch
from transformers import DynamicCache

from common.console import phase
from common.distributed import gather_rows, rank_rows


def masked_mean(x, mask):
    return (x * mask).sum() / mask.sum().clamp(min=1)


def pad_batch(prompts: list[list[int]], responses: list[list[int]], pad_id: int, device="cpu", share_prompts=True):
    """Left-pad prompts and right-pad responses so that every response starts in the same column, the prompts' width:
    then a response's logits are one slice of the batch, `[:, width - 1 : -1]`. `mask` marks the response tokens.
    With `share_prompts` each distinct prompt is also kept once (`prompt_ids`, `prompt_mask`, and `row_prompt`, each
    row's prompt): the passes over the batch then compute each prompt once (`response_outputs`)."""
    width, length = max(map(len, prompts)), max(map(len, responses))
    input_ids = torch.full((len(prompts), width + length), pad_id, dtype=torch.long)
    attention_mask = torch.zeros_like(input_ids)
    for i, (p, r) in enumerate(zip(prompts, responses)):
        input_ids[i, width - len(p) : width + len(r)] = torch.tensor(p + r)
        attention_mask[i, width - len(p) : width + len(r)] = 1
    batch = {"input_ids": input_ids, "attention_mask": attention_mask, "mask": attention_mask[:, width:].float()}
    if share_prompts:
        distinct = {tuple(p): None for p in prompts}  # in order of first appearance
        index = {p: i for i, p in enumerate(distinct)}
        row_prompt = torch.tensor([index[tuple(p)] for p in prompts])
        first_row = [[index[tuple(p)] for p in prompts].index(i) for i in range(len(distinct))]
        batch |= {"prompt_ids": input_ids[first_row, :width], "prompt_mask": attention_mask[first_row, :width],
                  "row_prompt": row_prompt}  # fmt: skip
    return {k: v.to(device) for k, v in batch.items()}


def model_inputs(batch: dict, rows: torch.Tensor) -> dict:
    """The `rows` of the batch, prompt and response, as a model's keyword arguments; positions ignore the left
    padding."""
    input_ids, attention_mask = batch["input_ids"][rows], batch["attention_mask"][rows]
    position_ids = (attention_mask.cumsum(-1) - 1).clamp(min=0)
    return {"input_ids": input_ids, "attention_mask": attention_mask, "position_ids": position_ids}


@contextmanager
def output_head_removed(model):
    """`model` with its output head (`lm_head`) replaced by the identity while inside: its forward returns the final
    hidden states as `.logits`, and the head is given back (its weight untouched, the same parameter as before)."""
    head = model.get_output_embeddings()
    model.set_output_embeddings(torch.nn.Identity())
    try:
        yield
    finally:
        model.set_output_embeddings(head)


# configuration fields of models whose logits are not output_head(hidden): their softcapping or scaling would be
# applied to the hidden states (`response_logprobs` refuses them rather than compute something else)
LOGIT_TRANSFORMS = ("final_logit_softcapping", "logit_scale", "logits_scaling", "output_multiplier_scale")


def response_outputs(model, batch: dict, rows: torch.Tensor, causal_lm: bool = True):
    """`model`'s outputs at the positions that predict the response tokens of the batch's `rows` (the prompt's last
    position, then each response token's but the last): [rows, response length, hidden size or head size].
    `causal_lm`: the final hidden states of a language model, its output head left out (the model computes them only
    where asked, `logits_to_keep`); else a value network's scalar head, computed everywhere."""
    phase("updating" if torch.is_grad_enabled() else "log-probs")
    length = batch["mask"].shape[1]
    width = batch["input_ids"].shape[1] - length
    keep = {"logits_to_keep": length + 1} if causal_lm else {}
    with output_head_removed(model) if causal_lm else nullcontext():
        if "row_prompt" not in batch:  # every row whole: prompt and response (pad_batch without share_prompts)
            return model(**model_inputs(batch, rows), **keep).logits[:, -(length + 1) : -1]
        # each distinct prompt once: its keys and values go into a cache, then to each of its rows
        prompts, row_prompt = batch["row_prompt"][rows].unique(return_inverse=True)
        prompt_mask = batch["prompt_mask"][prompts]
        first = int(prompt_mask.any(0).float().argmax())  # the left padding that all these prompts share is left out
        prompt_ids, prompt_mask = batch["prompt_ids"][prompts, first:], prompt_mask[:, first:]
        cache = DynamicCache()
        position_ids = (prompt_mask.cumsum(-1) - 1).clamp(min=0)
        last = model(input_ids=prompt_ids, attention_mask=prompt_mask, position_ids=position_ids, past_key_values=cache,
                     use_cache=True, **({"logits_to_keep": 1} if causal_lm else {})).logits[:, -1:]  # fmt: skip
        cache.batch_select_indices(row_prompt)  # a differentiable gather: gradients flow back to the prompt's pass
        response_ids, response_mask = batch["input_ids"][rows, width:], batch["attention_mask"][rows, width:]
        position_ids = prompt_mask.sum(-1)[row_prompt, None] + torch.arange(length, device=response_ids.device)
        attention_mask = torch.cat([prompt_mask[row_prompt], response_mask], 1)
        outputs = model(input_ids=response_ids, attention_mask=attention_mask, position_ids=position_ids,
                        past_key_values=cache, use_cache=True).logits  # fmt: skip
        return torch.cat([last[row_prompt], outputs[:, :-1]], 1)


def response_logprobs(model, batch: dict, rows: torch.Tensor, temperature: float, top_p: float = 1.0):
    """Log-probability and entropy of each response token of the batch's `rows` under `model`, sampling at
    `temperature`; and its log-probability under the engine's sampling rule: at `temperature`, then renormalised over
    the top-p nucleus. The logits come from the final hidden states a chunk of tokens at a time (`ChunkedLogprobs`)."""
    if transforms := [name for name in LOGIT_TRANSFORMS if getattr(model.config, name, None) not in (None, 1, 1.0)]:
        raise SystemExit(f"error: the model's logits are not its output head's alone ({', '.join(transforms)}): the "
                         "chunked log-probs of common/logprobs.py do not support it")  # fmt: skip
    hidden = response_outputs(model, batch, rows)
    width = batch["input_ids"].shape[1] - batch["mask"].shape[1]  # where the responses start
    targets = batch["input_ids"][rows, width:]
    weight = model.get_output_embeddings().weight
    logp, entropy, sampling_logp = ChunkedLogprobs.apply(hidden, weight, targets, temperature, top_p)
    return logp, entropy, sampling_logp


def chunk_tokens(vocabulary: int) -> int:
    """Tokens per chunk of `ChunkedLogprobs`: 2**24 logits (64 MiB in fp32) a chunk, whatever the vocabulary."""
    return max(1, 2**24 // vocabulary)


class ChunkedLogprobs(torch.autograd.Function):
    """Each token's log-prob of `targets` under the logits `hidden @ weight.T / temperature`, with its entropy and its
    log-prob under top-p sampling, the logits made and reduced a chunk of tokens at a time: what a token keeps is
    three numbers, not a row of the vocabulary. The backward makes each chunk's logits again (their gradient is
    (one-hot - softmax) / temperature times the log-prob's) rather than keep them from the forward: the memory of the
    pass is a chunk's logits, not the micro-batch's, for one more product with the output head. Entropy and the top-p
    log-prob are diagnostics, without gradient. Under autocast the products are autocast's, as the head's own are."""

    @staticmethod
    def forward(ctx, hidden, weight, targets, temperature, top_p):
        shape, hidden, targets = targets.shape, hidden.reshape(-1, hidden.shape[-1]), targets.reshape(-1)
        logp, entropy, sampling_logp = (torch.empty(len(targets), device=hidden.device) for _ in range(3))
        size = chunk_tokens(len(weight))
        for start in range(0, len(targets), size):
            chunk = slice(start, start + size)
            logp_all = torch.log_softmax((hidden[chunk] @ weight.T).float() / temperature, dim=-1)
            logp[chunk] = logp_all.gather(-1, targets[chunk, None]).squeeze(-1)
            entropy[chunk] = -(logp_all.exp() * logp_all).sum(-1)
            sampling_logp[chunk] = logp[chunk] - nucleus_log_mass(logp_all, top_p) if top_p < 1 else logp[chunk]
        ctx.save_for_backward(hidden, weight, targets)
        ctx.temperature, ctx.shape = temperature, shape
        ctx.autocast = (hidden.device.type, torch.is_autocast_enabled(hidden.device.type),
                        torch.get_autocast_dtype(hidden.device.type))  # fmt: skip
        ctx.mark_non_differentiable(entropy, sampling_logp)
        return logp.view(shape), entropy.view(shape), sampling_logp.view(shape)

    @staticmethod
    def backward(ctx, grad_logp, _grad_entropy, _grad_sampling_logp):
        hidden, weight, targets = ctx.saved_tensors
        device_type, enabled, dtype = ctx.autocast
        grad_logp = grad_logp.reshape(-1) / ctx.temperature
        grad_hidden = torch.empty_like(hidden)
        grad_weight = torch.zeros_like(weight, dtype=torch.float32)
        size = chunk_tokens(len(weight))
        with torch.autocast(device_type, dtype=dtype, enabled=enabled):  # the forward's products, again
            for start in range(0, len(targets), size):
                chunk = slice(start, start + size)
                probs = torch.softmax((hidden[chunk] @ weight.T).float() / ctx.temperature, dim=-1)
                # d logp / d logits = (one-hot(target) - softmax) / temperature, times the incoming gradient
                grad_logits = probs.mul_(-grad_logp[chunk, None])
                grad_logits[torch.arange(len(grad_logits)), targets[chunk]] += grad_logp[chunk]
                grad_hidden[chunk] = grad_logits @ weight  # a slice's copy: autocast's bf16 cast to hidden's dtype
                grad_weight += grad_logits.T @ hidden[chunk]
        return grad_hidden.view(*ctx.shape, -1), grad_weight.to(weight.dtype), None, None, None


def nucleus_log_mass(logp_all, top_p):
    """Log of the probability mass that top-p sampling keeps at each position, as vLLM cuts the nucleus: the least
    likely tokens are dropped while their cumulated mass stays <= 1 - top_p (the likeliest token always stays)."""
    cumulated = logp_all.exp().sort(-1).values.cumsum(-1)
    dropped = torch.where(cumulated <= 1 - top_p, cumulated, 0).amax(-1)
    return torch.log1p(-dropped.clamp(max=1 - 1e-6))


@torch.no_grad()
def batched_no_grad(fn, model, batch: dict, micro_batch_size: int, *args):
    """`fn(model, batch, rows, *args)` over micro-batches of the batch's rows without gradients, the results
    concatenated along the rows (under torchrun each rank computes its share of the rows and every rank gets them
    all)."""
    n = len(batch["input_ids"])
    rows = rank_rows(torch.arange(n))
    outs = [fn(model, batch, micro_batch, *args) for micro_batch in rows.split(micro_batch_size)]
    if isinstance(outs[0], tuple):  # several outputs: each concatenated
        return tuple(gather_rows(torch.cat(out), rows, n) for out in zip(*outs))
    return gather_rows(torch.cat(outs), rows, n)


def tis_weights(completions, sampling_logp, mask, cap: float):
    """The engine samples with its own kernels, so from a policy slightly off the trainer's old one (in bf16 the gap
    is measurable). From the log-probs vLLM returned while sampling and the trainer's `sampling_logp` of the same
    tokens: truncated importance sampling weights min(pi_old / pi_engine, cap) for each token's policy loss (Yao
    et al. 2025, "Your Efficient RL Framework Secretly Brings You Off-Policy RL Training"; verl's and TRL's
    correction; cap 0: no correction), and the gap's scalars. Returns (weights, scalars)."""
    engine_logp = torch.zeros_like(mask)
    for row, c in enumerate(c for cs in completions for c in cs):
        engine_logp[row, : len(c.logprobs)] = torch.tensor(c.logprobs)
    log_ratio = (sampling_logp - engine_logp) * mask  # log pi_old - log pi_engine of each sampled token
    weights = log_ratio.exp().clamp(max=cap) if cap > 0 else torch.ones_like(log_ratio)
    metrics = {
        "charts/engine_logprob_gap": masked_mean(log_ratio.abs(), mask).item(),
        "charts/engine_kl": masked_mean(log_ratio.exp() - log_ratio - 1, mask).item(),
        "charts/tis_clipped_share": masked_mean((log_ratio.exp() > cap).float(), mask).item() if cap else 0.0,
    }
    return weights, metrics
