"""Wall time of one training iteration of each trainer at the same batch, split by phase.

Run from the repository root: python benchmarks/bench_iteration.py [--model M] [--dataset D]
Each trainer runs 2 iterations in its own process with the same seed and settings (evaluation
off); the table shows the second iteration (the first warms caches up) from the run's
tensorboard scalars, and each total as a ratio to ppo.py's.
"""

import argparse
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))
from conftest import read_scalars  # noqa: E402

PHASES = ["time/generation", "time/logprobs", "time/mc_rollouts", "time/update", "time/sync", "time/iteration"]

if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=None, help="default: the embedded SmolLM2-135M-Instruct")
    parser.add_argument("--dataset", default="arithmetic")
    parser.add_argument("--paper-k", type=int, default=9, help="VinePPO's K in the paper")
    args = parser.parse_args()
    common = ["--num-iterations", "2", "--eval-interval", "0", "--seed", "1", "--dataset", args.dataset]
    common += ["--model", args.model] if args.model else []
    runs = [
        ("ppo.py", []),
        ("vineppo.py", ["--mc-rollouts", "4"]),
        ("vineppo.py", ["--mc-rollouts", str(args.paper_k)]),
        ("lilo_ppo.py", []),
        ("lilo_vineppo.py", ["--mc-rollouts", "4"]),
    ]
    rows = []
    for script, extra in runs:
        with tempfile.TemporaryDirectory() as out:
            result = subprocess.run(
                [sys.executable, script, *common, *extra, "--output-dir", out], cwd=ROOT, capture_output=True, text=True
            )
            if result.returncode:
                sys.exit(f"{script} failed:\n{result.stderr[-2000:]}")
            scalars = read_scalars(next(Path(out).iterdir()))
        row = {tag: dict(scalars[tag]).get(2, 0.0) if tag in scalars else 0.0 for tag in PHASES}
        row["mc"] = dict(scalars.get("charts/mc_completions", [])).get(2, 0)
        rows.append((f"{script} {' '.join(extra)}".strip(), row))
        print(f"done: {rows[-1][0]}", file=sys.stderr, flush=True)
    base = rows[0][1]["time/iteration"]
    columns = ["generate", "logprobs", "MC", "MC done", "update", "sync", "total s", "x ppo"]
    print(f"{'trainer':<28} " + " ".join(f"{c:>{w}}" for c, w in zip(columns, [9, 9, 7, 8, 8, 6, 8, 6])))
    for name, row in rows:
        print(
            f"{name:<28} {row['time/generation']:>9.1f} {row['time/logprobs']:>9.1f} {row['time/mc_rollouts']:>7.1f} "
            f"{int(row['mc']):>8} {row['time/update']:>8.1f} {row['time/sync']:>6.2f} {row['time/iteration']:>8.1f} "
            f"{row['time/iteration'] / base:>6.2f}"
        )
