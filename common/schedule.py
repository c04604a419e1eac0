"""The learning-rate schedule of the papers' code (DeepSpeed's WarmupDecayLR), one rate per optimiser step.

The rate of a step is computed from its index in the whole run, so a resumed run continues the schedule exactly
without saving a scheduler's state."""

import math


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


def set_learning_rates(peaks: dict, step: int, total_steps: int, warmup_ratio: float, decay: bool) -> None:
    """Give each optimiser of `peaks` (optimiser -> its peak learning rate) the rate of optimiser step `step`."""
    scale = lr_scale(step, total_steps, warmup_ratio, decay)
    for optimizer, peak in peaks.items():
        optimizer.param_groups[0]["lr"] = peak * scale
