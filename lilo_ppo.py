"""PPO for maths reasoning with a language model: a learned value network and GAE.

With learnability sampling (LILO; Foster & Foerster, "Learning to Reason at the Frontier of
Learnability"): each iteration generates for `oversample` times the questions it trains on,
then keeps those with the highest learnability p(1 - p), p the share of a question's
completions that are right, and trains on those same completions.

The classic baseline of the VinePPO and LILO papers. Each iteration samples questions,
generates completions with vLLM, rewards correct final answers, estimates per-token
advantages with a value network (a copy of the policy with a scalar head) and GAE, and
takes clipped PPO steps on the policy and value network. Run `python ppo.py --help`.
"""

import json
import math
import os
import random
import shutil
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
import tyro
from torch.utils.tensorboard import SummaryWriter
from transformers import AutoModelForCausalLM, AutoModelForTokenClassification, AutoTokenizer

from common.data import build_prompt, load_split
from common.distributed import (
    engine_share,
    every_rank,
    gather_rows,
    gather_shares,
    init_distributed,
    load_optimizer_state,
    model_state,
    optimizer_state,
    rank_rows,
    shard_model,
)
from common.grading import extract_answer, grade
from common.guards import catch_stop_signals, check_finite, stop_requested
from common.model import resolve_model
from common.vllm_utils import generate, start_engine, sync_weights


@dataclass
class Args:
    exp_name: str = os.path.basename(__file__)[: -len(".py")]
    """the name of this experiment (the first part of the run name)"""
    seed: int = 1
    """seed of python, numpy, torch and vLLM"""
    model: str | None = None
    """Hugging Face model id or local folder; unset: the embedded SmolLM2-135M-Instruct"""
    dataset: str = "arithmetic"
    """arithmetic (built in), gsm8k, math, orz57k, or a local .jsonl/.json/.parquet/.csv file"""
    prompt_format: str = "chat"
    """chat: the chat template asking for a boxed answer; vineppo: the papers' SFT models' own format"""
    num_iterations: int = 20
    """number of iterations (rollout + update) to train for"""
    questions_per_iteration: int = 4
    """questions sampled per iteration (VinePPO paper: 64)"""
    completions_per_question: int = 4
    """completions generated per question (VinePPO paper: 8)"""
    oversample: int = 4
    """LILO: generate for this many times the questions trained on, keep the most learnable (paper: 4)"""
    buffered: bool = False
    """LILO's buffered variant instead: train on a mix of a buffer of learnable questions and fresh ones"""
    buffer_interval: int = 10
    """buffered: refill the buffer every T iterations (authors' code: 50)"""
    buffer_candidates: int = 32
    """buffered: N candidate questions scored at each refill (authors' code: 1280)"""
    buffer_completions: int = 4
    """buffered: L completions per candidate to estimate its success rate"""
    buffer_size: int = 8
    """buffered: K most learnable candidates kept in the buffer (authors' code: 256)"""
    buffer_share: float = 0.5
    """buffered: share rho of each iteration's questions taken from the buffer (authors' code: 0.5)"""
    max_new_tokens: int = 64
    """maximum tokens per completion (papers: 1024)"""
    max_prompt_tokens: int = 512
    """training and test questions whose prompt is longer are left out"""
    temperature: float = 0.7
    """sampling temperature of the training rollouts (VinePPO paper: 0.6)"""
    top_p: float = 1.0
    """nucleus sampling threshold of the training rollouts (VinePPO paper: 0.9)"""
    unparseable_penalty: float = 0.0
    """reward subtracted when no final answer can be extracted (off by default)"""
    learning_rate: float = 2e-6
    """peak policy learning rate (VinePPO paper: 1e-6; at 1e-5 the default model's KL reached 4 nats in 3 iterations)"""
    value_learning_rate: float = 1e-4
    """peak value network learning rate (VinePPO paper: 1e-6 as the policy; higher here: 20 iterations, new head)"""
    warmup_ratio: float = 0.03
    """share of the optimiser steps spent warming the learning rates up, log-shaped as in the papers' code (0.03)"""
    lr_decay: bool = True
    """decay the learning rates linearly to 0 at the end after the warm-up (papers' code: on)"""
    update_epochs: int = 1
    """passes over the iteration's completions per update (VinePPO paper: 2)"""
    minibatch_size: int = 8
    """completions per optimiser step (VinePPO paper: 64)"""
    micro_batch_size: int = 8
    """completions per forward/backward pass; gradients are accumulated up to the minibatch"""
    clip_coef: float = 0.2
    """PPO clipping range of the probability ratio"""
    value_clip_coef: float = 0.2
    """clipping range of the value update around the old values"""
    kl_coef: float = 1e-4
    """coefficient of the KL penalty to the initial policy, a term of the loss (VinePPO paper: 1e-4)"""
    whiten_advantages: bool = True
    """normalise the advantages of each minibatch to zero mean and unit variance over its tokens (papers: on)"""
    gamma: float = 1.0
    """discount factor (papers: 1)"""
    gae_lambda: float = 1.0
    """GAE lambda (VinePPO paper's PPO: 1)"""
    max_grad_norm: float = 1.0
    """gradient-norm clipping threshold"""
    precision: str = "fp32"
    """fp32: trainer and engine in fp32; bf16: bf16 autocast over fp32 weights beside a bf16 engine (papers: bf16)"""
    tis_cap: float = 2.0
    """truncated importance sampling: weight each token's policy loss by min(trainer / engine prob., this); 0: off"""
    eval_interval: int = 5
    """evaluate every this many iterations (and at the start and the end); 0 disables"""
    eval_size: int = 100
    """questions in each fixed evaluation subset: test questions, and training questions (greedy decoding)"""
    save_interval: int = 10
    """checkpoint every this many iterations (and at the end); 0: only at the end"""
    output_dir: str = "runs"
    """folder that holds one sub-folder per run (tensorboard events, checkpoint)"""
    resume: str | None = None
    """a run folder (runs/<run name>) to continue from its last checkpoint"""
    vllm_gpu_memory_utilization: float = 0.3
    """share of the GPU memory vLLM may take (the rest is left to training)"""
    vllm_tensor_parallel_size: int = 1
    """GPUs per vLLM engine under torchrun (one engine per group of this many; the engines share out the prompts)"""
    track: bool = False
    """log to Weights and Biases too"""
    wandb_project_name: str = "llm-math-rl"
    """the wandb project name"""


def check_args(args: Args) -> None:
    """One clear message for settings that cannot work, before anything is loaded."""
    batch = args.questions_per_iteration * args.completions_per_question
    world_size = int(os.environ.get("WORLD_SIZE", 1))  # processes started by torchrun
    problems = [
        (args.num_iterations < 1, "--num-iterations must be at least 1"),
        (min(args.oversample, args.buffer_interval, args.buffer_candidates) < 1, "--oversample and --buffer-* >= 1"),
        (min(args.buffer_completions, args.buffer_size) < 1, "--buffer-completions and --buffer-size must be >= 1"),
        (not 0 <= args.buffer_share <= 1, "--buffer-share must be in [0, 1]"),
        (
            args.questions_per_iteration < 1 or args.completions_per_question < 1,
            "--questions-per-iteration and --completions-per-question must be at least 1",
        ),
        (args.max_new_tokens < 1, "--max-new-tokens must be at least 1"),
        (args.temperature <= 0 or not 0 < args.top_p <= 1, "--temperature must be > 0 and --top-p in (0, 1]"),
        (min(args.learning_rate, args.value_learning_rate) <= 0, "learning rates must be positive"),
        (args.prompt_format not in ("chat", "vineppo"), "--prompt-format must be chat or vineppo"),
        (args.precision not in ("bf16", "fp32") or args.tis_cap < 0, "--precision bf16 or fp32; --tis-cap >= 0"),
        (not 0 <= args.warmup_ratio < 1, "--warmup-ratio must be in [0, 1)"),
        (args.update_epochs < 1, "--update-epochs must be at least 1"),
        (
            args.micro_batch_size < 1 or args.minibatch_size % args.micro_batch_size,
            "--minibatch-size must be a multiple of --micro-batch-size",
        ),
        (
            batch % args.minibatch_size,
            f"questions x completions ({batch}) must be a multiple of --minibatch-size ({args.minibatch_size})",
        ),
        (
            args.minibatch_size % world_size,
            f"--minibatch-size must be a multiple of the number of processes ({world_size})",
        ),
        (
            args.vllm_tensor_parallel_size < 1 or world_size % args.vllm_tensor_parallel_size,
            f"the number of processes ({world_size}) must be a multiple of --vllm-tensor-parallel-size",
        ),
        (args.clip_coef <= 0 or args.value_clip_coef <= 0, "clip ranges must be positive"),
        (
            args.kl_coef < 0 or not 0 <= args.gamma <= 1 or not 0 <= args.gae_lambda <= 1,
            "--kl-coef must be >= 0, --gamma and --gae-lambda in [0, 1]",
        ),
        (min(args.eval_interval, args.eval_size, args.save_interval) < 0, "intervals and sizes must be >= 0"),
        (
            args.resume is not None and not (Path(args.resume) / "checkpoint" / "state.pt").exists(),
            f"--resume {args.resume}: no checkpoint/state.pt in that folder",
        ),
    ]
    for failed, message in problems:
        if failed:
            raise SystemExit(f"error: {message}")


def draw_questions(n: int, data_order: np.ndarray, data_position: int):
    """The next `n` question indices in a random order of the dataset that is reshuffled after
    each pass (so no repeats within a pass). Returns them and the new (order, position)."""
    drawn = []
    while len(drawn) < n:
        if data_position == len(data_order):
            data_order, data_position = np.random.permutation(len(data_order)), 0
        taken = data_order[data_position : data_position + n - len(drawn)].tolist()
        drawn, data_position = drawn + taken, data_position + len(taken)
    return drawn, data_order, data_position


def select_learnable(scores: torch.Tensor, k: int) -> list[int]:
    """Indices of the `k` questions (rows of 0/1 `scores`) with the highest learnability p(1 - p), p the
    row's mean: questions always or never solved teach nothing. Ties are broken at random."""
    p = scores.mean(1).numpy()
    return np.lexsort((np.random.random(len(p)), -p * (1 - p)))[:k].tolist()


def rollout(llm, examples: list[dict], n: int, args: Args):
    """`n` sampled completions for each example's prompt (under torchrun each engine does its share)."""
    prompts = engine_share([e["prompt"] for e in examples])
    return gather_shares(generate(llm, prompts, n, args.temperature, args.top_p, args.max_new_tokens, logprobs=True))


def score(examples: list[dict], completions) -> torch.Tensor:
    """1 for each completion whose final answer is right, else 0, one row per example. A completion cut off at
    --max-new-tokens scores 0 whatever it holds, as in the papers' code (an unfinished answer is not an answer)."""
    scores = [
        [float(not c.truncated and grade(c.text, e["answer"])) for c in cs] for e, cs in zip(examples, completions)
    ]
    return torch.tensor(scores)


def pad_batch(prompts: list[list[int]], responses: list[list[int]], pad_id: int):
    """Left-pad prompts and right-pad responses so that every response starts in the same
    column: then a response's logits are one slice of the batch, `[:, width - 1 : -1]`."""
    width, length = max(map(len, prompts)), max(map(len, responses))
    input_ids = torch.full((len(prompts), width + length), pad_id, dtype=torch.long)
    attention_mask = torch.zeros_like(input_ids)
    for i, (p, r) in enumerate(zip(prompts, responses)):
        input_ids[i, width - len(p) : width + len(r)] = torch.tensor(p + r)
        attention_mask[i, width - len(p) : width + len(r)] = 1
    response_mask = attention_mask[:, width:].float()
    return input_ids, attention_mask, response_mask, width


def response_logprobs(policy, input_ids, attention_mask, width, temperature, top_p=1.0):
    """Log-probability and entropy of each response token under `policy`, sampling at `temperature`; and its
    log-probability under the engine's sampling rule: at `temperature`, then renormalised over the top-p nucleus."""
    position_ids = (attention_mask.cumsum(-1) - 1).clamp(min=0)  # positions ignore left padding
    length = input_ids.shape[1] - width
    # logits only where they predict response tokens: the prompt's would cost a vocabulary-wide matmul each
    logits = policy(
        input_ids=input_ids, attention_mask=attention_mask, position_ids=position_ids, logits_to_keep=length + 1
    ).logits
    logp_all = torch.log_softmax(logits[:, :-1].float() / temperature, dim=-1)
    logp = logp_all.gather(-1, input_ids[:, width:, None]).squeeze(-1)
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


def response_values(value_net, input_ids, attention_mask, width):
    """The value network's estimate of the state before each response token."""
    position_ids = (attention_mask.cumsum(-1) - 1).clamp(min=0)
    values = value_net(input_ids=input_ids, attention_mask=attention_mask, position_ids=position_ids).logits
    return values[:, width - 1 : -1, 0].float()


@torch.no_grad()
def batched(fn, micro_batch_size, *tensors):
    """`fn` over micro-batches without gradients, results concatenated along the batch
    (under torchrun each rank computes its share of the rows and every rank gets them all)."""
    rows = rank_rows(torch.arange(len(tensors[0])))
    outs = [fn(*(t[micro_batch] for t in tensors)) for micro_batch in rows.split(micro_batch_size)]
    if isinstance(outs[0], tuple):  # several outputs: each concatenated
        return tuple(gather_rows(torch.cat(out), rows, len(tensors[0])) for out in zip(*outs))
    return gather_rows(torch.cat(outs), rows, len(tensors[0]))


def compute_gae(rewards, values, mask, gamma, lam):
    """Generalised advantage estimation over response tokens. `values[:, t]` is V of the state
    before token t; the state after the last token is terminal (value 0)."""
    next_mask = torch.cat([mask[:, 1:], torch.zeros_like(mask[:, :1])], 1)
    next_values = torch.cat([values[:, 1:], torch.zeros_like(values[:, :1])], 1) * next_mask
    advantages, last = torch.zeros_like(rewards), torch.zeros_like(rewards[:, 0])
    for t in reversed(range(rewards.shape[1])):
        delta = rewards[:, t] + gamma * next_values[:, t] - values[:, t]
        last = delta + gamma * lam * next_mask[:, t] * last
        advantages[:, t] = last * mask[:, t]
    return advantages, (advantages + values) * mask


def masked_mean(x, mask):
    return (x * mask).sum() / mask.sum().clamp(min=1)


def whiten(advantages, mask):
    """Advantages shifted and scaled to zero mean and unit variance over the tokens in `mask`, as the papers' code
    does for each minibatch (`masked_whiten`: the unbiased variance, 1e-8 inside the square root)."""
    mean, n = masked_mean(advantages, mask), mask.sum()
    var = masked_mean((advantages - mean) ** 2, mask) * n / (n - 1).clamp(min=1)
    return (advantages - mean) * torch.rsqrt(var + 1e-8) * mask


def kl_penalty(logp, ref_logp, mask):
    """Each sequence's KL penalty to the reference policy, as the papers' code adds it to the loss: the k3 estimator
    exp(ref - logp) - (ref - logp) - 1 of KL(policy || reference) on each token (never negative, and its gradient is
    that of the KL), clamped to [0, 10] and summed over the sequence's tokens."""
    log_ratio = ref_logp - logp
    return ((log_ratio.exp() - log_ratio - 1) * mask).clamp(0, 10).sum(1)


def tis_weights(log_ratio, cap):
    """Truncated importance sampling (Yao et al. 2025, "Your Efficient RL Framework Secretly Brings You Off-Policy RL
    Training"; verl's and TRL's correction): the engine samples with its own kernels, so from a policy slightly off
    the trainer's old one. Each token's policy loss is weighted by min(pi_old / pi_engine, cap), `log_ratio` being
    log pi_old - log pi_engine of the sampled token; cap 0: no correction."""
    return log_ratio.exp().clamp(max=cap) if cap > 0 else torch.ones_like(log_ratio)


def lr_scale(step: int, total_steps: int, warmup_ratio: float, decay: bool) -> float:
    """Learning rate of optimiser step `step` (0-based) over the peak, as the papers' code schedules it (DeepSpeed's
    WarmupDecayLR): log-shaped warm-up over W = max(2, ceil(warmup_ratio x total_steps)) steps, then linear decay
    to 0 at the end. DeepSpeed advances the schedule after each step, so its first step runs at the peak and its
    second at 0: kept, so that every step gets the reference's rate. decay=False holds the peak after warm-up."""
    if step == 0:
        return 1.0
    step -= 1  # DeepSpeed's last_batch_iteration
    warmup = max(2, math.ceil(warmup_ratio * total_steps)) if warmup_ratio > 0 else 0
    if step < warmup:
        return math.log(step + 1) / math.log(warmup)
    return max(0.0, (total_steps - step) / max(1, total_steps - warmup)) if decay else 1.0


def ppo_losses(
    logp, old_logp, advantages, values, old_values, returns, mask, clip, value_clip, n_tokens, tis_weight=1.0
):
    """Clipped policy and value losses, summed over the tokens in `mask` and divided by `n_tokens` (the minibatch's
    token count, so accumulated micro-batches average exactly); each token's policy loss weighted by `tis_weight`."""
    ratio = torch.exp(logp - old_logp)
    pg_loss = torch.max(-advantages * ratio, -advantages * ratio.clamp(1 - clip, 1 + clip)) * tis_weight
    values_clipped = old_values + (values - old_values).clamp(-value_clip, value_clip)
    v_loss = 0.5 * torch.max((values - returns) ** 2, (values_clipped - returns) ** 2)
    stats = {
        "clipfrac": masked_mean(((ratio - 1).abs() > clip).float(), mask).item(),
        "approx_kl": masked_mean((ratio - 1) - (logp - old_logp), mask).item(),
    }
    return (pg_loss * mask).sum() / n_tokens, (v_loss * mask).sum() / n_tokens, stats


def evaluate(llm, subsets, max_new_tokens, writer, iteration):
    """Greedy accuracy on each fixed subset of questions, logged as charts/<subset>_accuracy; each question's
    completion and grade go to eval/<subset>_<iteration>.jsonl in the run folder (for paired comparisons)."""
    for name, examples in subsets.items():
        prompts = engine_share([e["prompt"] for e in examples])
        completions = gather_shares(generate(llm, prompts, n=1, temperature=0.0, top_p=1.0, max_tokens=max_new_tokens))
        correct = [grade(c[0].text, e["answer"]) for c, e in zip(completions, examples)]
        accuracy = float(np.mean(correct))
        if writer:
            writer.add_scalar(f"charts/{name}_accuracy", accuracy, iteration)
            rows = [
                {"question": e["question"], "answer": e["answer"], "completion": c[0].text, "correct": right}
                for e, c, right in zip(examples, completions, correct)
            ]
            (Path(writer.log_dir) / "eval").mkdir(exist_ok=True)
            with open(Path(writer.log_dir) / "eval" / f"{name}_{iteration}.jsonl", "w") as f:
                f.writelines(json.dumps(row) + "\n" for row in rows)
        print(f"iter {iteration} {name}_accuracy={accuracy:.3f}")
    llm.reset_prefix_cache()  # leave the engine as a resumed run finds it, for an exact resume


def save_checkpoint(run_dir, policy, value_net, tokenizer, state):
    """Models with save_pretrained, the rest (optimisers, RNG, data position) in state.pt;
    written next to the old checkpoint, then swapped in, so a kill never leaves half of one.
    Under torchrun every rank gathers the full weights and rank 0 writes them."""
    policy_weights, value_weights = model_state(policy), model_state(value_net)
    check_finite(state["iteration"], policy_weights=policy_weights, value_weights=value_weights)
    if not run_dir:
        return
    tmp, final = run_dir / "checkpoint.tmp", run_dir / "checkpoint"
    policy.save_pretrained(tmp / "policy", state_dict=policy_weights)
    tokenizer.save_pretrained(tmp / "policy")
    value_net.save_pretrained(tmp / "value", state_dict=value_weights)
    torch.save(state, tmp / "state.pt")
    if final.exists():
        final.rename(run_dir / "checkpoint.old")
    tmp.rename(final)
    if (run_dir / "checkpoint.old").exists():
        shutil.rmtree(run_dir / "checkpoint.old")


if __name__ == "__main__":
    args = tyro.cli(Args)
    check_args(args)
    # this process's rank, the number of processes and its device: (0, 1, cuda or cpu) without torchrun
    rank, world_size, device = init_distributed(args.vllm_tensor_parallel_size)
    run_name = f"{args.exp_name}__{Path(args.dataset).stem}__{args.seed}__{int(time.time())}"
    run_dir = Path(args.resume) if args.resume else Path(args.output_dir) / run_name
    run_name = run_dir.name

    # seeding
    random.seed(args.seed)
    np.random.seed(args.seed)
    torch.manual_seed(args.seed)  # the same on every rank: the value head, for one, starts alike
    # bf16: forward and backward passes compute in bf16 over the fp32 weights (and fp32 optimiser state), as the
    # engine, which holds the same weights rounded to bf16, generates; on a CPU with AMX as on a GPU. Not the default:
    # the weights start on bf16's grid, and a step smaller than half a bf16 step leaves the bf16 policy unchanged, so
    # a short run at a small learning rate barely moves it (the CPU default's 40 steps at 2e-6: README, Precision)
    autocast = torch.autocast(device.type, dtype=torch.bfloat16, enabled=args.precision == "bf16")

    # data: every prompt tokenised once
    model_path = resolve_model(args.model)
    tokenizer = AutoTokenizer.from_pretrained(model_path)
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    train, test = load_split(args.dataset, "train", args.seed), load_split(args.dataset, "test", args.seed)
    for split in (train, test):
        for example in split:
            example["prompt"] = build_prompt(tokenizer, example["question"], args.dataset, args.prompt_format)
    train = [e for e in train if len(e["prompt"]) <= args.max_prompt_tokens]
    test = [e for e in test if len(e["prompt"]) <= args.max_prompt_tokens][: args.eval_size]
    if not train:
        raise SystemExit(f"error: no training question fits in --max-prompt-tokens {args.max_prompt_tokens}")
    print(f"{run_name}: {len(train)} training questions, {len(test)} test questions, model {model_path}")

    # logging starts once the model and dataset are found: a mistyped --model or --dataset leaves no empty run
    if args.track and rank == 0:
        import wandb

        wandb.init(project=args.wandb_project_name, config=vars(args), name=run_name, sync_tensorboard=True)
    writer = SummaryWriter(str(run_dir)) if rank == 0 else None  # rank 0 alone logs and saves
    if rank == 0:
        table = "\n".join(f"|{key}|{value}|" for key, value in vars(args).items())
        writer.add_text("hyperparameters", f"|param|value|\n|-|-|\n{table}")

    # models: the policy, the value network (a copy of the initial policy with a scalar head),
    # the frozen reference policy for the KL penalty, and the vLLM engine that generates
    start = Path(args.resume) / "checkpoint" if args.resume else None
    policy = shard_model(
        AutoModelForCausalLM.from_pretrained(start / "policy" if start else model_path, dtype=torch.float32), device
    )
    value_path = start / "value" if start else model_path
    value_net = AutoModelForTokenClassification.from_pretrained(value_path, num_labels=1, dtype=torch.float32)
    value_net = shard_model(value_net, device)
    ref_policy = AutoModelForCausalLM.from_pretrained(model_path, dtype=torch.float32).eval().requires_grad_(False)
    ref_policy = shard_model(ref_policy, device)
    policy.config.pad_token_id = value_net.config.pad_token_id = pad_id
    # no weight decay, as in the papers' code (AdamW's default would be 0.01)
    policy_optimizer = torch.optim.AdamW(policy.parameters(), lr=args.learning_rate, eps=1e-8, weight_decay=0)
    value_optimizer = torch.optim.AdamW(value_net.parameters(), lr=args.value_learning_rate, eps=1e-8, weight_decay=0)
    # the learning rates follow one schedule over all the run's optimiser steps (lr_scale)
    steps_per_iteration = args.update_epochs * args.questions_per_iteration * args.completions_per_question
    steps_per_iteration //= args.minibatch_size
    total_steps = args.num_iterations * steps_per_iteration
    max_model_len = args.max_prompt_tokens + args.max_new_tokens
    llm = start_engine(model_path, args.seed, max_model_len, args.vllm_gpu_memory_utilization, args.precision)
    # the engine seeded python's, numpy's and torch's generators with its own seed (seed + engine index under
    # torchrun), and samples from torch's: the trainer's own draws (questions, minibatches) start again from the
    # run's seed, the same on every rank, and the minibatch order has a generator of its own
    random.seed(args.seed)
    np.random.seed(args.seed)
    minibatch_generator = torch.Generator().manual_seed(args.seed)
    data_order, data_position, first_iteration = np.random.permutation(len(train)), 0, 1
    buffer = []
    if start:
        # mapped: N ranks share one copy in memory
        state = torch.load(start / "state.pt", weights_only=False, mmap=True)
        load_optimizer_state(policy, policy_optimizer, state["policy_optimizer"])
        load_optimizer_state(value_net, value_optimizer, state["value_optimizer"])
        random.setstate(state["python_rng"])
        np.random.set_state(state["numpy_rng"])
        torch.set_rng_state(state["torch_rng"][rank % len(state["torch_rng"])])  # each engine's sampling
        minibatch_generator.set_state(state["minibatch_rng"])
        data_order, data_position, first_iteration = state["data_order"], state["data_position"], state["iteration"]
        first_iteration += 1
        buffer = state["buffer"]
        sync_weights(llm, policy)
        print(f"resumed from {start} at iteration {first_iteration}")
    # train_subset: training questions under the same greedy evaluation, the fitting measure that does
    # not depend on which (easy or hard) questions an iteration happened to sample
    eval_subsets = {"test": test, "train_subset": train[: args.eval_size]}
    if first_iteration == 1:
        if rank == 0:
            (run_dir / "args.json").write_text(json.dumps(asdict(args), indent=2))
    else:
        saved = state["args"]
        changed = [k for k, v in asdict(args).items() if k not in ("resume", "num_iterations") and saved.get(k) != v]
        if changed:
            print(f"warning: resuming with Args that differ from the run's: {', '.join(changed)}")
    if args.eval_interval and test and first_iteration == 1:
        evaluate(llm, eval_subsets, args.max_new_tokens, writer, 0)

    # from here on SIGTERM and SIGINT stop the run after the current iteration, with a checkpoint
    catch_stop_signals()
    stop = None
    for iteration in range(first_iteration, args.num_iterations + 1):
        t_start = time.perf_counter()

        # 1. sample questions: uniformly, without replacement within a pass over the dataset
        generated = 0  # completions generated: a pool of `oversample` x the questions, selected after the reward
        if args.buffered and (iteration - 1) % args.buffer_interval == 0:  # refill: the most learnable candidates
            drawn, data_order, data_position = draw_questions(args.buffer_candidates, data_order, data_position)
            candidates = [train[i] for i in drawn]
            candidate_scores = score(candidates, rollout(llm, candidates, args.buffer_completions, args))
            buffer = [drawn[i] for i in select_learnable(candidate_scores, args.buffer_size)]
            generated = candidate_scores.numel()
        from_buffer = random.sample(buffer, min(len(buffer), round(args.buffer_share * args.questions_per_iteration)))
        pool_size = args.questions_per_iteration * (1 if args.buffered else args.oversample) - len(from_buffer)
        drawn, data_order, data_position = draw_questions(pool_size, data_order, data_position)
        questions = [train[i] for i in from_buffer + drawn]

        # 2. rollout: n completions per question from the current policy (each engine does its share)
        completions = rollout(llm, questions, args.completions_per_question, args)
        t_generated = time.perf_counter()

        # 3. reward: 1 for a correct final answer, else 0
        scores = score(questions, completions)
        unparseable = torch.tensor([[extract_answer(c.text) is None for c in cs] for cs in completions]).float()

        # learnability sampling: train on the pool's most learnable questions, with the completions already made
        pool_p, generated = scores.mean(1), generated + scores.numel()
        keep = select_learnable(scores, args.questions_per_iteration)
        questions, completions = [questions[i] for i in keep], [completions[i] for i in keep]
        scores, unparseable = scores[keep], unparseable[keep]
        rewards_seq = (scores - args.unparseable_penalty * unparseable).flatten()
        prompts = [q["prompt"] for q in questions for _ in range(args.completions_per_question)]
        responses = [c.token_ids for cs in completions for c in cs]
        input_ids, attention_mask, mask, width = pad_batch(prompts, responses, pad_id)
        input_ids, attention_mask, mask = input_ids.to(device), attention_mask.to(device), mask.to(device)
        lengths = mask.sum(1).long()

        # log-probs of the sampling (old) policy and the reference policy, once per iteration
        with autocast:
            old_logp, _, old_sampling_logp = batched(
                lambda i, a: response_logprobs(policy, i, a, width, args.temperature, args.top_p),
                args.micro_batch_size,
                input_ids,
                attention_mask,
            )
            ref_logp = batched(
                lambda i, a: response_logprobs(ref_policy, i, a, width, args.temperature)[0],
                args.micro_batch_size,
                input_ids,
                attention_mask,
            )
            old_values = batched(
                lambda i, a: response_values(value_net, i, a, width), args.micro_batch_size, input_ids, attention_mask
            )
        old_logp, ref_logp, old_values = old_logp * mask, ref_logp * mask, old_values * mask
        check_finite(iteration, old_log_probs=old_logp, reference_log_probs=ref_logp, values=old_values)
        # the engine's log-probs of its own samples: its kernels differ from the trainer's (in bf16 the gap is
        # measurable), so it samples from a policy slightly off the old one; the gap is logged and corrected (TIS)
        engine_logp = torch.zeros_like(mask)
        for row, c in enumerate(c for cs in completions for c in cs):
            engine_logp[row, : len(c.logprobs)] = torch.tensor(c.logprobs)
        engine_log_ratio = (old_sampling_logp - engine_logp) * mask  # log pi_old - log pi_engine, sampled tokens
        tis_weight = tis_weights(engine_log_ratio, args.tis_cap)
        kl = old_logp - ref_logp  # per-token estimate of KL(policy || reference), logged (the loss has its own)
        rewards = torch.zeros_like(mask)  # no KL in the reward: as in the papers' code, it is a term of the loss
        rewards[torch.arange(len(lengths)), lengths - 1] = rewards_seq.to(device)  # the answer's reward: last token
        t_logprobs = time.perf_counter()

        # 4. credit assignment: GAE on the value network's per-token estimates
        advantages, returns = compute_gae(rewards.cpu(), old_values.cpu(), mask.cpu(), args.gamma, args.gae_lambda)
        advantages, returns = advantages.to(device), returns.to(device)

        # 5. policy and value update: clipped PPO over a few epochs of minibatches
        stats = {k: [] for k in ("pg_loss", "kl_penalty", "v_loss", "entropy", "clipfrac", "approx_kl")}
        optimizer_step = (iteration - 1) * steps_per_iteration
        for _epoch in range(args.update_epochs):
            for minibatch in torch.randperm(len(responses), generator=minibatch_generator).split(args.minibatch_size):
                policy_optimizer.zero_grad()
                value_optimizer.zero_grad()
                n_tokens, minibatch_loss = mask[minibatch].sum(), 0.0
                # advantages whitened over this minibatch's tokens, as the papers' code does before each step
                minibatch_advantages = advantages.clone()
                if args.whiten_advantages:
                    minibatch_advantages[minibatch] = whiten(advantages[minibatch], mask[minibatch])
                # each rank its share of the minibatch; gradients are summed
                for mb in rank_rows(minibatch).split(args.micro_batch_size):
                    with autocast:
                        logp, entropy, _ = response_logprobs(
                            policy, input_ids[mb], attention_mask[mb], width, args.temperature
                        )
                        values = response_values(value_net, input_ids[mb], attention_mask[mb], width)
                    pg_loss, v_loss, s = ppo_losses(
                        logp,
                        old_logp[mb],
                        minibatch_advantages[mb],
                        values,
                        old_values[mb],
                        returns[mb],
                        mask[mb],
                        args.clip_coef,
                        args.value_clip_coef,
                        n_tokens,
                        tis_weight[mb],
                    )
                    # the KL penalty: summed over each sequence's tokens, averaged over the minibatch's sequences
                    kl_seq = kl_penalty(logp, ref_logp[mb], mask[mb])
                    kl_loss = args.kl_coef * kl_seq.sum() / len(minibatch)
                    (pg_loss + kl_loss + v_loss).backward()
                    minibatch_loss += (pg_loss + kl_loss + v_loss).detach()
                    stats["pg_loss"].append(pg_loss.item() * n_tokens.item() / mask[mb].sum().item())
                    stats["v_loss"].append(v_loss.item() * n_tokens.item() / mask[mb].sum().item())
                    stats["kl_penalty"].append(kl_seq.mean().item())
                    stats["entropy"].append(masked_mean(entropy.detach(), mask[mb]).item())
                    stats["clipfrac"].append(s["clipfrac"])
                    stats["approx_kl"].append(s["approx_kl"])
                grad_norm = torch.nn.utils.clip_grad_norm_(policy.parameters(), args.max_grad_norm)
                value_grad_norm = torch.nn.utils.clip_grad_norm_(value_net.parameters(), args.max_grad_norm)
                check_finite(
                    iteration, loss=minibatch_loss, gradient_norm=grad_norm, value_gradient_norm=value_grad_norm
                )
                # this step's learning rates, from its index in the run: a resumed run continues the schedule exactly
                scale = lr_scale(optimizer_step, total_steps, args.warmup_ratio, args.lr_decay)
                optimizer_step += 1
                policy_optimizer.param_groups[0]["lr"] = args.learning_rate * scale
                value_optimizer.param_groups[0]["lr"] = args.value_learning_rate * scale
                policy_optimizer.step()
                value_optimizer.step()
        t_updated = time.perf_counter()

        # 6. sync: the engine generates with the updated weights from now on
        sync_seconds = sync_weights(llm, policy)
        t_end = time.perf_counter()

        # 7. evaluate: greedy accuracy on the fixed test and training subsets
        if args.eval_interval and test and (iteration % args.eval_interval == 0 or iteration == args.num_iterations):
            evaluate(llm, eval_subsets, args.max_new_tokens, writer, iteration)

        # 8. logging
        returns_flat, values_flat = returns[mask.bool()], old_values[mask.bool()]
        explained_var = 1 - (returns_flat - values_flat).var() / returns_flat.var().clamp(min=1e-8)
        metrics = {
            "charts/train_accuracy": scores.mean().item(),
            "charts/all_correct_share": (scores.min(1).values == 1).float().mean().item(),
            "charts/all_wrong_share": (scores.max(1).values == 0).float().mean().item(),
            "charts/unparseable_share": unparseable.mean().item(),
            "charts/response_length": lengths.float().mean().item(),
            "charts/truncated_share": float(np.mean([c.truncated for cs in completions for c in cs])),
            "charts/kl": (kl.sum(1)).mean().item(),
            "charts/advantage_mean": masked_mean(advantages, mask).item(),
            "charts/advantage_std": masked_mean((advantages - masked_mean(advantages, mask)) ** 2, mask).sqrt().item(),
            "charts/tokens_per_second": lengths.sum().item() / (t_generated - t_start),
            "charts/pool_all_correct_share": (pool_p == 1).float().mean().item(),
            "charts/pool_all_wrong_share": (pool_p == 0).float().mean().item(),
            "charts/pool_learnability": (pool_p * (1 - pool_p)).mean().item(),
            "charts/batch_learnability": (scores.mean(1) * (1 - scores.mean(1))).mean().item(),
            "charts/completions_generated": generated,
            "charts/completions_trained": scores.numel(),
            "charts/questions_from_buffer": len(from_buffer),
            "charts/engine_logprob_gap": masked_mean(engine_log_ratio.abs(), mask).item(),
            "charts/engine_kl": masked_mean(engine_log_ratio.exp() - engine_log_ratio - 1, mask).item(),
            "charts/tis_clipped_share": masked_mean((engine_log_ratio.exp() > args.tis_cap).float(), mask).item()
            if args.tis_cap
            else 0.0,
            "losses/policy_loss": np.mean(stats["pg_loss"]),
            "losses/value_loss": np.mean(stats["v_loss"]),
            "losses/entropy": np.mean(stats["entropy"]),
            "losses/clipfrac": np.mean(stats["clipfrac"]),
            "losses/approx_kl": np.mean(stats["approx_kl"]),
            "losses/kl_penalty": np.mean(stats["kl_penalty"]),
            "charts/learning_rate": policy_optimizer.param_groups[0]["lr"],
            "losses/explained_variance": explained_var.item(),
            "time/generation": t_generated - t_start,
            "time/logprobs": t_logprobs - t_generated,
            "time/update": t_updated - t_logprobs,
            "time/update_tokens_per_second": args.update_epochs * input_ids.numel() / (t_updated - t_logprobs),
            "time/sync": sync_seconds,
            "time/iteration": t_end - t_start,
        }
        for name, value in metrics.items():
            if rank == 0:
                writer.add_scalar(name, value, iteration)
        m = metrics
        print(
            f"iter {iteration}/{args.num_iterations} train_acc={m['charts/train_accuracy']:.3f} "
            f"all_right={m['charts/all_correct_share']:.2f} all_wrong={m['charts/all_wrong_share']:.2f} "
            f"pool_right/wrong={m['charts/pool_all_correct_share']:.2f}/{m['charts/pool_all_wrong_share']:.2f} "
            f"kl={m['charts/kl']:.4f} entropy={m['losses/entropy']:.3f} clipfrac={m['losses/clipfrac']:.3f} "
            f"v_loss={m['losses/value_loss']:.4f} len={m['charts/response_length']:.0f} "
            f"time gen/logp/update/sync={m['time/generation']:.0f}/{m['time/logprobs']:.0f}/"
            f"{m['time/update']:.0f}/{sync_seconds:.1f}s tok/s={m['charts/tokens_per_second']:.0f}",
            flush=True,
        )

        # 9. checkpoint: every --save-interval iterations, at the end, and when a signal asks the run to stop
        stop = stop_requested()
        if stop or iteration == args.num_iterations or (args.save_interval and iteration % args.save_interval == 0):
            save_checkpoint(
                run_dir if rank == 0 else None,
                policy,
                value_net,
                tokenizer,
                {
                    "iteration": iteration,
                    "args": asdict(args),
                    "policy_optimizer": optimizer_state(policy, policy_optimizer),
                    "value_optimizer": optimizer_state(value_net, value_optimizer),
                    "python_rng": random.getstate(),
                    "numpy_rng": np.random.get_state(),
                    "torch_rng": every_rank(torch.get_rng_state()),
                    "minibatch_rng": minibatch_generator.get_state(),
                    "data_order": data_order,
                    "data_position": data_position,
                    "buffer": buffer,
                },
            )
        if stop:
            print(f"stopped by {stop.name} after iteration {iteration}: continue with --resume {run_dir}", flush=True)
            break
    if rank == 0:
        writer.close()
    if stop:
        sys.exit(128 + stop)  # the shell's code for a process ended by that signal
