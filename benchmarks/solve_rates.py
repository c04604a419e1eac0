"""How often the default model solves the built-in arithmetic questions, per difficulty level, and in how many steps.

Run from the repository root: python benchmarks/solve_rates.py [--questions 240] [--samples 8]
Samples with the trainers' defaults (temperature 0.7, top_p 1.0, 64 new tokens, fp32 engine) through vLLM, and also
decodes greedily; grades as the trainers' reward does (a completion cut off at the token limit scores 0). Steps are
the reasoning steps VinePPO values: lines, cut by common.steps.split_gsm8k.
"""

import argparse
import sys
from collections import defaultdict
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from transformers import AutoTokenizer  # noqa: E402

from common.data import ARITHMETIC_LEVELS, build_prompt, make_arithmetic  # noqa: E402
from common.grading import grade  # noqa: E402
from common.model import resolve_model  # noqa: E402
from common.steps import split_gsm8k  # noqa: E402
from common.vllm_utils import generate, start_engine  # noqa: E402  (sets vLLM's env first)


def level(name: str) -> tuple[int, int]:
    """A level's name -> (digits, operations): d1o2 is one-digit operands, two operations."""
    digits, _, ops = name.removeprefix("d").partition("o")
    if not (digits.isdigit() and ops.isdigit() and int(digits) >= 1 and int(ops) >= 1):
        raise argparse.ArgumentTypeError(f"{name!r}: a level is d<digits>o<operations>, like d1o2")
    return int(digits), int(ops)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--questions", type=int, default=240)
    parser.add_argument("--samples", type=int, default=8)
    parser.add_argument("--temperature", type=float, default=0.7)
    parser.add_argument("--top-p", type=float, default=1.0)
    parser.add_argument("--max-tokens", type=int, default=64)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--levels", nargs="+", type=level, default=list(ARITHMETIC_LEVELS), help="e.g. d1o1 d1o2 (default: the mix)"
    )
    args = parser.parse_args()

    path = resolve_model(None)
    tokenizer = AutoTokenizer.from_pretrained(path)
    examples = make_arithmetic(args.questions, seed=args.seed, levels=sorted(set(args.levels)))
    prompts = [build_prompt(tokenizer, e["question"], "arithmetic") for e in examples]
    llm = start_engine(path, seed=args.seed, max_model_len=1024, gpu_memory_utilization=0.3)
    sampled = generate(
        llm, prompts, n=args.samples, temperature=args.temperature, top_p=args.top_p, max_tokens=args.max_tokens
    )
    greedy = generate(llm, prompts, n=1, temperature=0.0, top_p=1.0, max_tokens=args.max_tokens)

    by_level = defaultdict(list)  # level -> [(samples right, greedy right, mean steps per sample)]
    for e, completions, (g,) in zip(examples, sampled, greedy):
        right = sum(not c.truncated and grade(c.text, e["answer"]) for c in completions)
        steps = sum(len(split_gsm8k(c.text)) for c in completions) / len(completions)
        by_level[e["level"]].append((right, not g.truncated and grade(g.text, e["answer"]), steps))
    by_level["all"] = [r for name in sorted(by_level) for r in by_level[name]]
    # the share of questions of the mix drawn from each level, as the trainers draw them
    mix = {f"d{d}o{o}": args.levels.count((d, o)) / len(args.levels) for d, o in set(args.levels)}

    k = args.samples
    print(
        f"\nSmolLM2-135M-Instruct on arithmetic (seed {args.seed}): {k} samples per question at temperature "
        f"{args.temperature}, top_p {args.top_p}, max_tokens {args.max_tokens}; greedy decoding"
    )
    header = ["level", "mix", "questions", "solve rate", "greedy", f"all {k} right", f"all {k} wrong", "mixed", "steps"]
    print("| " + " | ".join(header) + " |\n|" + "-|" * len(header))
    for name in sorted(by_level, key=lambda lv: (lv == "all", lv)):
        rows = by_level[name]
        n = len(rows)
        always, never = sum(r == k for r, _, _ in rows) / n, sum(r == 0 for r, _, _ in rows) / n
        share = "1" if name == "all" else f"{mix[name]:.2f}"
        cells = [name, share, n, f"{sum(r for r, _, _ in rows) / (n * k):.1%}", f"{sum(g for _, g, _ in rows) / n:.1%}"]
        cells += [f"{always:.1%}", f"{never:.1%}", f"{1 - always - never:.1%}", f"{sum(s for *_, s in rows) / n:.1f}"]
        print("| " + " | ".join(map(str, cells)) + " |")


if __name__ == "__main__":
    main()
