"""What the run prints. Under torchrun every rank runs the same loop, so only rank 0 prints: one log, not N copies.
On a terminal the phase under way (generating, log-probs, updating, ...) stands on a status line that the next line
of the log replaces; in a log file only the phases worth a line of their own are written (starting the engine,
evaluating)."""

import sys

from common.distributed import rank


def print0(*values, **kwargs) -> None:
    """`print` on rank 0 alone (flushed; on a terminal, in place of the status line)."""
    if rank() == 0:
        if sys.stdout.isatty():
            sys.stdout.write("\r\033[K")
        print(*values, **{"flush": True} | kwargs)


def phase(text: str, announce: bool = False) -> None:
    """Say what the run is doing now: on a terminal on the status line, elsewhere as a line if `announce`."""
    if rank() != 0:
        return
    if sys.stdout.isatty():  # the cursor back at the line's start: whatever is written next covers the status
        sys.stdout.write(f"\r\033[K{text} ...\r")
        sys.stdout.flush()
    elif announce:
        print(f"{text} ...", flush=True)
