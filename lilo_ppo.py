"""PPO for maths reasoning with a language model: a learned value network and GAE.

With learnability sampling (LILO; Foster & Foerster, "Learning to Reason at the Frontier of
Learnability"): each iteration generates for `oversample` times the questions it trains on,
then keeps those with the highest learnability p(1 - p), p the share of a question's
completions that are right, and trains on those same completions.

The classic baseline of the VinePPO and LILO papers. Each iteration samples questions,
generates completions with vLLM, rewards correct final answers, estimates per-token
advantages with a value network (a copy of the policy with a scalar head) and GAE, and
takes clipped PPO steps on the policy and value network. Run it with `--help`.
"""

import os
import random
import sys
import time
from dataclasses import dataclass

import numpy as np
import torch
import tyro
from transformers import AutoModelForCausalLM, AutoModelForTokenClassification, AutoTokenizer

from common.args import check_args
from common.checkpoint import load_checkpoint, save_checkpoint, weights_path
from common.console import print0
from common.data import draw_questions, load_questions
from common.distributed import init_distributed, rank_rows
from common.evaluation import evaluate
from common.grading import score
from common.guards import catch_stop_signals, check_finite, stop_requested
from common.logprobs import batched_no_grad, masked_mean, pad_batch, response_logprobs, response_outputs, tis_weights
from common.model import load_model, resolve_model
from common.schedule import set_learning_rates
from common.tracking import add_to_totals, count_tokens, end_run, log_iteration, mean_stats, rollout_metrics, start_run
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
    """chat: the chat template asking for a boxed answer; vineppo: the format of the papers' SFT models"""
    num_iterations: int = 20
    """number of iterations (rollout + update) to train for"""
    questions_per_iteration: int = 4
    """questions sampled per iteration (VinePPO paper: 64)"""
    completions_per_question: int = 4
    """completions generated per question (VinePPO paper: 8)"""
    oversample: int = 4
    """LILO: generate for this many times the questions trained on, keep the most learnable (paper: 4)"""
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
    """peak policy learning rate (VinePPO paper: 1e-6)"""
    value_learning_rate: float = 1e-4
    """peak value network learning rate (VinePPO paper: 1e-6, as the policy; why higher here: docs/running.md)"""
    warmup_ratio: float = 0.03
    """share of the optimiser steps spent warming the learning rates up, log-shaped (papers: 0.03)"""
    lr_decay: bool = True
    """decay the learning rates linearly to 0 after the warm-up (papers: on)"""
    update_epochs: int = 1
    """passes over the iteration's completions per update (VinePPO paper: 2)"""
    minibatch_size: int = 8
    """completions per optimiser step (VinePPO paper: 64)"""
    micro_batch_size: int = 8
    """completions per forward/backward pass; gradients are accumulated up to the minibatch"""
    share_prompts: bool = True
    """pass each prompt through the model once per micro-batch, its keys and values shared by its completions"""
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
    eval_interval: int = 10
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


def rollout(llm, examples: list[dict], n: int, args: Args):
    """`n` sampled completions for each example's prompt, with the engine's log-prob of each token."""
    prompts = [e["prompt"] for e in examples]
    return generate(llm, prompts, n, args.temperature, args.top_p, args.max_new_tokens, logprobs=True)


def select_learnable(scores: torch.Tensor, k: int) -> list[int]:
    """Indices of the `k` questions (rows of 0/1 `scores`) with the highest learnability p(1 - p), p the
    row's mean: 0 for a question whose completions all agree, which gives a group baseline (GRPO's) no signal and
    the other algorithms little (LILO's premise). Ties are broken at random."""
    p = scores.mean(1).numpy()
    return np.lexsort((np.random.random(len(p)), -p * (1 - p)))[:k].tolist()


def response_values(value_net, batch: dict, rows: torch.Tensor):
    """The value network's estimate of the state before each response token of the batch's `rows`."""
    return response_outputs(value_net, batch, rows, causal_lm=False)[..., 0].float()


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


def whiten(advantages, mask, rows):
    """`advantages` with a minibatch's `rows` shifted and scaled to zero mean and unit variance over those rows' tokens
    (`mask`), as the papers' code does before each optimiser step (`masked_whiten`: the unbiased variance, 1e-8
    inside the square root); the other rows as they are."""
    minibatch, minibatch_mask = advantages[rows], mask[rows]
    mean, n = masked_mean(minibatch, minibatch_mask), minibatch_mask.sum()
    var = masked_mean((minibatch - mean) ** 2, minibatch_mask) * n / (n - 1).clamp(min=1)
    whitened = advantages.clone()
    whitened[rows] = (minibatch - mean) * torch.rsqrt(var + 1e-8) * minibatch_mask
    return whitened


def kl_penalty(logp, ref_logp, mask):
    """Each sequence's KL penalty to the reference policy, as the papers' code adds it to the loss: the k3 estimator
    exp(ref - logp) - (ref - logp) - 1 on each token, clamped to [0, 10] and summed over the sequence's tokens. On
    tokens sampled from the policy its mean is KL(policy || reference), never negative; its expected gradient is that
    of KL(reference || policy), the other direction (Tang & Munos 2025): both vanish at the reference and agree near
    it (docs/algorithms.md). The log-ratio is zeroed at padding before the exponent, as the papers' code zeroes the
    log-probs there: a padded log-prob below about -88 would overflow fp32 to inf, and inf x 0 is NaN."""
    log_ratio = (ref_logp - logp) * mask
    return (log_ratio.exp() - log_ratio - 1).clamp(0, 10).sum(1)


def ppo_losses(logp, old_logp, ref_logp, advantages, tis_weight, mask, n_sequences: int, n_tokens, args: Args):
    """PPO's policy losses on a micro-batch (a row per completion, part of a minibatch of `n_sequences` sequences and
    `n_tokens` response tokens), from the new log-probs `logp`:
    - the clipped policy loss, each token's weighted by its TIS weight (common/logprobs.py), summed over the tokens
      and divided by `n_tokens`, so that accumulated micro-batches average the minibatch's tokens exactly;
    - the KL penalty, kl_coef x each sequence's `kl_penalty`, averaged over the minibatch's sequences."""
    ratio = torch.exp(logp - old_logp)
    pg_loss = torch.max(-advantages * ratio, -advantages * ratio.clamp(1 - args.clip_coef, 1 + args.clip_coef))
    pg_loss = (pg_loss * tis_weight * mask).sum() / n_tokens
    kl_seq = kl_penalty(logp, ref_logp, mask)
    kl_loss = args.kl_coef * kl_seq.sum() / n_sequences
    stats = {  # the micro-batch's own means
        "policy_loss": pg_loss.item() * n_tokens.item() / mask.sum().item(),
        "kl_penalty": kl_seq.mean().item(),
        "clipfrac": masked_mean(((ratio - 1).abs() > args.clip_coef).float(), mask).item(),
        "approx_kl": masked_mean((ratio - 1) - (logp - old_logp), mask).item(),
    }
    return pg_loss, kl_loss, stats


def value_loss(values, old_values, returns, mask, n_tokens, args: Args):
    """The value network's loss on a micro-batch: half the larger of the squared errors of the new values and of the
    new values clipped to --value-clip-coef around the old ones, summed over the tokens and divided by `n_tokens`
    (the minibatch's); with its mean over the micro-batch's own tokens, logged."""
    clip = args.value_clip_coef
    values_clipped = old_values + (values - old_values).clamp(-clip, clip)
    v_loss = 0.5 * torch.max((values - returns) ** 2, (values_clipped - returns) ** 2)
    v_loss = (v_loss * mask).sum() / n_tokens
    return v_loss, {"value_loss": v_loss.item() * n_tokens.item() / mask.sum().item()}


if __name__ == "__main__":
    args = tyro.cli(Args)
    check_args(
        args,
        (args.value_learning_rate <= 0, "--value-learning-rate must be positive"),
        (args.value_clip_coef <= 0, "--value-clip-coef must be positive"),
        (not 0 <= args.gamma <= 1 or not 0 <= args.gae_lambda <= 1, "--gamma and --gae-lambda must be in [0, 1]"),
        (args.oversample < 1, "--oversample must be at least 1"),
    )
    device = init_distributed()  # under torchrun: this rank's device
    random.seed(args.seed)
    np.random.seed(args.seed)
    torch.manual_seed(args.seed)  # the same on every rank: the value head, for one, starts alike
    # bf16: autocast over the fp32 weights, beside an engine in bf16; why fp32 is the default: docs/precision.md
    autocast = torch.autocast(device.type, dtype=torch.bfloat16, enabled=args.precision == "bf16")

    # data: every prompt tokenised once; a mistyped --model or --dataset stops here, before a run folder is made
    model_path = resolve_model(args.model)
    tokenizer = AutoTokenizer.from_pretrained(model_path)
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    train, test = load_questions(args, tokenizer)
    run_dir, writer = start_run(args)  # runs/<run name>: tensorboard events, args.json, checkpoint/

    # models: the policy, the value network (a copy of the initial policy with a scalar head), the frozen reference
    # policy for the KL penalty (a resumed run loads the first two from its checkpoint), and the vLLM engine
    policy = load_model(AutoModelForCausalLM, weights_path(args, "policy", model_path), device)
    value_path = weights_path(args, "value", model_path)
    value_net = load_model(AutoModelForTokenClassification, value_path, device, num_labels=1)
    ref_policy = load_model(AutoModelForCausalLM, model_path, device, frozen=True)
    policy.config.pad_token_id = value_net.config.pad_token_id = pad_id
    # no weight decay (papers; AdamW's default would be 0.01)
    policy_optimizer = torch.optim.AdamW(policy.parameters(), lr=args.learning_rate, eps=1e-8, weight_decay=0)
    value_optimizer = torch.optim.AdamW(value_net.parameters(), lr=args.value_learning_rate, eps=1e-8, weight_decay=0)
    models = {"policy": (policy, policy_optimizer), "value": (value_net, value_optimizer)}
    # the learning rates follow one schedule over all the run's optimiser steps (common/schedule.py)
    batch_size = args.questions_per_iteration * args.completions_per_question
    steps_per_iteration = args.update_epochs * batch_size // args.minibatch_size
    total_steps = args.num_iterations * steps_per_iteration
    max_model_len = args.max_prompt_tokens + args.max_new_tokens
    llm = start_engine(model_path, args.seed, max_model_len, args.vllm_gpu_memory_utilization, args.precision,
                       tensor_parallel_size=args.vllm_tensor_parallel_size)  # fmt: skip
    # the engine reseeded the global generators: the trainer's draws restart from the run's seed, alike on every rank
    random.seed(args.seed)
    np.random.seed(args.seed)
    minibatch_generator = torch.Generator().manual_seed(args.seed)
    # where the run stands (iteration, data order and position, totals of what it generated and trained on):
    # --resume restores it, with the optimisers and every generator (common/checkpoint.py)
    run_state = {"iteration": 0, "data_order": np.random.permutation(len(train)), "data_position": 0, "totals": {}}
    if args.resume:
        run_state = load_checkpoint(args, models, minibatch_generator)
        sync_weights(llm, policy)
    # greedy accuracy on the test questions, and on the training split's first (most of which a short run never draws)
    eval_subsets = {"test": test, "train_split": train[: args.eval_size]}
    evaluations = []  # (iteration, accuracy of each subset) of this process's evaluations
    if args.eval_interval and run_state["iteration"] == 0:
        evaluations.append((0, evaluate(llm, eval_subsets, args.max_new_tokens, writer, 0)))

    stop_signals = catch_stop_signals()  # from now on SIGTERM and SIGINT stop the run after the iteration under way
    stop = None
    for iteration in range(run_state["iteration"] + 1, args.num_iterations + 1):
        t_start = time.perf_counter()

        # 1. sample a pool of `oversample` x the questions: uniformly, without replacement within a pass
        questions = [train[i] for i in draw_questions(args.questions_per_iteration * args.oversample, run_state)]

        # 2. rollout: n completions per question from the current policy (each engine does its share)
        completions = rollout(llm, questions, args.completions_per_question, args)
        t_generated = time.perf_counter()
        tokens_per_second = count_tokens(completions) / (t_generated - t_start)  # the engine's speed
        run_state["totals"] = add_to_totals(run_state["totals"], "generated", completions)

        # 3. reward: 1 for a correct final answer, else 0 (minus --unparseable-penalty where none can be found)
        scores, unparseable = map(torch.tensor, score(questions, completions))

        # learnability sampling: train on the pool's most learnable questions, with the completions already made
        pool_scores, keep = scores, select_learnable(scores, args.questions_per_iteration)
        questions, completions = [questions[i] for i in keep], [completions[i] for i in keep]
        scores, unparseable = scores[keep], unparseable[keep]
        rewards_seq = (scores - args.unparseable_penalty * unparseable).flatten()
        prompts = [q["prompt"] for q in questions for _ in range(args.completions_per_question)]
        responses = [c.token_ids for cs in completions for c in cs]
        batch = pad_batch(prompts, responses, pad_id, device, args.share_prompts)
        mask = batch["mask"]

        # log-probs of the sampling (old) policy and the reference policy, and the old values, once per iteration
        with autocast:
            old_logp, _, sampling_logp = batched_no_grad(
                response_logprobs, policy, batch, args.micro_batch_size, args.temperature, args.top_p
            )
            ref_logp = batched_no_grad(response_logprobs, ref_policy, batch, args.micro_batch_size, args.temperature)[0]
            old_values = batched_no_grad(response_values, value_net, batch, args.micro_batch_size)
        old_logp, ref_logp, old_values = old_logp * mask, ref_logp * mask, old_values * mask
        check_finite(iteration, old_log_probs=old_logp, reference_log_probs=ref_logp, values=old_values)
        # the engine's kernels differ from the trainer's, so it samples from a policy slightly off the old one: the
        # gap is logged and each token's policy loss weighted by truncated importance sampling (common/logprobs.py)
        tis_weight, gap_metrics = tis_weights(completions, sampling_logp, mask, args.tis_cap)
        rewards = torch.zeros_like(mask)  # no KL in the reward: in the papers' code it is a term of the loss
        rewards[torch.arange(len(responses)), mask.sum(1).long() - 1] = rewards_seq.to(device)  # on the last token
        t_logprobs = time.perf_counter()

        # 4. credit assignment: GAE on the value network's per-token estimates
        advantages, returns = compute_gae(rewards.cpu(), old_values.cpu(), mask.cpu(), args.gamma, args.gae_lambda)
        advantages, returns = advantages.to(device), returns.to(device)

        # 5. policy and value update: clipped PPO over a few epochs of minibatches
        stats, optimizer_step = [], (iteration - 1) * steps_per_iteration
        for _epoch in range(args.update_epochs):
            for minibatch in torch.randperm(len(responses), generator=minibatch_generator).split(args.minibatch_size):
                policy_optimizer.zero_grad()
                value_optimizer.zero_grad()
                # whitened over this minibatch's tokens before each step (papers)
                update_advantages = whiten(advantages, mask, minibatch) if args.whiten_advantages else advantages
                n_tokens, minibatch_loss = mask[minibatch].sum(), 0.0
                for mb in rank_rows(minibatch).split(args.micro_batch_size):  # each rank its share; gradients summed
                    with autocast:
                        logp, entropy, _ = response_logprobs(policy, batch, mb, args.temperature)
                        values = response_values(value_net, batch, mb)
                    pg_loss, kl_loss, policy_stats = ppo_losses(
                        logp, old_logp[mb], ref_logp[mb], update_advantages[mb], tis_weight[mb], mask[mb],
                        len(minibatch), n_tokens, args,
                    )  # fmt: skip
                    v_loss, value_stats = value_loss(values, old_values[mb], returns[mb], mask[mb], n_tokens, args)
                    loss = pg_loss + kl_loss + v_loss
                    loss.backward()
                    minibatch_loss += loss.detach()
                    stats.append(policy_stats | value_stats | {"entropy": masked_mean(entropy, mask[mb]).item()})
                grad_norm = torch.nn.utils.clip_grad_norm_(policy.parameters(), args.max_grad_norm)
                value_grad_norm = torch.nn.utils.clip_grad_norm_(value_net.parameters(), args.max_grad_norm)
                check_finite(
                    iteration, loss=minibatch_loss, gradient_norm=grad_norm, value_gradient_norm=value_grad_norm
                )
                # this step's learning rates, from its index in the run: a resumed run continues the schedule exactly
                peaks = {policy_optimizer: args.learning_rate, value_optimizer: args.value_learning_rate}
                set_learning_rates(peaks, optimizer_step, total_steps, args.warmup_ratio, args.lr_decay)
                optimizer_step += 1
                policy_optimizer.step()
                value_optimizer.step()
        t_updated = time.perf_counter()

        # 6. sync: the engine generates with the updated weights from now on
        sync_seconds = sync_weights(llm, policy)
        t_end = time.perf_counter()

        # 7. evaluate: greedy accuracy on the fixed subsets, every --eval-interval iterations and at the last
        if args.eval_interval and (iteration % args.eval_interval == 0 or iteration == args.num_iterations):
            evaluations.append((iteration, evaluate(llm, eval_subsets, args.max_new_tokens, writer, iteration)))

        # 8. log: every scalar to tensorboard, one line to stdout
        returns_flat, values_flat = returns[mask.bool()], old_values[mask.bool()]
        explained_var = 1 - (returns_flat - values_flat).var() / returns_flat.var().clamp(min=1e-8)
        kl = old_logp - ref_logp  # per-token estimate of KL(policy || reference), logged (the loss has its own)
        run_state["totals"] = add_to_totals(run_state["totals"], "trained", completions)
        metrics = rollout_metrics(scores, unparseable, completions, mask, kl, advantages) | gap_metrics
        metrics |= mean_stats(stats) | {f"charts/cumulative_{name}": n for name, n in run_state["totals"].items()}
        metrics |= {
            "charts/pool_all_correct_share": (pool_scores.mean(1) == 1).float().mean().item(),
            "charts/pool_all_wrong_share": (pool_scores.mean(1) == 0).float().mean().item(),
            "charts/pool_learnability": (pool_scores.mean(1) * (1 - pool_scores.mean(1))).mean().item(),
            "charts/batch_learnability": (scores.mean(1) * (1 - scores.mean(1))).mean().item(),
            "charts/completions_generated": pool_scores.numel(),
            "charts/completions_trained": scores.numel(),
            "losses/explained_variance": explained_var.item(),
            "charts/learning_rate": policy_optimizer.param_groups[0]["lr"],
            "charts/tokens_per_second": tokens_per_second,
            "time/generation": t_generated - t_start,
            "time/logprobs": t_logprobs - t_generated,
            "time/update": t_updated - t_logprobs,
            "time/update_tokens_per_second": args.update_epochs * batch["input_ids"].numel() / (t_updated - t_logprobs),
            "time/sync": sync_seconds,
            "time/iteration": t_end - t_start,
        }
        log_iteration(writer, iteration, args.num_iterations, metrics)

        # 9. checkpoint: every --save-interval iterations, at the end, and when a signal asked the run to stop
        run_state["iteration"] = iteration
        stop = stop_requested(stop_signals)  # on any rank
        if stop or iteration == args.num_iterations or (args.save_interval and iteration % args.save_interval == 0):
            save_checkpoint(run_dir, models, tokenizer, minibatch_generator, run_state, args)
        if stop:
            print0(f"stopped by {stop.name} after iteration {iteration}: continue with --resume {run_dir}")
            break
    end_run(writer, run_dir, evaluations)
    if stop:  # the shell's exit code for the signal
        sys.exit(128 + stop)
