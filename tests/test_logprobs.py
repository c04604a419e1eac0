"""common/logprobs.py: the padded batch, the trainer's log-probs at the sampling temperature and under vLLM's top-p
rule, and the truncated importance-sampling weights for the engine's gap, on crafted inputs and a tiny random model."""

import pytest
import torch
from transformers import AutoModelForCausalLM

from common.logprobs import nucleus_log_mass, pad_batch, response_logprobs, tis_weights
from common.vllm_utils import Completion


@pytest.fixture(scope="module")
def model(tiny_model):
    return AutoModelForCausalLM.from_pretrained(tiny_model, dtype=torch.float32)


def test_pad_batch_aligns_responses_and_masks_padding():
    batch = pad_batch([[1, 2, 3], [4], [1, 2, 3]], [[5], [6, 7], [8]], pad_id=0)
    assert batch["input_ids"].tolist() == [[1, 2, 3, 5, 0], [0, 0, 4, 6, 7], [1, 2, 3, 8, 0]]
    assert batch["attention_mask"].tolist() == [[1, 1, 1, 1, 0], [0, 0, 1, 1, 1], [1, 1, 1, 1, 0]]
    assert batch["mask"].tolist() == [[1, 0], [1, 1], [1, 0]]
    # each distinct prompt once, for the shared-prompt passes; the plain batch holds the padded rows alone
    assert batch["prompt_ids"].tolist() == [[1, 2, 3], [0, 0, 4]] and batch["row_prompt"].tolist() == [0, 1, 0]
    plain = pad_batch([[1, 2, 3], [4], [1, 2, 3]], [[5], [6, 7], [8]], pad_id=0, share_prompts=False)
    assert plain.keys() == {"input_ids", "attention_mask", "mask"}


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
    input_ids, width = batch["input_ids"], 3
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
    completions = [[Completion([1, 2, 3], "", False, [0.0, 0.0, 0.0])]]
    trainer_logp = torch.tensor([[0.5, 1.0, 3.0]]).log()  # against the engine's 0: ratios 0.5, 1 and 3
    assert tis_weights(completions, trainer_logp, torch.ones(1, 3), 2.0)[0][0].tolist() == pytest.approx([0.5, 1, 2])
    assert tis_weights(completions, trainer_logp, torch.ones(1, 3), 0.0)[0].tolist() == [[1.0, 1.0, 1.0]]


def test_tis_weights_compare_the_sampled_tokens_only():
    """The engine's log-probs of each completion's tokens against the trainer's, over the response tokens alone:
    a completion of 1 token in a batch padded to 2 has no gap at its padding."""
    completions = [[Completion([1, 2], "", False, [-1.0, -2.0]), Completion([3], "", False, [-0.5])]]
    sampling_logp = torch.tensor([[-1.0, -1.5], [-0.5, -9.0]])  # token 2 of row 0 off by 0.5 nat
    mask = torch.tensor([[1.0, 1.0], [1.0, 0.0]])
    weights, metrics = tis_weights(completions, sampling_logp, mask, cap=1.5)
    assert weights[mask.bool()].tolist() == pytest.approx([1.0, 1.5, 1.0])  # exp(0.5) = 1.65, capped at 1.5
    assert metrics["charts/engine_logprob_gap"] == pytest.approx(0.5 / 3)
    assert metrics["charts/tis_clipped_share"] == pytest.approx(1 / 3)
    assert metrics["charts/engine_kl"] == pytest.approx((2.718281828**0.5 - 0.5 - 1) / 3)


def shared_and_plain(model, fn):
    """`fn(batch, rows)` on a batch of 3 prompts of different lengths with 2 or 3 completions each (responses of
    different lengths, so padding on both sides), with shared prompts and without; each with its parameter
    gradients of the sum of the outputs. Rows 0, 1, 3, 5 and 7 only: prompts with 1 or 2 rows among them."""
    prompts = [[5, 6, 7, 8, 9]] * 3 + [[10, 11]] * 2 + [[12, 13, 14, 15, 16, 17, 18]] * 3
    responses = [[20, 21, 22], [23], [24, 25], [26, 27, 28, 29], [30], [31, 32], [33, 34, 35], [36]]
    results = [pad_batch(prompts, responses, pad_id=0)["mask"][[0, 1, 3, 5, 7]]]  # the response tokens
    for share in (True, False):
        batch, rows = pad_batch(prompts, responses, pad_id=0, share_prompts=share), torch.tensor([0, 1, 3, 5, 7])
        model.zero_grad()
        out = fn(batch, rows)
        (out * batch["mask"][rows]).sum().backward()
        results.append((out.detach(), {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}))
    return results


def assert_close(mask, shared, plain):
    (out_shared, grads_shared), (out_plain, grads_plain) = shared, plain
    assert torch.allclose(out_shared * mask, out_plain * mask, atol=1e-4), (out_shared - out_plain).abs().max()
    assert grads_shared.keys() == grads_plain.keys() and len(grads_plain) > 10
    for name, grad in grads_plain.items():
        assert torch.allclose(grads_shared[name], grad, rtol=1e-4, atol=1e-4 * grad.abs().max()), name


def test_shared_prompts_give_the_plain_log_probs_and_gradients(model):
    """Each prompt computed once for its rows of the micro-batch: the same log-probs, and the same parameter
    gradients (to within float rounding, 1e-4), as every row computed whole."""
    assert_close(*shared_and_plain(model, lambda batch, rows: response_logprobs(model, batch, rows, 0.7)[0]))


def test_shared_prompts_give_the_plain_values_and_gradients(tiny_model):
    from transformers import AutoModelForTokenClassification

    from common.logprobs import response_outputs

    value_net = AutoModelForTokenClassification.from_pretrained(tiny_model, num_labels=1, dtype=torch.float32)
    assert_close(*shared_and_plain(value_net, lambda b, rows: response_outputs(value_net, b, rows, False)[..., 0]))


@pytest.mark.parametrize(("top_p", "bf16"), [(1.0, False), (0.9, False), (0.9, True)])
def test_chunked_log_probs_are_those_of_the_whole_logits(model, top_p, bf16, monkeypatch):
    """The log-probs, entropies and top-p log-probs, and the parameter gradients of the log-probs, computed from the
    logits a chunk of 3 tokens at a time (forward and backward), equal those of the whole logits as the model returns
    them, differentiated by autograd (to float rounding; under bf16 autocast, to bf16's); the output head is given
    back after each pass."""
    from common import logprobs

    tolerance = 3e-2 if bf16 else 1e-5  # bf16 keeps 8 bits of mantissa: products rounded in another order differ

    monkeypatch.setattr(logprobs, "chunk_tokens", lambda vocabulary: 3)  # 7 response tokens x 2 rows: 5 chunks
    batch = pad_batch([[10, 11, 12], [13, 14]], [[15, 16, 17, 18, 19, 20, 21], [22, 23]], pad_id=0)
    rows, width, mask = torch.arange(2), 3, batch["mask"]
    head = model.get_output_embeddings()
    weights = torch.linspace(-1, 1, 14).view(2, 7)  # a gradient that differs per token

    model.zero_grad()
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
        logp, entropy, sampling_logp = response_logprobs(model, batch, rows, 0.7, top_p)
    (logp * weights * mask).sum().backward()
    chunked = {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}
    assert model.get_output_embeddings() is head

    model.zero_grad()
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
        logits = model(**logprobs.model_inputs(batch, rows)).logits[:, width - 1 : -1]
    logp_all = torch.log_softmax(logits.float() / 0.7, -1)
    expected = logp_all.gather(-1, batch["input_ids"][:, width:, None]).squeeze(-1)
    (expected * weights * mask).sum().backward()
    whole = {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}

    real = mask.bool()
    assert torch.allclose(logp[real], expected[real].detach(), atol=tolerance)
    assert torch.allclose(entropy[real], -(logp_all.exp() * logp_all).sum(-1)[real].detach(), atol=10 * tolerance)
    nucleus = expected - logprobs.nucleus_log_mass(logp_all, top_p) if top_p < 1 else expected
    assert torch.allclose(sampling_logp[real], nucleus[real].detach(), atol=tolerance)
    assert chunked.keys() == whole.keys() and "model.embed_tokens.weight" in whole  # tied: the head's weight too
    for name, grad in whole.items():
        assert torch.allclose(chunked[name], grad, rtol=10 * tolerance, atol=tolerance * grad.abs().max()), name


def test_a_model_whose_logits_are_not_its_heads_is_refused(model):
    """Softcapped or scaled logits (Gemma's, Cohere's) are not the output head's: the chunked log-probs would be
    wrong, so they stop with one error line instead."""
    model.config.final_logit_softcapping = 30.0
    try:
        with pytest.raises(SystemExit, match="^error: the model's logits are not its output head's alone"):
            response_logprobs(model, pad_batch([[10, 11]], [[12]], pad_id=0), torch.arange(1), 1.0)
    finally:
        del model.config.final_logit_softcapping
