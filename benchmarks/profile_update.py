"""Where an update step's time goes, in fp32 and in bf16 autocast: one PPO optimiser step as ppo.py takes it.

Run from the repository root: python benchmarks/profile_update.py [--model M] [--rows 8] [--response 32]
The policy's and the value network's forward and backward passes on one minibatch of arithmetic prompts with random
responses, then both AdamW steps, under torch.profiler; prints the operators that take the most time and each part's
wall time. bench_iteration.py measures whole iterations; this shows what stands between bf16 and a 2x speedup.
"""

import argparse
import sys
import time
from pathlib import Path

import torch
from torch.profiler import ProfilerActivity, profile

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from transformers import AutoModelForCausalLM, AutoModelForTokenClassification, AutoTokenizer  # noqa: E402

from common.data import build_prompt, load_split  # noqa: E402
from common.logprobs import pad_batch, response_logprobs, response_outputs  # noqa: E402
from common.model import resolve_model  # noqa: E402

if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=None, help="default: the embedded SmolLM2-135M-Instruct")
    parser.add_argument("--rows", type=int, default=8, help="completions in the minibatch (the default's)")
    parser.add_argument("--response", type=int, default=32, help="response tokens per completion")
    args = parser.parse_args()
    path = resolve_model(args.model)
    tokenizer = AutoTokenizer.from_pretrained(path)
    questions = load_split("arithmetic", "train", 1)[: args.rows]
    prompts = [build_prompt(tokenizer, q["question"], "arithmetic") for q in questions]
    generator = torch.Generator().manual_seed(0)
    responses = [torch.randint(100, 40000, (args.response,), generator=generator).tolist() for _ in prompts]
    batch = pad_batch(prompts, responses, tokenizer.eos_token_id)
    rows, width = torch.arange(len(prompts)), batch["input_ids"].shape[1] - args.response
    policy = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32)
    value_net = AutoModelForTokenClassification.from_pretrained(path, num_labels=1, dtype=torch.float32)
    optimizers = [torch.optim.AdamW(m.parameters(), lr=1e-7, weight_decay=0) for m in (policy, value_net)]

    def step(precision: str) -> dict:
        times, start = {}, time.perf_counter()
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=precision == "bf16"):
            logp, _, _ = response_logprobs(policy, batch, rows, 0.7)
        logp.sum().backward()
        times["policy forward+backward"], start = time.perf_counter() - start, time.perf_counter()
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=precision == "bf16"):
            values = response_outputs(value_net, batch, rows, causal_lm=False)[..., 0]  # as ppo.py's response_values
        values.sum().backward()
        times["value forward+backward"], start = time.perf_counter() - start, time.perf_counter()
        for optimizer in optimizers:
            optimizer.step()
            optimizer.zero_grad()
        times["both AdamW steps"] = time.perf_counter() - start
        return times

    print(f"{args.rows} completions x ({width} prompt + {args.response} response tokens)")
    for precision in ("fp32", "bf16"):
        step(precision)  # warm-up
        with profile(activities=[ProfilerActivity.CPU]) as prof:
            times = step(precision)
        print(f"\n{precision}: " + ", ".join(f"{k} {v:.2f} s" for k, v in times.items()))
        print(f"total {sum(times.values()):.2f} s")
        print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=10, max_name_column_width=50))
