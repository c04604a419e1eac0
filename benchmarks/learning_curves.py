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
# runs logged before a scalar was renamed: old name -> new
RENAMED = {"charts/train_subset_accuracy": "charts/train_split_accuracy"}
NAMES = {"ppo": "PPO", "vineppo": "VinePPO", "grpo": "GRPO"}
QUESTIONS = TRAINER_DEFAULTS["questions_per_iteration"]  # the committed runs'; the legends name them
POOL = QUESTIONS * LILO_OVERSAMPLE
# a configuration's role beside its base -> its colour, line style and legend entry, the same in every algorithm's
# panel so that one legend reads them all; the compute-matched baselines dashed, the trainers solid (a legend entry
# must not start with "_": matplotlib leaves those out)
ROLES = {
    "base": ("tab:blue", "-", f"base trainer: {QUESTIONS} questions an iteration"),
    "lilo": ("tab:red", "-", f"LILO: the {QUESTIONS} most learnable of {POOL} questions"),
    "matched": ("tab:green", "--", f"*_matched: all {POOL} questions, {LILO_OVERSAMPLE}x the steps"),
    "matched_batch": ("tab:purple", "-.", f"*_matched_batch: all {POOL}, {LILO_OVERSAMPLE}x the minibatch"),
}
POOL_LABEL = f"LILO's candidate pool: {POOL} questions, uniform"


def role(config: str) -> str:
    """What a configuration is beside its base trainer: a ROLES key."""
    if config.startswith("lilo_"):
        return "lilo"
    return next((name for name in ("matched_batch", "matched") if config.endswith(f"_{name}")), "base")


def algorithm_of(config: str) -> str:
    """The ALGORITHMS entry whose panel a configuration is drawn in."""
    return config.removeprefix("lilo_").removesuffix("_batch").removesuffix("_matched")


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


def band(ax, table: pd.DataFrame, x: str, y: str, label: str, color: str, style: str = "-") -> None:
    """Mean over seeds as a line, its 95% interval over seeds (mean_interval) as a shaded band."""
    points = table.reset_index().dropna(subset=[y]).groupby("iteration")
    intervals = points[y].apply(lambda v: pd.Series(mean_interval(v), index=["mean", "low", "high"])).unstack()
    xs = points[x].mean()
    marker = "o" if y == "charts/test_accuracy" else None
    ax.plot(xs, intervals["mean"], linestyle=style, color=color, label=label, marker=marker, markersize=4, lw=1.8)
    ax.fill_between(xs, intervals["low"], intervals["high"], color=color, alpha=0.12, lw=0)


def smoothed(table: pd.DataFrame, column: str, window: int = 5) -> pd.Series:
    """Per seed, the mean over the last `window` iterations: 4 questions an iteration are noisy."""
    return table.groupby("seed")[column].transform(lambda x: x.rolling(window, min_periods=1).mean())


# the x axes the figures can use: column -> its axis label, and its name in a title
AXES = {
    "iteration": ("iteration", "iterations"),
    "generated_k": ("generated tokens (thousands)", "generated tokens"),  # rollouts, pools, Monte-Carlo rollouts
    "trained_k": ("trained tokens (thousands)", "trained tokens"),
    "train_minutes": ("training minutes (no evaluation)", "training minutes"),
}


def grid(plt, curves: list[tuple], xs: list[str], path: Path, title: str, ylabel: str, **settings) -> np.ndarray:
    """One column of panels per algorithm, one row per x axis (an AXES key), y shared: each panel the curves of its
    algorithm, given as (algorithm, table, y column, colour, style, label); one legend for the figure below it.
    `title` may name the x axes drawn as {xs}. Returns the panels, rows by columns."""
    algorithms = [a for a in ALGORITHMS if any(c[0] == a for c in curves)]

    def has(table, column):
        return column in table or column == table.index.name

    xs = [x for x in xs if any(has(c[1], x) for c in curves)]  # runs older than the token counts have none
    plt.rcParams.update({"font.size": 12, "axes.titlesize": 13, "legend.fontsize": 12})  # read at ~900 px wide
    fig, axes = plt.subplots(
        len(xs), len(algorithms), figsize=(3.4 * len(algorithms) + 0.6, 2.9 * len(xs) + 1.4), sharey=True,
        squeeze=False, layout="constrained",
    )  # fmt: skip
    for x, row in zip(xs, axes):
        for algorithm, ax in zip(algorithms, row):
            for name, table, y, color, style, label in curves:
                if name == algorithm and has(table, x) and has(table, y):
                    band(ax, table, x, y, label, color, style)
            ax.set(xlabel=AXES[x][0], **settings)
            ax.grid(alpha=0.3)
        row[0].set_ylabel(ylabel)
    for algorithm, ax in zip(algorithms, axes[0]):
        ax.set_title(NAMES[algorithm], fontweight="bold")
    legend = {}  # label -> line, in the order drawn; the same roles recur in every panel
    for ax in axes.flat:
        legend |= {label: line for line, label in zip(*ax.get_legend_handles_labels()) if label not in legend}
    ncol = 2 if len(algorithms) == 3 else 1  # two columns of entries fit three panels' width, not fewer
    fig.legend(legend.values(), legend.keys(), loc="outside lower center", ncol=ncol, frameon=False)
    fig.suptitle(title.format(xs=" and ".join(AXES[x][1] for x in xs)))
    fig.savefig(path, dpi=150)
    plt.close(fig)
    return axes


def plot(tables: dict[str, pd.DataFrame], out: Path) -> None:
    """test_accuracy.png: held-out accuracy against iterations and generated tokens; test_accuracy_budgets.png: the
    same against trained tokens and training minutes; zero_variance_share.png; learnability.png (LILO's pool and
    choice). One column per algorithm: its base trainer, its LILO trainer and their compute-matched baselines."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    seeds = max(t["seed"].nunique() for t in tables.values())
    tables = dict(tables)  # the caller's stay as they were
    counts = {"generated_k": "charts/cumulative_tokens_generated", "trained_k": "charts/cumulative_tokens_trained"}
    for config, table in tables.items():  # generated: rollouts, LILO's pools and Monte-Carlo rollouts alike
        counted = {x: table[count].mask(table.index == 0, 0) / 1e3 for x, count in counts.items() if count in table}
        tables[config] = table.assign(**counted)  # none counted before iteration 1
    configs = [(algorithm_of(c), c) for c in tables]
    band_text = f"mean over {seeds} seeds, band: 95% interval over seeds"
    accuracy = [(a, tables[c], "charts/test_accuracy", *ROLES[role(c)]) for a, c in configs]
    title = f"Held-out test accuracy against {{xs}}\ngreedy; {band_text}"
    grid(plt, accuracy, ["iteration", "generated_k"], out / "test_accuracy.png", title, "held-out accuracy")
    grid(plt, accuracy, ["trained_k", "train_minutes"], out / "test_accuracy_budgets.png", title, "held-out accuracy")

    # against iterations alone: the share is a property of each iteration's choice and barely moves over a run, so
    # against generated tokens it would only stretch the same flat lines (LILO's 4x along x)
    curves = []
    for algorithm, config in configs:
        table = tables[config]
        zero = smoothed(table.assign(zero=table["charts/all_correct_share"] + table["charts/all_wrong_share"]), "zero")
        color, style, label = ROLES[role(config)]
        curves.append((algorithm, table.assign(zero=zero), "zero", color, style, label))
        if "charts/pool_all_correct_share" in table:
            pool = table["charts/pool_all_correct_share"] + table["charts/pool_all_wrong_share"]
            pool = smoothed(table.assign(zero=pool), "zero")
            curves.append((algorithm, table.assign(zero=pool), "zero", color, ":", POOL_LABEL))
    title = "Trained questions whose completions were all right or all wrong (no learning signal)\n"
    title += f"mean of the last 5 iterations, {band_text}"
    grid(plt, curves, ["iteration"], out / "zero_variance_share.png", title, "share of questions", ylim=(0, 1))

    curves = []
    lines = {"charts/batch_learnability": ("-", f"LILO: the {QUESTIONS} questions trained on"),
             "charts/pool_learnability": (":", POOL_LABEL)}  # fmt: skip
    for algorithm, config in configs:
        for column, (style, label) in lines.items():
            if column in tables[config]:  # logged by the LILO trainers alone: the others train on what they draw
                smooth = tables[config].assign(y=smoothed(tables[config], column))
                curves.append((algorithm, smooth, "y", ROLES["lilo"][0], style, label))
    if curves:
        title = "Learnability p(1-p) of LILO's trained questions and of the pool they were picked from\n"
        title += f"mean of the last 5 iterations, {band_text}"
        grid(plt, curves, ["iteration"], out / "learnability.png", title, "mean p(1-p)", ylim=(0, 0.26))


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
            "t-test over the seeds' differences; adjusted p: Bonferroni's, p times the number of comparisons in the "
            "table (the 60 runs' 17, named together before their runs; a difference is significant at 5% when its "
            "adjusted p is under 0.05). Iterations to reach: the first evaluated iteration at which the configuration "
            "reaches its base's final accuracy on the same seed; tokens to reach: what it had generated for training "
            "by then (both 0 when the base ended no higher than where the two started).",
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
        rows.append((head, d["p"], f"| {when} | {spent} |"))
    adjusted = bonferroni([p for _, p, _ in rows])
    for (head, p, tail), adjusted_p in zip(rows, adjusted):
        lines.append(f"{head} | {p_text(p)} | {p_text(adjusted_p)} {tail}")
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
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
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
