"""Greedy evaluation on fixed subsets of questions, the measure of learning that does not depend on which (easy or
hard) questions an iteration happened to sample."""

import json
import time
from pathlib import Path

import numpy as np

from common.console import phase, print0
from common.grading import grade
from common.vllm_utils import generate


def evaluate(llm, subsets: dict, max_new_tokens: int, writer, iteration: int) -> dict[str, float]:
    """Greedy accuracy on each fixed subset of questions (`subsets`: name -> examples; an empty one is skipped),
    returned and logged as charts/<subset>_accuracy; each question's completion and grade go to
    eval/<subset>_<iteration>.jsonl in the run folder (for paired comparisons between runs); the seconds to
    time/evaluation."""
    phase(f"evaluating at iteration {iteration} on {sum(map(len, subsets.values()))} questions", announce=True)
    start, accuracies = time.perf_counter(), {}
    for name, examples in subsets.items():
        if not examples:
            continue
        prompts = [e["prompt"] for e in examples]
        completions = generate(llm, prompts, n=1, temperature=0.0, top_p=1.0, max_tokens=max_new_tokens)
        correct = [grade(c[0].text, e["answer"]) for c, e in zip(completions, examples)]
        accuracies[name] = float(np.mean(correct))
        if writer:
            writer.add_scalar(f"charts/{name}_accuracy", accuracies[name], iteration)
            rows = [
                {"question": e["question"], "answer": e["answer"], "completion": c[0].text, "correct": right}
                for e, c, right in zip(examples, completions, correct)
            ]
            (Path(writer.log_dir) / "eval").mkdir(exist_ok=True)
            with open(Path(writer.log_dir) / "eval" / f"{name}_{iteration}.jsonl", "w") as f:
                f.writelines(json.dumps(row) + "\n" for row in rows)
        print0(f"iter {iteration} {name}_accuracy={accuracies[name]:.3f}")
    if writer:
        writer.add_scalar("time/evaluation", time.perf_counter() - start, iteration)
    llm.reset_prefix_cache()  # leave the engine as a resumed run finds it, for an exact resume
    return accuracies
