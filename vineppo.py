"""VinePPO for maths reasoning with a language model: Monte-Carlo values, no value network.

Kazemnejad et al., "VinePPO: Unlocking RL Potential For LLM Reasoning Through Refined Credit
Assignment". `ppo.py` with the value network replaced: each completion is split into
reasoning steps, the value of every step prefix is the mean reward of K more completions
sampled from it with vLLM, and each step's tokens get the advantage V(next) - V(this).
Run it with `--help`.
"""

import os
import random
import sys
import time
from dataclasses import dataclass

import numpy as np
import torch
import tyro
from transformers import AutoModelForCausalLM, AutoTokenizer

from common.args import check_args
from common.checkpoint import load_checkpoint, save_checkpoint, weights_path
from common.console import print0
from common.data import draw_questions, load_questions
from common.distributed import init_distributed, rank_rows
from common.evaluation import evaluate
from common.grading import extract_answer, grade, score
from common.guards import catch_stop_signals, check_finite, stop_requested
from common.logprobs import batched_no_grad, masked_mean, pad_batch, response_logprobs, tis_weights
from common.model import load_model, resolve_model
from common.schedule import set_learning_rates
from common.steps import backfill_values, split_gsm8k, split_math, step_token_ends, value_state_count
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
    kl_coef: float = 1e-4
    """coefficient of the KL penalty to the initial policy, a term of the loss (VinePPO paper: 1e-4)"""
    whiten_advantages: bool = True
    """normalise the advantages of each minibatch to zero mean and unit variance over its tokens (papers: on)"""
    mc_rollouts: int = 4
    """K: completions sampled from each step prefix to estimate its value (VinePPO paper: 9)"""
    mc_temperature: float = 0.7
    """sampling temperature of the Monte-Carlo rollouts (VinePPO paper: as the training rollouts, 0.6)"""
    step_split: str | None = None
    """the papers' code's rule to cut completions into steps: gsm8k (lines) or math; unset: math for math and orz57k"""
    max_value_steps: int | None = None
    """estimate values for the first this many steps only, later ones get the reward (paper: 25 on GSM8K)"""
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


def response_steps(tokenizer, response: list[int], step_split: str) -> list[int]:
    """End (exclusive token index) of each reasoning step of a response, cut as the papers' code cuts the decoded
    text (common/steps.py): gsm8k, one step per line with the "#### answer" tail in the last; math, lines and
    sentences (maths only at its own line breaks), short parts merged, long ones cut again (in maths too, at "=" or
    "+"). A token belongs to the step of its first character."""
    text = tokenizer.decode(response, skip_special_tokens=True)
    steps = split_gsm8k(text) if step_split == "gsm8k" else split_math(text)
    return step_token_ends(steps, tokenizer, response)


def step_advantages(step_ends: list[int], values: list[float], length: int) -> torch.Tensor:
    """Per-token advantages of one response: every token of step k (counted from 1) gets V(s_k) - V(s_k-1)
    (gamma = 1, reward only at the end); `values` holds V(s_0) ... V(s_m), V(s_m) the reward."""
    advantages = torch.zeros(length)
    start = 0
    for k, end in enumerate(step_ends):
        advantages[start:end] = values[k + 1] - values[k]
        start = end
    return advantages


def credit_diagnostics(step_values: list[list[float]], valued_states: list[int]) -> tuple[float, float]:
    """What the Monte-Carlo values do beyond a per-question baseline, from each completion's V(s_0) ... V(s_m) and
    its count of Monte-Carlo-valued states: the step advantages' standard deviation within a completion (mean over
    completions of 2 steps or more), and the share of valued states after a step whose value differs from V(s_0).
    Both are 0 for completions of one step; the spread is 0 when a completion's step advantages are all equal, the
    moved share when no valued state's value differs from V(s_0)."""
    spreads = [np.std(np.diff(values)) for values in step_values if len(values) > 2]
    moved = [abs(v[k] - v[0]) > 1e-9 for v, valued in zip(step_values, valued_states) for k in range(1, valued)]
    return float(np.mean(spreads)) if spreads else 0.0, float(np.mean(moved)) if moved else 0.0


def mc_values(llm, prefixes: dict, args: Args) -> tuple[dict, list]:
    """V(prefix): the mean reward of K = `args.mc_rollouts` completions sampled from it at --mc-temperature, every
    prefix in one vLLM call (prefix caching shares the prompt's work). `prefixes` maps prompt + response prefix token
    ids to (gold answer, prefix text). Returns prefix -> V(prefix), and the completions (a list per prefix)."""
    # each rollout's token budget, as in the papers' code: --max-new-tokens, or what the context has left
    context = args.max_prompt_tokens + args.max_new_tokens
    budgets = [min(args.max_new_tokens, context - len(prefix)) for prefix in prefixes]
    prompts = [list(p) for p in prefixes]
    completions = generate(llm, prompts, args.mc_rollouts, args.mc_temperature, args.top_p, budgets)

    def reward(text: str, completion, answer: str) -> float:  # a rollout cut off at its budget scores 0
        unparseable = extract_answer(text + completion.text) is None
        right = not completion.truncated and grade(text + completion.text, answer)
        return float(right) - args.unparseable_penalty * unparseable

    values = {
        prefix: float(np.mean([reward(text, c, answer) for c in cs]))
        for (prefix, (answer, text)), cs in zip(prefixes.items(), completions)
    }
    return values, completions


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


if __name__ == "__main__":
    args = tyro.cli(Args)
    check_args(
        args,
        (args.mc_rollouts < 1 or args.mc_temperature <= 0, "--mc-rollouts must be at least 1 and --mc-temperature > 0"),
        (args.step_split not in (None, "gsm8k", "math"), "--step-split must be gsm8k or math"),
        (args.max_value_steps is not None and args.max_value_steps < 0, "--max-value-steps must be >= 0"),
    )
    device = init_distributed()  # under torchrun: this rank's device
    random.seed(args.seed)
    np.random.seed(args.seed)
    torch.manual_seed(args.seed)  # the same on every rank
    # bf16: autocast over the fp32 weights, beside an engine in bf16; why fp32 is the default: docs/precision.md
    autocast = torch.autocast(device.type, dtype=torch.bfloat16, enabled=args.precision == "bf16")

    # data: every prompt tokenised once; a mistyped --model or --dataset stops here, before a run folder is made
    model_path = resolve_model(args.model)
    tokenizer = AutoTokenizer.from_pretrained(model_path)
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    train, test = load_questions(args, tokenizer)
    run_dir, writer = start_run(args)  # runs/<run name>: tensorboard events, args.json, checkpoint/

    # models: the policy, the frozen reference policy for the KL penalty (a resumed run loads the policy from its
    # checkpoint), and the vLLM engine that generates (no value network: values are Monte-Carlo estimates)
    policy = load_model(AutoModelForCausalLM, weights_path(args, "policy", model_path), device)
    ref_policy = load_model(AutoModelForCausalLM, model_path, device, frozen=True)
    policy.config.pad_token_id = pad_id
    # no weight decay (papers; AdamW's default would be 0.01)
    policy_optimizer = torch.optim.AdamW(policy.parameters(), lr=args.learning_rate, eps=1e-8, weight_decay=0)
    models = {"policy": (policy, policy_optimizer)}
    step_split = args.step_split or ("math" if args.dataset in ("math", "orz57k") else "gsm8k")
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

        # 1. sample questions: uniformly, without replacement within a pass over the dataset
        questions = [train[i] for i in draw_questions(args.questions_per_iteration, run_state)]

        # 2. rollout: n completions per question from the current policy (each engine does its share)
        completions = rollout(llm, questions, args.completions_per_question, args)
        t_generated = time.perf_counter()
        tokens_per_second = count_tokens(completions) / (t_generated - t_start)  # the engine's speed
        run_state["totals"] = add_to_totals(run_state["totals"], "generated", completions)

        # 3. reward: 1 for a correct final answer, else 0 (minus --unparseable-penalty where none can be found)
        scores, unparseable = map(torch.tensor, score(questions, completions))
        rewards_seq = (scores - args.unparseable_penalty * unparseable).flatten()
        prompts = [q["prompt"] for q in questions for _ in range(args.completions_per_question)]
        responses = [c.token_ids for cs in completions for c in cs]
        batch = pad_batch(prompts, responses, pad_id, device, args.share_prompts)
        mask = batch["mask"]

        # log-probs of the sampling (old) policy and the reference policy, once per iteration
        with autocast:
            old_logp, _, sampling_logp = batched_no_grad(
                response_logprobs, policy, batch, args.micro_batch_size, args.temperature, args.top_p
            )
            ref_logp = batched_no_grad(response_logprobs, ref_policy, batch, args.micro_batch_size, args.temperature)[0]
        old_logp, ref_logp = old_logp * mask, ref_logp * mask
        check_finite(iteration, old_log_probs=old_logp, reference_log_probs=ref_logp)
        # the engine's kernels differ from the trainer's, so it samples from a policy slightly off the old one: the
        # gap is logged and each token's policy loss weighted by truncated importance sampling (common/logprobs.py)
        tis_weight, gap_metrics = tis_weights(completions, sampling_logp, mask, args.tis_cap)
        t_logprobs = time.perf_counter()

        # 4. credit assignment: Monte-Carlo values of every step prefix, all in one vLLM call
        step_ends = [response_steps(tokenizer, r, step_split) for r in responses]
        # the states valued: s_0 (the prompt alone), then after each step but the last (s_m, finished, is worth
        # the reward), up to --max-value-steps; the states past it are worth the reward too (backfill_values)
        value_states = [([0] + ends[:-1])[: value_state_count(len(ends), args.max_value_steps)] for ends in step_ends]
        answers = [q["answer"] for q in questions for _ in range(args.completions_per_question)]
        # prompt + response prefix -> (answer, prefix text); shared prefixes are estimated once
        prefixes = {}
        for prompt, response, states, answer in zip(prompts, responses, value_states, answers):
            for end in states:
                prefixes.setdefault(tuple(prompt + response[:end]), (answer, tokenizer.decode(response[:end])))
        values, mc_completions = mc_values(llm, prefixes, args)
        run_state["totals"] = add_to_totals(run_state["totals"], "generated", mc_completions)
        advantages = torch.zeros_like(mask)
        all_step_values = []
        for j, (prompt, response, ends, states) in enumerate(zip(prompts, responses, step_ends, value_states)):
            estimates = [values[tuple(prompt + response[:end])] for end in states]
            step_values = backfill_values(estimates, rewards_seq[j].item(), len(ends))
            advantages[j, : len(response)] = step_advantages(ends, step_values, len(response)).to(device)
            all_step_values.append(step_values)
        step_spread, value_moved_share = credit_diagnostics(all_step_values, [len(states) for states in value_states])
        t_mc = time.perf_counter()

        # 5. policy update: clipped PPO over a few epochs of minibatches
        stats, optimizer_step = [], (iteration - 1) * steps_per_iteration
        for _epoch in range(args.update_epochs):
            for minibatch in torch.randperm(len(responses), generator=minibatch_generator).split(args.minibatch_size):
                policy_optimizer.zero_grad()
                # whitened over this minibatch's tokens before each step (papers)
                update_advantages = whiten(advantages, mask, minibatch) if args.whiten_advantages else advantages
                n_tokens, minibatch_loss = mask[minibatch].sum(), 0.0
                for mb in rank_rows(minibatch).split(args.micro_batch_size):  # each rank its share; gradients summed
                    with autocast:
                        logp, entropy, _ = response_logprobs(policy, batch, mb, args.temperature)
                    pg_loss, kl_loss, policy_stats = ppo_losses(
                        logp, old_logp[mb], ref_logp[mb], update_advantages[mb], tis_weight[mb], mask[mb],
                        len(minibatch), n_tokens, args,
                    )  # fmt: skip
                    loss = pg_loss + kl_loss
                    loss.backward()
                    minibatch_loss += loss.detach()
                    stats.append(policy_stats | {"entropy": masked_mean(entropy, mask[mb]).item()})
                grad_norm = torch.nn.utils.clip_grad_norm_(policy.parameters(), args.max_grad_norm)
                check_finite(iteration, loss=minibatch_loss, gradient_norm=grad_norm)
                # this step's learning rates, from its index in the run: a resumed run continues the schedule exactly
                peaks = {policy_optimizer: args.learning_rate}
                set_learning_rates(peaks, optimizer_step, total_steps, args.warmup_ratio, args.lr_decay)
                optimizer_step += 1
                policy_optimizer.step()
        t_updated = time.perf_counter()

        # 6. sync: the engine generates with the updated weights from now on
        sync_seconds = sync_weights(llm, policy)
        t_end = time.perf_counter()

        # 7. evaluate: greedy accuracy on the fixed subsets, every --eval-interval iterations and at the last
        if args.eval_interval and (iteration % args.eval_interval == 0 or iteration == args.num_iterations):
            evaluations.append((iteration, evaluate(llm, eval_subsets, args.max_new_tokens, writer, iteration)))

        # 8. log: every scalar to tensorboard, one line to stdout
        kl = old_logp - ref_logp  # per-token estimate of KL(policy || reference), logged (the loss has its own)
        run_state["totals"] = add_to_totals(run_state["totals"], "trained", completions)
        metrics = rollout_metrics(scores, unparseable, completions, mask, kl, advantages) | gap_metrics
        metrics |= mean_stats(stats) | {f"charts/cumulative_{name}": n for name, n in run_state["totals"].items()}
        metrics |= {
            "charts/learning_rate": policy_optimizer.param_groups[0]["lr"],
            "charts/tokens_per_second": tokens_per_second,
            "charts/steps_per_completion": float(np.mean([len(e) for e in step_ends])),
            "charts/mc_completions": sum(map(len, mc_completions)),
            "charts/step_advantage_spread": step_spread,
            "charts/value_moved_share": value_moved_share,
            "time/generation": t_generated - t_start,
            "time/logprobs": t_logprobs - t_generated,
            "time/mc_rollouts": t_mc - t_logprobs,
            "time/update": t_updated - t_mc,
            "time/update_tokens_per_second": args.update_epochs * batch["input_ids"].numel() / (t_updated - t_mc),
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
