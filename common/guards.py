"""What every trainer does to keep a run's results safe: stop cleanly on a signal, refuse non-finite numbers.

- `catch_stop_signals()`: SIGTERM (a scheduler's pre-emption, `kill`) or SIGINT (Ctrl-C) asks the run to stop
  after the current iteration (`stop_requested`); the trainer then writes a checkpoint of that iteration and exits
  with the shell's code for the signal (128 + its number), so `--resume` continues exactly where it stopped. A
  second signal stops at once: checkpoints are written atomically, so the last one on disk stays whole.
- `check_finite(iteration, **values)`: one `error:` line naming the iteration and the quantity when a loss,
  gradient norm, log-prob or weight is NaN or infinite. The trainers call it after every log-prob pass, before
  every optimiser step and before every checkpoint, so a diverged run never reaches the weights on disk.
Under torchrun both are decided jointly: every rank stops at the same iteration, or none does.
"""

import os
import signal

import torch
from torch.distributed.tensor import DTensor

from common.distributed import any_rank


def catch_stop_signals() -> list[signal.Signals]:
    """From now on SIGTERM and SIGINT ask the run to stop after the current iteration: each signal received is added
    to the list returned, which `stop_requested` reads."""
    received = []

    def on_signal(signum, frame):
        name = signal.Signals(signum).name
        if received:
            raise SystemExit(f"error: {name} again: stopped at once; the last checkpoint on disk is intact")
        received.append(signal.Signals(signum))
        # os.write, not print: a handler may interrupt a print, and print is not reentrant
        os.write(2, f"{name}: stopping after this iteration, with a checkpoint ({name} again: at once)\n".encode())

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    return received


def stop_requested(received: list[signal.Signals]) -> signal.Signals | None:
    """The signal that asked the run to stop, if one did on any rank (a collective under torchrun: a rank that
    received none stops with SIGTERM's code)."""
    return (received[0] if received else signal.SIGTERM) if any_rank(bool(received)) else None


def _finite(value) -> bool:
    if isinstance(value, dict):
        return all(_finite(v) for v in value.values())
    if isinstance(value, DTensor):
        value = value.to_local()  # this rank's shard: `any_rank` combines the verdicts
    return bool(torch.isfinite(torch.as_tensor(value)).all())


def check_finite(iteration: int, **values) -> None:
    """Stop the run with one `error:` line if any value (a number, a tensor, or a dict of tensors such as a state
    dict) holds a NaN or an infinity. Nothing has been written for this iteration yet: the last checkpoint stays."""
    bad = [name for name, value in values.items() if not _finite(value)]
    if any_rank(bool(bad)):
        what = ", ".join(name.replace("_", " ") for name in bad) or "a value on another rank"
        raise SystemExit(
            f"error: iteration {iteration}: non-finite {what} (NaN or infinity); nothing of this iteration was saved "
            "and the last checkpoint is intact (hint: lower --learning-rate, then --resume the run from it)"
        )
