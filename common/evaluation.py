"""Greedy evaluation on fixed subsets of questions, the measure of learning that does not depend on which (easy or
hard) questions an iteration happened to sample."""

import json
import time
from pathlib import Path

import numpy as np

from common.grading import grade
from common.progress import phase, write
from common.vllm_utils import generate

HISTORY: dict[str, list[tuple[int, float]]] = {}  # subset -> [(iteration, accuracy)] in this process


def evaluate(llm, subsets: dict, args, writer, iteration: int) -> None:
    """At iteration 0, every --eval-interval iterations and at the last: greedy accuracy on each fixed subset of
    questions (`subsets`: name -> examples), logged as charts/<subset>_accuracy; each question's completion and grade
    go to eval/<subset>_<iteration>.jsonl in the run folder (for paired comparisons between runs); its seconds to
    time/evaluation."""
    if not args.eval_interval or not subsets["test"]:
        return
    if iteration % args.eval_interval and iteration != args.num_iterations:
        return
    phase(f"evaluating at iteration {iteration} on {sum(map(len, subsets.values()))} questions", announce=True)
    start = time.perf_counter()
    for name, examples in subsets.items():
        prompts = [e["prompt"] for e in examples]
        limit = args.max_new_tokens
        completions = generate(llm, prompts, n=1, temperature=0.0, top_p=1.0, max_tokens=limit, counted=False)
        correct = [grade(c[0].text, e["answer"]) for c, e in zip(completions, examples)]
        accuracy = float(np.mean(correct))
        HISTORY.setdefault(name, []).append((iteration, accuracy))
        if writer:
            writer.add_scalar(f"charts/{name}_accuracy", accuracy, iteration)
            rows = [
                {"question": e["question"], "answer": e["answer"], "completion": c[0].text, "correct": right}
                for e, c, right in zip(examples, completions, correct)
            ]
            (Path(writer.log_dir) / "eval").mkdir(exist_ok=True)
            with open(Path(writer.log_dir) / "eval" / f"{name}_{iteration}.jsonl", "w") as f:
                f.writelines(json.dumps(row) + "\n" for row in rows)
        write(f"iter {iteration} {name}_accuracy={accuracy:.3f}")
    if writer:
        writer.add_scalar("time/evaluation", time.perf_counter() - start, iteration)
    llm.reset_prefix_cache()  # leave the engine as a resumed run finds it, for an exact resume
