"""Re-score these runs on the questions their evaluations share with today's held-out test split.

Run from the repository root: python docs/results/overlapping_test_split/rescore.py
The training split is unchanged, so a run's grades on a question that today's test split holds are grades on a
question it never trained on. Greedy evaluation grades a repeated question the same way, so each question counts once.
"""

import re
import sys
from pathlib import Path

import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parents[3]))
from common.data import load_split  # noqa: E402

HERE = Path(__file__).parent
rows = []
for path in sorted(HERE.glob("*__test.csv")):
    config, seed = re.fullmatch(r"(.+)__seed(\d+)__test\.csv", path.name).groups()
    held_out = {e["question"] for e in load_split("arithmetic", "test", int(seed))[:200]}
    grades = pd.read_csv(path).drop_duplicates(["iteration", "question"])
    kept = grades[grades.question.isin(held_out)]
    for iteration, group in kept.groupby("iteration"):
        every = grades[grades.iteration == iteration].correct.mean()
        rows.append(dict(config=config, seed=int(seed), iteration=iteration, questions=len(group),
                         accuracy=group.correct.mean(), all_questions=every))  # fmt: skip
table = pd.DataFrame(rows)
last = table.iteration.max()
ends = table[table.iteration.isin([0, last])].pivot_table(index=["config", "seed"], columns="iteration")
gain = (ends["accuracy"][last] - ends["accuracy"][0]).groupby("config").agg(["mean", "std", "count"])
summary = pd.DataFrame({
    "held-out questions per seed": ends["questions"][last].groupby("config").mean(),
    f"acc. iteration {last}, held-out only": ends["accuracy"][last].groupby("config").mean(),
    f"acc. iteration {last}, every question graded then": ends["all_questions"][last].groupby("config").mean(),
    "gain from iteration 0, held-out only (mean)": gain["mean"],
    "(sd over seeds)": gain["std"],
})  # fmt: skip
print(summary.round(3).to_string())
