"""What a person at a terminal sees: the phase under way, and a progress bar over the iterations with an estimate of
the time left (as TRL's trainers show one). When stdout is not a terminal (a log file, a scheduler) there is no bar:
the one line per iteration (common/tracking.py) is the log, and only the phases before training are announced."""

import sys

from tqdm import tqdm

BAR = None  # the progress bar over iterations, once training has started on a terminal


def show_progress(done: int, total: int) -> None:
    """From now on, on a terminal, a bar over the iterations (`done` of `total` already done, after a resume)."""
    global BAR
    if sys.stdout.isatty() and BAR is None:
        BAR = tqdm(total=total, initial=done, unit="it", dynamic_ncols=True, file=sys.stdout, desc="training")


def phase(text: str, announce: bool = False) -> None:
    """Name what the run is doing now: the bar's description; without a bar, printed if `announce`."""
    if BAR is not None:
        BAR.set_description_str(text)
    elif announce:
        print(f"{text} ...", flush=True)


def write(line: str) -> None:
    """A line of the log, above the bar when there is one."""
    if BAR is not None:
        BAR.write(line, file=sys.stdout)
    else:
        print(line, flush=True)


def advance() -> None:
    """One more iteration done."""
    if BAR is not None:
        BAR.update(1)


def close() -> None:
    global BAR
    if BAR is not None:
        BAR.close()
        BAR = None
