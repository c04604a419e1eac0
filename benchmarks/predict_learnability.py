"""How well the predicted-learnability trainers' predictor picks, before generating, the questions a run can learn from.

Run from the repository root: python benchmarks/predict_learnability.py [--questions 480] [--samples 8]
The default model's solve rate p on the first distinct questions of the built-in arithmetic training split (seed 1):
--samples completions each with the trainers' sampling (temperature 0.7, top-p 1, 64 new tokens, fp32 engine, a
cut-off completion scoring 0). The predictor of `lilo_*_predicted.py` (common/predictor.py) is fitted on the solve
rates of some questions and ranks the others: how well its predicted learnability p(1 - p) finds the questions
with mixed outcomes (AUC), how its predicted p follows the observed one (Spearman), and the share of mixed questions
among the top quarter it would generate for, against random and the oracle. Fitted on labels as a run sees them (the
first 4 completions of each question, --run-samples), scored against all --samples; as many fitting questions as a
run has after a few iterations, and more. Also times the features of a pool of 16 prompts, the predictor's cost per
iteration. Last, the issue's alternative to predicting, simulated on the same completions: screening (SPEED-RL,
Reinforce-Ada): a few completions for every candidate of the pool, the rest of a group for the chosen alone.
"""

import argparse
import csv
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from scipy.stats import spearmanr  # noqa: E402
from transformers import AutoModelForCausalLM, AutoTokenizer  # noqa: E402

from common.data import build_prompt, load_split  # noqa: E402
from common.grading import score  # noqa: E402
from common.model import resolve_model  # noqa: E402
from common.predictor import predict_solve_rates, prompt_features  # noqa: E402
from common.vllm_utils import generate, start_engine  # noqa: E402  (sets vLLM's env first)


def auc(scores: np.ndarray, positive: np.ndarray) -> float:
    """The probability that a positive scores above a negative (ties count half)."""
    pos, neg = scores[positive], scores[~positive]
    return float(((pos[:, None] > neg[None]).sum() + 0.5 * (pos[:, None] == neg[None]).sum()) / (len(pos) * len(neg)))


def screened_choice(screened: np.ndarray, keep: int, rng: np.random.Generator) -> np.ndarray:
    """Screening's choice from a pool, given each candidate's screening rewards (a row of 1/0 each, maybe empty): the
    `keep` with the highest p(1 - p) of their screening completions, ties broken toward the pool's rarer outcome (a
    right answer, at this model's solve rate), then at random: `select_learnable` of lilo_*_screened.py."""
    rate = screened.mean(1) if screened.shape[1] else np.zeros(len(screened))
    rare = ~screened.all(1) if screened.size and screened.mean() >= 0.5 else screened.any(1)
    order = np.lexsort((rng.random(len(screened)), rare, rate * (1 - rate)))  # the last key sorts first
    return order[::-1][:keep]


def screening(right: np.ndarray, screens: list[int], pool: int, keep: int, group: int, repeats: int, rng) -> None:
    """Simulated iterations: a pool of questions drawn at random, each one's recorded completions in a random order;
    `screen` completions each, then its group completed to `group` for the `keep` chosen (the screened ones kept).
    Prints the completions an iteration generates and what the trained groups hold."""
    print(f"\nscreening, simulated: a pool of {pool}, {keep} chosen, groups of {group}; mean over {repeats} pools")
    print("| completions screened per candidate | completions generated an iteration | zero-variance share of the "
          "trained groups | their p(1 - p) |")  # fmt: skip
    print("|-|-|-|-|")
    for screen in screens:
        zero_variance, learnability = [], []
        for _ in range(repeats):
            rows = np.array([rng.permutation(right[i]) for i in rng.choice(len(right), pool, replace=False)])
            trained = rows[screened_choice(rows[:, :screen], keep, rng), :group].mean(1)
            zero_variance.append(np.mean((trained == 0) | (trained == 1)))
            learnability.append(np.mean(trained * (1 - trained)))
        generated = pool * screen + keep * (group - screen)
        name = {0: "0 (the base: no choice)", group: f"{group} (LILO's choice)"}.get(screen, str(screen))
        print(f"| {name} | {generated} | {np.mean(zero_variance):.0%} | {np.mean(learnability):.3f} |")


def solve_rates(args, tokenizer, path) -> list[dict]:
    """The questions with their completions' rewards (1/0 each, in sampling order), from --cache when it exists."""
    if args.cache and Path(args.cache).exists():
        with open(args.cache) as f:
            return [{"question": r["question"], "right": [int(c) for c in r["right"]]} for r in csv.DictReader(f)]
    seen, examples = set(), []
    for example in load_split("arithmetic", "train", 1):
        if example["question"] not in seen and len(examples) < args.questions:
            seen.add(example["question"])
            examples.append(example)
    prompts = [build_prompt(tokenizer, e["question"], "arithmetic") for e in examples]
    llm = start_engine(path, seed=0, max_model_len=1024, gpu_memory_utilization=0.3)
    start = time.perf_counter()
    completions = generate(llm, prompts, n=args.samples, temperature=0.7, top_p=1.0, max_tokens=64)
    print(f"generated {args.samples} x {len(prompts)} completions in {time.perf_counter() - start:.0f} s")
    rows = [{"question": e["question"], "right": [int(s) for s in scores]}
            for e, scores in zip(examples, score(examples, completions)[0])]  # fmt: skip
    if args.cache:
        Path(args.cache).parent.mkdir(parents=True, exist_ok=True)
        with open(args.cache, "w", newline="") as f:
            writer = csv.DictWriter(f, ["question", "right"])
            writer.writeheader()
            writer.writerows({"question": r["question"], "right": "".join(map(str, r["right"]))} for r in rows)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--questions", type=int, default=480)
    parser.add_argument("--samples", type=int, default=8, help="completions per question: the observed solve rate")
    parser.add_argument("--run-samples", type=int, default=4, help="of them, those a run sees: the fitting labels")
    parser.add_argument("--held-out", type=int, default=120, help="questions scored, never fitted on")
    parser.add_argument("--fit-sizes", type=int, nargs="+", default=[8, 16, 32, 48, 80, 160, 360])
    parser.add_argument("--ridges", type=float, nargs="+", default=[10.0, 100.0, 1000.0])
    parser.add_argument("--repeats", type=int, default=20, help="random fitting subsets per size")
    parser.add_argument("--screens", type=int, nargs="+", default=[0, 1, 2, 3, 4], help="screening completions")
    parser.add_argument("--cache", default="docs/results/predicted/solve_rates.csv", help="the solve rates, kept")
    args = parser.parse_args()

    path = resolve_model(None)
    tokenizer = AutoTokenizer.from_pretrained(path)
    rows = solve_rates(args, tokenizer, path)
    prompts = [build_prompt(tokenizer, r["question"], "arithmetic") for r in rows]
    model = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32).eval()
    start = time.perf_counter()
    features = prompt_features(model, prompts, tokenizer.eos_token_id, 16)
    seconds = time.perf_counter() - start
    start = time.perf_counter()
    prompt_features(model, prompts[:16], tokenizer.eos_token_id, 16)
    pool_seconds = time.perf_counter() - start
    right = np.array([r["right"] for r in rows], dtype=float)
    observed = right.mean(1)  # all samples: the truth the predictions are scored against
    labels = torch.tensor(right[:, : args.run_samples].mean(1))  # what a run would know of a question
    mixed = (observed > 0) & (observed < 1)

    rng = np.random.default_rng(0)
    order = rng.permutation(len(rows))
    held_out, fitting = order[: args.held_out], order[args.held_out :]
    quarter = args.held_out // 4
    print(
        f"\n{len(rows)} questions, {args.samples} samples each: mean solve rate {observed.mean():.3f}, mixed "
        f"{mixed.mean():.0%}; held out {args.held_out} (mixed {mixed[held_out].mean():.0%}); features "
        f"{features.shape[1]} numbers, {seconds:.1f} s for all, {pool_seconds:.2f} s for a pool of 16 prompts"
    )
    print(
        f"\nfitted on labels from {args.run_samples} completions each; scored on all {args.samples}; mean over "
        f"{args.repeats} random fitting subsets (one for the largest); top quarter = {quarter} of {args.held_out}"
    )
    print("| fitting questions | ridge | AUC (mixed) | Spearman (p) | mixed in the top quarter |")
    print("|-|-|-|-|-|")
    for size in args.fit_sizes:
        for ridge in args.ridges:
            results = []
            for _ in range(args.repeats if size < len(fitting) else 1):
                fit = rng.choice(fitting, size=min(size, len(fitting)), replace=False)
                seen = [(features[i], labels[i].item(), float("nan")) for i in fit]  # as the trainers keep it
                predicted = predict_solve_rates(features[held_out], seen, ridge).numpy()
                learnability = predicted * (1 - predicted)
                top = np.argsort(-learnability, kind="stable")[:quarter]
                results.append((auc(learnability, mixed[held_out]), spearmanr(predicted, observed[held_out])[0],
                                mixed[held_out][top].mean()))  # fmt: skip
            a, s, m = np.mean(results, 0)
            print(f"| {size} | {ridge:g} | {a:.2f} | {s:.2f} | {m:.0%} |")
    oracle = min(1.0, mixed[held_out].sum() / quarter)
    print(f"| random | | 0.50 | 0.00 | {mixed[held_out].mean():.0%} |\n| oracle | | 1.00 | | {oracle:.0%} |")
    screening(right, args.screens, pool=16, keep=4, group=args.run_samples, repeats=5000, rng=rng)


if __name__ == "__main__":
    main()
