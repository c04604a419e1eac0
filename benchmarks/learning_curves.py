"""Learning curves of the four trainers, several seeds each: per-run CSVs, plots and a summary table.

Run from the repository root: python benchmarks/learning_curves.py
Every (trainer, seed) run goes through the trainer's own command line (same Args for all but
the seed) and its tensorboard scalars become docs/results/<trainer>__seed<S>.csv, one row per
iteration. A run whose CSV is complete is skipped and a run killed midway resumes from its last
checkpoint, so a stopped invocation continues where it stopped and a later one can add seeds.
Then it draws docs/results/*.png and writes docs/results/summary.md (also printed).
--plot-only redraws from the CSVs without training.
"""

import argparse
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))
from conftest import read_scalars  # noqa: E402

TRAINERS = ["ppo", "vineppo", "lilo_ppo", "lilo_vineppo"]  # the default set; --trainers adds the GRPO pair
ALL_TRAINERS = [*TRAINERS, "grpo", "lilo_grpo"]
COLORS = {"ppo": "tab:blue", "vineppo": "tab:orange", "lilo_ppo": "tab:green", "lilo_vineppo": "tab:red",
          "grpo": "tab:purple", "lilo_grpo": "tab:brown"}  # fmt: skip


def run_to_csv(trainer: str, seed: int, args, csv_path: Path) -> None:
    """Train one (trainer, seed), resuming its last checkpoint if an earlier attempt was killed."""
    output_dir = ROOT / args.runs_dir / f"{trainer}__seed{seed}"
    previous = sorted(output_dir.glob("*/checkpoint"))
    flags = ["--resume", str(previous[-1].parent)] if previous else ["--output-dir", str(output_dir)]
    command = [
        sys.executable,
        f"{trainer}.py",
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
        sys.exit(f"stopped: {trainer} seed {seed} saved a checkpoint; run the same command again to resume")
    if returncode:
        sys.exit(f"error: {trainer} seed {seed} failed; see {output_dir / 'stdout.log'}")
    run_dir = max((d for d in output_dir.iterdir() if d.is_dir()), key=lambda d: d.stat().st_mtime)
    scalars = read_scalars(run_dir)  # a resumed run logs some iterations twice: the later value wins
    table = pd.DataFrame({tag: pd.Series(dict(points)) for tag, points in scalars.items()}).sort_index()
    table.index.name = "iteration"
    table.insert(0, "train_minutes", table["time/iteration"].fillna(0).cumsum() / 60)
    table.insert(0, "seed", seed)
    table.insert(0, "trainer", trainer)
    table.to_csv(csv_path)
    shutil.rmtree(run_dir / "checkpoint")  # gigabytes; the run is complete and its CSV written


def is_complete(csv_path: Path, iterations: int) -> bool:
    if not csv_path.exists():
        return False
    table = pd.read_csv(csv_path, index_col="iteration")
    return iterations in table.index and not np.isnan(table.loc[iterations, "charts/test_accuracy"])


def band(ax, table: pd.DataFrame, x: str, y: str, label: str, color: str, style: str = "-") -> None:
    """Mean over seeds as a line, min..max over seeds as a shaded band."""
    points = table.reset_index().dropna(subset=[y]).groupby("iteration")
    mean, low, high, xs = points[y].mean(), points[y].min(), points[y].max(), points[x].mean()
    ax.plot(
        xs, mean, style, color=color, label=label, marker="o" if y == "charts/test_accuracy" else None, markersize=3
    )
    ax.fill_between(xs, low, high, color=color, alpha=0.15)


def smoothed(table: pd.DataFrame, column: str, window: int = 5) -> pd.Series:
    """Per seed, the mean over the last `window` iterations: 4 questions an iteration are noisy."""
    return table.groupby("seed")[column].transform(lambda x: x.rolling(window, min_periods=1).mean())


def plot(tables: dict[str, pd.DataFrame], out: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    seeds = max(t["seed"].nunique() for t in tables.values())
    subset = "charts/train_subset_accuracy"
    with_subset = {trainer: table.dropna(subset=[subset]) for trainer, table in tables.items() if subset in table}
    fig, axes = plt.subplots(1, 3 if with_subset else 2, figsize=(16 if with_subset else 11, 4), sharey=True)
    for trainer, table in tables.items():
        band(axes[0], table, "iteration", "charts/test_accuracy", trainer, COLORS[trainer])
        band(axes[1], table, "train_minutes", "charts/test_accuracy", trainer, COLORS[trainer])
    axes[0].set(
        xlabel="iteration",
        ylabel="accuracy (greedy)",
        title=f"held-out test accuracy, mean and range over {seeds} seeds",
    )
    axes[1].set(xlabel="training wall-clock (minutes, evaluation excluded)", title="the same against time")
    for trainer, table in with_subset.items():
        band(axes[2], table, "iteration", subset, f"{trainer} (seeds: {table['seed'].nunique()})", COLORS[trainer])
    if with_subset:
        axes[2].set(xlabel="iteration", title="fixed subset of training questions")
        axes[2].legend(fontsize=8)
    axes[0].legend()
    fig.tight_layout()
    fig.savefig(out / "test_accuracy.png", dpi=120)

    fig, ax = plt.subplots(figsize=(9, 4))
    for trainer, table in tables.items():
        table = table.assign(zero=table["charts/all_correct_share"] + table["charts/all_wrong_share"])
        table = table.assign(zero=smoothed(table, "zero"))
        sampling = "learnability" if trainer.startswith("lilo") else "uniform"
        band(ax, table, "iteration", "zero", f"{trainer}: trained ({sampling})", COLORS[trainer])
        if "charts/pool_all_correct_share" in table:
            pool = table.assign(zero=table["charts/pool_all_correct_share"] + table["charts/pool_all_wrong_share"])
            band(
                ax,
                pool.assign(zero=smoothed(pool, "zero")),
                "iteration",
                "zero",
                f"{trainer}: candidate pool (uniform)",
                COLORS[trainer],
                "--",
            )
    ax.set(
        xlabel="iteration",
        ylabel="share of questions",
        ylim=(0, 1),
        title="questions whose completions were all right or all wrong (no learning signal)\n"
        "mean of the last 5 iterations; band: range over seeds",
    )
    ax.legend(fontsize=8, bbox_to_anchor=(1.02, 1), loc="upper left")
    fig.tight_layout()
    fig.savefig(out / "zero_variance_share.png", dpi=120)

    if not any("charts/batch_learnability" in table for table in tables.values()):
        return
    fig, ax = plt.subplots(figsize=(9, 4))
    for trainer, table in tables.items():
        if "charts/batch_learnability" in table:
            for column, label, style in [
                ("charts/batch_learnability", "trained batch", "-"),
                ("charts/pool_learnability", "candidate pool", "--"),
            ]:
                band(
                    ax,
                    table.assign(y=smoothed(table, column)),
                    "iteration",
                    "y",
                    f"{trainer}: {label}",
                    COLORS[trainer],
                    style,
                )
    ax.set(
        xlabel="iteration",
        ylabel="mean p(1-p)",
        ylim=(0, 0.26),
        title="learnability p(1-p) of the trained questions vs the pool they were picked from\n"
        "mean of the last 5 iterations; band: range over seeds",
    )
    ax.legend(fontsize=8, bbox_to_anchor=(1.02, 1), loc="upper left")
    fig.tight_layout()
    fig.savefig(out / "learnability.png", dpi=120)


def summary(tables: dict[str, pd.DataFrame]) -> str:
    """Markdown table: accuracy, signal, speed, and iterations to reach PPO's final accuracy."""

    def mean_curve(table):
        return table["charts/test_accuracy"].dropna().groupby(level=0).mean()

    baseline = mean_curve(tables["ppo"]).iloc[-1] if "ppo" in tables else None
    lines = [
        "| trainer | seeds | test acc. start | test acc. end (per seed) | train-subset acc. start → end (seeds) "
        "| rollout acc. 1st / 2nd half of iterations | zero-variance share | s / iteration (median) "
        "| iterations to PPO's final |",
        "|-|-|-|-|-|-|-|-|-|",
    ]
    for trainer, table in tables.items():
        curve, last = mean_curve(table), table.index.max()
        finals = table.loc[table.index == last].set_index("seed")["charts/test_accuracy"]
        train = table.loc[table.index > 0, "charts/train_accuracy"]
        half = last // 2
        zero = (table["charts/all_correct_share"] + table["charts/all_wrong_share"]).loc[table.index > 0].mean()
        if "charts/pool_all_correct_share" in table:
            pool = (
                (table["charts/pool_all_correct_share"] + table["charts/pool_all_wrong_share"])
                .loc[table.index > 0]
                .mean()
            )
            zero = f"{zero:.1%} (pool {pool:.1%})"
        else:
            zero = f"{zero:.1%}"
        reached = curve[curve >= baseline - 1e-9].index if baseline is not None else []
        subset = "not logged"  # by runs older than the metric
        if "charts/train_subset_accuracy" in table and table["charts/train_subset_accuracy"].notna().any():
            logged = table.dropna(subset=["charts/train_subset_accuracy"])
            subset_curve = logged["charts/train_subset_accuracy"].groupby(level=0).mean()
            subset = f"{subset_curve.iloc[0]:.3f} → {subset_curve.iloc[-1]:.3f} ({logged['seed'].nunique()})"
        per_seed = ", ".join(f"{v:.2f}" for v in finals)
        seconds = table.loc[table.index > 0, "time/iteration"].median()
        lines.append(
            f"| {trainer} | {table['seed'].nunique()} | {curve.iloc[0]:.3f} | {finals.mean():.3f} ({per_seed}) "
            f"| {subset} | {train[train.index <= half].mean():.3f} / {train[train.index > half].mean():.3f} | {zero} "
            f"| {seconds:.1f} | {reached[0] if len(reached) else 'not reached'} |"
        )
    return "\n".join(lines)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trainers", nargs="+", default=TRAINERS, choices=ALL_TRAINERS)
    parser.add_argument("--seeds", nargs="+", type=int, default=[1, 2])
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
        for trainer in args.trainers:
            csv_path = out / f"{trainer}__seed{seed}.csv"
            if args.plot_only or is_complete(csv_path, args.iterations):
                continue
            run_to_csv(trainer, seed, args, csv_path)
    tables = {}
    for trainer in args.trainers:
        csvs = sorted(out.glob(f"{trainer}__seed*.csv"))
        if csvs:
            tables[trainer] = pd.concat(pd.read_csv(c, index_col="iteration") for c in csvs)
    if not tables:
        sys.exit(f"error: no CSVs in {out}; run without --plot-only first")
    plot(tables, out)
    table = summary(tables)
    (out / "summary.md").write_text(table + "\n")
    print(table)
