"""The run folder and what a run reports: tensorboard (and wandb with --track), one stdout line per iteration.

Runs live in `runs/<exp_name>__<dataset>__<seed>__<time>/` (or the folder given to --resume), as in CleanRL; under
torchrun rank 0 alone logs. Scalars are grouped as CleanRL groups them: `charts/`, `losses/`, `time/`.
"""

import json
import resource
import time
from dataclasses import asdict
from pathlib import Path

import numpy as np
import torch
from torch.utils.tensorboard import SummaryWriter

from common.console import print0
from common.distributed import rank
from common.logprobs import masked_mean

# The stdout line: tag -> (label, format), for each tag the trainer logs, in this order
LINE = {
    "charts/train_accuracy": ("train_acc", ".3f"),
    "charts/all_correct_share": ("all_right", ".2f"),
    "charts/all_wrong_share": ("all_wrong", ".2f"),
    "charts/pool_all_correct_share": ("pool_right", ".2f"),
    "charts/pool_all_wrong_share": ("pool_wrong", ".2f"),
    "charts/kl": ("kl", ".4f"),
    "losses/entropy": ("entropy", ".3f"),
    "losses/clipfrac": ("clipfrac", ".3f"),
    "losses/value_loss": ("v_loss", ".4f"),
    "charts/zero_advantage_share": ("zero_adv", ".2f"),
    "charts/mc_completions": ("mc", ".0f"),
    "charts/response_length": ("len", ".0f"),
}
PHASES = {"time/generation": "gen", "time/logprobs": "logp", "time/mc_rollouts": "mc", "time/update": "update",
          "time/sync": "sync"}  # fmt: skip


def start_run(args):
    """The run folder and its tensorboard writer, which records the hyperparameters (None on ranks other than 0);
    wandb too with --track. A new run also gets args.json."""
    name = f"{args.exp_name}__{Path(args.dataset).stem}__{args.seed}__{int(time.time())}"
    run_dir = Path(args.resume) if args.resume else Path(args.output_dir) / name
    if rank() != 0:
        return run_dir, None
    if args.track:
        import wandb

        wandb.init(project=args.wandb_project_name, config=vars(args), name=run_dir.name, sync_tensorboard=True)
    writer = SummaryWriter(str(run_dir))
    table = "\n".join(f"|{key}|{value}|" for key, value in vars(args).items())
    writer.add_text("hyperparameters", f"|param|value|\n|-|-|\n{table}")
    if not args.resume:
        (run_dir / "args.json").write_text(json.dumps(asdict(args), indent=2))
    print(f"run folder: {run_dir}", flush=True)
    return run_dir, writer


def count_tokens(completions: list[list]) -> int:
    """The tokens of `completions` (a list per question)."""
    return sum(len(c.token_ids) for cs in completions for c in cs)


def add_to_totals(totals: dict, kind: str, completions: list[list]) -> dict:
    """The run's `totals` with `completions` (a list per question) added to the completions and tokens `kind`:
    "generated" (rollouts, LILO's pools, Monte-Carlo rollouts; not evaluation) or "trained" (on). Logged as
    charts/cumulative_*, they compare runs at equal generation."""
    n_completions, n_tokens = sum(map(len, completions)), count_tokens(completions)
    return totals | {
        f"completions_{kind}": totals.get(f"completions_{kind}", 0) + n_completions,
        f"tokens_{kind}": totals.get(f"tokens_{kind}", 0) + n_tokens,
    }


def rollout_metrics(scores, unparseable, completions, mask, kl, advantages) -> dict:
    """What every trainer logs about the completions it trains on: accuracy, the shares of questions all right and
    all wrong (no signal for a group baseline's advantage, little for the others'), answers missing or cut off, response
    length, the KL to the reference (per-token estimates `kl`, summed per sequence) and the advantages."""
    lengths = mask.sum(1).long()
    mean = masked_mean(advantages, mask)
    return {
        "charts/train_accuracy": scores.mean().item(),
        "charts/all_correct_share": (scores.min(1).values == 1).float().mean().item(),
        "charts/all_wrong_share": (scores.max(1).values == 0).float().mean().item(),
        "charts/unparseable_share": unparseable.mean().item(),
        "charts/response_length": lengths.float().mean().item(),
        "charts/truncated_share": float(np.mean([c.truncated for cs in completions for c in cs])),
        "charts/kl": (kl.sum(1)).mean().item(),
        "charts/advantage_mean": mean.item(),
        "charts/advantage_std": masked_mean((advantages - mean) ** 2, mask).sqrt().item(),
    }


def mean_stats(stats: list[dict]) -> dict:
    """Each loss statistic (one dict per micro-batch) averaged over the update, as `losses/<name>`."""
    return {f"losses/{name}": np.mean([s[name] for s in stats]) for name in stats[0]}


def log_iteration(writer, iteration: int, num_iterations: int, metrics: dict) -> None:
    """Every scalar to tensorboard (rank 0), with the process's peak memory so far (time/peak_memory_gib: resident
    memory, and on a GPU time/peak_gpu_memory_gib), and one line to stdout, which ends with the time left if the
    iterations left take as long as this one."""
    metrics["time/peak_memory_gib"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20  # KiB on Linux
    if torch.cuda.is_available():
        metrics["time/peak_gpu_memory_gib"] = torch.cuda.max_memory_allocated() / 2**30
    if writer:
        for name, value in metrics.items():
            writer.add_scalar(name, value, iteration)
    fields = [f"{label}={metrics[tag]:{spec}}" for tag, (label, spec) in LINE.items() if tag in metrics]
    phases = [tag for tag in PHASES if tag in metrics]
    seconds = "/".join(f"{metrics[tag]:.1f}" if tag == "time/sync" else f"{metrics[tag]:.0f}" for tag in phases)
    fields.append(f"time {'/'.join(PHASES[tag] for tag in phases)}={seconds}s")
    fields.append(f"tok/s={metrics['charts/tokens_per_second']:.0f} mem={metrics['time/peak_memory_gib']:.1f}GiB")
    fields.append(f"left~{metrics['time/iteration'] * (num_iterations - iteration) / 60:.0f}min")
    print0(f"iter {iteration}/{num_iterations} " + " ".join(fields))


def end_run(writer, run_dir: Path, evaluations: list[tuple[int, dict]]) -> None:
    """Close the logs and say where they are, with the held-out accuracy of this process's first and last evaluations
    (`evaluations`: (iteration, accuracy of each subset) of each)."""
    if writer:
        writer.close()
    test_accuracy = [(iteration, accuracy["test"]) for iteration, accuracy in evaluations if "test" in accuracy]
    if len(test_accuracy) > 1:
        (first, start), (last, end) = test_accuracy[0], test_accuracy[-1]
        print0(f"held-out accuracy {start:.3f} (iteration {first}) -> {end:.3f} (iteration {last})")
    print0(f"run folder: {run_dir} (tensorboard --logdir {run_dir.parent})")
