"""Checkpoints and exact resume: what a run needs to continue as if it had never stopped.

A checkpoint holds the trainable models (`save_pretrained`, loadable on their own), and in `state.pt` the
optimisers' state, every random generator (python's, numpy's, torch's on each rank, from which vLLM samples in
this process, and the minibatch order's), the loop's state (the iteration, the data order and position, the totals
of what the run generated and trained on, ...) and the run's Args. It is written beside the previous one and swapped
in, so a kill at any moment leaves a whole checkpoint on disk. Under torchrun every rank gathers the full tensors and
rank 0 writes them, so a checkpoint loads with any number of ranks.
"""

import random
import shutil
from dataclasses import asdict
from pathlib import Path

import numpy as np
import torch

from common.console import print0
from common.distributed import every_rank, load_optimizer_state, model_state, optimizer_state, rank
from common.guards import check_finite


def save_checkpoint(run_dir: Path, models: dict, tokenizer, generator, run_state: dict, args) -> None:
    """`models` maps a name ("policy", "value") to (model, optimiser); `run_state` is the loop's state (iteration,
    data order and position, totals, ...). Collective under torchrun: every rank calls it, rank 0 writes. Non-finite
    weights stop the run before anything is written."""
    weights = {name: model_state(model) for name, (model, _) in models.items()}
    check_finite(run_state["iteration"], **{f"{name}_weights": w for name, w in weights.items()})
    state = {**run_state, "args": asdict(args)}
    state |= {f"{name}_optimizer": optimizer_state(model, optimizer) for name, (model, optimizer) in models.items()}
    state |= {"python_rng": random.getstate(), "numpy_rng": np.random.get_state(),
              "torch_rng": every_rank(torch.get_rng_state()), "minibatch_rng": generator.get_state()}  # fmt: skip
    if rank() != 0:
        return
    tmp, final = run_dir / "checkpoint.tmp", run_dir / "checkpoint"
    for name, (model, _) in models.items():
        model.save_pretrained(tmp / name, state_dict=weights[name])
    tokenizer.save_pretrained(tmp / "policy")
    torch.save(state, tmp / "state.pt")
    if final.exists():
        final.rename(run_dir / "checkpoint.old")
    tmp.rename(final)
    if (run_dir / "checkpoint.old").exists():
        shutil.rmtree(run_dir / "checkpoint.old")


def weights_path(args, name: str, model_path: str) -> str | Path:
    """The folder to load model `name`'s weights from: --resume's checkpoint, or `model_path` for a new run."""
    return Path(args.resume) / "checkpoint" / name if args.resume else model_path


def load_checkpoint(args, models: dict, generator) -> dict:
    """Restore --resume's optimisers and random generators (the models were loaded from `weights_path`); returns the
    loop's state (iteration, data order and position, totals, ...). Warns when the run's Args differ from the saved
    ones."""
    # mapped: N ranks share one copy in memory
    state = torch.load(Path(args.resume) / "checkpoint" / "state.pt", weights_only=False, mmap=True)
    for name, (model, optimizer) in models.items():
        load_optimizer_state(model, optimizer, state[f"{name}_optimizer"])
    random.setstate(state["python_rng"])
    np.random.set_state(state["numpy_rng"])
    torch.set_rng_state(state["torch_rng"][rank() % len(state["torch_rng"])])  # each engine's sampling
    generator.set_state(state["minibatch_rng"])
    print0(f"resumed from {args.resume} at iteration {state['iteration'] + 1}")
    saved = state["args"]
    changed = [k for k, v in asdict(args).items() if k not in ("resume", "num_iterations") and saved.get(k) != v]
    if changed:
        print0(f"warning: resuming with Args that differ from the run's: {', '.join(changed)}")
    run_state = {k: v for k, v in state.items() if k != "args" and not k.endswith(("_optimizer", "_rng"))}
    return {"totals": {}} | run_state  # a checkpoint older than the totals has none
