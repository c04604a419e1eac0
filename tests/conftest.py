"""Shared fixtures: tiny Llamas with the default model's tokenizer, built on the fly: a random-init one, and a
"coin" model whose answers, and so whose rewards, the tests control."""

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # scripts and `common` live at the repo root


def tiny_llama(tie_word_embeddings: bool, seed: int = 0):
    """(SmolLM2's tokenizer, a random-init 2-layer Llama over its vocabulary; head_dim 64, which vLLM's CPU
    attention supports)."""
    import torch
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    from common.model import default_model_path

    tokenizer = AutoTokenizer.from_pretrained(default_model_path())
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=128,
        intermediate_size=256,
        num_hidden_layers=2,
        num_attention_heads=2,
        num_key_value_heads=1,
        max_position_embeddings=1024,
        tie_word_embeddings=tie_word_embeddings,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
    )
    torch.manual_seed(seed)
    return tokenizer, LlamaForCausalLM(config)


def saved(folder: Path, tokenizer, model) -> str:
    """`model` and `tokenizer` saved into `folder`, as a Hugging Face model folder; returns its path."""
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return str(folder)


def build_tiny_model(folder: Path, seed: int = 0) -> str:
    """A random-init 2-layer Llama with SmolLM2's tokenizer, saved into `folder`."""
    return saved(folder, *tiny_llama(tie_word_embeddings=True, seed=seed))


@pytest.fixture(scope="session")
def tokenizer():
    """The default model's (SmolLM2's) tokenizer, which the tiny models share."""
    from transformers import AutoTokenizer

    from common.model import default_model_path

    return AutoTokenizer.from_pretrained(default_model_path())


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory) -> str:
    return build_tiny_model(tmp_path_factory.mktemp("tiny-model"))


COIN_ANSWERS = ("1", "2")  # the coin model's two answers, equally likely before training
BOXED = "\\boxed{"


def build_coin_model(folder: Path) -> str:
    """A 2-layer Llama that answers every chat prompt with `\\boxed{1}` or `\\boxed{2}`, each with probability
    1/2, then ends. Its attention and MLP blocks output zero and stay so (their value/output and up/gate/down
    weights are zero: no gradient reaches them), so each next token depends on the current token alone: a chain
    written into the embeddings (one basis vector per chain token) and the output layer, whose other tokens sit at
    logit -30. Training moves the embeddings, the final norm and the output layer: the odds of the two answers."""
    import torch

    tokenizer, model = tiny_llama(tie_word_embeddings=False)
    prompt_end = tokenizer.apply_chat_template([{"role": "user", "content": "?"}], add_generation_prompt=True)
    prompt_end = list(prompt_end["input_ids"] if hasattr(prompt_end, "keys") else prompt_end)[-1]
    boxed = tokenizer(BOXED)["input_ids"]
    answers = [tokenizer.convert_tokens_to_ids(a) for a in COIN_ANSWERS]
    close, eos = tokenizer.convert_tokens_to_ids("}"), tokenizer.eos_token_id
    chain = {prompt_end: [boxed[0]], **{a: [b] for a, b in zip(boxed, boxed[1:])}, boxed[-1]: answers}
    chain |= {a: [close] for a in answers} | {close: [eos]}
    with torch.no_grad():
        for layer in model.model.layers:
            for weight in (layer.self_attn.v_proj, layer.self_attn.o_proj, layer.mlp.up_proj, layer.mlp.down_proj):
                weight.weight.zero_()
        embeddings, head = model.model.embed_tokens.weight, model.lm_head.weight
        embeddings.zero_()
        embeddings[:, 0] = 1.0  # every other token: state 0, which ends the completion
        scale = 30.0 / model.config.hidden_size**0.5  # the final norm scales a one-hot state by sqrt(hidden size)
        head.fill_(-scale)
        head[eos, 0] = scale
        for state, (token, next_tokens) in enumerate(chain.items(), start=1):
            embeddings[token] = 0.0
            embeddings[token, state] = 1.0
            head[next_tokens, state] = scale  # logit 30 for each next token of the chain, -30 for all others
    return saved(folder, tokenizer, model)


@pytest.fixture(scope="session")
def coin_model(tmp_path_factory) -> str:
    return build_coin_model(tmp_path_factory.mktemp("coin-model"))


@pytest.fixture(scope="session")
def coin_dataset(tmp_path_factory) -> str:
    """8 questions: 4 whose gold answer is 1 (the coin model solves them half the time) and 4 whose gold is 3
    (never solved). Its test split is the same 8 questions."""
    import json

    folder = tmp_path_factory.mktemp("coin-data")
    rows = [{"question": f"Question {i}: what is {i} - {i} + {gold}?", "answer": gold} for i, gold in
            enumerate(["1", "3"] * 4)]  # fmt: skip
    for split in ("train", "test"):
        (folder / f"coin_{split}.jsonl").write_text("".join(json.dumps(row) + "\n" for row in rows))
    return str(folder / "coin_train.jsonl")


def answer_probability(model_folder, answer: str) -> float:
    """The probability that a (coin-style) model answers `answer` once it has written `\\boxed{`."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from common.data import build_prompt

    tokenizer = AutoTokenizer.from_pretrained(model_folder)
    model = AutoModelForCausalLM.from_pretrained(model_folder, dtype=torch.float32)
    ids = build_prompt(tokenizer, "Question 0: what is 0 - 0 + 1?", "coin") + tokenizer(BOXED)["input_ids"]
    with torch.no_grad():
        logits = model(input_ids=torch.tensor([ids])).logits[0, -1]
    return torch.softmax(logits, -1)[tokenizer.convert_tokens_to_ids(answer)].item()


ROOT = Path(__file__).resolve().parents[1]


def run_script(script: str, *args: str, timeout: int = 600):
    """Run a trainer as a user would, from the repo root; returns the CompletedProcess."""
    import subprocess

    return subprocess.run([sys.executable, script, *args], cwd=ROOT, capture_output=True, text=True, timeout=timeout)


def stop_message(script: str, *args: str) -> str:
    """Run a trainer's `__main__` in this process, where its imports are already loaded (a second, where a new
    interpreter takes 13), until it stops; returns what it stopped with, the line a user would read. For the paths
    that stop before the run starts: a new interpreter shows once that nothing else is printed (tests/test_ppo.py)."""
    import runpy

    argv, sys.argv = sys.argv, [script, *args]
    try:
        runpy.run_path(str(ROOT / script), run_name="__main__")
    except SystemExit as stop:
        return str(stop.code)
    finally:
        sys.argv = argv
    raise AssertionError(f"{script} did not stop")


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
TINY_FLAGS = [
    "--questions-per-iteration",
    "2",
    "--completions-per-question",
    "2",
    "--minibatch-size",
    "2",
    "--micro-batch-size",
    "2",
    "--max-new-tokens",
    "16",
    "--eval-size",
    "4",
    "--learning-rate",
    "1e-3",
]


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
