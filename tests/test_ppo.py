"""ppo.py: GAE, the clipped losses, whitening and masking by hand; bad input (end to end: tests/test_trainers.py)."""

import pytest
import torch

import ppo
from conftest import run_script


def test_pad_batch_aligns_responses_and_masks_padding():
    input_ids, attention_mask, response_mask, width = ppo.pad_batch([[1, 2, 3], [4]], [[5], [6, 7]], pad_id=0)
    assert width == 3
    assert input_ids.tolist() == [[1, 2, 3, 5, 0], [0, 0, 4, 6, 7]]
    assert attention_mask.tolist() == [[1, 1, 1, 1, 0], [0, 0, 1, 1, 1]]
    assert response_mask.tolist() == [[1, 0], [1, 1]]


def test_gae_matches_hand_computation():
    # one sequence of 3 tokens, gamma 0.9, lambda 0.5; V after the last token is 0
    rewards = torch.tensor([[0.0, 0.0, 1.0]])
    values = torch.tensor([[0.2, 0.4, 0.6]])
    mask = torch.ones(1, 3)
    advantages, returns = ppo.compute_gae(rewards, values, mask, gamma=0.9, lam=0.5)
    d2 = 1.0 - 0.6
    d1 = 0.0 + 0.9 * 0.6 - 0.4
    d0 = 0.0 + 0.9 * 0.4 - 0.2
    a2, a1 = d2, d1 + 0.45 * d2
    a0 = d0 + 0.45 * a1
    assert advantages.tolist()[0] == pytest.approx([a0, a1, a2])
    assert returns.tolist()[0] == pytest.approx([a0 + 0.2, a1 + 0.4, a2 + 0.6])


def test_gae_ignores_padding_after_the_last_token():
    # the second sequence ends after 1 token: its padding must not leak into its advantage
    rewards = torch.tensor([[0.0, 1.0], [1.0, 5.0]])
    values = torch.tensor([[0.5, 0.5], [0.3, 9.0]])
    mask = torch.tensor([[1.0, 1.0], [1.0, 0.0]])
    advantages, returns = ppo.compute_gae(rewards, values, mask, gamma=1.0, lam=1.0)
    assert advantages[1].tolist() == pytest.approx([1.0 - 0.3, 0.0])
    assert returns[1, 1] == 0
    assert advantages[0].tolist() == pytest.approx([1.0 - 0.5, 1.0 - 0.5])


def test_clipped_policy_loss_on_crafted_ratios():
    old_logp = torch.zeros(1, 4)
    logp = torch.log(torch.tensor([[1.5, 0.5, 1.5, 0.5]]))
    advantages = torch.tensor([[1.0, 1.0, -1.0, -1.0]])
    zeros, mask = torch.zeros(1, 4), torch.ones(1, 4)
    pg_loss, _, stats = ppo.ppo_losses(logp, old_logp, advantages, zeros, zeros, zeros, mask, 0.2, 0.2, n_tokens=4)
    # A>0: min(1.5, 1.2) = 1.2 and min(0.5, 0.8) = 0.5; A<0: max(1.5, 1.2) = 1.5 and max(0.5, 0.8) = 0.8
    assert pg_loss.item() == pytest.approx(-(1.2 + 0.5 - 1.5 - 0.8) / 4)
    assert stats["clipfrac"] == 1.0


def test_clipped_value_loss_and_mask():
    values = torch.tensor([[1.0, 0.0, 100.0]])
    old_values = torch.tensor([[0.0, 0.0, 0.0]])
    returns = torch.tensor([[0.0, 1.0, 0.0]])
    mask = torch.tensor([[1.0, 1.0, 0.0]])  # the third token is padding: its huge error must not count
    zeros = torch.zeros(1, 3)
    _, v_loss, _ = ppo.ppo_losses(zeros, zeros, zeros, values, old_values, returns, mask, 0.2, 0.2, n_tokens=2)
    # token 0: max((1-0)^2, (0.2-0)^2) = 1; token 1: max(1, 1) = 1; halved, averaged over 2 tokens
    assert v_loss.item() == pytest.approx(0.5 * (1 + 1) / 2)


def test_response_logprobs_ignore_prompt_and_padding(tiny_model):
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(tiny_model, dtype=torch.float32)
    prompt, response = [10, 11, 12], [13, 14]
    alone = ppo.pad_batch([prompt], [response], pad_id=0)
    padded = ppo.pad_batch([prompt, [20]], [response, [21, 22, 23, 24]], pad_id=0)
    logp_alone, _, _ = ppo.response_logprobs(model, *alone[:2], alone[3], temperature=1.0)
    logp_padded, _, _ = ppo.response_logprobs(model, *padded[:2], padded[3], temperature=1.0)
    assert torch.allclose(logp_alone[0], logp_padded[0, :2], atol=1e-5)
    assert padded[2][0].tolist() == [1, 1, 0, 0]  # the padding after the response is masked out


def test_check_args_rejects_nonsense():
    with pytest.raises(SystemExit, match="multiple of --minibatch-size"):
        ppo.check_args(
            ppo.Args(questions_per_iteration=3, completions_per_question=3, minibatch_size=4, micro_batch_size=4)
        )
    with pytest.raises(SystemExit, match="learning rates must be positive"):
        ppo.check_args(ppo.Args(learning_rate=-1.0))
    with pytest.raises(SystemExit, match="no checkpoint/state.pt in that folder"):
        ppo.check_args(ppo.Args(resume="/nonexistent-run"))
    with pytest.raises(SystemExit, match="--prompt-format must be chat or vineppo"):
        ppo.check_args(ppo.Args(prompt_format="sft"))
    with pytest.raises(SystemExit, match=r"--warmup-ratio must be in \[0, 1\)"):
        ppo.check_args(ppo.Args(warmup_ratio=1.0))
    ppo.check_args(ppo.Args())  # the defaults are valid


@pytest.mark.parametrize(
    "flags, message",
    [
        (["--dataset", "nosuchdata"], "--dataset nosuchdata"),
        (["--model", "./no/such/folder"], "no such folder"),
        (["--model", "org/not-cached-anywhere"], "the Hugging Face hub cannot be reached"),
        (["--questions-per-iteration", "3"], "multiple of --minibatch-size"),
    ],
)
@pytest.mark.parametrize("script", ["ppo.py", "grpo.py"])  # the same lines in every trainer
def test_bad_input_ends_with_one_clear_message(script, flags, message, tiny_model, tmp_path):
    model = [] if "--model" in flags else ["--model", tiny_model]
    result = run_script(script, *model, "--output-dir", str(tmp_path / "runs"), *flags, timeout=300)
    assert result.returncode != 0
    assert "Traceback" not in result.stderr
    assert message in result.stderr.strip().splitlines()[-1]
    assert not (tmp_path / "runs").exists()  # no empty run left behind to clutter tensorboard


def test_draw_questions_covers_the_dataset_once_per_pass():
    import numpy as np

    np.random.seed(0)
    order, position, seen = np.random.permutation(10), 0, []
    for _ in range(5):
        drawn, order, position = ppo.draw_questions(4, order, position)
        assert len(drawn) == 4
        seen += drawn
    assert sorted(seen[:10]) == list(range(10))  # the first pass: every question once
    assert sorted(seen[10:20]) == list(range(10))  # the second pass, reshuffled
    assert seen[:10] != seen[10:20]
