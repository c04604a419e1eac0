"""What share of the default prompts' tokens vLLM's prefix cache serves, by KV-cache block size, and what it buys.

Run from the repository root: python benchmarks/bench_prefix_cache.py [--block-sizes 128 32] [--model M]
For each block size, a fresh engine (the trainers' settings, fp32) does what an iteration of the default trainers
asks of it: training rollouts (LILO's pool: 16 default prompts x 4 completions, temperature 0.7, 64 new tokens),
VinePPO's Monte-Carlo rollouts (K = 4 from each completion's first two step prefixes, cut at line ends as its GSM8K rule
cuts them) and a greedy evaluation of 200 prompts; between phases the cache is reset, as the trainers reset it after
each weight sync. Prints each phase's prompt tokens, the share served from the cache (vLLM's own counters,
`vllm:prefix_cache_hits` / `vllm:prefix_cache_queries`) and its wall time. vLLM on a CPU caches whole blocks only:
its default block of 128 tokens caches at most 128 of a 187-token default prompt; its attention kernel takes
multiples of 32.
"""

import argparse
import gc
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from transformers import AutoTokenizer  # noqa: E402

from common.data import build_prompt, load_split  # noqa: E402
from common.model import resolve_model  # noqa: E402
from common.vllm_utils import generate  # noqa: E402


def counters(llm) -> tuple[float, float]:
    values = {m.name: m.value for m in llm.get_metrics() if m.name.startswith("vllm:prefix_cache_")}
    return values["vllm:prefix_cache_queries"], values["vllm:prefix_cache_hits"]


def measure(llm, name: str, prompts: list[list[int]], **sampling) -> list:
    llm.reset_prefix_cache()
    queries, hits = counters(llm)
    start = time.perf_counter()
    out = generate(llm, prompts, **sampling)
    seconds = time.perf_counter() - start
    new_queries, new_hits = counters(llm)
    share = (new_hits - hits) / max(1, new_queries - queries)
    tokens = new_queries - queries
    print(f"  {name:<22} prompt tokens {tokens:>8.0f}  from the cache {100 * share:5.1f}%  {seconds:6.1f} s")
    return out


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=None, help="default: the embedded SmolLM2-135M-Instruct")
    parser.add_argument("--block-sizes", nargs="+", type=int, default=[128, 32])
    args = parser.parse_args()
    os.environ.setdefault("VLLM_ENABLE_V1_MULTIPROCESSING", "0")
    from vllm import LLM

    path = resolve_model(args.model)
    tokenizer = AutoTokenizer.from_pretrained(path)
    questions = load_split("arithmetic", "train", 1)
    prompts = [build_prompt(tokenizer, q["question"], "arithmetic") for q in questions[:200]]
    print(f"default prompts: {sum(map(len, prompts)) / len(prompts):.0f} tokens on average")
    for block_size in args.block_sizes:
        llm = LLM(model=path, seed=1, dtype="float32", max_model_len=576, enable_prefix_caching=True,
                  enforce_eager=True, block_size=block_size, disable_log_stats=False)  # fmt: skip
        print(f"block size {block_size}:")
        rollouts = measure(llm, "training rollouts", prompts[:16], n=4, temperature=0.7, top_p=1.0, max_tokens=64)
        prefixes = []
        for prompt, completions in zip(prompts[:16], rollouts):
            for c in completions:
                ends = [i + 1 for i, t in enumerate(c.token_ids) if "\n" in tokenizer.decode([t])][:2]
                prefixes += [prompt + c.token_ids[:end] for end in [0] + ends[:-1]]
        measure(llm, "Monte-Carlo rollouts", prefixes, n=4, temperature=0.7, top_p=1.0, max_tokens=64)
        measure(llm, "evaluation (greedy)", prompts, n=1, temperature=0.0, top_p=1.0, max_tokens=64)
        del llm
        gc.collect()
