"""Learning curves of the trainers and their compute-matched baselines, several seeds each: per-run CSVs, plots with
95% interval bands, and a summary with intervals, paired differences and p-values.

Run from the repository root: python benchmarks/learning_curves.py
Every (configuration, seed) run goes through the trainer's own command line (same Args for all but the seed and the
configuration's own flags). Its tensorboard scalars become <results-dir>/<configuration>__seed<S>.csv, one row per
iteration, and its held-out evaluations' per-question grades <configuration>__seed<S>__test.csv. A run whose CSVs
are complete is skipped and a run killed midway resumes from its last checkpoint, so a stopped invocation continues
where it stopped and a later one can add seeds. Then it draws <results-dir>/*.png and writes summary.md (also
printed). --plot-only redraws from the CSVs without training.
"""

import argparse
import json
import re
import shutil
import signal
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
from scipy import stats

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))
from conftest import read_scalars  # noqa: E402

LILO_OVERSAMPLE = 4  # the LILO trainers' --oversample default: their pool is this many times the questions trained on
TRAINER_DEFAULTS = {"questions_per_iteration": 4, "minibatch_size": 8}  # the trainers' Args (a test checks them)
# configuration -> (trainer script, its own flags). The compute-matched baselines of the LILO paper (Appendix F) and
# the authors' fork (`*_compute_matched_*`, `_inc_bs`) give the base trainer LILO's pool: `questions` x LILO_OVERSAMPLE
# questions per iteration, all trained on, so that it generates as many completions per iteration as the LILO trainer.
# *_matched: with LILO_OVERSAMPLE x the optimiser steps (the minibatch as it is); *_matched_batch: the same number of
# optimiser steps as the base, each on a LILO_OVERSAMPLE x larger minibatch. Neither matches VinePPO's Monte-Carlo
# rollouts, which LILO runs for the kept questions only: the summary counts every generated token.
ALGORITHMS = ["ppo", "vineppo", "grpo"]
CONFIGS = {}
for algorithm in ALGORITHMS:
    CONFIGS |= {algorithm: (algorithm, []), f"lilo_{algorithm}": (f"lilo_{algorithm}", [])}
    CONFIGS |= {f"{algorithm}_matched": (algorithm, ["matched"])}
    CONFIGS |= {f"{algorithm}_matched_batch": (algorithm, ["matched", "batch"])}
# learnability predicted before generating (issue #55): LILO's choice from the same pool, generating for the batch alone
CONFIGS |= {f"lilo_{algorithm}_predicted": (f"lilo_{algorithm}_predicted", []) for algorithm in ALGORITHMS}
# screening (issue #55's alternative): one completion for each question of LILO's pool, the rest for the chosen alone
CONFIGS |= {f"lilo_{algorithm}_screened": (f"lilo_{algorithm}_screened", []) for algorithm in ALGORITHMS}
DEFAULT_CONFIGS = list(CONFIGS)
# (configuration, its base, what differs): the paired differences the summary reports, when both have run
COMPARISONS = [
    ("vineppo", "ppo", "Monte-Carlo values instead of a value network"),
    ("grpo", "ppo", "group baseline instead of a value network"),
]
for algorithm in ALGORITHMS:
    COMPARISONS += [
        (f"lilo_{algorithm}", algorithm, "learnability sampling, with 4x the generation"),
        (f"lilo_{algorithm}", f"{algorithm}_matched", "learnability sampling at equal generation (4x the steps)"),
        (f"lilo_{algorithm}", f"{algorithm}_matched_batch", "learnability sampling at equal generation and steps"),
        (f"{algorithm}_matched", algorithm, "4x the questions per iteration, 4x the steps"),
        (f"{algorithm}_matched_batch", algorithm, "4x the questions per iteration, 4x the minibatch"),
    ]
for algorithm in ALGORITHMS:  # named before the runs (docs/results.md): the same generation and update as the base;
    COMPARISONS += [  # the same update as LILO with a quarter of its generation
        (f"lilo_{algorithm}_predicted", algorithm, "learnability predicted before generating, the base's generation"),
        (f"lilo_{algorithm}_predicted", f"lilo_{algorithm}", "prediction instead of LILO's 4x generation"),
    ]
for algorithm in ALGORITHMS:  # named before the runs (docs/results.md): 1.75x the base's generation, 0.44x LILO's
    COMPARISONS += [
        (f"lilo_{algorithm}_screened", algorithm, "learnability sampling after a one-completion screening"),
        (f"lilo_{algorithm}_screened", f"lilo_{algorithm}", "a one-completion screening instead of LILO's pool"),
    ]
# issue #55's primary comparison, named before its runs: (configuration, base) of each algorithm, paired by
# (algorithm, seed) and tested together
PRIMARY = [(f"lilo_{algorithm}_predicted", algorithm) for algorithm in ALGORITHMS]
# the screened variants' primary comparison, named before their runs: each minus its base at equal generated tokens
SCREENED_PRIMARY = [(f"lilo_{algorithm}_screened", algorithm) for algorithm in ALGORITHMS]
# runs logged before a scalar was renamed: old name -> new
RENAMED = {"charts/train_subset_accuracy": "charts/train_split_accuracy"}
COLORS = {"ppo": "tab:blue", "vineppo": "tab:orange", "lilo_ppo": "tab:green", "lilo_vineppo": "tab:red",
          "grpo": "tab:purple", "lilo_grpo": "tab:brown"}  # fmt: skip


def color_and_style(config: str) -> tuple[str, str | tuple]:
    """A compute-matched baseline: its base trainer's colour, dashed (4x the steps) or dotted (4x the minibatch); a
    predicted variant: its LILO trainer's, dash-dotted; a screened variant: its LILO trainer's, dash-dot-dotted."""
    if config.endswith("_predicted"):
        return COLORS[config.removesuffix("_predicted")], "-."
    if config.endswith("_screened"):
        return COLORS[config.removesuffix("_screened")], (0, (5, 1, 1, 1, 1, 1))
    base = config.removesuffix("_batch").removesuffix("_matched")
    return COLORS[base], {base: "-", f"{base}_matched": "--"}.get(config, ":")


def config_flags(config: str, trainer_args: str) -> list[str]:
    """The configuration's own flags: "matched" becomes LILO's pool size as --questions-per-iteration, "batch"
    LILO_OVERSAMPLE x the minibatch as --minibatch-size."""
    flags = []
    for flag, option in [("matched", "questions_per_iteration"), ("batch", "minibatch_size")]:
        if flag in CONFIGS[config][1]:
            name = "--" + option.replace("_", "-")
            given = re.search(rf"{name}[ =](\d+)", trainer_args)
            flags += [name, str((int(given.group(1)) if given else TRAINER_DEFAULTS[option]) * LILO_OVERSAMPLE)]
    return flags


def run_to_csv(config: str, seed: int, args, csv_path: Path) -> None:
    """Train one (configuration, seed), resuming its last checkpoint if an earlier attempt was killed."""
    output_dir = ROOT / args.runs_dir / f"{config}__seed{seed}"
    previous = sorted(output_dir.glob("*/checkpoint"))
    flags = ["--resume", str(previous[-1].parent)] if previous else ["--output-dir", str(output_dir)]
    command = [
        sys.executable,
        f"{CONFIGS[config][0]}.py",
        "--seed",
        str(seed),
        "--num-iterations",
        str(args.iterations),
        "--eval-interval",
        str(args.eval_interval),
        "--eval-size",
        str(args.eval_size),
        "--save-interval",
        str(args.eval_interval),
        *flags,
        *args.trainer_args.split(),
        *config_flags(config, args.trainer_args),
    ]
    print(f"running: {' '.join(command)}", flush=True)
    output_dir.mkdir(parents=True, exist_ok=True)
    with open(output_dir / "stdout.log", "a") as log:
        process = subprocess.Popen(command, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT)
        while True:  # Ctrl-C reaches the trainer too: it finishes its iteration and checkpoints; wait for it
            try:
                returncode = process.wait()
                break
            except KeyboardInterrupt:
                print("interrupted: waiting for the trainer's checkpoint (Ctrl-C again: at once)", flush=True)
    if returncode in (128 + signal.SIGINT, 128 + signal.SIGTERM):
        sys.exit(f"stopped: {config} seed {seed} saved a checkpoint; run the same command again to resume")
    if returncode in (-signal.SIGINT, -signal.SIGTERM):  # stopped before its first iteration: nothing to save yet
        sys.exit(f"stopped: {config} seed {seed} before its first iteration; run the same command again to start it")
    if returncode:
        sys.exit(f"error: {config} seed {seed} failed; see {output_dir / 'stdout.log'}")
    run_dir = max((d for d in output_dir.iterdir() if d.is_dir()), key=lambda d: d.stat().st_mtime)
    scalars = read_scalars(run_dir)  # a resumed run logs some iterations twice: the later value wins
    table = pd.DataFrame({tag: pd.Series(dict(points)) for tag, points in scalars.items()}).sort_index()
    table.index.name = "iteration"
    table.insert(0, "train_minutes", table["time/iteration"].fillna(0).cumsum() / 60)
    table.insert(0, "seed", seed)
    table.insert(0, "trainer", config)
    run_args = json.loads((run_dir / "args.json").read_text())
    table["completions_per_iteration"] = run_args["questions_per_iteration"] * run_args["completions_per_question"]
    grades = [
        {"iteration": int(path.stem.split("_")[-1]), "question": row["question"], "correct": int(row["correct"])}
        for path in (run_dir / "eval").glob("test_*.jsonl")
        for row in map(json.loads, path.read_text().splitlines())
    ]
    pd.DataFrame(grades).sort_values("iteration", kind="stable").to_csv(test_csv(csv_path), index=False)
    table.to_csv(csv_path)
    shutil.rmtree(run_dir / "checkpoint")  # gigabytes; the run is complete and its CSVs written


def test_csv(csv_path: Path) -> Path:
    return csv_path.with_name(csv_path.stem + "__test.csv")


def is_complete(csv_path: Path, iterations: int) -> bool:
    if not csv_path.exists() or not test_csv(csv_path).exists():
        return False
    table = pd.read_csv(csv_path, index_col="iteration")
    return iterations in table.index and not np.isnan(table.loc[iterations, "charts/test_accuracy"])


# ---------------------------------------------------------------------------------------------------- statistics


def mean_interval(values, bounds: tuple[float, float] = (0.0, 1.0)) -> tuple[float, float, float]:
    """Mean and its 95% Student-t interval over independent runs (seeds); the interval is nan under 2 runs.

    With few seeds the t interval of an accuracy or a share can reach past what the quantity can take (0.30 +- 0.45
    from two seeds); it is clipped to `bounds`, the quantity's range, so no table reads "128%".
    """
    values = np.asarray(values, dtype=float)
    mean = float(values.mean())
    if len(values) < 2:
        return mean, float("nan"), float("nan")
    half = stats.t.ppf(0.975, len(values) - 1) * values.std(ddof=1) / np.sqrt(len(values))
    return mean, max(mean - half, bounds[0]), min(mean + half, bounds[1])


def paired_t_p(differences) -> float:
    """A two-sided paired t-test's p-value over the seeds' differences; nan under 2 seeds."""
    if len(differences) < 2:
        return float("nan")
    with warnings.catch_warnings():  # identical differences on every seed: no variance, no t statistic
        warnings.simplefilter("ignore")
        return float(stats.ttest_1samp(differences, 0.0).pvalue)


def paired_difference(correct: dict, base: dict, resamples: int = 10_000, rng_seed: int = 0) -> dict:
    """Accuracy difference between two configurations trained on the same seeds, graded on the same questions.

    `correct[s]` and `base[s]` are 0/1 grades of seed s's test questions, in the same order. The 95% interval is a
    two-level bootstrap: seeds resampled, then each drawn seed's questions (pairs kept together); the p-value is a
    paired t-test of the seeds' differences (two-sided): each seed has its own questions, so the seeds' differences
    are independent and carry both the training and the question sampling's noise."""
    seeds = sorted(set(correct) & set(base))
    pairs = [(np.asarray(correct[s]), np.asarray(base[s])) for s in seeds]
    if any(a.shape != b.shape or not set(np.unique(np.r_[a, b])) <= {0, 1} for a, b in pairs):
        raise ValueError("paired_difference needs 0/1 grades of the same questions for both configurations")
    per_question = [a.astype(int) - b.astype(int) for a, b in pairs]
    diffs = np.array([d.mean() for d in per_question])
    rng = np.random.default_rng(rng_seed)
    # a resample of a seed's questions has the mean (#(+1) - #(-1)) / n: multinomial counts of -1, 0 and +1
    means = []  # seed, resample, slot
    for d in per_question:
        counts = rng.multinomial(len(d), [np.mean(d == v) for v in (-1, 0, 1)], size=(resamples, len(seeds)))
        means.append((counts[..., 2] - counts[..., 0]) / len(d))
    means = np.stack(means)
    drawn = rng.integers(len(seeds), size=(resamples, len(seeds)))
    boot = means[drawn, np.arange(resamples)[:, None], np.arange(len(seeds))].mean(1)
    p = paired_t_p(diffs)
    low, high = np.percentile(boot, [2.5, 97.5])
    return {"difference": float(diffs.mean()), "low": float(low), "high": float(high), "p": p, "seeds": len(seeds)}


def iterations_to_reach(table: pd.DataFrame, base: pd.DataFrame) -> dict:
    """Per seed both ran: the first evaluated iteration at which `table`'s held-out accuracy reaches the final
    accuracy of `base` on the same seed; None if it never does."""
    reached = {}
    for seed in sorted(set(table["seed"]) & set(base["seed"])):
        base_curve = base.loc[base["seed"] == seed, "charts/test_accuracy"].dropna()
        curve = table.loc[table["seed"] == seed, "charts/test_accuracy"].dropna()
        hits = curve.index[curve >= base_curve.loc[base_curve.index.max()] - 1e-9]
        reached[seed] = int(hits[0]) if len(hits) else None
    return reached


# what a comparison can hold equal between two runs of a seed, and its name in the summary
BUDGETS = {
    "charts/cumulative_tokens_generated": "generated tokens",
    "charts/cumulative_tokens_trained": "trained tokens",
    "train_minutes": "training minutes",
}


def accuracy_at_equal_budget(table: pd.DataFrame, base: pd.DataFrame, budget: str) -> dict:
    """Per seed both ran: `table`'s held-out accuracy minus `base`'s, each interpolated linearly between its
    evaluations at the largest value of `budget` (a BUDGETS column, 0 before the first iteration) that both runs
    reached, that is, at the cheaper run's final budget."""
    differences = {}
    for seed in sorted(set(table["seed"]) & set(base["seed"])):
        curves = []
        for run in (table, base):
            run = run.loc[run["seed"] == seed].dropna(subset=["charts/test_accuracy"])
            curves.append((run[budget].fillna(0).to_numpy(), run["charts/test_accuracy"].to_numpy()))
        common = min(spent[-1] for spent, _ in curves)
        differences[seed] = float(np.interp(common, *curves[0]) - np.interp(common, *curves[1]))
    return differences


def band(ax, table: pd.DataFrame, x: str, y: str, label: str, color: str, style: str | tuple = "-") -> None:
    """Mean over seeds as a line, its 95% interval over seeds (mean_interval) as a shaded band."""
    points = table.reset_index().dropna(subset=[y]).groupby("iteration")
    intervals = points[y].apply(lambda v: pd.Series(mean_interval(v), index=["mean", "low", "high"])).unstack()
    xs = points[x].mean()
    marker = "o" if y == "charts/test_accuracy" else None
    ax.plot(xs, intervals["mean"], linestyle=style, color=color, label=label, marker=marker, markersize=3)
    ax.fill_between(xs, intervals["low"], intervals["high"], color=color, alpha=0.12)


def smoothed(table: pd.DataFrame, column: str, window: int = 5) -> pd.Series:
    """Per seed, the mean over the last `window` iterations: 4 questions an iteration are noisy."""
    return table.groupby("seed")[column].transform(lambda x: x.rolling(window, min_periods=1).mean())


def finish(fig, ax, path: Path, title: str, **labels) -> None:
    """A per-iteration plot of smoothed curves: its title and labels, the legend beside it, saved to `path`."""
    ax.set(xlabel="iteration", title=title + "\nmean of the last 5 iterations; band: 95% interval over seeds", **labels)
    ax.legend(fontsize=8, bbox_to_anchor=(1.02, 1), loc="upper left")
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def plot(tables: dict[str, pd.DataFrame], out: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    seeds = max(t["seed"].nunique() for t in tables.values())
    subset = "charts/train_split_accuracy"
    with_subset = {config: table.dropna(subset=[subset]) for config, table in tables.items() if subset in table}
    counts = {  # rollouts, LILO's pools and Monte-Carlo rollouts alike; what the update saw
        "charts/cumulative_tokens_generated": ("tokens generated for training (thousands)", "against generation"),
        "charts/cumulative_tokens_trained": ("tokens trained on (thousands)", "against trained tokens"),
    }
    counts = {count: texts for count, texts in counts.items() if any(count in t for t in tables.values())}
    panels = 2 + len(counts) + bool(with_subset)
    fig, axes = plt.subplots(1, panels, figsize=(5.5 * panels + 0.5, 4.5), sharey=True)
    for config, table in tables.items():
        color, style = color_and_style(config)
        band(axes[0], table, "iteration", "charts/test_accuracy", config, color, style)
        band(axes[1], table, "train_minutes", "charts/test_accuracy", config, color, style)
    axes[0].set(
        xlabel="iteration",
        ylabel="accuracy (greedy)",
        title=f"held-out test accuracy: mean, 95% interval over seeds (up to {seeds})",
    )
    axes[1].set(xlabel="training wall-clock (minutes, evaluation excluded)", title="the same against time")
    for ax, (count, (xlabel, title)) in zip(axes[2:], counts.items()):
        for config, table in tables.items():
            if count in table:  # none counted before iteration 1
                table = table.assign(ktokens=table[count].mask(table.index == 0, 0) / 1e3)
                band(ax, table, "ktokens", "charts/test_accuracy", config, *color_and_style(config))
        ax.set(xlabel=xlabel, title=f"the same {title}")
    for config, table in with_subset.items():
        color, style = color_and_style(config)
        band(axes[-1], table, "iteration", subset, f"{config} (seeds: {table['seed'].nunique()})", color, style)
    if with_subset:
        axes[-1].set(xlabel="iteration", title="fixed subset of training questions")
        axes[-1].legend(fontsize=8)
    axes[0].legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(out / "test_accuracy.png", dpi=120)

    fig, ax = plt.subplots(figsize=(10, 4.5))
    for config, table in tables.items():
        color, style = color_and_style(config)
        table = table.assign(zero=table["charts/all_correct_share"] + table["charts/all_wrong_share"])
        table = table.assign(zero=smoothed(table, "zero"))
        sampling = "learnability" if config.startswith("lilo") else "uniform"
        band(ax, table, "iteration", "zero", f"{config}: trained ({sampling})", color, style)
        if "charts/pool_all_correct_share" in table and not config.endswith("_screened"):  # a screening's one
            # completion per question is all right or all wrong: the pool's share would read 100%
            pool = table.assign(zero=table["charts/pool_all_correct_share"] + table["charts/pool_all_wrong_share"])
            pool = pool.assign(zero=smoothed(pool, "zero"))
            band(ax, pool, "iteration", "zero", f"{config}: candidate pool (uniform)", color, ":")
    title = "questions whose completions were all right or all wrong (no learning signal)"
    finish(fig, ax, out / "zero_variance_share.png", title, ylabel="share of questions", ylim=(0, 1))

    if not any("charts/batch_learnability" in table for table in tables.values()):
        return
    fig, ax = plt.subplots(figsize=(10, 4.5))
    for config, table in tables.items():
        if "charts/batch_learnability" in table:
            for column, label, style in [
                ("charts/batch_learnability", "trained batch", "-"),
                ("charts/pool_learnability", "candidate pool", "--"),
            ]:
                if column not in table or config.endswith("_screened") and "pool" in column:
                    continue  # the predicted variants never see their pool's outcomes, the screened ones one each
                smooth = table.assign(y=smoothed(table, column))
                band(ax, smooth, "iteration", "y", f"{config}: {label}", color_and_style(config)[0], style)
    title = "learnability p(1-p) of the trained questions vs the pool they were picked from"
    finish(fig, ax, out / "learnability.png", title, ylabel="mean p(1-p)", ylim=(0, 0.26))


BIG = (0.0, np.inf)  # the bounds of a count or a duration


def interval_text(values, digits: int = 3, percent: bool = False, bounds: tuple[float, float] = (0.0, 1.0)) -> str:
    """The mean and its interval (mean_interval) as "mean [low, high]", or the mean alone for one seed."""
    mean, low, high = mean_interval(values, bounds)
    f = (lambda v: f"{v:.1%}") if percent else (lambda v: f"{v:.{digits}f}")
    return f"{f(mean)} [{f(low)}, {f(high)}]" if np.isfinite(low) else f(mean)


def p_text(p: float) -> str:
    """A p-value as the tables print it: none under 2 seeds, and no false zero when it is tiny."""
    if np.isnan(p):
        return "n/a (1 seed)"
    return "< 0.001" if p < 0.001 else f"{p:.3f}"


def bonferroni(p_values: list[float]) -> list[float]:
    """Bonferroni-adjusted p-values: each times the number of comparisons that have one (2 seeds or more), at most 1;
    an adjusted p under 0.05 holds the chance of any false positive in the table under 5%."""
    tested = sum(not np.isnan(p) for p in p_values)
    return [p if np.isnan(p) else min(1.0, p * tested) for p in p_values]


def bonferroni_by_family(configs: list[str], p_values: list[float]) -> list[float]:
    """Bonferroni within each family of comparisons, those named together before their runs: the 60 runs' (issue
    #35), the predicted variants' and the screened variants' (issue #55), so that a new study leaves the others'
    adjusted p-values as they were."""
    families = [config.rsplit("_", 1)[-1] if config.endswith(("_predicted", "_screened")) else "" for config in configs]
    adjusted = list(p_values)
    for family in set(families):
        members = [i for i, f in enumerate(families) if f == family]
        for i, value in zip(members, bonferroni([p_values[i] for i in members])):
            adjusted[i] = value
    return adjusted


def per_seed(table: pd.DataFrame, column: str, how: str = "mean") -> pd.Series:
    """One value per seed: the mean over iterations >= 1, or the value at the last iteration."""
    logged = table.loc[table.index > 0].dropna(subset=[column]) if how == "mean" else table.dropna(subset=[column])
    if how == "mean":
        return logged.groupby("seed")[column].mean()
    return logged.loc[logged.index == logged.index.max()].set_index("seed")[column]


def test_grades(out: Path, config: str, iteration: int) -> dict:
    """seed -> 0/1 grades of its test questions at `iteration`, in question order, from the __test.csv files."""
    grades = {}
    for path in out.glob(f"{config}__seed*__test.csv"):
        seed = int(re.fullmatch(rf"{re.escape(config)}__seed(\d+)__test", path.stem).group(1))
        rows = pd.read_csv(path)
        rows = rows[rows["iteration"] == iteration]
        if len(rows):
            grades[seed] = (rows["question"].tolist(), rows["correct"].to_numpy())
    return grades


def primary_differences(tables: dict[str, pd.DataFrame], out: Path) -> list[float]:
    """Issue #55's primary comparison: final held-out accuracy, each PRIMARY configuration minus its base, for every
    (algorithm, seed) that both ran, graded on the same questions."""
    diffs = []
    for config, base in PRIMARY:
        last = min(tables[config].index.max(), tables[base].index.max())
        a, b = test_grades(out, config, last), test_grades(out, base, last)
        for seed in sorted(set(a) & set(b)):
            if a[seed][0] != b[seed][0]:
                raise SystemExit(f"error: {config} and {base} seed {seed} were graded on different test questions")
            diffs.append(float(np.mean(a[seed][1]) - np.mean(b[seed][1])))
    return diffs


def screened_primary_differences(tables: dict[str, pd.DataFrame]) -> list[float]:
    """The screened variants' primary comparison: held-out accuracy at equal generated tokens, each SCREENED_PRIMARY
    configuration minus its base, for every (algorithm, seed) that both ran."""
    tokens = "charts/cumulative_tokens_generated"
    return [d for a, b in SCREENED_PRIMARY for d in accuracy_at_equal_budget(tables[a], tables[b], tokens).values()]


def pooled_test(diffs: list[float]) -> str:
    """A pooled paired comparison in words: its pairs, mean and 95% t interval in points, p and positive pairs."""
    mean, low, high = mean_interval(diffs, bounds=(-1.0, 1.0))
    return (
        f"{len(diffs)} pairs, {100 * mean:+.1f} points [95% t interval {100 * low:+.1f}, {100 * high:+.1f}], "
        f"two-sided paired t-test p = {p_text(paired_t_p(diffs))}; positive in {sum(d > 0 for d in diffs)} of "
        f"{len(diffs)}."
    )


def section(title: str, text: str, columns: list[str] | None = None) -> list[str]:
    """A summary section's first lines: its title, what it reports, and its table's header if it has a table."""
    header = ["", "| " + " | ".join(columns) + " |", "|" + "-|" * len(columns)] if columns else []
    return ["", f"## {title}", "", text, *header]


def summary(tables: dict[str, pd.DataFrame], out: Path) -> str:
    """Markdown: final accuracy with intervals; paired differences with intervals and p-values; VinePPO's steps."""
    lines = [
        "## Final held-out accuracy",
        "",
        "Mean over seeds with a 95% Student-t interval in brackets, clipped to [0, 1]. Zero-variance share: trained "
        "questions whose completions were all right or all wrong (no learning signal), mean over iterations.",
        "",
        "| configuration | seeds | iterations | test acc. start | test acc. end [95% CI] | per seed "
        "| train-subset acc. start → end | zero-variance share [95% CI] | completions generated / trained "
        "per iteration | tokens generated in all (thousands) | training minutes in all | s / iteration (median) |",
        "|-|-|-|-|-|-|-|-|-|-|-|-|",
    ]
    for config, table in tables.items():
        finals = per_seed(table, "charts/test_accuracy", "last")
        starts = table.loc[table.index == 0, "charts/test_accuracy"]
        subset = "not logged"  # by runs older than the metric
        if "charts/train_split_accuracy" in table and table["charts/train_split_accuracy"].notna().any():
            logged = table.dropna(subset=["charts/train_split_accuracy"])
            subset_curve = logged["charts/train_split_accuracy"].groupby(level=0).mean()
            subset = f"{subset_curve.iloc[0]:.3f} → {subset_curve.iloc[-1]:.3f}"
        zero = per_seed(table.assign(zero=table["charts/all_correct_share"] + table["charts/all_wrong_share"]), "zero")
        volume = "not logged"
        if "completions_per_iteration" in table:  # the base trainers generate what they train on
            trained = table.loc[table.index > 0].get("charts/completions_trained", table["completions_per_iteration"])
            generated = table.loc[table.index > 0].get("charts/completions_generated", trained)
            volume = f"{generated.mean():.0f} / {trained.mean():.0f}"
        tokens = "not logged"  # by runs older than the count
        if "charts/cumulative_tokens_generated" in table:
            tokens = interval_text(per_seed(table, "charts/cumulative_tokens_generated", "last") / 1e3, 0, bounds=BIG)
        minutes = interval_text(per_seed(table, "train_minutes", "last"), 1, bounds=BIG)
        lines.append(
            f"| {config} | {table['seed'].nunique()} | {table.index.max()} | {starts.mean():.3f} "
            f"| {interval_text(finals)} | {', '.join(f'{v:.3f}' for v in finals)} | {subset} "
            f"| {interval_text(zero, percent=True)} | {volume} | {tokens} | {minutes} "
            f"| {table.loc[table.index > 0, 'time/iteration'].median():.1f} |"
        )
    comparisons = [(a, b, what) for a, b, what in COMPARISONS if a in tables and b in tables]
    if comparisons:
        lines += [
            "",
            "## Paired differences in final held-out accuracy",
            "",
            "Each seed trains both configurations and grades them on the same test questions (its own, as the seed "
            "generates them). Difference: mean over seeds, in accuracy points ×100; 95% interval: a two-level "
            "bootstrap (10,000 resamples of the seeds, then of each drawn seed's questions); p: a two-sided paired "
            "t-test over the seeds' differences; adjusted p: Bonferroni's, p times the number of comparisons in its "
            "family: the 60 runs' 17, each variant's 6, named together before their runs (a difference is "
            "significant at 5% when its adjusted p is under 0.05). Iterations to reach: the first evaluated iteration "
            "at which the configuration reaches its base's final accuracy on the same seed; tokens to reach: what it "
            "had generated for training by then (both 0 when the base ended no higher than where the two started).",
            "",
            "| configuration − base | what differs | seeds | difference [95% bootstrap CI] | p | adjusted p "
            "| iterations to reach the base's final acc.: median (range), seeds that reached it | tokens to reach "
            "(thousands): median |",
            "|-|-|-|-|-|-|-|-|",
        ]
    rows = []
    for config, base, what in comparisons:
        last = min(tables[config].index.max(), tables[base].index.max())
        a, b = test_grades(out, config, last), test_grades(out, base, last)
        for seed in set(a) & set(b):
            if a[seed][0] != b[seed][0]:
                raise SystemExit(f"error: {config} and {base} seed {seed} were graded on different test questions")
        if not set(a) & set(b):
            continue
        d = paired_difference({s: g for s, (_, g) in a.items()}, {s: g for s, (_, g) in b.items()})
        reached = iterations_to_reach(tables[config], tables[base])
        hits = [v for v in reached.values() if v is not None]
        when = f"{np.median(hits):.0f} ({min(hits)}-{max(hits)}), {len(hits)}/{len(reached)}" if hits else "none"
        table, tokens = tables[config], "charts/cumulative_tokens_generated"
        spent = [
            table.loc[(table["seed"] == s) & (table.index == i), tokens].fillna(0).iloc[0]
            for s, i in reached.items()
            if i is not None and tokens in table
        ]  # nothing generated at iteration 0
        spent = f"{np.median(spent) / 1e3:.0f}" if spent else "n/a"
        interval = f"[{100 * d['low']:+.1f}, {100 * d['high']:+.1f}]"
        head = f"| {config} − {base} | {what} | {d['seeds']} | {100 * d['difference']:+.1f} {interval}"
        rows.append((config, head, d["p"], f"| {when} | {spent} |"))
    adjusted = bonferroni_by_family([config for config, *_ in rows], [p for _, _, p, _ in rows])
    for (_, head, p, tail), adjusted_p in zip(rows, adjusted):
        lines.append(f"{head} | {p_text(p)} | {p_text(adjusted_p)} {tail}")
    if all(config in tables and base in tables for config, base in PRIMARY):
        lines += section(
            "The primary comparison of issue #55, pooled over the three algorithms",
            "Learnability predicted before generating minus its base trainer (the same generation and update), final "
            f"held-out accuracy paired by algorithm and seed: {pooled_test(primary_differences(tables, out))}",
        )
    if all(config in tables and base in tables for config, base in SCREENED_PRIMARY):
        lines += section(
            "The screened variants' primary comparison, pooled over the three algorithms",
            "Learnability sampling after a one-completion screening minus its base trainer, held-out accuracy at "
            "equal generated tokens (each pair read at the cheaper run's final budget, interpolated), paired by "
            f"algorithm and seed: {pooled_test(screened_primary_differences(tables))}",
        )
    budgeted = [(a, b) for a, b, _ in comparisons if all(k in tables[a] and k in tables[b] for k in BUDGETS)]
    if budgeted:
        lines += section(
            "Held-out accuracy at equal budgets",
            "The same comparisons, each run's held-out accuracy interpolated linearly between its evaluations at the "
            "budget both runs of a seed reached (the cheaper run's final one): tokens generated for training "
            "(rollouts, LILO's pools, Monte-Carlo rollouts), tokens trained on, and training minutes (evaluations not "
            "counted). Difference: mean over seeds in points ×100 [95% Student-t interval over seeds]; p: a two-sided "
            "paired t-test over the seeds, not adjusted; then the seeds in which it is positive.",
            ["configuration − base"] + [f"at equal {name}" for name in BUDGETS.values()],
        )
        for config, base in budgeted:
            cells = []
            for budget in BUDGETS:
                diffs = list(accuracy_at_equal_budget(tables[config], tables[base], budget).values())
                mean, low, high = mean_interval(diffs, bounds=(-1.0, 1.0))
                interval = f" [{100 * low:+.1f}, {100 * high:+.1f}]" if np.isfinite(low) else ""
                positive = f"{sum(d > 0 for d in diffs)}/{len(diffs)}"
                cells.append(f"{100 * mean:+.1f}{interval}, p {p_text(paired_t_p(diffs))}, {positive}")
            lines.append(f"| {config} − {base} | {' | '.join(cells)} |")
    predicted = [c for c in tables if "charts/predicted_spearman" in tables[c]]
    if predicted:
        lines += section(
            "Learnability predicted before generating",
            "Per seed, then a 95% Student-t interval over seeds. Spearman: the rank correlation of the predicted and "
            "the observed solve rates over every question the run predicted and then generated for (its value at "
            "the last iteration). p(1-p): the mean over iterations of the trained questions' learnability, observed "
            "(from their completions) and predicted, and the pool's predicted; LILO's trained questions for "
            "comparison. Time: the prediction's seconds per iteration and their share of the iteration.",
            [
                "configuration",
                "Spearman",
                "trained p(1-p), observed",
                "trained p(1-p), predicted",
                "pool p(1-p), predicted",
                "time to predict (s)",
                "share of the iteration",
            ],  # fmt: skip
        )
        lilo = [c.removesuffix("_predicted") for c in predicted if c.removesuffix("_predicted") in tables]
        for config in predicted + lilo:
            t = tables[config]
            if "time/predict" in t:
                t = t.assign(predict_share=t["time/predict"] / t["time/iteration"])
            cells = [  # column, per seed (mean over iterations or last), digits, what it can take
                ("charts/predicted_spearman", "last", 2, (-1, 1)),
                ("charts/batch_learnability", "mean", 3, (0, 0.25)),
                ("charts/batch_predicted_learnability", "mean", 3, (0, 0.25)),
                ("charts/pool_predicted_learnability", "mean", 3, (0, 0.25)),
                ("time/predict", "mean", 1, BIG),
            ]
            text = [interval_text(per_seed(t, c, how), d, bounds=b) if c in t else "-" for c, how, d, b in cells]
            share = interval_text(per_seed(t, "predict_share"), percent=True) if "predict_share" in t else "-"
            lines.append(f"| {config} | {' | '.join(text)} | {share} |")
    vine = [c for c in tables if "charts/step_advantage_spread" in tables[c]]
    if vine:
        lines += [
            "",
            "## Credit assignment (VinePPO)",
            "",
            "Means over iterations, then a 95% Student-t interval over seeds, clipped to what each can take. Step "
            "advantage spread: the standard deviation of a completion's step advantages V(s_k+1) - V(s_k) (completions "
            "of 2 steps or more); both it and the share of moved values are 0 when the Monte-Carlo values add nothing "
            "to a per-question baseline.",
            "",
            "| configuration | steps per completion | step advantage spread | valued states after a step whose "
            "value differs from V(s_0) |",
            "|-|-|-|-|",
        ]
        for config in vine:
            t = tables[config]
            lines.append(
                f"| {config} | {interval_text(per_seed(t, 'charts/steps_per_completion'), 2, bounds=(1, np.inf))} "
                f"| {interval_text(per_seed(t, 'charts/step_advantage_spread'))} "
                f"| {interval_text(per_seed(t, 'charts/value_moved_share'), percent=True)} |"
            )
    return "\n".join(lines)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--configs", "--trainers", nargs="+", default=DEFAULT_CONFIGS, choices=list(CONFIGS))
    parser.add_argument("--seeds", nargs="+", type=int, default=[1, 2, 3, 4, 5])
    parser.add_argument("--iterations", type=int, default=20)
    parser.add_argument("--eval-interval", type=int, default=4, help="also the checkpoint interval")
    parser.add_argument("--eval-size", type=int, default=200)
    parser.add_argument(
        "--trainer-args", default="", help='more flags for every trainer, e.g. "--dataset gsm8k --model M"'
    )
    parser.add_argument("--results-dir", default="docs/results", help="CSVs, plots and summary.md")
    parser.add_argument(
        "--runs-dir", default="runs/curves", help="the runs themselves (tensorboard, checkpoints, stdout)"
    )
    parser.add_argument("--plot-only", action="store_true")
    args = parser.parse_args()
    if args.iterations < 1 or args.eval_interval < 1 or args.eval_size < 1:
        sys.exit("error: --iterations, --eval-interval and --eval-size must be at least 1")
    out = ROOT / args.results_dir
    out.mkdir(parents=True, exist_ok=True)
    for seed in args.seeds:  # seed-major: a stopped invocation leaves whole seeds behind
        for config in args.configs:
            csv_path = out / f"{config}__seed{seed}.csv"
            if args.plot_only or is_complete(csv_path, args.iterations):
                continue
            run_to_csv(config, seed, args, csv_path)
    tables = {}
    for config in args.configs:
        csvs = sorted(p for p in out.glob(f"{config}__seed*.csv") if re.fullmatch(rf"{config}__seed\d+", p.stem))
        if csvs:
            tables[config] = pd.concat(pd.read_csv(c, index_col="iteration") for c in csvs).rename(columns=RENAMED)
    if not tables:
        sys.exit(f"error: no CSVs in {out}; run without --plot-only first")
    plot(tables, out)
    table = summary(tables, out)
    (out / "summary.md").write_text(table + "\n")
    print(table)
