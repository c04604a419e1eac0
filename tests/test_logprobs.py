"""common/logprobs.py: the padded batch, the trainer's log-probs at the sampling temperature and under vLLM's top-p
rule, and the engine gap's truncated importance-sampling weights, on crafted inputs and a tiny random model."""

import pytest
import torch
from transformers import AutoModelForCausalLM

from common.logprobs import engine_gap, nucleus_log_mass, pad_batch, response_logprobs, tis_weights
from common.vllm_utils import Completion


@pytest.fixture(scope="module")
def model(tiny_model):
    return AutoModelForCausalLM.from_pretrained(tiny_model, dtype=torch.float32)


def test_pad_batch_aligns_responses_and_masks_padding():
    batch = pad_batch([[1, 2, 3], [4]], [[5], [6, 7]], pad_id=0)
    assert batch["width"] == 3
    assert batch["input_ids"].tolist() == [[1, 2, 3, 5, 0], [0, 0, 4, 6, 7]]
    assert batch["attention_mask"].tolist() == [[1, 1, 1, 1, 0], [0, 0, 1, 1, 1]]
    assert batch["mask"].tolist() == [[1, 0], [1, 1]]


def test_response_logprobs_ignore_prompt_and_padding(model):
    prompt, response = [10, 11, 12], [13, 14]
    alone = pad_batch([prompt], [response], pad_id=0)
    padded = pad_batch([prompt, [20]], [response, [21, 22, 23, 24]], pad_id=0)
    logp_alone, _, _ = response_logprobs(model, alone, torch.tensor([0]), temperature=1.0)
    logp_padded, _, _ = response_logprobs(model, padded, torch.tensor([0, 1]), temperature=1.0)
    assert torch.allclose(logp_alone[0], logp_padded[0, :2], atol=1e-5)
    assert padded["mask"][0].tolist() == [1, 1, 0, 0]  # the padding after the response is masked out


def test_log_probs_are_those_of_the_sampling_temperature(model):
    """Completions are sampled at --temperature: the trainer's log-probs must be those of logits / temperature."""
    batch = pad_batch([[10, 11, 12]], [[13, 14, 15]], pad_id=0)
    input_ids, width = batch["input_ids"], batch["width"]
    logp, _, _ = response_logprobs(model, batch, torch.tensor([0]), temperature=0.5)
    with torch.no_grad():
        logits = model(input_ids=input_ids).logits[0, width - 1 : -1]
    expected = torch.log_softmax(logits / 0.5, -1).gather(-1, input_ids[0, width:, None]).squeeze(-1)
    assert torch.allclose(logp[0], expected, atol=1e-5)
    assert not torch.allclose(logp[0], torch.log_softmax(logits, -1).gather(-1, input_ids[0, width:, None])[:, 0])


def test_nucleus_log_mass_is_what_vllms_top_p_keeps():
    """The trainer's log-prob of a token under the engine's sampling rule is vLLM's own: its top-p cut (vLLM's
    function, run here on crafted logits), then renormalised over the tokens kept."""
    from vllm.v1.sample.ops.topk_topp_sampler import apply_top_k_top_p_pytorch

    torch.manual_seed(0)
    logits = torch.randn(6, 50) * 3
    logp_all = torch.log_softmax(logits, -1)
    for top_p in (0.5, 0.9, 0.99):
        kept = apply_top_k_top_p_pytorch(logits.clone(), None, torch.full((6,), top_p))
        inside = kept.isfinite()
        assert 6 < inside.sum() < inside.numel()  # the nucleus dropped some tokens, and kept more than one
        engine_logp = torch.log_softmax(kept, -1)
        trainer_logp = logp_all - nucleus_log_mass(logp_all, top_p)[:, None]
        assert torch.allclose(trainer_logp[inside], engine_logp[inside], atol=1e-5), top_p


def test_tis_weights_truncate_the_ratio():
    """Truncated importance sampling: min(pi_old / pi_engine, cap) per token; cap 0: off. (That each trainer
    weights its policy loss with them: tests/test_trainers.py.)"""
    log_ratio = torch.tensor([[0.5, 1.0, 3.0]]).log()
    assert tis_weights(log_ratio, 2.0)[0].tolist() == pytest.approx([0.5, 1.0, 2.0])
    assert tis_weights(log_ratio, 0.0).tolist() == [[1.0, 1.0, 1.0]]


def test_engine_gap_compares_the_sampled_tokens_only():
    """The engine's log-probs of each completion's tokens against the trainer's, over the response tokens alone:
    a completion of 1 token in a batch padded to 2 has no gap at its padding."""
    completions = [[Completion([1, 2], "", False, [-1.0, -2.0]), Completion([3], "", False, [-0.5])]]
    sampling_logp = torch.tensor([[-1.0, -1.5], [-0.5, -9.0]])  # token 2 of row 0 off by 0.5 nat
    mask = torch.tensor([[1.0, 1.0], [1.0, 0.0]])
    weights, metrics = engine_gap(completions, sampling_logp, mask, cap=1.5)
    assert weights[mask.bool()].tolist() == pytest.approx([1.0, 1.5, 1.0])  # exp(0.5) = 1.65, capped at 1.5
    assert metrics["charts/engine_logprob_gap"] == pytest.approx(0.5 / 3)
    assert metrics["charts/tis_clipped_share"] == pytest.approx(1 / 3)
    assert metrics["charts/engine_kl"] == pytest.approx((2.718281828**0.5 - 0.5 - 1) / 3)
