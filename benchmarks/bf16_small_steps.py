"""How much of a small fp32 update a bf16 forward pass sees: why the CPU default trains in fp32.

Run from the repository root: python benchmarks/bf16_small_steps.py [--learning-rate 2e-6] [--steps 40]
AdamW steps on the default model raising the log-probability of 8 correct arithmetic answers; after some of them,
the gain in fp32 and the gain of the same weights under bf16 autocast (what --precision bf16 trains and samples
with), and the share of weights whose bf16 value changed. The weights start on bf16's grid (the checkpoint is bf16):
a step under half a bf16 step of a weight leaves its bf16 value where it was.
"""

import argparse
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from transformers import AutoModelForCausalLM, AutoTokenizer  # noqa: E402

from common.data import build_prompt, load_split  # noqa: E402
from common.logprobs import pad_batch, response_logprobs  # noqa: E402
from common.model import resolve_model  # noqa: E402

if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--learning-rate", type=float, default=2e-6, help="the trainers' default")
    parser.add_argument("--steps", type=int, default=40, help="the default PPO run's optimiser steps")
    args = parser.parse_args()
    path = resolve_model(None)
    tokenizer = AutoTokenizer.from_pretrained(path)
    questions = load_split("arithmetic", "train", 1)[:8]
    prompts = [build_prompt(tokenizer, q["question"], "arithmetic") for q in questions]
    answers = [tokenizer(f" The answer is \\boxed{{{q['answer']}}}.")["input_ids"] for q in questions]
    batch = pad_batch(prompts, answers, tokenizer.eos_token_id)
    rows, mask = torch.arange(len(prompts)), batch["mask"]
    policy = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32)
    initial = {name: p.detach().clone() for name, p in policy.named_parameters()}
    count = sum(p.numel() for p in initial.values())
    on_grid = sum((p == p.bfloat16().float()).sum().item() for p in initial.values()) / count
    print(f"initial weights exactly on the bf16 grid: {100 * on_grid:.1f}%")
    optimizer = torch.optim.AdamW(policy.parameters(), lr=args.learning_rate, weight_decay=0)

    def log_prob(bf16: bool) -> float:
        with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            return (response_logprobs(policy, batch, rows, 1.0)[0] * mask).sum().item() / 8

    start_fp32, start_bf16 = log_prob(False), log_prob(True)
    for step in range(1, args.steps + 1):
        optimizer.zero_grad()
        (-(response_logprobs(policy, batch, rows, 1.0)[0] * mask).sum()).backward()
        optimizer.step()
        if step in (1, 5, 10, 20, 40, args.steps):
            changed = sum(
                (p.detach().bfloat16() != initial[n].bfloat16()).sum().item() for n, p in policy.named_parameters()
            )
            print(
                f"step {step}: log-prob gain per answer fp32 {log_prob(False) - start_fp32:+.3f} nat, "
                f"bf16 {log_prob(True) - start_bf16:+.3f} nat; bf16 weights changed {100 * changed / count:.2f}%",
                flush=True,
            )
