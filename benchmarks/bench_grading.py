"""Grading throughput on a realistic mix of completions, and the worst case on adversarial input.

Run from the repository root: python benchmarks/bench_grading.py

"Cold" is a fresh grading worker (no reference parsed yet) and empty caches in this process; its
start-up is timed on its own. "Warm" grades the same completions again: an iteration of VinePPO
grades tens of thousands of completions, most of them repeating a few answer strings.
"""

import random
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from common import grading  # noqa: E402
from common.grading import grade  # noqa: E402

# (gold, equivalent answers, wrong answers) in MATH style
MATH = [
    (
        r"\frac{\sqrt{3}}{2}",
        [r"\frac{\sqrt3}{2}", r"\frac{1}{2}\sqrt{3}", r"\dfrac{\sqrt{3}}{2}"],
        [r"\frac{\sqrt{2}}{2}", r"\sqrt{3}"],
    ),
    (r"2\sqrt{3}", [r"\sqrt{12}", r"2 \sqrt{3}"], [r"3\sqrt{2}", r"\sqrt{6}"]),
    (r"\frac{\pi}{4}", [r"\pi/4", r"\frac{1}{4}\pi"], [r"\frac{\pi}{2}", "45"]),
    ("(1,2]", ["(1, 2]"], ["[1,2]", "(1,2)"]),
    (r"\{1,3\}", [r"\{3, 1\}", "1, 3"], [r"\{1,2\}"]),
    ("x^2+2x+1", ["(x+1)^2", "1+2x+x^2"], ["(x-1)^2", "x^2+1"]),
    (r"\frac{7}{3}", ["7/3", r"\tfrac73"], [r"\frac{3}{7}", "2.3"]),
    ("12", [r"12\text{ cm}", "12.0", "x = 12"], ["13", "-12"]),
    (r"(-\infty, 2) \cup (3, \infty)", [r"(3,\infty)\cup(-\infty,2)"], [r"(-\infty,2]\cup(3,\infty)"]),
    (r"\text{(C)}", ["C", "(C)"], ["B"]),
]
ADVERSARIAL = [
    r"\boxed{10^{10^{10}}}",
    r"9^{9^{9^{9}}}",
    r"\boxed{2^{99999999}}",
    r"\boxed{99999!}",
    r"\boxed{(3^{9999})^{9999}}",
    "x" * 100_000,
    "1" * 100_000,
    r"\boxed{" * 5000 + "1" + "}" * 5000,
    r"\boxed{" + "{" * 10_000,
    r"\boxed{" + "(" * 500 + "1" + ")" * 500 + "}",
    "\x00\\boxed{\x00}",
    r"\boxed{__import__('os')}",
    r"\boxed{" + "+".join(["x"] * 200) + "}",
    r"\boxed{\frac{}{}}",
]
FILLER = "We first compute the total, then subtract what was used, and check the units carefully. "


def make_mix(n: int, rng: random.Random) -> list[tuple[str, str, bool]]:
    """(completion, gold, is it right) triples: half GSM8K-style, 40% MATH-style, 10% no answer."""
    mix = []
    for _ in range(n):
        r = rng.random()
        if r < 0.5:
            gold = rng.randint(1, 200_000)
            right = rng.random() < 0.5
            value = gold if right else gold + rng.choice([-10, -1, 1, 2, 100])
            shown = rng.choice([str(value), f"{value:,}", f"{value}.00"])
            ending = rng.choice([f"#### {shown}", f"$\\boxed{{{shown}}}$", f"The answer is {shown}.", f"So {shown}"])
            mix.append((FILLER * rng.randint(1, 6) + ending, str(gold), right))
        elif r < 0.9:
            gold, rights, wrongs = rng.choice(MATH)
            right = rng.random() < 0.5
            answer = rng.choice(rights if right else wrongs)
            mix.append((FILLER * rng.randint(1, 6) + f"Hence the answer is $\\boxed{{{answer}}}$.", gold, right))
        else:
            garbage = "".join(rng.choice("abc{}\\^_ +=()") for _ in range(rng.randint(50, 400)))
            mix.append((FILLER + garbage, str(rng.randint(1, 100)), False))
    return mix


def main() -> None:
    mix = make_mix(2000, random.Random(0))
    calls = 0
    worker_equal = grading._WORKER.equal

    def counting(*args):
        nonlocal calls
        calls += 1
        return worker_equal(*args)

    grading._WORKER.equal = counting
    start = time.perf_counter()
    grade(r"\sqrt{12}", r"2\sqrt{3}")  # starts the worker
    startup = time.perf_counter() - start
    rows = [("completions", f"{len(mix)}"), ("worker start-up (s)", f"{startup:.3f}")]
    for label in ("cold caches", "warm caches"):
        if label == "cold caches":
            grading._answers_equal.cache_clear(), grading._clean.cache_clear()
            grading._WORKER.close()
            with grading._WORKER.lock:  # a fresh worker, started before the clock
                grading._WORKER._ensure_ready()
            calls = 0
        start = time.perf_counter()
        results = [grade(completion, gold) for completion, gold, _ in mix]
        elapsed = time.perf_counter() - start
        rows.append((f"grades/s ({label})", f"{len(mix) / elapsed:,.0f}"))
        if label == "cold caches":
            rows.append(("worker calls (cold)", f"{calls}"))
            agree = sum(r == right for r, (_, _, right) in zip(results, mix))
            rows.append(("agreement with labels", f"{agree}/{len(mix)}"))
    worst, worst_input = 0.0, ""
    for text in ADVERSARIAL:
        start = time.perf_counter()
        grade(text, "1")
        if (t := time.perf_counter() - start) > worst:
            worst, worst_input = t, text
    rows.append((f"worst adversarial grade of {len(ADVERSARIAL)} (s)", f"{worst:.3f}  {worst_input[:30]!r}"))
    for name, value in rows:
        print(f"{name:<36} {value}")


if __name__ == "__main__":
    main()
