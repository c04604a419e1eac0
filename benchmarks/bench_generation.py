"""Generation speed of vLLM vs transformers `generate` at equal batch size, and weight-sync time.

Run from the repository root: python benchmarks/bench_generation.py [--batch 16] [--max-new-tokens 128]
Both sample at temperature 1.0 (no top-k/top-p) from the same prompts, in the engine's precision (fp32 on a CPU),
in one process (the engine started first, as in the trainers); generated tokens are counted up to and including eos.
"""

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402
from transformers import AutoModelForCausalLM, AutoTokenizer  # noqa: E402

from common.data import build_prompt, make_arithmetic  # noqa: E402
from common.model import resolve_model  # noqa: E402
from common.vllm_utils import generate, start_engine, sync_weights  # noqa: E402  (sets vLLM's env first)


def transformers_generate(model, tokenizer, prompts: list[list[int]], max_new_tokens: int) -> int:
    """Sample from left-padded prompts; the number of generated tokens up to and including eos."""
    batch = tokenizer.pad({"input_ids": prompts}, padding_side="left", return_tensors="pt")
    out = model.generate(
        **batch,
        max_new_tokens=max_new_tokens,
        do_sample=True,
        temperature=1.0,
        top_p=1.0,
        top_k=0,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    tokens = 0
    for row in out[:, batch["input_ids"].shape[1] :].tolist():
        tokens += row.index(tokenizer.eos_token_id) + 1 if tokenizer.eos_token_id in row else len(row)
    return tokens


def timed(fn):
    start = time.perf_counter()
    result = fn()
    return result, time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--max-new-tokens", type=int, default=128)
    parser.add_argument("--syncs", type=int, default=3)
    args = parser.parse_args()

    path = resolve_model(None)
    tokenizer = AutoTokenizer.from_pretrained(path)
    prompts = [build_prompt(tokenizer, e["question"], "arithmetic") for e in make_arithmetic(args.batch, seed=0)]
    llm = start_engine(path, seed=0, max_model_len=1024, gpu_memory_utilization=0.3)
    dtype = llm.llm_engine.model_config.dtype  # compare at the same precision
    model = AutoModelForCausalLM.from_pretrained(path, dtype=dtype).eval()
    torch.manual_seed(0)

    def run_vllm():
        out = generate(llm, prompts, n=1, temperature=1.0, top_p=1.0, max_tokens=args.max_new_tokens)
        return sum(len(c.token_ids) for (c,) in out)

    def run_transformers():
        with torch.no_grad():
            return transformers_generate(model, tokenizer, prompts, args.max_new_tokens)

    rows = []
    for name, fn in [("vLLM", run_vllm), ("transformers", run_transformers)]:
        fn()  # warm-up: the first call of each pays one-off costs
        tokens, seconds = timed(fn)
        rows.append((name, tokens, seconds, tokens / seconds))
    sync_seconds = [sync_weights(llm, model) for _ in range(args.syncs)]

    print(
        f"\nSmolLM2-135M-Instruct, {dtype}, batch {args.batch}, max_new_tokens {args.max_new_tokens}, "
        f"temperature 1.0, torch threads {torch.get_num_threads()}"
    )
    print(f"{'engine':<14}{'gen tokens':>11}{'seconds':>9}{'tokens/s':>10}")
    for name, tokens, seconds, rate in rows:
        print(f"{name:<14}{tokens:>11}{seconds:>9.2f}{rate:>10.1f}")
    print(f"vLLM / transformers tokens/s: {rows[0][3] / rows[1][3]:.2f}x")
    print(f"weight sync: {sum(sync_seconds) / len(sync_seconds):.2f} s (mean of {len(sync_seconds)})")


if __name__ == "__main__":
    main()
