"""Shared fixtures: a tiny random-init Llama with the default model's tokenizer, built on the fly."""

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # scripts and `common` live at the repo root


def build_tiny_model(folder: Path, seed: int = 0) -> str:
    """A 2-layer Llama (head_dim 64, which vLLM's CPU attention supports) with SmolLM2's tokenizer."""
    import torch
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    from common.model import default_model_path

    tokenizer = AutoTokenizer.from_pretrained(default_model_path())
    config = LlamaConfig(
        vocab_size=len(tokenizer), hidden_size=128, intermediate_size=256, num_hidden_layers=2,
        num_attention_heads=2, num_key_value_heads=1, max_position_embeddings=1024,
        tie_word_embeddings=True, bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
    )
    torch.manual_seed(seed)
    LlamaForCausalLM(config).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return str(folder)


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory) -> str:
    return build_tiny_model(tmp_path_factory.mktemp("tiny-model"))


ROOT = Path(__file__).resolve().parents[1]


def run_script(script: str, *args: str, timeout: int = 600):
    """Run a trainer as a user would, from the repo root; returns the CompletedProcess."""
    import subprocess

    return subprocess.run([sys.executable, script, *args], cwd=ROOT, capture_output=True, text=True, timeout=timeout)


def read_scalars(run_dir: Path) -> dict[str, list[tuple[int, float]]]:
    """Every tensorboard scalar of a run: tag -> [(step, value), ...]."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(run_dir))
    events.Reload()
    return {tag: [(e.step, e.value) for e in events.Scalars(tag)] for tag in events.Tags()["scalars"]}


def only_run_dir(output_dir: Path) -> Path:
    runs = list(output_dir.iterdir())
    assert len(runs) == 1, runs
    return runs[0]


# A trainer run small enough for a tiny model on a CPU: 2 questions x 2 completions per iteration.
TINY_FLAGS = ["--questions-per-iteration", "2", "--completions-per-question", "2", "--minibatch-size", "2",
              "--micro-batch-size", "2", "--max-new-tokens", "16", "--eval-size", "4", "--learning-rate", "1e-3"]


def train(script: str, model: str, output_dir: Path, *flags: str):
    """Run a trainer to completion into an empty `output_dir`; returns (run folder, CompletedProcess)."""
    result = run_script(script, "--model", model, "--output-dir", str(output_dir), *flags)
    assert result.returncode == 0, result.stderr[-3000:]
    return only_run_dir(output_dir), result


def assert_logged(scalars: dict, tags, iterations: list[int]) -> None:
    """Each tag logged once per iteration, with finite values."""
    import math

    for tag in tags:
        assert [step for step, _ in scalars[tag]] == iterations, tag
        assert all(math.isfinite(v) for _, v in scalars[tag]), tag


def share_of_tensors_changed(before: Path, after: Path) -> float:
    """The share of tensors that differ between two safetensors files."""
    import torch
    from safetensors.torch import load_file

    a, b = load_file(before), load_file(after)
    return sum(not torch.equal(a[name], b[name]) for name in a) / len(a)
