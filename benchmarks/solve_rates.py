"""How often the default model solves the built-in arithmetic questions, per difficulty level.

Run from the repository root: python benchmarks/solve_rates.py [--questions 240] [--samples 8]
Samples with the trainers' defaults (temperature 1.0, top_p 1.0, 96 new tokens) through vLLM,
and also decodes greedily; grades with common.grading.grade.
"""

import argparse
import sys
from collections import defaultdict
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from transformers import AutoTokenizer  # noqa: E402

from common.data import build_prompt, make_arithmetic  # noqa: E402
from common.grading import grade  # noqa: E402
from common.model import resolve_model  # noqa: E402
from common.vllm_utils import generate, start_engine  # noqa: E402  (sets vLLM's env first)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--questions", type=int, default=240)
    parser.add_argument("--samples", type=int, default=8)
    parser.add_argument("--temperature", type=float, default=1.0)
    parser.add_argument("--top-p", type=float, default=1.0)
    parser.add_argument("--max-tokens", type=int, default=96)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--max-digits", type=int, default=3)
    parser.add_argument("--max-ops", type=int, default=2)
    args = parser.parse_args()

    path = resolve_model(None)
    tokenizer = AutoTokenizer.from_pretrained(path)
    examples = make_arithmetic(args.questions, seed=args.seed, max_digits=args.max_digits, max_ops=args.max_ops)
    prompts = [build_prompt(tokenizer, e["question"], "arithmetic") for e in examples]
    llm = start_engine(path, seed=args.seed, max_model_len=1024, gpu_memory_utilization=0.3)
    sampled = generate(
        llm, prompts, n=args.samples, temperature=args.temperature, top_p=args.top_p, max_tokens=args.max_tokens
    )
    greedy = generate(llm, prompts, n=1, temperature=0.0, top_p=1.0, max_tokens=args.max_tokens)

    by_level = defaultdict(list)  # level -> [(samples right, greedy right)]
    for e, completions, (g,) in zip(examples, sampled, greedy):
        right = sum(grade(c.text, e["answer"]) for c in completions)
        by_level[e["level"]].append((right, grade(g.text, e["answer"])))
    by_level["all"] = [r for level in sorted(by_level) for r in by_level[level]]

    k = args.samples
    print(
        f"\nSmolLM2-135M-Instruct on arithmetic (seed {args.seed}): {k} samples per question at temperature "
        f"{args.temperature}, top_p {args.top_p}, max_tokens {args.max_tokens}; greedy decoding"
    )
    print(f"{'level':<7}{'questions':>10}{'solve rate':>11}{'greedy':>8}{f'all {k} right':>13}{f'all {k} wrong':>13}")
    for level in sorted(by_level, key=lambda lv: (lv == "all", lv)):
        rows = by_level[level]
        n = len(rows)
        print(
            f"{level:<7}{n:>10}{sum(r for r, _ in rows) / (n * k):>11.1%}{sum(g for _, g in rows) / n:>8.1%}"
            f"{sum(r == k for r, _ in rows) / n:>13.1%}{sum(r == 0 for r, _ in rows) / n:>13.1%}"
        )


if __name__ == "__main__":
    main()
