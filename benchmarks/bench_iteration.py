"""Wall time of a training iteration of each trainer, split by phase, with and without shared prompts (or in bf16
and in fp32), and each run's peak memory.

Run from the repository root: python benchmarks/bench_iteration.py [--compare shared|precision] [--trainers ...]
Each (trainer, setting) runs 3 iterations in its own process with the same seed and settings (evaluation off); the
table shows the mean of iterations 2 and 3 (the first warms caches up), read from the run's tensorboard scalars, and
the process's peak resident memory over the run. With --compare shared it also checks that sharing changes no
number that matters: the rollouts' scalars (accuracy, response lengths, ...) equal over the 3 iterations, and it
names every other scalar (but time/*, the speed and the engine gap's, ~1e-7 in fp32) more than 1e-3 apart
(relative). The update's achieved FLOP/s is a lower bound (6 x non-embedding parameters per token, for each trained
model; the vocabulary projection and attention scores are not counted), shown as a share of the bf16 matrix-product
peak measured here, in this process. The last line gives each trainer's
iteration speedup: shared prompts over every row whole (--compare shared), or bf16 over fp32 (--compare precision).
"""

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(ROOT))
from conftest import read_scalars  # noqa: E402

PHASES = ["time/generation", "time/logprobs", "time/mc_rollouts", "time/update", "time/sync", "time/iteration"]
TRAINERS = ["ppo", "vineppo", "grpo", "lilo_ppo", "lilo_vineppo", "lilo_grpo"]
SETTINGS = {"shared": {"plain": ["--no-share-prompts"], "shared": ["--share-prompts"]},
            "precision": {"fp32": ["--precision", "fp32"], "bf16": ["--precision", "bf16"]}}  # fmt: skip


def matmul_peak() -> float:
    """The best bf16 matrix-product rate (FLOP/s) over the default model's shapes and a large square one."""
    best = 0.0
    for m, k, n in [(1024, 576, 1536), (1024, 1536, 576), (1024, 576, 576), (2048, 2048, 2048)]:
        a, b = torch.randn(m, k, dtype=torch.bfloat16), torch.randn(k, n, dtype=torch.bfloat16)
        for _ in range(3):
            a @ b
        repeats, start = 20, time.perf_counter()
        for _ in range(repeats):
            a @ b
        best = max(best, 2 * m * k * n * repeats / (time.perf_counter() - start))
    return best


def non_embedding_parameters(model: str | None) -> int:
    from transformers import AutoModelForCausalLM

    from common.model import resolve_model

    policy = AutoModelForCausalLM.from_pretrained(resolve_model(model))
    return sum(p.numel() for p in policy.parameters()) - policy.get_input_embeddings().weight.numel()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=None, help="default: the embedded SmolLM2-135M-Instruct")
    parser.add_argument("--dataset", default="arithmetic")
    parser.add_argument("--compare", default="shared", choices=SETTINGS)
    parser.add_argument("--trainers", nargs="+", default=TRAINERS, choices=TRAINERS)
    args = parser.parse_args()
    peak, parameters = matmul_peak(), non_embedding_parameters(args.model)
    common = ["--num-iterations", "3", "--eval-interval", "0", "--seed", "1", "--dataset", args.dataset]
    common += ["--model", args.model] if args.model else []
    (base, base_flags), (variant, variant_flags) = SETTINGS[args.compare].items()
    rows = {}
    for trainer in args.trainers:
        for setting, flags in SETTINGS[args.compare].items():
            with tempfile.TemporaryDirectory() as out:
                command = [sys.executable, f"{trainer}.py", *common, *flags, "--output-dir", out]
                result = subprocess.run(command, cwd=ROOT, capture_output=True, text=True)
                if result.returncode:
                    sys.exit(f"error: {trainer}.py {' '.join(flags)} failed:\n{result.stderr[-2000:]}")
                scalars = read_scalars(next(Path(out).iterdir()))
            row = {tag: (dict(points)[2] + dict(points)[3]) / 2 for tag, points in scalars.items() if 3 in dict(points)}
            row["scalars"] = scalars
            models = 2 if trainer in ("ppo", "lilo_ppo") else 1  # PPO trains a value network too
            row["flops"] = 6 * parameters * models * row["time/update_tokens_per_second"]
            rows[trainer, setting] = row
            print(f"done: {trainer} {setting}", file=sys.stderr, flush=True)
    columns = ["generate", "logprobs", "MC", "update", "sync", "total s", "upd GFLOP/s", "% peak", "peak GiB"]
    widths = [9, 9, 7, 8, 6, 8, 12, 7, 9]
    print(f"{'trainer':<22} " + " ".join(f"{c:>{w}}" for c, w in zip(columns, widths)))
    for (trainer, setting), row in rows.items():
        cells = [row.get(tag, 0.0) for tag in PHASES] + [row["flops"] / 1e9, 100 * row["flops"] / peak]
        cells.append(row["time/peak_memory_gib"])
        formats = [".1f", ".1f", ".1f", ".1f", ".2f", ".1f", ".0f", ".0f", ".1f"]
        print(f"{trainer + ' ' + setting:<22} " + " ".join(f"{c:>{w}{f}}" for c, w, f in zip(cells, widths, formats)))
    print(
        f"bf16 matrix-product peak measured here: {peak / 1e9:.0f} GFLOP/s; FLOPs counted: 6 x {parameters / 1e6:.0f}M"
    )
    if args.compare == "shared":  # the same run, to within float rounding
        sampled = [
            "charts/train_accuracy",
            "charts/response_length",
            "charts/all_correct_share",
            "charts/truncated_share",
        ]
        for trainer in args.trainers:
            a, b = rows[trainer, base]["scalars"], rows[trainer, variant]["scalars"]
            same = all(a[tag] == b[tag] for tag in sampled if tag in a)
            skipped = ("charts/tokens_per_second", "charts/engine_logprob_gap", "charts/engine_kl")
            gaps = {  # tag -> (relative gap, absolute gap), the largest over the iterations
                tag: max((abs(x - y) / max(abs(x), abs(y), 1e-6), abs(x - y)) for (_, x), (_, y) in zip(a[tag], b[tag]))
                for tag in a
                if not tag.startswith("time/") and tag not in skipped
            }
            worst = sorted(gaps.items(), key=lambda kv: -kv[1][0])
            above = ", ".join(f"{tag} {r:.1e} ({d:.1e} apart)" for tag, (r, d) in worst if r > 1e-3) or "none"
            rollouts = "the same" if same else "DIFFERENT"
            print(f"{trainer}: rollouts {rollouts}; other scalars over 1e-3 (relative): {above}")
    speedups = [rows[t, base]["time/iteration"] / rows[t, variant]["time/iteration"] for t in args.trainers]
    label = "shared prompts" if args.compare == "shared" else "bf16 vs fp32"
    print(f"iteration speedup {label}: " + " ".join(f"{t} {s:.2f}x" for t, s in zip(args.trainers, speedups)))
