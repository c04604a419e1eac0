"""The argument checks every trainer shares: one clear `error:` line for settings that cannot work, before anything
is loaded (a mistyped --model or --dataset is caught where it is loaded, also before any run folder is made)."""

import os
from pathlib import Path


def check_args(args, *problems: tuple) -> None:
    """Stop with the first failed check: those every trainer shares, then the trainer's own `problems`, each a
    (failed, message) pair."""
    batch = args.questions_per_iteration * args.completions_per_question
    world_size = int(os.environ.get("WORLD_SIZE", 1))  # processes started by torchrun
    shared = [
        (args.num_iterations < 1, "--num-iterations must be at least 1"),
        (min(args.questions_per_iteration, args.completions_per_question) < 1,
         "--questions-per-iteration and --completions-per-question must be at least 1"),
        (args.max_new_tokens < 1, "--max-new-tokens must be at least 1"),
        (args.temperature <= 0 or not 0 < args.top_p <= 1, "--temperature must be > 0 and --top-p in (0, 1]"),
        (args.learning_rate <= 0, "--learning-rate must be positive"),
        (args.prompt_format not in ("chat", "vineppo"), "--prompt-format must be chat or vineppo"),
        (args.precision not in ("bf16", "fp32") or args.tis_cap < 0, "--precision bf16 or fp32; --tis-cap >= 0"),
        (not 0 <= args.warmup_ratio < 1, "--warmup-ratio must be in [0, 1)"),
        (args.update_epochs < 1, "--update-epochs must be at least 1"),
        (args.micro_batch_size < 1 or args.minibatch_size % args.micro_batch_size,
         "--minibatch-size must be a multiple of --micro-batch-size"),
        (batch % args.minibatch_size,
         f"questions x completions ({batch}) must be a multiple of --minibatch-size ({args.minibatch_size})"),
        (args.minibatch_size % world_size,
         f"--minibatch-size must be a multiple of the number of processes ({world_size})"),
        (args.vllm_tensor_parallel_size < 1 or world_size % args.vllm_tensor_parallel_size,
         f"the number of processes ({world_size}) must be a multiple of --vllm-tensor-parallel-size"),
        (args.clip_coef <= 0 or args.kl_coef < 0, "--clip-coef must be positive and --kl-coef >= 0"),
        (min(args.eval_interval, args.eval_size, args.save_interval) < 0, "intervals and sizes must be >= 0"),
        (args.resume is not None and not (Path(args.resume) / "checkpoint" / "state.pt").exists(),
         f"--resume {args.resume}: no checkpoint/state.pt in that folder"),
    ]  # fmt: skip
    for failed, message in [*shared, *problems]:
        if failed:
            raise SystemExit(f"error: {message}")
