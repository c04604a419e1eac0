"""The chunked log-prob pass against the whole logits: time of a forward and backward, in one run, side by side.

Run from the repository root: python benchmarks/bench_logprobs.py [--model M] [--rows 8] [--response 36]
`response_logprobs` (common/logprobs.py) makes each chunk's logits from the hidden states, in the forward and again in
the backward; the whole-logits pass is the model's own `.logits` with autograd's log-softmax, as before 2026-12-08.
Both on one micro-batch of arithmetic prompts with random responses (the CPU default's shape), in fp32 (or
`--precision bf16`, autocast), the median of 5 after a warm-up. Memory at a real vocabulary:
../shared/tools/logprob_memory.py.
"""

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from transformers import AutoModelForCausalLM, AutoTokenizer  # noqa: E402

from common.data import build_prompt, load_split  # noqa: E402
from common.logprobs import model_inputs, pad_batch, response_logprobs  # noqa: E402
from common.model import resolve_model  # noqa: E402


def whole_logits_logprobs(model, batch, rows, temperature):
    """The log-probs from the whole [rows, tokens, vocabulary] logits, autograd's backward (the plain path)."""
    length = batch["mask"].shape[1]
    logits = model(**model_inputs(batch, rows), logits_to_keep=length + 1).logits[:, -(length + 1) : -1]
    logp_all = torch.log_softmax(logits.float() / temperature, dim=-1)
    return logp_all.gather(-1, batch["input_ids"][rows, -length:, None]).squeeze(-1)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=None, help="default: the embedded SmolLM2-135M-Instruct")
    parser.add_argument("--rows", type=int, default=8, help="completions in the micro-batch (the default's)")
    parser.add_argument("--response", type=int, default=36, help="response tokens per completion (the default's)")
    parser.add_argument("--precision", default="fp32", choices=["fp32", "bf16"])
    args = parser.parse_args()
    path = resolve_model(args.model)
    tokenizer = AutoTokenizer.from_pretrained(path)
    questions = load_split("arithmetic", "train", 1)[: args.rows]
    prompts = [build_prompt(tokenizer, q["question"], "arithmetic") for q in questions]
    generator = torch.Generator().manual_seed(0)
    responses = [torch.randint(100, 40000, (args.response,), generator=generator).tolist() for _ in range(args.rows)]
    batch = pad_batch(prompts, responses, tokenizer.eos_token_id, share_prompts=False)
    rows = torch.arange(args.rows)
    policy = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32)

    def seconds(fn, precision: str) -> float:
        times = []
        for _ in range(6):  # the first is a warm-up
            start = time.perf_counter()
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=precision == "bf16"):
                logp = fn()
            logp.sum().backward()
            policy.zero_grad()
            times.append(time.perf_counter() - start)
        return statistics.median(times[1:])

    width = batch["input_ids"].shape[1] - args.response
    print(f"{args.rows} completions x ({width} prompt + {args.response} response tokens), forward and backward")
    chunked = seconds(lambda: response_logprobs(policy, batch, rows, 0.7)[0], args.precision)
    whole = seconds(lambda: whole_logits_logprobs(policy, batch, rows, 0.7), args.precision)
    ratio = chunked / whole
    print(f"{args.precision}: chunked {chunked:.3f} s, whole logits {whole:.3f} s: chunked / whole {ratio:.2f}")
